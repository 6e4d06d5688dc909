"""Every config shipped in configs/ loads (mlcls.config.load_config) and `mlcls config -c FILE` prints it back:
a key renamed or removed in mlcls/config.py must not leave a shipped config that no longer loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def contains(whole: Any, part: Any) -> bool:
    """Every key of `part` is in `whole`, with the same value (nested mappings compared key by key)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(key in whole and contains(whole[key], part[key]) for key in part)
    return whole == part


def test_configs_are_shipped():
    assert SHIPPED, f"no *.yaml in {ROOT / 'configs'}"
    assert {"default.yaml", "reuters.yaml", "reuters-best.yaml"} <= {path.name for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_a_shipped_config_loads_and_is_printed_back(path):
    config = load_config(path)
    resolved = config.to_dict()
    assert contains(resolved, yaml.safe_load(path.read_text())), "a value of the file was not kept"
    result = CliRunner().invoke(app, ["config", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == resolved


@pytest.mark.parametrize("path", SHIPPED, ids=[path.name for path in SHIPPED])
def test_a_shipped_config_trains_one_epoch_on_the_tiny_model(path, tiny_encoder, tmp_path):
    """The config as shipped (loss, rule, folds, lexical fusion, long-text mode, ...), with only what needs the
    real data and model replaced: the tiny data and encoder, one epoch, and a max_length the tiny encoder's 64
    positions hold (a long-text mode keeps its own settings, its overlap scaled to fit)."""
    from mlcls.training.entry import train
    from tests.conftest import TINY_RECORDS, write_jsonl

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = load_config(path)
    config.data.train, config.data.test, config.data.text_fields = str(data), str(data), ["text"]
    config.data.validation = None if config.train.folds > 1 else str(data)
    config.model.encoder, config.model.max_length = str(tiny_encoder), 16
    config.model.chunk_overlap = min(config.model.chunk_overlap, 4)
    if config.model.head_tokens is not None:
        config.model.head_tokens = 4
    config.train.epochs, config.train.batch_size, config.train.device = 1, 4, "cpu"
    # `auto` would be bf16 on some hosts and fp32 on others; the configs' own precisions are loaded above
    config.train.precision, config.model.inference_precision = "fp32", "fp32"
    config.train.folds = min(config.train.folds, 2)  # cross-fitting stays cross-fitting, on 12 records
    config.output.dir, config.output.name = str(tmp_path / "runs"), path.stem
    result = train(config)
    assert (result.run_dir / "thresholds.json").is_file() and result.metrics["epochs_trained"] == 1
