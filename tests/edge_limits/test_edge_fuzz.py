"""Schemathesis over the runtime's own /openapi.json, in-process: no input gets a 5xx, and every response
is one the document declares (status code, schema, and the ``Allow`` header of a 405).

Bounded and deterministic (``derandomize``: the same cases every run, no example database) so it is a
regression test that stays inside the suite's time budget, not an open-ended search: a few cases per
operation as a guest, and the staff-only reads again with the staff token.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    allow_header_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from runtime.app import create_app
from runtime.settings import Settings

STAFF = "fuzz-staff-token-" + "x" * 16
_DATA = Path(tempfile.mkdtemp(prefix="edge-fuzz-"))
# One app for the whole module: schemathesis runs its lifespan once and keeps it for the process.
APP = create_app(Settings(data_dir=_DATA, staff_token=STAFF, session_secret="s" * 32, workers=1,
                          appsync_api_key="k" * 24))
# /readyz takes no input and is 503 by design until the speech models are loaded (which a probe starts).
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/readyz")
staff_schema = schema.include(method="GET", path_regex=r"^/api/(bookings|conversations)")

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, allow_header_conformance]
FUZZ = settings(max_examples=12, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", autouse=True)
def _app_lifespan() -> Iterator[None]:
    """Stop the app schemathesis started while the event loop and the store's thread still run."""
    yield
    shutdown_lifespans()


@schema.parametrize()
@FUZZ
def test_no_input_gets_a_5xx_as_a_guest(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


@staff_schema.parametrize()
@FUZZ
def test_no_input_gets_a_5xx_as_staff(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"authorization": f"Bearer {STAFF}"}, checks=CHECKS)
