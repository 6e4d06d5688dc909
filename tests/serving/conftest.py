"""Fixtures of the serving tests: the tiny run (trained once per session by tests/conftest.py) and its loaded form.
test_serve.py declares the same two for itself."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def run_dir(trained) -> Path:
    folder, _, _ = trained
    return folder / "runs" / "tiny"


@pytest.fixture(scope="module")
def loaded(run_dir):
    from mlcls.inference.loading import load_run

    return load_run(run_dir)
