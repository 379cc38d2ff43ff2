"""The runtime package is what ships (the wheel's `runtime*`, the image's `COPY runtime/`): no tooling in it."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"
TOOLING = ("tools", "tests", "bench", "emulators")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_shipped_runtime_imports_no_test_bench_or_operator_tooling() -> None:
    offenders = {str(path.relative_to(RUNTIME)): sorted(_imports(path) & set(TOOLING))
                 for path in RUNTIME.rglob("*.py") if _imports(path) & set(TOOLING)}
    assert not offenders, offenders


def test_the_callers_probes_and_smoke_test_live_outside_the_runtime() -> None:
    # Test, bench and operator tools (an aiortc caller with a packet-loss patch, the smoke test, the echo
    # session, the engine's scripted caller) are in tools/, which neither the wheel nor the image contains.
    modules = {path.stem for path in RUNTIME.rglob("*.py")}
    assert not modules & {"probe", "smoke", "echo", "caller"}
    tools = Path(__file__).resolve().parents[2] / "tools"
    assert {"probe", "smoke", "echo", "engine_caller"} <= {path.stem for path in tools.glob("*.py")}
