"""Suite-wide test environment: no real AWS, no stray network, temporary data directories.

Area fixtures live in each area's own ``tests/<area>/conftest.py``.
"""

from __future__ import annotations

import os
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
for _var in ("STAFF_TOKEN", "SESSION_SECRET", "STORE", "SPEECH_ENGINE", "APPSYNC_ENDPOINT", "TURN_SECRET"):
    os.environ.pop(_var, None)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
