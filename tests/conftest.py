"""Suite-wide test environment: no real AWS, no stray network, temporary data directories.

Area fixtures live in each area's own ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never reach AWS from tests: fake credentials, a fixed region, and moto's streams quirk
# (botocore >= 1.44 would route stream calls to an account endpoint moto does not serve).
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "AWS_EC2_METADATA_DISABLED": "true",
})
for _var in ("STAFF_TOKEN", "SESSION_SECRET", "STORE", "SPEECH_ENGINE", "APPSYNC_ENDPOINT", "TURN_SECRET",
             "STAFF_AUTH", "COGNITO_USER_POOL_ID", "COGNITO_CLIENT_ID", "COGNITO_ENDPOINT_URL"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


class _NeverRetrieved(logging.Handler):
    """Collects asyncio's "Task/Future exception was never retrieved" reports, and tasks that were still
    pending when the test's loop shut down and then failed ("unhandled exception during asyncio.run()
    shutdown"): both are errors nobody handled.

    asyncio logs them on the ``asyncio`` logger from the loop's default exception handler, often only when
    the task is garbage-collected - long after the code that lost it ran - so the guard collects garbage at
    every test's end to pin the report on the test that caused it.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "exception was never retrieved" in message or "unhandled exception during asyncio.run() shutdown" in message:
            detail = ""
            if record.exc_info and record.exc_info[1] is not None:
                detail = f": {type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            self.reports.append(message.splitlines()[0] + detail)


@pytest.fixture(autouse=True)
def no_unretrieved_task_exceptions() -> Iterator[None]:
    """Fail any test during which a task or future failed with nobody awaiting it (a lost error = silence)."""
    # No collection before the test: the previous test's teardown collected its own garbage already, and
    # a full collection costs up to a quarter of a second with the suite's caches in memory.
    handler = _NeverRetrieved()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(handler)
    try:
        yield
        gc.collect()
        # What survived is moved out of the collector's reach (it still dies by reference count): the next
        # test's collection then scans only what that test made. Collecting the whole suite's heap (pulumi,
        # moto, numpy, the models) at every teardown cost about 0.2 s a test, minutes over the suite.
        gc.freeze()
    finally:
        asyncio_log.removeHandler(handler)
    if handler.reports:
        pytest.fail("asyncio reported lost task exceptions:\n" + "\n".join(handler.reports), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (``CI=true``) a skipped test fails the run: a suite that skips proves nothing.

    A missing Chromium, a namespace the runner may not create or an import error would otherwise turn
    whole suites into green "s" marks.
    """
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            print(f"\nCI: skipped {report.nodeid}: {reason}")
        print(f"CI: {len(skipped)} test(s) skipped; in CI every test must run")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
