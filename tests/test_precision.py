"""`--precision auto|fp32|bf16` on eval / predict / serve (model.inference_precision): what auto picks, how the
choice travels with the loaded run to the scores, what it costs in scores, --int8 beside it, ONNX exports.

Nothing here depends on the host: fp32 and bf16 are forced on the CPU (bf16 autocast runs on any x86 CPU,
slowly without native bf16), and auto is tested both ways by replacing devices.cpu_has_fast_bf16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlcls import precision as devices
from mlcls.cli import app
from mlcls.errors import MlclsError

runner = CliRunner()

# bf16 keeps 8 significant bits: each product and sum is rounded to about 2^-8 = 0.4% of its size (the
# accumulations run in fp32). The tiny run's logits lie within about 1 of 0, so a few such roundings through its
# 2 layers and head leave them off by a few thousandths, and a probability moves by at most a quarter of its
# logit's error (the sigmoid's slope is at most 1/4): about 0.001 (measured on an AVX512-BF16 CPU: 0.0010 at
# most). 0.01 leaves 10x room for other CPUs' bf16 kernels (or torch's emulation where a CPU has none), and is
# the scale at which a decision could flip: the tiny run's scores sit within a few hundredths of its cut-offs.
BF16_TOLERANCE = 0.01


def _run(trained) -> Path:
    folder, _, _ = trained
    return folder / "runs" / "tiny"


def _native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: native)


def _scores(loaded, texts: list[str]) -> np.ndarray:
    from mlcls.data.records import Record
    from mlcls.inference.scoring import score_records

    records = [Record(str(i), text, None, i) for i, text in enumerate(texts)]
    return np.concatenate([scores for _, scores in score_records(loaded, records, 4)])


# ------------------------------------------------------------------ the choice


@pytest.mark.parametrize(("native", "expected", "why"), [
    (True, "bf16", "auto: this CPU has native bf16"),
    (False, "fp32", "auto: this CPU lacks native bf16"),
])
def test_auto_on_a_cpu_follows_native_bf16(monkeypatch, native, expected, why):
    from mlcls.precision import choose_inference_precision

    _native_bf16(monkeypatch, native)
    chosen, note = choose_inference_precision("cpu", "auto")
    assert chosen == expected and note.startswith(f"precision {expected} ({why}")


def test_explicit_choices_on_a_cpu(monkeypatch):
    from mlcls.precision import choose_inference_precision

    _native_bf16(monkeypatch, False)
    assert choose_inference_precision("cpu", "fp32") == ("fp32", "precision fp32 (--precision)")
    chosen, note = choose_inference_precision("cpu", "bf16")  # asked for: done, with a warning in the note
    assert chosen == "bf16" and "lacks native bf16" in note and "slower" in note
    _native_bf16(monkeypatch, True)
    assert choose_inference_precision("cpu", "bf16") == ("bf16", "precision bf16 (--precision)")
    assert choose_inference_precision("cpu", "fp32", source="the run's model.inference_precision") == (
        "fp32", "precision fp32 (the run's model.inference_precision)")
    with pytest.raises(MlclsError, match="auto, fp32 or bf16"):
        choose_inference_precision("cpu", "fp16")


def test_int8_and_bf16_exclude_each_other(monkeypatch):
    from mlcls.precision import choose_inference_precision

    _native_bf16(monkeypatch, True)
    with pytest.raises(MlclsError, match="--int8 and --precision bf16 exclude each other"):
        choose_inference_precision("cpu", "bf16", int8=True)
    assert choose_inference_precision("cpu", "auto", int8=True)[0] == "int8"  # auto gives way to --int8
    assert choose_inference_precision("cpu", "fp32", int8=True)[0] == "int8"
    # bf16 from the run's config (not the command line) gives way to --int8, and the note says so
    chosen, note = choose_inference_precision("cpu", "bf16", int8=True, source="the run's model.inference_precision")
    assert chosen == "int8" and "not bf16 from the run's model.inference_precision" in note


def test_auto_on_a_gpu_follows_its_bf16(monkeypatch):
    from mlcls.precision import choose_inference_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_inference_precision("cuda", "auto") == ("bf16", "precision bf16 (auto: this GPU runs bf16)")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_inference_precision("cuda", "auto") == ("fp32", "precision fp32 (auto: this GPU lacks bf16)")
    with pytest.raises(MlclsError, match="this GPU does not run bf16"):
        choose_inference_precision("cuda", "bf16")


def test_the_config_key(tmp_path):
    from mlcls.config import load_config
    from mlcls.errors import ConfigError

    assert load_config().model.inference_precision == "auto"
    assert load_config(overrides=["model.inference_precision=bf16"]).model.inference_precision == "bf16"
    with pytest.raises(ConfigError, match="model.inference_precision"):
        load_config(overrides=["model.inference_precision=fp16"])


# ------------------------------------------------------------------ the choice travels with the run to the scores


def _linear_dtypes(loaded) -> list[torch.dtype]:
    """The dtype the encoder's first Linear layer computes in, batch by batch, while `loaded` scores."""
    seen: list[torch.dtype] = []
    linear = next(m for m in loaded.model.encoder.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    return seen


def test_a_run_loaded_for_bf16_keeps_its_linear_weights_in_bf16_and_scores_the_same(trained, monkeypatch):
    import mlcls.inference.loading as loading
    from mlcls.data.records import read_records

    folder, data, _ = trained
    texts = [r.text for r in read_records(data)]

    def linear_dtypes(loaded):
        return {m.weight.dtype for m in loaded.model.modules() if isinstance(m, torch.nn.Linear)}

    cast = loading.load_run(_run(trained), device="cpu", precision="bf16")
    assert linear_dtypes(cast) == {torch.bfloat16}  # the head's too
    assert loading.load_run(_run(trained), device="cpu", precision="fp32").model.head.weight.dtype == torch.float32
    monkeypatch.setattr(loading, "linear_weights_in_bf16", lambda model: 0)  # autocast casts at every pass instead
    per_pass = loading.load_run(_run(trained), device="cpu", precision="bf16")
    assert linear_dtypes(per_pass) == {torch.float32}
    np.testing.assert_allclose(_scores(cast, texts), _scores(per_pass, texts), rtol=0, atol=1e-6)


def test_bf16_scores_stay_close_to_fp32_with_the_same_clear_decisions(trained):
    from mlcls.data.records import read_records
    from mlcls.inference.loading import load_run

    folder, data, _ = trained
    texts = [r.text for r in read_records(data)] + ["cocoa", "a festival of oil and grain and cocoa beans " * 3]
    fp32 = load_run(_run(trained), device="cpu", precision="fp32")
    bf16 = load_run(_run(trained), device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    dtypes = {"fp32": _linear_dtypes(fp32), "bf16": _linear_dtypes(bf16)}
    p32, p16 = _scores(fp32, texts), _scores(bf16, texts)
    assert set(dtypes["fp32"]) == {torch.float32} and set(dtypes["bf16"]) == {torch.bfloat16}  # bf16 really ran
    assert p16.dtype == np.float32 and np.abs(p16 - p32).max() < BF16_TOLERANCE
    labels, rule = fp32.labels.labels, fp32.thresholds
    decided32, decided16 = rule.apply(p32, labels), rule.apply(p16, labels)
    # clear: the run's (threshold) rule decides every label of the article the same with its fp32 scores moved
    # down or up by the tolerance
    low, high = rule.apply(np.clip(p32 - BF16_TOLERANCE, 0, 1), labels), rule.apply(np.clip(p32 + BF16_TOLERANCE, 0, 1),
                                                                                     labels)
    clear = (low == high).all(axis=1)
    assert clear.sum() >= len(texts) // 2, "most of the tiny run's articles are clear cases (10 of 14 measured)"
    assert (decided32[clear] == decided16[clear]).all()


def test_a_run_without_the_key_loads_as_auto(trained, tmp_path, monkeypatch):
    """Runs trained before model.inference_precision: their config.yaml lacks it; they predict in auto."""
    import yaml

    from mlcls.inference.loading import load_run

    copy = tmp_path / "old"
    shutil.copytree(_run(trained), copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    del config["model"]["inference_precision"]
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for native, expected in ((True, "bf16"), (False, "fp32")):
        _native_bf16(monkeypatch, native)
        loaded = load_run(copy, device="cpu")
        assert loaded.precision == expected and "auto:" in loaded.precision_note


# ------------------------------------------------------------------ the commands


def test_predict_says_its_precision_and_auto_follows_the_cpu(trained, tmp_path, monkeypatch):
    _, data, _ = trained
    run = str(_run(trained))
    lines = {}
    cases = (("config", [], True), ("auto-native", ["--precision", "auto"], True),
             ("auto-without", ["--precision", "auto"], False), ("bf16", ["--precision", "bf16"], True))
    for name, extra, native in cases:
        _native_bf16(monkeypatch, native)
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["predict", str(data), "--model", run, "--scores", "all", "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stderr.splitlines() if line.startswith("note: precision")]
        assert len(notes) == 1, result.stderr
        lines[name] = notes[0]
        assert len(out.read_text().splitlines()) == 12
    assert lines["config"] == "note: precision fp32 (the run's model.inference_precision)"  # tests/conftest.py
    assert lines["auto-native"] == "note: precision bf16 (auto: this CPU has native bf16)"
    assert lines["auto-without"].startswith("note: precision fp32 (auto: this CPU lacks native bf16")
    assert lines["bf16"] == "note: precision bf16 (--precision)"


def test_predict_int8_says_what_it_trades_and_refuses_bf16(trained, tmp_path):
    _, data, _ = trained
    run = str(_run(trained))
    result = runner.invoke(app, ["predict", str(data), "--model", run, "--int8", "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    trade = [line for line in result.stderr.splitlines() if "trades" in line]
    assert len(trade) == 1 and "accuracy for speed" in trade[0] and "mlcls eval RUN --int8" in trade[0]
    assert "note: precision int8" in result.stderr
    result = runner.invoke(app, ["predict", str(data), "--model", run, "--int8", "--precision", "bf16"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --int8 and --precision bf16 exclude each other on a CPU: choose one of them"
    result = runner.invoke(app, ["predict", str(data), "--model", run, "--precision", "fp16"])
    assert result.exit_code == 2  # not a choice: a usage error


def test_eval_reports_its_precision(trained, tmp_path):
    _, data, _ = trained
    run = str(_run(trained))
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        result = runner.invoke(app, ["eval", run, "--data", str(data), "--precision", precision, "--json", str(out)])
        assert result.exit_code == 0, result.output
        assert f"note: precision {precision} (--precision)" in result.stderr
        report = json.loads(out.read_text())
        # fp32 tags the tiny set perfectly; bf16 may move a score near its cut-off, not more
        assert report["precision"] == precision and report["micro_f1"] >= (1.0 if precision == "fp32" else 0.9)
        # (not the same F1 each way for sure: some of the tiny run's scores sit 0.004 from their cut-offs)
    result = runner.invoke(app, ["eval", "--compare", run, run, "--data", str(data), "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "note: tiny: precision bf16 (--precision)" in result.stderr


def test_serve_takes_the_precision(trained):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from mlcls.inference.loading import load_run
    from mlcls.serving.app import create_app

    assert "--precision" in runner.invoke(app, ["serve", "--help"]).stdout
    with TestClient(create_app(load_run(_run(trained), device="cpu", precision="bf16"))) as client:
        assert client.get("/v1/model").json()["precision"] == "bf16"
        answer = client.post("/v1/predict", json={"records": [{"text": "crude oil barrel refinery opec"}]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["labels"] == ["oil"]


def test_onnx_exports_ignore_bf16(tmp_path):
    from mlcls.inference.loading import onnx_precision

    for quantize, kind in ((None, "fp32"), ("int8", "int8")):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "export.json").write_text(json.dumps({"format": "onnx", "quantize": quantize}))
        chosen, note = onnx_precision(folder, "auto")
        assert chosen == kind and note == f"precision {kind} (an ONNX export, run by ONNX Runtime as exported)"
        chosen, note = onnx_precision(folder, "bf16")
        assert chosen == kind and note.endswith("bf16 does not apply to ONNX exports and is ignored")


def test_a_linear_layer_tied_to_an_embedding_stays_fp32():
    from mlcls.precision import linear_weights_in_bf16

    class Tied(torch.nn.Module):  # a decoder sharing the embeddings' matrix, as some language models do
        def __init__(self):
            super().__init__()
            self.embeddings, self.decoder = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
            self.decoder.weight = self.embeddings.weight
            self.dense = torch.nn.Linear(4, 4)

    model = Tied()
    assert linear_weights_in_bf16(model) == 1
    assert model.dense.weight.dtype == model.dense.bias.dtype == torch.bfloat16
    assert model.embeddings.weight.dtype == model.decoder.weight.dtype == torch.float32
