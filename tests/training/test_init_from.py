"""`mlcls train --init-from RUN` (model.init_from): the encoder and the shared labels' head rows start from a
finished run, new labels at their prior log-odds, the run's other labels dropped (or kept, not annotated); the
parent is recorded in provenance.json and the model card; misfits are one-line errors before training; resume,
cross-fitting, both heads and export work for such runs. All on the tiny encoder.

The parent is the session's tiny run (`trained`: labels cocoa, grain, oil); the new data renames oil to energy,
so that cocoa and grain are shared, energy is new and oil is the parent's alone."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.config import load_config
from mlcls.errors import ConfigError
from mlcls.training.data import TrainingInterrupted, read_training_data
from mlcls.training.entry import train
from mlcls.training.init_from import read_start, start_data, start_model
from mlcls.training.interrupt import StopAfterStep
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

runner = CliRunner()
quiet = Console(stderr=True, quiet=True)
NEW_RECORDS = [dict(r, labels=["energy" if name == "oil" else name for name in r["labels"]]) for r in TINY_RECORDS]


def _parent(trained) -> Path:
    return trained[0] / "runs" / "tiny"


def _child_yaml(folder: Path, encoder: Path, records=NEW_RECORDS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return tiny_config(folder, encoder, write_jsonl(folder / "new.jsonl", records))


def _config(folder: Path, encoder: Path, parent: Path, *overrides: str, name: str = "child"):
    return load_config(_child_yaml(folder, encoder), [f"model.init_from={parent}", "train.epochs=2",
                                                      f"train.cache_dir={folder / 'cache'}", *overrides],
                       {"output.name": name})


def _started(config):
    """(data, model) as a training from config.model.init_from starts: nothing trained yet."""
    start = read_start(config)
    data = start_data(start, read_training_data(config, quiet, None), None)
    model, _ = start_model(config, data, start)
    return data, model


def _labels(run: Path) -> list[str]:
    return json.loads((run / "labels.json").read_text())["labels"]


def _head(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "head.safetensors"))


def _error_line(result) -> str:
    """The one line a refused training ends with (and that there is no traceback)."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def child(trained, tiny_encoder, tmp_path_factory):
    """A run trained through the CLI from the tiny run, on the new labels, through a link to the parent."""
    folder = tmp_path_factory.mktemp("init-from")
    link = folder / "parent-link"
    link.symlink_to(_parent(trained), target_is_directory=True)
    result = runner.invoke(app, ["train", "-c", str(_child_yaml(folder, tiny_encoder)), "--init-from", str(link),
                                 "--epochs", "3", "--name", "child"])
    assert result.exit_code == 0, result.output
    return folder / "runs" / "child", result


# --------------------------------------------------------------------------- the start


def test_shared_rows_are_the_parents_and_new_labels_start_at_their_prior(trained, tiny_encoder, tmp_path):
    parent = _parent(trained)
    data, model = _started(_config(tmp_path, tiny_encoder, parent))
    assert data.labels.labels == ["cocoa", "energy", "grain"]
    head, parent_labels = _head(parent), _labels(parent)
    for i, name in enumerate(data.labels.labels):
        if name in parent_labels:
            j = parent_labels.index(name)
            assert torch.equal(model.head.weight[i], head["head.weight"][j]), name
            assert torch.equal(model.head.bias[i], head["head.bias"][j]), name
    prior = data.stats.prior()[1]  # energy: 4 of 12 training articles
    assert model.head.bias[1].item() == pytest.approx(np.log(prior / (1 - prior)), abs=1e-6)
    assert model.head.weight[1].abs().max().item() < 0.2  # small weights, as a fresh head's
    encoder = load_file(str(parent / "encoder" / "model.safetensors"))
    state = model.encoder.state_dict()
    assert encoder.keys() <= state.keys()
    for key, value in encoder.items():
        assert torch.equal(state[key], value), key


def test_keep_labels_keeps_the_parents_label_unannotated_and_its_bias(trained, tiny_encoder, tmp_path):
    parent = _parent(trained)
    config = _config(tmp_path, tiny_encoder, parent, "model.init_keep_labels=true", name="keep")
    data, _ = _started(config)
    assert data.labels.labels == ["cocoa", "energy", "grain", "oil"]
    assert data.train_enc.mask[:, 3].sum() == 0 and data.val_enc.mask[:, 3].sum() == 0
    run = train(config, quiet).run_dir
    stats = json.loads((run / "label_stats.json").read_text())
    assert stats["labels"]["oil"] == {"positives": 0.0, "annotated": 0.0, "articles": 0.0}
    assert stats["labels"]["energy"]["positives"] == 4.0 and stats["num_records"] == len(NEW_RECORDS)
    # Not annotated: no gradient reaches oil's row, and biases have no weight decay: its bias is the parent's.
    assert _head(run)["head.bias"][3].item() == _head(parent)["head.bias"][_labels(parent).index("oil")].item()


# --------------------------------------------------------------------------- the run it makes


def test_the_run_drops_the_parents_other_labels_with_a_note(child):
    run, result = child
    dropped = [line for line in result.output.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and "oil" in dropped[0] and "init_keep_labels" in dropped[0]
    assert _labels(run) == ["cocoa", "energy", "grain"]
    # The rule is tuned afresh on the new labels, and label_stats.json counts the new data.
    assert set(json.loads((run / "thresholds.json").read_text())["per_label"]) == {"cocoa", "energy", "grain"}
    stats = json.loads((run / "label_stats.json").read_text())
    assert set(stats["labels"]) == {"cocoa", "energy", "grain"} and stats["labels"]["energy"]["positives"] == 4.0


def test_provenance_and_card_name_the_parent_and_the_hash_of_its_weights(child, trained):
    run, _ = child
    parent = _parent(trained).resolve()
    # The link is followed: the run names the parent itself (runs/latest will point elsewhere one day).
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["init_from"] == str(parent)
    recorded = json.loads((run / "provenance.json").read_text())["parent"]
    files = {name: hashlib.sha256((parent / name).read_bytes()).hexdigest()
             for name in ("encoder/model.safetensors", "head.safetensors")}
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(files.items()))
    assert recorded["path"] == str(parent)
    assert recorded["weight_files"] == files
    assert recorded["weights_sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert recorded["labels"] == {"shared": 2, "new": ["energy"], "dropped": ["oil"]}
    card = (run / "README.md").read_text()
    assert f"started from the run `{parent}`" in card and recorded["weights_sha256"] in card


def test_an_init_from_run_evaluates_and_exports(child, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run, _ = child
    evaluated = runner.invoke(app, ["eval", str(run), "--json", str(tmp_path / "eval.json")])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads((tmp_path / "eval.json").read_text())["provenance"]["parent"]["labels"]["new"] == ["energy"]
    exported = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "onnx")])
    assert exported.exit_code == 0, exported.output
    assert "agrees with the torch model" in exported.stdout
    assert json.loads((tmp_path / "onnx" / "labels.json").read_text())["labels"] == ["cocoa", "energy", "grain"]


# --------------------------------------------------------------------------- starts that do not fit


def _other_encoder(folder: Path, tiny_encoder: Path, hidden: int, extra_words: tuple[str, ...] = ()) -> Path:
    """A tiny BERT of another width, or with another vocabulary."""
    from transformers import AutoTokenizer, BertConfig, BertModel, BertTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_encoder).get_vocab()
    vocab = sorted(ids, key=ids.get) + list(extra_words)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("hidden", "extra", "word"), [(16, (), "family"), (32, ("zebra",), "tokenizer")])
def test_another_encoder_family_or_tokenizer_is_refused_in_one_line(trained, tiny_encoder, tmp_path, hidden,
                                                                     extra, word):
    other = _other_encoder(tmp_path / "other", tiny_encoder, hidden, extra)
    result = runner.invoke(app, ["train", "-c", str(_child_yaml(tmp_path, tiny_encoder)), "--init-from",
                                 str(_parent(trained)), "--model", str(other), "--name", "x"])
    line = _error_line(result)
    assert line.startswith("error: model.init_from:") and f"another {word}" in line
    assert f"--model {tiny_encoder}" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing claimed


def test_another_head_or_a_missing_run_is_refused_in_one_line(trained, tiny_encoder, tmp_path):
    config = _child_yaml(tmp_path, tiny_encoder)
    head = runner.invoke(app, ["train", "-c", str(config), "--init-from", str(_parent(trained)),
                               "--set", "model.head=transformers"])
    assert "has model.head linear, this config transformers" in _error_line(head)
    missing = runner.invoke(app, ["train", "-c", str(config), "--init-from", str(tmp_path / "nope")])
    assert re.search(r"error: model\.init_from: .*nope: run directory not found", _error_line(missing))


def test_another_max_length_needs_saying_so(trained, tiny_encoder, tmp_path):
    parent = _parent(trained)  # trained with model.max_length 32
    plain = tmp_path / "plain.yaml"  # the tiny config without max_length: the default, 128
    text = _child_yaml(tmp_path, tiny_encoder).read_text()
    plain.write_text(text.replace("max_length: 32, ", ""))
    refused = runner.invoke(app, ["train", "-c", str(plain), "--init-from", str(parent)])
    line = _error_line(refused)
    assert "trained with model.max_length 32, this config has 128 (the default)" in line
    assert "--set model.max_length=32" in line
    with pytest.raises(ConfigError, match="model.max_length"):
        read_start(load_config(plain, [f"model.init_from={parent}"]))
    said = read_start(load_config(plain, [f"model.init_from={parent}"], {"model.max_length": 48}))
    assert said is not None and said.notes == [f"model.max_length is 48 here, 32 in {parent.resolve()}: as the "
                                               "config says, the run's model learns to read texts this way"]


# --------------------------------------------------------------------------- resume, cross-fitting, the native head


def test_an_interrupted_init_from_run_resumes_to_the_same_weights(trained, tiny_encoder, tmp_path):
    parent = _parent(trained)
    extra = ("model.dropout=0.2", "train.batch_size=2", "train.grad_accum=2")
    whole = train(_config(tmp_path, tiny_encoder, parent, *extra, name="whole"), quiet).run_dir
    with pytest.raises(TrainingInterrupted):
        train(_config(tmp_path, tiny_encoder, parent, *extra, name="cut"), quiet, stop=StopAfterStep(4))
    staging = tmp_path / "runs" / ".cut.incomplete"
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cut")])
    assert resumed.exit_code == 0, resumed.output
    assert not staging.exists()
    cut = tmp_path / "runs" / "cut"
    assert (cut / "train_log.jsonl").read_text() == (whole / "train_log.jsonl").read_text()
    for name in ("head.safetensors", "encoder/model.safetensors"):
        a, b = load_file(str(whole / name)), load_file(str(cut / name))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    assert json.loads((cut / "provenance.json").read_text())["parent"]["path"] == str(parent.resolve())


def test_cross_fitting_from_a_run_and_a_start_from_a_cross_fitted_run(trained, tiny_encoder, tmp_path):
    parent = _parent(trained)
    folds = ("data.validation=null", "train.folds=2", "train.refit=true", "train.epochs=1")
    crossfit = train(_config(tmp_path, tiny_encoder, parent, *folds, name="cf"), quiet).run_dir
    assert _labels(crossfit) == ["cocoa", "energy", "grain"]
    for k in (1, 2):  # every fold started from the parent: it knows its config
        fold_config = yaml.safe_load((crossfit / "folds" / f"fold-{k}" / "config.yaml").read_text())
        assert fold_config["model"]["init_from"] == str(parent.resolve())
    assert json.loads((crossfit / "provenance.json").read_text())["parent"]["path"] == str(parent.resolve())

    # A cross-fitted run with a refit starts the next training from its refit model (the run's own top).
    grandchild = _config(tmp_path / "next", tiny_encoder, crossfit, name="next")
    data, model = _started(grandchild)
    head = _head(crossfit)
    assert torch.equal(model.head.weight, head["head.weight"]) and data.labels.labels == _labels(crossfit)

    # Without a refit, the K fold models predict together: no one model to start from, said in one line.
    no_refit = tmp_path / "no-refit"
    shutil.copytree(crossfit, no_refit)
    shutil.rmtree(no_refit / "encoder")
    (no_refit / "head.safetensors").unlink()
    saved = yaml.safe_load((no_refit / "config.yaml").read_text())
    saved["train"]["refit"] = False
    (no_refit / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(Exception, match=r"cross-fitted without train.refit: .* name one fold \(.*fold-1\)"):
        read_start(_config(tmp_path / "again", tiny_encoder, no_refit))


def test_a_native_head_run_starts_from_a_native_parent(tiny_encoder, tmp_path):
    folder = tmp_path / "parent"
    folder.mkdir()
    data = write_jsonl(folder / "tiny.jsonl", TINY_RECORDS)
    made = runner.invoke(app, ["train", "-c", str(tiny_config(folder, tiny_encoder, data)), "--name", "native",
                               "--epochs", "8", "--set", "model.head=transformers"])
    assert made.exit_code == 0, made.output
    parent = folder / "runs" / "native"
    data, model = _started(_config(tmp_path, tiny_encoder, parent, "model.head=transformers"))
    old = load_file(str(parent / "encoder" / "model.safetensors"))
    layer = model.output_layer()
    assert torch.equal(layer.weight[0], old["classifier.weight"][0])  # cocoa, first in both
    assert torch.equal(layer.bias[2], old["classifier.bias"][1])  # grain: second in the parent, third here
    assert torch.equal(model.model.bert.pooler.dense.weight, old["bert.pooler.dense.weight"])
    assert model.model.config.id2label == {0: "cocoa", 1: "energy", 2: "grain"}

    result = runner.invoke(app, ["train", "-c", str(_child_yaml(tmp_path, tiny_encoder)), "--init-from", str(parent),
                                 "--set", "model.head=transformers", "--epochs", "2", "--name", "native-child"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "native-child"
    saved = json.loads((run / "encoder" / "config.json").read_text())
    assert [saved["id2label"][str(i)] for i in range(3)] == ["cocoa", "energy", "grain"]
    assert runner.invoke(app, ["eval", str(run)]).exit_code == 0
