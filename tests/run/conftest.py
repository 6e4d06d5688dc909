"""Helpers of the run-directory tests (tests/run/)."""

from __future__ import annotations

from pathlib import Path


def _run_copy(trained, tmp_path: Path, name: str = "copy") -> Path:
    import shutil

    folder, _, _ = trained
    copy = tmp_path / "runs" / name
    shutil.copytree(folder / "runs" / "tiny", copy)
    return copy
