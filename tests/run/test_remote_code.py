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


def _interrupted_run_asking_for_code(tmp_path, tiny_encoder):
    """An unfinished run (runs/.cut.incomplete) whose config.yaml, as received from someone else, names an
    encoder that maps AutoModel to a module of its own and sets model.trust_remote_code; the marker file its
    module writes when imported."""
    from rich.console import Console

    from mlcls.config import load_config
    from mlcls.training.data import TrainingInterrupted
    from mlcls.training.entry import train
    from mlcls.training.interrupt import StopAfterStep
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    encoder = tmp_path / "evil-encoder"  # the encoder the received config names: it maps AutoModel to its module
    shutil.copytree(tiny_encoder, encoder)
    marker = tmp_path / "code-ran"
    (encoder / "evil.py").write_text(MODULE.format(marker=str(marker)))
    encoder_config = json.loads((encoder / "config.json").read_text())
    encoder_config["auto_map"] = {"AutoModel": "evil.EvilModel"}
    (encoder / "config.json").write_text(json.dumps(encoder_config))

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = load_config(tiny_config(tmp_path, tiny_encoder, data), ["train.batch_size=2"], {"output.name": "cut"})
    with pytest.raises(TrainingInterrupted):
        train(config, Console(stderr=True, quiet=True), stop=StopAfterStep(1))
    staging = tmp_path / "runs" / ".cut.incomplete"
    received = yaml.safe_load((staging / "config.yaml").read_text())
    received["model"].update(encoder=str(encoder), trust_remote_code=True)
    (staging / "config.yaml").write_text(yaml.safe_dump(received))
    return staging, marker


def test_resuming_a_run_whose_config_asks_for_code_needs_the_flag(tmp_path, tiny_encoder):
    """`train --resume` takes the unfinished run's own config.yaml, which may come from someone else: its
    model.trust_remote_code is refused without --trust-remote-code, before any encoder is loaded."""
    staging, marker = _interrupted_run_asking_for_code(tmp_path, tiny_encoder)
    refused = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cut")])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1
    assert "model.trust_remote_code: true" in refused.stderr and "--trust-remote-code" in refused.stderr
    assert not marker.exists() and staging.is_dir()  # nothing ran, and the run can still be resumed

    allowed = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cut"), "--trust-remote-code"])
    assert marker.exists(), allowed.output  # the user's opt-in: the run's code did run


def test_the_python_api_resumes_a_run_that_asks_for_code_only_when_told(tmp_path, tiny_encoder):
    # train(resume=...) took the received config's key as the opt-in, which the CLI refuses.
    from mlcls.config import load_config
    from mlcls.training.entry import train

    staging, marker = _interrupted_run_asking_for_code(tmp_path, tiny_encoder)
    config = load_config(staging / "config.yaml")
    with pytest.raises(RunDirError, match="model.trust_remote_code: true.*add --trust-remote-code"):
        train(config, resume=tmp_path / "runs" / "cut")
    assert not marker.exists() and staging.is_dir()


def test_starting_from_a_run_that_carries_code_needs_the_flag_not_the_config_key(trained, tmp_path, tiny_encoder):
    """model.trust_remote_code in the user's config is about the user's encoder: a run to start from
    (--init-from) may come from someone else, and its code runs only with --trust-remote-code on the command
    line, refused in one line before anything is loaded or staged."""
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    parent, marker = hostile_copy(trained, tmp_path, config_flag=False)
    child = tmp_path / "child"
    child.mkdir()
    config = tiny_config(child, tiny_encoder, write_jsonl(child / "tiny.jsonl", TINY_RECORDS))
    args = ["train", "-c", str(config), "--init-from", str(parent), "--set", "model.trust_remote_code=true",
            "--set", "train.epochs=1"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1 and "auto_map" in refused.stderr
    assert "add --trust-remote-code if you trust its source" in refused.stderr
    assert not marker.exists() and not (child / "runs").exists()

    allowed = runner.invoke(app, [*args, "--trust-remote-code"])
    assert marker.exists(), allowed.output  # the user's opt-in: the run's code did run


def test_the_python_api_needs_its_own_opt_in_for_a_parents_code(trained, tmp_path, tiny_encoder):
    # train() took the config's key as the opt-in for the parent's code too, which the CLI refuses.
    from mlcls.config import load_config
    from mlcls.errors import MlclsError
    from mlcls.training.entry import train
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    parent, marker = hostile_copy(trained, tmp_path, config_flag=False)
    config = load_config(tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)),
                         [f"model.init_from={parent}", "model.trust_remote_code=true", "train.epochs=1"])
    with pytest.raises(MlclsError, match="add --trust-remote-code if you trust its source"):
        train(config)
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_a_search_starting_from_a_run_that_carries_code_needs_the_flag(trained, tmp_path, tiny_encoder):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    parent, marker = hostile_copy(trained, tmp_path, config_flag=False)
    config = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    space = tmp_path / "space.yaml"
    space.write_text("model.dropout: {low: 0.0, high: 0.2}\n")
    refused = runner.invoke(app, ["tune", "-c", str(config), "--space", str(space), "--trials", "1", "--set",
                                  f"model.init_from={parent}", "--set", "model.trust_remote_code=true"])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1 and "add --trust-remote-code if you trust its source" in refused.stderr
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_train_trust_remote_code_sets_the_new_runs_key(tmp_path, tiny_encoder):
    from mlcls.cli.train import _resolve
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    path = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    assert _resolve(path, [], {}, None, trust_remote_code=True)[0].model.trust_remote_code
    assert not _resolve(path, [], {}, None)[0].model.trust_remote_code


@pytest.mark.parametrize("where", ["provenance.json", "encoder/notes.txt", "lexical-like-folder"])
def test_a_link_out_of_the_run_is_refused_before_loading_or_export(trained, tmp_path, where):
    """A received run must not carry a file from outside it (a link to ~/.ssh/id_rsa named provenance.json)
    into what mlcls reads, and so into an export."""
    folder, _, _ = trained
    run = tmp_path / "linked-run"
    shutil.copytree(folder / "runs" / "tiny", run)
    secret = tmp_path / "secret.txt"
    secret.write_text("AWS_SECRET=hunter2")
    if where == "lexical-like-folder":
        (tmp_path / "outside").mkdir()
        (run / "extra").symlink_to(tmp_path / "outside", target_is_directory=True)
    else:
        (run / where).unlink(missing_ok=True)
        (run / where).symlink_to(secret)
    with pytest.raises(RunDirError, match="outside the run directory"):
        load_run(run, device="cpu")
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "exported")])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "a link to" in result.stderr
    assert not (tmp_path / "exported").exists()


def test_links_inside_the_run_and_a_linked_run_folder_are_fine(trained, tmp_path):
    folder, _, _ = trained
    run = tmp_path / "run"
    shutil.copytree(folder / "runs" / "tiny", run)
    (run / "notes.json").symlink_to(run / "labels.json")  # inside: harmless
    (tmp_path / "latest").symlink_to(run, target_is_directory=True)
    loaded = load_run(tmp_path / "latest", device="cpu")
    assert loaded.labels.labels == ["cocoa", "grain", "oil"]


def test_a_shard_name_that_leaves_the_encoder_folder_is_refused(trained, tmp_path):
    folder, _, _ = trained
    run = tmp_path / "run"
    shutil.copytree(folder / "runs" / "tiny", run)
    (tmp_path / "elsewhere.safetensors").write_bytes((run / "encoder" / "model.safetensors").read_bytes())
    (run / "encoder" / "model.safetensors").unlink()
    (run / "encoder" / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"embeddings.word_embeddings.weight": "../../elsewhere.safetensors"}}))
    with pytest.raises(RunDirError, match="not a file name in this folder"):
        load_run(run, device="cpu")


def _config_asking_for_code(tmp_path, tiny_encoder):
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    path = tiny_config(tmp_path, tiny_encoder, write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS))
    config = yaml.safe_load(path.read_text())
    config["model"]["trust_remote_code"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "trust_remote_code" in text)
    return path, line


def test_a_config_file_cannot_turn_remote_code_on(tmp_path, tiny_encoder):
    """A config file travels as a run folder does: its model.trust_remote_code: true is refused in one line that
    names the file and the line, before anything is read or staged; the command line's opt-in is the way."""
    from mlcls.cli.train import _resolve

    path, line = _config_asking_for_code(tmp_path, tiny_encoder)
    refused = runner.invoke(app, ["train", "-c", str(path)])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1
    assert f"{path}:{line}: model.trust_remote_code: true" in refused.stderr
    assert "--trust-remote-code" in refused.stderr
    assert not (tmp_path / "runs").exists()

    assert _resolve(path, [], {}, None, trust_remote_code=True)[0].model.trust_remote_code
    assert _resolve(path, ["model.trust_remote_code=true"], {}, None)[0].model.trust_remote_code
    assert not _resolve(path, ["model.trust_remote_code=false"], {}, None)[0].model.trust_remote_code


def test_a_search_refuses_a_base_config_that_turns_remote_code_on(tmp_path, tiny_encoder):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    path, line = _config_asking_for_code(tmp_path, tiny_encoder)
    space = tmp_path / "space.yaml"
    space.write_text("model.dropout: {low: 0.0, high: 0.2}\n")
    refused = runner.invoke(app, ["tune", "-c", str(path), "--space", str(space), "--trials", "1"])
    assert refused.exit_code == 1, refused.output
    assert refused.stderr.count("\n") == 1 and f"{path}:{line}: model.trust_remote_code" in refused.stderr
    assert not (tmp_path / "runs").exists()


def test_a_search_space_cannot_turn_remote_code_on():
    from mlcls.errors import ConfigError
    from mlcls.tune.schema import key_type

    with pytest.raises(ConfigError, match="model.trust_remote_code cannot be searched: .*--trust-remote-code"):
        key_type("model.trust_remote_code")
