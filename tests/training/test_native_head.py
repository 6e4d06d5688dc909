"""model.head transformers: the run is an AutoModelForSequenceClassification that transformers loads by itself
(from_pretrained, pipeline) with mlcls's scores; `mlcls export --format hf` writes it, and refuses, in one line,
the runs that one such model cannot reproduce."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.run.files import read_rule
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

runner = CliRunner()
TEXTS = [r["text"] for r in TINY_RECORDS] + ["cocoa", "a festival of oil and grain and cocoa beans " * 3]


@pytest.fixture(scope="module")
def native(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("native")
    data = write_jsonl(folder / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(folder, tiny_encoder, data)
    result = runner.invoke(app, ["train", "-c", str(config), "--name", "native", "--set", "model.head=transformers"])
    assert result.exit_code == 0, result.output
    return folder / "runs" / "native", data


def _mlcls_probs(run, texts=TEXTS) -> np.ndarray:
    from mlcls.data.records import Record
    from mlcls.inference.loading import load_run
    from mlcls.inference.scoring import score_records

    loaded = load_run(run, device="cpu", precision="fp32")
    records = [Record(str(i), text, None, i) for i, text in enumerate(texts)]
    return np.concatenate([scores for _, scores in score_records(loaded, records, 4)])


def _pipeline_probs(folder, labels) -> np.ndarray:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(folder), top_k=None, truncation=True, device="cpu")
    rows = classify(TEXTS)
    return np.array([[{r["label"]: r["score"] for r in row}[name] for name in labels] for row in rows])


def test_native_run_learns_and_is_a_sequence_classification_model(native):
    run, _ = native
    assert not (run / "head.safetensors").exists()
    config = json.loads((run / "encoder" / "config.json").read_text())
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert config["problem_type"] == "multi_label_classification"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert [config["id2label"][str(i)] for i in range(len(labels))] == labels
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["micro_f1"] >= 0.8  # the tiny set is separable: the head learned it
    card = (run / "README.md").read_text()
    assert "pipeline(\"text-classification\"" in card and "THIS_FOLDER/encoder" in card
    assert "library_name" not in card  # the model sits in encoder/, not where the Hub's loader looks


def test_pipeline_gives_mlcls_scores(native):
    run, _ = native
    labels = json.loads((run / "labels.json").read_text())["labels"]
    ours = _mlcls_probs(run)
    theirs = _pipeline_probs(run / "encoder", labels)
    assert ours.shape == theirs.shape == (len(TEXTS), len(labels))
    assert np.abs(ours - theirs).max() < 1e-4
    assert ours.std() > 0.05  # not a constant: the comparison means something


def test_predict_gives_the_labels_of_pipeline_scores_and_the_rule(native, tmp_path):

    run, _ = native
    data = write_jsonl(tmp_path / "texts.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(data), "--model", str(run), "-o", str(out), "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    predicted = [set(json.loads(line)["labels"]) for line in out.read_text().splitlines()]
    labels = json.loads((run / "labels.json").read_text())["labels"]
    chosen = read_rule(run).apply(_pipeline_probs(run / "encoder", labels), labels)
    assert predicted == [{labels[j] for j in np.flatnonzero(row)} for row in chosen]
    assert any(predicted) and not all(predicted)  # some texts get labels, the festival ones none


def test_export_hf_loads_with_transformers_alone(native, tmp_path):
    run, _ = native
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(run), "--format", "hf", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "agree with mlcls's within" in result.stdout
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "labels.json", "thresholds.json",
                 "README.md", "export.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == "hf" and manifest["check"]["max_abs_diff"] < 1e-4
    labels = json.loads((out / "labels.json").read_text())["labels"]
    assert np.abs(_pipeline_probs(out, labels) - _mlcls_probs(run)).max() < 1e-4
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["pipeline_tag"] == "text-classification" and "transformers" in front["tags"]
    assert front["library_name"] == "transformers"
    assert "THIS_FOLDER/encoder" not in (out / "README.md").read_text()  # the export is the model folder


def test_onnx_export_of_a_native_run_agrees(native, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run, _ = native
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    assert np.abs(_mlcls_probs(tmp_path / "onnx") - _mlcls_probs(run)).max() < 1e-4


def test_export_hf_refuses_a_mean_pooled_run(trained, tmp_path):
    folder, _, _ = trained
    out = tmp_path / "hf"
    result = runner.invoke(app, ["export", str(folder / "runs" / "tiny"), "--format", "hf", "--out", str(out)])
    assert result.exit_code == 1
    assert "model.head transformers" in result.output and "--format onnx" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_export_hf_refuses_int8(native, tmp_path):
    run, _ = native
    result = runner.invoke(app, ["export", str(run), "--format", "hf", "--quantize", "int8", "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 1 and "--format onnx" in result.output


def test_native_run_with_wrong_id2label_is_refused(native, tmp_path):
    import shutil

    run, _ = native
    copy = tmp_path / "broken"
    shutil.copytree(run, copy)
    path = copy / "encoder" / "config.json"
    config = json.loads(path.read_text())
    config["id2label"] = {"0": "x", "1": "y"}
    path.write_text(json.dumps(config))
    result = runner.invoke(app, ["eval", str(copy)])
    assert result.exit_code == 1 and "id2label" in result.output and "labels.json" in result.output


def test_native_head_with_frozen_encoder_is_a_config_error(tmp_path, tiny_encoder):
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)
    result = runner.invoke(app, ["train", "-c", str(config), "--set", "model.head=transformers",
                                 "--set", "train.freeze_encoder=true"])
    assert result.exit_code == 1 and "train.freeze_encoder needs model.head linear" in result.output


def test_int8_quantises_a_native_run(native):
    """--int8 swaps the base model for its int8 copy (nn.Module's __setattr__ would bypass a property setter)."""
    from mlcls.inference.loading import load_run

    run, _ = native
    loaded = load_run(run, device="cpu", int8=True)
    modules = list(loaded.model.model.base_model.modules())
    assert any("quantized" in type(m).__module__ for m in modules)  # the model that forward() runs
    assert not any(name == "encoder" for name, _ in loaded.model.named_children())  # no stray unused copy
    assert loaded.precision == "int8"


def test_mlcls_refuses_an_hf_export_in_one_line(native, tmp_path):
    run, data = native
    out = tmp_path / "hf"
    assert runner.invoke(app, ["export", str(run), "--format", "hf", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["eval", str(out), "--data", str(data)])
    assert result.exit_code == 1 and "--format hf export" in result.output and str(run) in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cross_fitted_native_run_with_refit_exports_one_model(tmp_path, tiny_encoder):
    """folds + refit with the native head: the refit model (encoder/ alone, no head.safetensors) moves into the
    run, which scores and exports to transformers; without refit, --format hf refuses the K models."""
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)
    common = ["train", "-c", str(config), "--set", "model.head=transformers", "--set", "train.folds=2",
              "--set", "data.validation=null",
              "--set", "train.epochs=3"]
    refit = runner.invoke(app, [*common, "--name", "cv-refit", "--set", "train.refit=true"])
    assert refit.exit_code == 0, refit.output
    run = tmp_path / "runs" / "cv-refit"
    assert (run / "encoder" / "config.json").is_file() and not (run / "head.safetensors").exists()
    assert not (run / "latest").is_symlink() and not (run / "refit").exists()  # no link left to a removed folder
    assert runner.invoke(app, ["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")]).exit_code == 0
    assert _mlcls_probs(run).shape == (len(TEXTS), 3)

    folds = runner.invoke(app, [*common, "--name", "cv"])
    assert folds.exit_code == 0, folds.output
    assert _mlcls_probs(tmp_path / "runs" / "cv").shape == (len(TEXTS), 3)  # the mean of the 2 fold models
    refused = runner.invoke(app, ["export", str(tmp_path / "runs" / "cv"), "--format", "hf", "--out",
                                 str(tmp_path / "hf2")])
    assert refused.exit_code == 1 and "cross-fitted" in refused.output
