"""House rules a reader can trust without measuring (issue 45): no library
function over MAX_FUNCTION_LINES lines and no module over MAX_MODULE_LINES.

Every .py file under speechlstm/ is read with `ast`, so nested functions and
methods count on their own; a function's length runs from its `def` line to
its last line (decorators not counted), its docstring included.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "speechlstm"
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 500


def _modules() -> list[Path]:
    return sorted(LIBRARY.rglob("*.py"))


def _long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT)
    return [
        f"{rel}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_the_walk_finds_the_library():
    names = {p.relative_to(LIBRARY).as_posix() for p in _modules()}
    assert {"__init__.py", "serve.py", "train/trainer.py"} <= names


def test_no_library_function_is_over_80_lines():
    offenders = [line for path in _modules() for line in _long_functions(path)]
    assert not offenders, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them into functions with one "
        "job each): " + "; ".join(offenders)
    )


def test_no_library_module_is_over_500_lines():
    offenders = []
    for path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            offenders.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not offenders, f"modules over {MAX_MODULE_LINES} lines: " + "; ".join(offenders)
