"""The Lambda modules must import with only what the AWS Lambda Python runtime provides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Imported in a fresh interpreter whose import system refuses every third-party package except those
# the Lambda Python runtime bundles (boto3 and its dependencies).
PROBE = """
import importlib.abc, sys
ALLOWED = set(sys.stdlib_module_names) | {"runtime", "boto3", "botocore", "urllib3", "s3transfer", "jmespath",
                                          "dateutil", "six"}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in ALLOWED:
            raise ImportError(f"{name} is not available in the Lambda runtime")
sys.meta_path.insert(0, Refuse())
import importlib
importlib.import_module(sys.argv[1])
"""


@pytest.mark.parametrize("module", ["runtime.events.stream_publisher", "runtime.events.authorizer"])
def test_lambda_module_imports_with_stdlib_and_boto3_only(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
