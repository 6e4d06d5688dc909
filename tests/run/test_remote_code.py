"""A run is data, not code: the code a run folder carries (an auto_map and a module beside the weights, or
model.trust_remote_code in its own config.yaml) runs only when the command that loads it is given
--trust-remote-code. Without it, one line says what the run asks for and how to allow it."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.errors import RunDirError
from mlcls.inference.loading import load_run

runner = CliRunner()
MODULE = '''
from pathlib import Path
Path({marker!r}).write_text("ran")  # what an attacker's module would do: anything, at import
from transformers import BertModel
class EvilModel(BertModel):
    pass
'''


def hostile_copy(trained, tmp_path, auto_map: bool = True, config_flag: bool = True):
    """A copy of the tiny run that asks to run code: its config says trust_remote_code, its encoder's
    config.json maps AutoModel to a module of its own, which writes a marker file when imported."""
    folder, _, _ = trained
    run = tmp_path / "shared-run"
    shutil.copytree(folder / "runs" / "tiny", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"]["trust_remote_code"] = config_flag
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    marker = tmp_path / "code-ran"
    if auto_map:
        (run / "encoder" / "evil.py").write_text(MODULE.format(marker=str(marker)))
        encoder_config = json.loads((run / "encoder" / "config.json").read_text())
        encoder_config["auto_map"] = {"AutoModel": "evil.EvilModel"}
        (run / "encoder" / "config.json").write_text(json.dumps(encoder_config))
    return run, marker


def test_a_run_that_carries_code_is_refused_without_the_flag(trained, tmp_path):
    run, marker = hostile_copy(trained, tmp_path)
    with pytest.raises(RunDirError, match="--trust-remote-code") as caught:
        load_run(run, device="cpu")
    assert "model.trust_remote_code: true" in str(caught.value) and "auto_map" in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "eval", "serve", "export"])
def test_every_command_that_loads_a_run_refuses_it_in_one_line(trained, tmp_path, command):
    run, marker = hostile_copy(trained, tmp_path)
    args = {"predict": ["predict", "-", "--model", str(run)], "eval": ["eval", str(run)],
            "serve": ["serve", str(run), "--port", "0"],
            "export": ["export", str(run), "--out", str(tmp_path / "exported")]}[command]
    result = runner.invoke(app, args, input='{"text": "oil"}\n')
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and "add --trust-remote-code if you trust its source" in result.stderr
    assert not marker.exists() and not (tmp_path / "exported").exists()


def test_an_auto_map_alone_is_enough_to_refuse(trained, tmp_path):
    run, marker = hostile_copy(trained, tmp_path, config_flag=False)
    result = runner.invoke(app, ["predict", "-", "--model", str(run)], input='{"text": "oil"}\n')
    assert result.exit_code == 1 and "auto_map" in result.stderr and not marker.exists()


def test_the_flag_is_the_users_opt_in(trained, tmp_path):
    """With --trust-remote-code a run whose config asks for it loads (here it carries no module to run)."""
    run, _ = hostile_copy(trained, tmp_path, auto_map=False)
    result = runner.invoke(app, ["predict", "-", "--model", str(run), "--trust-remote-code"],
                           input='{"id": "a", "text": "oil"}\n')
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.splitlines()[0])["id"] == "a"
