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
