"""The package's shape, checked on its source: sizes, the run directory's names declared once, light imports.

The layering itself (every import points down, no circle between sibling modules) is import-linter's job
(`lint-imports` in .ci/run, contracts in pyproject.toml); a test here runs it too when it is installed.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcls.run import layout

PACKAGE = Path(__file__).resolve().parents[2] / "mlcls"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60  # decorators and the signature included (a Typer command's options count)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_450_lines():
    lines = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in modules()}
    long = {module: n for module, n in lines.items() if n > MAX_MODULE_LINES}
    assert long == {}


def test_no_function_is_over_60_lines():
    long = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if (lines := node.end_lineno - first + 1) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def run_file_names() -> dict[str, str]:
    """Constant name -> value of every file and folder name that layout.py declares."""
    return {name: value for name, value in vars(layout).items()
            if name.isupper() and not name.startswith("_") and isinstance(value, str)}


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def name_uses(tree: ast.AST, name: str) -> int:
    """How often a module spells a run file's name: a file name (it has a dot) in any string but a docstring
    (prose that documents the layout is not a use; a message that names the file is); a folder name as a path
    part: `path / "encoder"`, or "encoder/" inside a string. "the encoder" in prose, or a dictionary key
    "folds", is no such use."""
    docstrings = docstring_nodes(tree)
    path_parts = {id(node.right) for node in ast.walk(tree)
                  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)}
    uses = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in docstrings:
            continue
        text = node.value
        if "." in name:
            uses += re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None
        else:
            part = re.search(rf"(?<![\w.]){re.escape(name)}/", text) is not None
            uses += (text == name and id(node) in path_parts) or part
    return uses


def test_every_run_file_name_is_a_literal_once_in_the_package():
    names = run_file_names()
    assert {"CONFIG", "LABELS", "THRESHOLDS", "HEAD", "ENCODER", "MANIFEST", "CHECKPOINT"} <= set(names)
    trees = {str(path.relative_to(PACKAGE)): ast.parse(path.read_text()) for path in modules()}
    repeated = {}
    for constant, value in names.items():
        where = {module: n for module, tree in trees.items() if module != "run/layout.py"
                 and (n := name_uses(tree, value))}
        if where:
            repeated[f"{constant} = {value!r}"] = where
    assert repeated == {}


def test_the_declarations_are_in_layout():
    source = (PACKAGE / "run" / "layout.py").read_text()
    for constant, value in run_file_names().items():
        assert re.search(rf'^{constant} = "{re.escape(value)}"', source, re.M), constant


def test_no_run_may_be_named_as_the_latest_link():
    """config.py, below run/, refuses the name of runs/latest itself: it must be layout's."""
    from mlcls.config import Config
    from mlcls.errors import ConfigError

    with pytest.raises(ConfigError, match="not a valid run name"):
        Config.from_dict({"output": {"name": layout.LATEST}})


def test_importing_the_public_api_loads_no_torch():
    code = "import sys, mlcls.api\nprint([m for m in ('torch', 'transformers') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (the dev extra)")
def test_imports_point_down_and_form_no_circle():
    done = subprocess.run(["lint-imports"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
