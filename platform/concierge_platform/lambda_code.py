"""The Lambda code archive: exactly the stdlib/boto3-only runtime modules the two functions import.

Zipping the whole ``runtime/`` package would drag in modules that import starlette, aiortc or numpy,
which the Lambda Python runtime does not have; the events engineer keeps these files stdlib + boto3.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

REPO_ROOT = Path(__file__).resolve().parents[2]
LAMBDA_FILES: tuple[str, ...] = (
    "runtime/__init__.py",
    "runtime/auth.py",
    "runtime/changes.py",
    "runtime/stores/__init__.py",
    "runtime/stores/base.py",
)
LAMBDA_PACKAGES: tuple[str, ...] = ("runtime/events",)
AUTHORIZER_HANDLER = "runtime.events.authorizer.handler"
PUBLISHER_HANDLER = "runtime.events.stream_publisher.handler"


def lambda_sources(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Archive path -> file on disk, for the named files plus every ``.py`` under the packages."""
    sources = {rel: root / rel for rel in LAMBDA_FILES}
    for package in LAMBDA_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" not in path.parts:
                sources[path.relative_to(root).as_posix()] = path
    missing = sorted(rel for rel, path in sources.items() if not path.is_file())
    if missing:
        raise FileNotFoundError(f"Lambda code is incomplete, missing: {', '.join(missing)}")
    return sources


def handler_module_path(handler: str) -> str:
    """``runtime.events.authorizer.handler`` -> ``runtime/events/authorizer.py``."""
    module = handler.rsplit(".", 1)[0]
    return module.replace(".", "/") + ".py"


def lambda_archive(root: Path = REPO_ROOT) -> pulumi.AssetArchive:
    return pulumi.AssetArchive({rel: pulumi.FileAsset(str(path)) for rel, path in lambda_sources(root).items()})
