"""`mlcls export --format onnx`: one ONNX graph (tokens -> per-label probabilities) that ONNX Runtime runs with
the torch model's scores, and `predict` / `eval` on the export folder; the bad inputs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.run.files import read_labels
from mlcls.run.lexical import save_lexical
from tests.conftest import TINY_RECORDS, write_jsonl

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

runner = CliRunner()
TEXTS = [r["text"] for r in TINY_RECORDS] + ["cocoa", "a festival of oil and grain and cocoa beans " * 3]


def _run(trained) -> Path:
    folder, _, _ = trained
    return folder / "runs" / "tiny"


def _export(run: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["export", str(run), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    """The tiny run exported to fp32 ONNX, into a folder that exists and is empty (allowed)."""
    out = tmp_path_factory.mktemp("onnx") / "tiny-onnx"
    out.mkdir()
    result = _export(_run(trained), out)
    assert "exported to" in result.stdout and "agrees with the torch model" in result.stdout
    return out


def _probs(run: Path, texts=TEXTS, batch_size: int = 4) -> np.ndarray:
    from mlcls.data.records import Record
    from mlcls.inference.loading import load_run
    from mlcls.inference.scoring import score_records

    loaded = load_run(run, device="cpu")
    records = [Record(str(i), text, None, i) for i, text in enumerate(texts)]
    return np.concatenate([scores for _, scores in score_records(loaded, records, batch_size)])


def test_export_folder_holds_the_graph_tokenizer_rule_and_card(exported, trained):
    for name in ("model.onnx", "export.json", "README.md", "config.yaml", "labels.json", "thresholds.json",
                 "label_stats.json", "metrics.json", "tokenizer_config.json"):
        assert (exported / name).is_file(), name
    assert not list(exported.parent.glob(".*.tmp")), "the temporary folder is gone"
    manifest = json.loads((exported / "export.json").read_text())
    assert manifest["format"] == "onnx" and manifest["quantize"] is None and manifest["members"] == 1
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]  # BERT takes token types
    assert manifest["outputs"] == ["probabilities", "logits"]
    assert manifest["check"]["max_abs_diff"] <= 1e-4 and manifest["source_run"] == str(_run(trained).resolve())
    card = (exported / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "text-classification" and "onnx" in meta["tags"]
    assert "onnxruntime" in card and "model.onnx" in card


def test_onnx_probabilities_agree_with_torch_within_1e_4(exported, trained):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    torch_probs = _probs(_run(trained))
    onnx_probs = _probs(exported)
    assert onnx_probs.shape == (len(TEXTS), 3)
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4
    # the graph on its own, as a user without mlcls runs it: dynamic batch and sequence, `probabilities` output
    tokenizer = AutoTokenizer.from_pretrained(exported)
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    for texts in (TEXTS[:1], TEXTS[:5], TEXTS):
        batch = dict(tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="np"))
        probs = session.run(["probabilities"], batch)[0]
        assert np.abs(probs - torch_probs[: len(texts)]).max() < 1e-4


def test_predict_and_eval_on_the_export_give_the_torch_labels(exported, trained, tmp_path):
    run = _run(trained)
    records = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS)])
    lines = {}
    for name, model in (("torch", run), ("onnx", exported)):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["predict", str(records), "--model", str(model), "-o", str(out)])
        assert result.exit_code == 0, result.output
        lines[name] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in lines["onnx"]] == [r["labels"] for r in lines["torch"]]
    assert [sorted(r["labels"]) for r in lines["onnx"][:12]] == [sorted(r["labels"]) for r in TINY_RECORDS]

    _, data, _ = trained
    result = runner.invoke(app, ["eval", str(exported), "--data", str(data), "--json", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["micro_f1"] == 1.0 and report["macro_f1"] == 1.0
    assert report["provenance"]["export"]["format"] == "onnx"
    assert "ONNX export (fp32)" in result.stderr and "scored with ONNX Runtime" in result.stderr


def test_int8_export_runs_and_eval_reports_it_next_to_fp32(exported, trained, tmp_path):
    int8 = tmp_path / "tiny-int8"
    result = _export(_run(trained), int8, "--quantize", "int8")
    assert "(int8)" in result.stdout
    manifest = json.loads((int8 / "export.json").read_text())
    assert manifest["quantize"] == "int8" and manifest["check"]["tolerance"] is None
    assert (int8 / "model.onnx").stat().st_size < (exported / "model.onnx").stat().st_size
    assert not list(int8.glob("model.fp32*"))
    assert "int8" in yaml.safe_load((int8 / "README.md").read_text().split("---")[1])["tags"]
    _, data, _ = trained
    result = runner.invoke(app, ["eval", "--compare", str(exported), str(int8), "--data", str(data),
                                 "--json", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c.json").read_text())
    assert set(report) == {"tiny-onnx", "tiny-int8"}
    assert report["tiny-int8"]["provenance"]["export"]["quantize"] == "int8"
    # the fp32 export tags the tiny set perfectly; int8 weights may move a score near its cut-off, not more (a
    # graph whose quantisation broke it would tag at random)
    assert report["tiny-onnx"]["micro_f1"] == 1.0 and report["tiny-int8"]["micro_f1"] >= 0.9
    assert "int8-quantised ONNX export" in result.stderr
    # --int8 is the torch mode; an int8 export takes it, an fp32 one says how to make one
    assert runner.invoke(app, ["eval", str(int8), "--data", str(data), "--int8"]).exit_code == 0
    result = runner.invoke(app, ["eval", str(exported), "--data", str(data), "--int8"])
    assert result.exit_code == 1 and "--quantize int8" in result.stderr


def _cross_fitted_copy(run: Path, folder: Path) -> Path:
    """The tiny run as a 2-fold cross-fitted run (fold 2: another head) with a lexical model blended in, by the
    mean of log-odds (model.lexical_blend: logit)."""
    import torch
    from safetensors.torch import load_file, save_file

    from mlcls.data.records import Record
    from mlcls.model.lexical import fit_lexical

    target = folder / "cf"
    target.mkdir()
    for name in ("config.yaml", "labels.json", "label_stats.json", "thresholds.json", "metrics.json"):
        shutil.copy2(run / name, target / name)
    for k in (1, 2):
        fold = target / "folds" / f"fold-{k}"
        shutil.copytree(run / "encoder", fold / "encoder")
        head = load_file(str(run / "head.safetensors"))
        if k == 2:
            torch.manual_seed(1)
            head = {name: value + 0.5 * torch.randn_like(value) for name, value in head.items()}
        save_file(head, str(fold / "head.safetensors"))
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["train"]["folds"], config["data"]["validation"] = 2, None
    config["model"]["lexical"], config["model"]["lexical_blend"] = "tfidf", "logit"
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    records = [Record(r["id"], r["text"], {label: 1.0 for label in r["labels"]}, i)
               for i, r in enumerate(TINY_RECORDS)]
    encoded = read_labels(run).encode(records)
    lexical = fit_lexical([r.text for r in records], encoded.targets, encoded.mask)
    lexical.weight, lexical.blend_space = 0.4, "logit"
    save_lexical(target, lexical)
    return target


def test_cross_fitted_run_with_lexical_model_exports_as_one_graph(trained, tmp_path):
    from mlcls.inference.loading import load_run
    from mlcls.model.classifier import FoldEnsemble

    run = _cross_fitted_copy(_run(trained), tmp_path)
    loaded = load_run(run, device="cpu")
    assert isinstance(loaded.model, FoldEnsemble) and loaded.lexical is not None
    out = tmp_path / "cf-onnx"
    _export(run, out)
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["members"] == 2 and manifest["lexical_weight"] == 0.4
    assert manifest["lexical_blend"] == "logit"
    assert (out / "lexical" / "weights.safetensors").is_file()
    torch_probs, onnx_probs = _probs(run), _probs(out)
    assert np.abs(onnx_probs - torch_probs).max() < 1e-4  # the fold mean, then the same lexical blend
    # the graph's own output is the fold mean, without the blend (the card says so)
    import onnxruntime as ort

    tokenizer = loaded.tokenizer
    batch = dict(tokenizer(TEXTS, truncation=True, max_length=32, padding=True, return_tensors="np"))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    graph = session.run(["probabilities"], batch)[0]
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731  (the blend written out: 0.6 logit p + 0.4 logit p_lexical)
    blended = 1 / (1 + np.exp(-(0.6 * logit(graph.astype(np.float64))
                                + 0.4 * logit(loaded.lexical.probabilities(TEXTS).astype(np.float64)))))
    assert np.abs(blended - torch_probs).max() < 1e-4
    assert "blends its TF-IDF model" in (out / "README.md").read_text()


def test_a_run_that_scores_in_bf16_exports_in_fp32(trained, tmp_path):
    """Loaded for bf16 scoring, a run keeps its linear layers in bf16 (precision.linear_weights_in_bf16); the
    export loads it in fp32, so the graph is fp32 and agrees with the fp32 torch model as any export does."""
    import shutil

    import onnx

    run = tmp_path / "bf16-run"
    shutil.copytree(_run(trained), run)
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("inference_precision: fp32", "inference_precision: bf16"))
    assert "inference_precision: bf16" in config.read_text()
    out = tmp_path / "bf16-onnx"
    assert "agrees with the torch model" in _export(run, out).stdout
    graph = onnx.load(str(out / "model.onnx"))
    types = {init.data_type for init in graph.graph.initializer if len(init.dims) == 2}  # weight matrices
    assert onnx.TensorProto.FLOAT in types and onnx.TensorProto.BFLOAT16 not in types


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "tflite"], "error: unknown --format 'tflite': choose onnx"),
    (["--quantize", "int4"], "error: unknown --quantize 'int4'"),
    (["--format", "hf"], "--format hf needs a run trained with model.head transformers"),
])
def test_bad_format_options_are_one_line_errors(trained, tmp_path, args, message):
    out = tmp_path / "x"
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and "Traceback" not in result.output
    if "hf" in args:
        assert "--format onnx" in result.stderr and "mean" in result.stderr


def test_a_target_that_is_not_empty_or_not_a_folder_is_refused(trained, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(full)])
    assert result.exit_code == 1 and result.stderr.strip() == (f"error: {full}: exists and is not empty; choose "
                                                               "another --out, or delete it")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("")
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(afile)])
    assert result.exit_code == 1 and "exists and is not a folder" in result.stderr


def test_a_target_inside_the_run_or_a_link_is_refused_before_anything_is_done(trained, tmp_path):
    """--out inside the exported run changed it (a later predict --resume saw it "trained again"; --format hf
    --out RUN/encoder/x copied the encoder into itself); a link to an empty folder failed only at the end."""
    run = tmp_path / "run"
    shutil.copytree(_run(trained), run)
    kept = sorted(p.name for p in run.rglob("*"))
    for out in (run / "onnx", run / "encoder" / "x"):
        result = runner.invoke(app, ["export", str(run), "--out", str(out), "--format", "hf"])
        assert result.exit_code == 1 and result.stderr.strip() == (
            f"error: {out}: inside the run it exports ({run.resolve()}); writing there would change that run "
            "(choose a folder outside it)"), result.output
    assert sorted(p.name for p in run.rglob("*")) == kept
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty", target_is_directory=True)
    result = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "link")])
    assert result.exit_code == 1 and "a symbolic link; give the folder itself" in result.stderr


def test_a_parity_check_that_meets_nan_refuses_the_export():
    """max() passes over NaN: a graph of NaN scores was reported exact (max_abs_diff 0.0) and written."""
    from mlcls.errors import MlclsError
    from mlcls.export.staging import worst_difference

    assert worst_difference(0.0, np.array([0.5, 0.25]), np.array([0.5, 0.5])) == 0.25
    for got in (np.array([np.nan, 0.5]), np.array([np.inf, 0.5])):
        with pytest.raises(MlclsError, match="not all finite numbers"):
            worst_difference(0.0, got, np.array([0.5, 0.5]))


def test_an_incomplete_run_or_an_export_as_source_is_refused(trained, exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(_run(trained), broken)
    (broken / "head.safetensors").unlink()
    result = runner.invoke(app, ["export", str(broken), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "head.safetensors: missing" in result.stderr
    result = runner.invoke(app, ["export", str(exported), "--out", str(tmp_path / "y")])
    assert result.exit_code == 1 and "already an ONNX export" in result.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_missing_onnxruntime_names_the_extra(trained, exported, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    out = tmp_path / "x"
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == ('error: ONNX export needs onnxruntime, which is not installed: '
                                     'pip install "mlcls[onnx]"')
    assert not out.exists()
    result = runner.invoke(app, ["predict", "-", "--model", str(exported)], input='{"text": "oil"}\n')
    assert result.exit_code == 1
    assert result.stderr.strip() == ('error: running an ONNX export needs onnxruntime, which is not installed: '
                                     'pip install "mlcls[onnx]"')


def test_a_failing_export_leaves_nothing_behind(trained, tmp_path, monkeypatch):
    from mlcls.export import onnx as export

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::frobnicate")

    monkeypatch.setattr(export, "to_onnx", broken)
    out = tmp_path / "x"
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(out)])
    assert result.exit_code == 1
    assert "torch.onnx.export cannot export this model (RuntimeError: unsupported operator" in result.stderr
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary folder


def test_an_incomplete_export_folder_is_a_one_line_error(exported, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(exported, copy)
    (copy / "tokenizer_config.json").unlink()
    result = runner.invoke(app, ["predict", "-", "--model", str(copy)], input='{"text": "oil"}\n')
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {copy / 'tokenizer_config.json'}: missing from the ONNX export (is "
                                     "this a complete `mlcls export` folder?)")


def test_an_export_is_checked_as_a_run_is(exported, tmp_path):
    # validate_run never ran on an export: a file linked out of the folder was read through the link, and a
    # lexical model of other labels was broadcast over every label.
    outside = tmp_path / "elsewhere.json"
    copy = tmp_path / "linked"
    shutil.copytree(exported, copy)
    shutil.copy(copy / "labels.json", outside)
    (copy / "labels.json").unlink()
    (copy / "labels.json").symlink_to(outside)
    result = runner.invoke(app, ["predict", "-", "--model", str(copy)], input='{"text": "oil"}\n')
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"error: {copy / 'labels.json'}: a link to {outside}, outside the run")


def test_a_sigterm_while_exporting_leaves_no_staging_folder(trained, tmp_path, monkeypatch):
    """A scheduler's SIGTERM killed the export where it stood: a hidden staging folder (named after the process,
    so no later export removed it) held a half-written graph. It now stops as Ctrl-C does: the folder removed,
    one line, exit 143."""
    import os
    import signal

    import mlcls.export.onnx as onnx_export

    real = onnx_export.copy_run_files

    def copy_then_terminated(source, staging):
        real(source, staging)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(onnx_export, "copy_run_files", copy_then_terminated)
    result = runner.invoke(app, ["export", str(_run(trained)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().splitlines()[-1] == "stopped by SIGTERM"
    assert list(tmp_path.iterdir()) == []  # neither the export nor its staging folder
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
