"""Helpers of the tests of hand-edited run files (test_hand_edited_files.py, test_hand_edited_fuzz.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import _cli


def edit_json(run: Path, name: str, change) -> None:
    """Rewrite the JSON file `name` of `run` as `change(data)` leaves it."""
    data = json.loads((run / name).read_text())
    change(data)
    (run / name).write_text(json.dumps(data))


def predict(run: Path):
    """`mlcls predict` of one article with the run in `run`."""
    return _cli("predict", "-", "--model", str(run), input='{"text": "crude oil and wheat"}\n')


def predict_error(run: Path) -> str:
    """`mlcls predict` on `run`: it must fail with one `error:` line; that line."""
    result = predict(run)
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
