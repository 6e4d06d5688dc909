"""Long-text modes end to end on the tiny model: a run trained on chunked (or head + tail) articles, scored
the same way by predict, eval and its ONNX export; the cost said in the summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

runner = CliRunner()
TEXTS = [r["text"] + " " + r["text"] for r in TINY_RECORDS]  # 8-14 words: several windows of 8 tokens


def _train(folder, encoder, name: str, *sets: str):
    data = write_jsonl(folder / "long.jsonl", [{**r, "text": t} for r, t in zip(TINY_RECORDS, TEXTS, strict=True)])
    config = tiny_config(folder, encoder, data)
    result = runner.invoke(app, ["train", "-c", str(config), "--name", name, "--epochs", "8", "--max-length", "8",
                                 *[arg for s in sets for arg in ("--set", s)]])
    assert result.exit_code == 0, result.output
    return folder / "runs" / name, data, result


@pytest.fixture(scope="module")
def chunked(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("chunks")
    return _train(folder, tiny_encoder, "chunked", "model.long_text=chunks", "model.chunk_overlap=2",
                  "model.max_chunks=4", "model.chunk_pooling=mean_prob")


def test_a_chunked_run_says_what_it_read(chunked):
    run, _, result = chunked
    assert "long texts: chunks of 8 tokens, 2 shared, at most 4, pooled by mean_prob" in result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["windows_per_article"] > 1.5  # the articles were read in several windows, not truncated


def test_predict_scores_articles_from_their_windows(chunked, tmp_path):
    from mlcls.data.windows import WindowSpec, article_windows
    from mlcls.inference.loading import load_run
    from mlcls.inference.scoring import score_records, score_windows

    run, data, _ = chunked
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(data), "--model", str(run), "-o", str(out), "--scores", "all"])
    assert result.exit_code == 0, result.output
    assert "model.long_text chunks:" in result.stderr and "per article" in result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    loaded = load_run(run, precision="fp32")
    windows = article_windows(loaded.tokenizer, TEXTS, WindowSpec.from_config(loaded.config.model))
    assert max(len(w) for w in windows) > 1
    by_hand = score_windows(loaded.model, windows, loaded.tokenizer.pad_token_id, 3, loaded.device, "fp32",
                            "mean_prob")
    labels = loaded.labels.labels
    for row, expected in zip(written, by_hand, strict=True):  # batches of another size: the same scores
        np.testing.assert_allclose([row["scores"][name] for name in labels], expected, atol=6e-5)  # 4 decimals
    from mlcls.data.records import Record

    records = [Record(r["id"], t, None, i) for i, (r, t) in enumerate(zip(TINY_RECORDS, TEXTS, strict=True))]
    (_, scored), = list(score_records(loaded, records, batch_size=5))
    np.testing.assert_allclose(scored, by_hand, atol=1e-5)
    assert loaded.windows.windows == sum(len(w) for w in windows)


def test_the_onnx_export_of_a_chunked_run_scores_as_it_does(chunked, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run, data, _ = chunked
    exported = tmp_path / "onnx"
    result = runner.invoke(app, ["export", str(run), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    assert json.loads((exported / "export.json").read_text())["long_text"]["mode"] == "chunks"
    assert "`model.long_text: chunks`" in (exported / "README.md").read_text()  # the card says its code is not it
    scores = []
    for model in (run, exported):
        out = tmp_path / f"{model.name}.jsonl"
        done = runner.invoke(app, ["predict", str(data), "--model", str(model), "-o", str(out), "--scores", "all",
                                   "--precision", "fp32"])
        assert done.exit_code == 0, done.output
        scores.append([json.loads(line)["scores"] for line in out.read_text().splitlines()])
    for torch_row, onnx_row in zip(*scores, strict=True):
        np.testing.assert_allclose(list(onnx_row.values()), [torch_row[k] for k in onnx_row], atol=1e-4)


def test_head_tail_trains_and_hf_export_refuses_long_text_modes(tmp_path, tiny_encoder):
    run, data, result = _train(tmp_path, tiny_encoder, "headtail", "model.long_text=head_tail",
                               "model.head=transformers")
    assert "long texts: head_tail (8 tokens: head and tail)" in result.output
    assert runner.invoke(app, ["eval", str(run), "--data", str(data)]).exit_code == 0
    refused = runner.invoke(app, ["export", str(run), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert refused.exit_code == 1 and "model.long_text head_tail" in refused.stderr
    assert not (tmp_path / "hf").exists()


def test_chunks_with_a_frozen_encoder_is_a_config_error(tmp_path, tiny_encoder):
    data = write_jsonl(tmp_path / "d.jsonl", TINY_RECORDS)
    result = runner.invoke(app, ["train", "-c", str(tiny_config(tmp_path, tiny_encoder, data)), "--freeze-encoder",
                                 "--set", "model.long_text=chunks", "--set", "model.chunk_overlap=4"])
    assert result.exit_code == 1 and "model.long_text chunks needs one per window" in result.stderr


def test_two_passes_give_a_batch_the_logits_and_gradients_of_one(tiny_encoder, tmp_path):
    """Training on a CPU may split a batch's windows by width (data.batching.training_passes); each window's
    computation is its own, so the pooled logits and the gradients are those of one pass (dropout off: it would
    draw its masks in other shapes)."""
    import torch

    from mlcls.config import load_config
    from mlcls.data.batching import training_passes
    from mlcls.model.classifier import build_model
    from mlcls.training.inputs import Inputs, batch_logits

    config = load_config(tiny_config(tmp_path, tiny_encoder, tmp_path / "none.jsonl"))
    torch.manual_seed(0)
    model, _ = build_model(config.model, ["a", "b", "c"])
    model.eval()  # no dropout; autograd still on
    rng = np.random.default_rng(0)
    full = [[2, *rng.integers(5, 30, 14).tolist(), 3] for _ in range(7)]
    short = [[2, *rng.integers(5, 30, n).tolist(), 3] for n in (1, 3, 2)]
    articles = [[full[0], full[1], short[0]], [full[2], short[1]], [full[3], full[4], full[5]], [short[2]], [full[6]]]
    inputs = Inputs(articles, [], None, None)
    batch = np.array([4, 0, 3, 1, 2])
    assert len(training_passes([len(w) for i in batch for w in articles[i]])) == 2  # the batch is split
    results = []
    for split in (False, True):
        model.zero_grad()
        logits = batch_logits(model, inputs, batch, 0, torch.device("cpu"), "max_logit", split)
        (logits * torch.arange(1.0, 4.0)).sum().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((logits.detach(), grads))
    (one, one_grads), (two, two_grads) = results
    assert one.shape == (5, 3)
    torch.testing.assert_close(two, one, atol=1e-5, rtol=1e-5)
    assert one_grads.keys() == two_grads.keys() and len(one_grads) > 10
    for name, grad in one_grads.items():
        torch.testing.assert_close(two_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_training_on_a_cpu_splits_the_batches_that_pad_much(tiny_encoder, tmp_path, monkeypatch):
    import mlcls.training.inputs
    from mlcls.data.batching import training_passes

    seen = []

    def recording(lengths, min_saving=None):
        passes = training_passes(lengths, min_saving)
        seen.append(len(passes))
        return passes

    monkeypatch.setattr(mlcls.training.inputs, "training_passes", recording)
    _train(tmp_path, tiny_encoder, "split", "model.long_text=chunks", "model.chunk_overlap=2")
    assert seen and 2 in seen  # asked at every step (device cpu, one process), and some batches were split
