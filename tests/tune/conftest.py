"""What the tune tests share: a tiny base config (the tiny encoder, a few records, fp32 on the CPU), a space over
it, and the study a search left, read back through Optuna."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

pytest.importorskip("optuna")

# Two searched keys, one of them conditional on the other (focal's gamma); small ranges the tiny model learns in.
TINY_SPACE = """
train.lr: {low: 5.0e-4, high: 3.0e-3, log: true}
loss.name: [bce, focal]
loss.gamma: {low: 0.5, high: 3.0}
"""


def tune_args(base: Path, space: Path, *extra: str, epochs: int = 1) -> list[str]:
    """`mlcls tune` on the tiny base: `epochs` per trial, the token cache beside the runs."""
    return ["tune", "-c", str(base), "--space", str(space), "--set", f"train.epochs={epochs}",
            "--set", f"train.cache_dir={base.parent / 'cache'}", *extra]


@pytest.fixture
def tiny_base(tmp_path, tiny_encoder) -> Path:
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    return tiny_config(tmp_path, tiny_encoder, data)


@pytest.fixture
def tiny_space(tmp_path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(TINY_SPACE)
    return path


def load_trials(storage: str, study: str = "tiny"):
    """The study's trials, as Optuna stores them."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    backend = storage if "://" in storage else JournalStorage(JournalFileBackend(storage))  # a journal file's path
    return optuna.load_study(study_name=study, storage=backend).get_trials(deepcopy=False)


def sqlite_of(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", COLUMNS="200")
