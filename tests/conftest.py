"""Shared fixtures. The tiny encoder is a randomly initialised 2-layer BERT (hidden 32) with a word-level
vocabulary built from the test texts, saved with save_pretrained and loaded through the real
from_pretrained path: no network, no mocks of our own code, seconds per training run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

# What the suite runs on, pinned before torch is imported: the CPU, and no network. predict, eval and serve take
# the device `auto` (a GPU where there is one), and the tests assert what a CPU does (--int8, the precision notes),
# so a GPU host would fail them; models come from the tiny fixture or the bundled package, never the Hub.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
for _offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_offline] = "1"

# Tiny, separable data: each label has its own words; "museum"/"festival" articles carry no label.
TINY_RECORDS = [
    {"id": "a1", "text": "cocoa beans harvest cocoa exports", "labels": ["cocoa"]},
    {"id": "a2", "text": "cocoa prices cocoa beans rose", "labels": ["cocoa"]},
    {"id": "a3", "text": "wheat grain corn harvest tonnes", "labels": ["grain"]},
    {"id": "a4", "text": "grain wheat corn silos", "labels": ["grain"]},
    {"id": "a5", "text": "crude oil barrel refinery opec", "labels": ["oil"]},
    {"id": "a6", "text": "oil crude barrel pipeline", "labels": ["oil"]},
    {"id": "a7", "text": "cocoa beans and wheat grain shipments", "labels": ["cocoa", "grain"]},
    {"id": "a8", "text": "crude oil and corn grain trade", "labels": ["grain", "oil"]},
    {"id": "a9", "text": "museum festival concert choir", "labels": []},
    {"id": "a10", "text": "festival choir museum painting", "labels": []},
    {"id": "a11", "text": "cocoa oil grain wheat crude beans", "labels": ["cocoa", "grain", "oil"]},
    {"id": "a12", "text": "painting concert museum library", "labels": []},
]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps process-wide state; a test must not inherit an earlier test's precision or device
    (accelerate's own AccelerateTestCase resets it after every test the same way)."""
    yield
    try:
        from accelerate.state import AcceleratorState, GradientState
    except ImportError:
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = sorted({w for r in TINY_RECORDS for w in re.findall(r"[a-z]+", r["text"])} | {"and", "the", "new"})
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})  # transformers 5: vocab=, a dict
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def reuters_dir() -> Path | None:
    """The Reuters-21578 collection: MLCLS_REUTERS_DIR, else ../shared/data/reuters21578."""
    candidate = Path(os.environ.get("MLCLS_REUTERS_DIR", Path(__file__).parents[2] / "shared/data/reuters21578"))
    return candidate if (candidate / "reut2-000.sgm").is_file() else None


def tiny_config(folder: Path, encoder: Path, data: Path) -> Path:
    """Settings under which the tiny encoder memorises the tiny set (large rates, no dropout, fp32). eval /
    predict / serve score in fp32 too (model.inference_precision), whether or not the host has native bf16."""
    path = folder / "tiny.yaml"
    path.write_text(f"""
data: {{train: {data}, validation: {data}, test: {data}, text_fields: [text]}}
model: {{encoder: {encoder}, dropout: 0.0, max_length: 32, inference_precision: fp32}}
train: {{epochs: 40, batch_size: 4, lr: 1.0e-3, head_lr: 3.0e-2, warmup_ratio: 0.0, precision: fp32, device: cpu}}
output: {{dir: {folder / "runs"}}}
""")
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_encoder):
    """One tiny run, trained once through the CLI, shared by the tests that need a run directory."""
    from typer.testing import CliRunner

    from mlcls.cli import app

    runner = CliRunner()
    folder = tmp_path_factory.mktemp("e2e")
    data = write_jsonl(folder / "tiny.jsonl", TINY_RECORDS)
    result = runner.invoke(app, ["train", "-c", str(tiny_config(folder, tiny_encoder, data)), "--name", "tiny"])
    assert result.exit_code == 0, result.output
    return folder, data, result


# --------------------------------------------------------------------------- faults of the machine
# A full disk is simulated without filling one: `disk_fills_after` lets a file opened by mlcls.atomic take
# `room` bytes, then points its descriptor at /dev/full, so that the kernel itself answers ENOSPC to the
# write, to the flush and to the close that follow, through Python's own buffered layers.

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")


def disk_fills_after(monkeypatch, room: int) -> None:
    """Every file mlcls.atomic opens from now on takes `room` bytes, then the disk is full."""
    import mlcls.atomic as atomic

    class FullDisk(atomic._RawFile):
        used = 0

        def write(self, data):
            if self.used >= room:
                full = os.open("/dev/full", os.O_WRONLY)
                os.dup2(full, self.fileno())
                os.close(full)
            else:
                data = bytes(data)[: room - self.used]  # a short write, as a disk filling up gives
            written = super().write(data)
            self.used += written or 0
            return written

    monkeypatch.setattr(atomic, "_RawFile", FullDisk)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Errno" not in text and "Traceback" not in text
    return text


def _cli(*args: str, input: str | None = None):
    from typer.testing import CliRunner

    from mlcls.cli import app

    return CliRunner().invoke(app, list(args), input=input)


@pytest.fixture
def terminal_ctrl_c():
    """SIGINT raising KeyboardInterrupt, as in a terminal: a background job (`cmd &`, nohup) starts with it ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)



def sigterm_to_self() -> None:
    """A real SIGTERM to this process, as a scheduler sends it, once mlcls's stop handler holds SIGTERM (were it
    missing, the default action would kill the test run instead of failing the test)."""
    import signal

    from mlcls.training import interrupt

    assert getattr(signal.getsignal(signal.SIGTERM), interrupt._OURS, False), "no mlcls stop handler holds SIGTERM"
    os.kill(os.getpid(), signal.SIGTERM)


def sigterm_at_step(at: int = 2):
    """A StopSignal that receives a real SIGTERM (a scheduler's stop) during optimizer step `at`, sent to this
    process by itself, so the handler that training installs is what turns it into a stop request."""
    from mlcls.training.interrupt import StopSignal

    class SigtermAtStep(StopSignal):
        def should_stop(self, step: int) -> bool:
            if step == at and not self.requested:
                sigterm_to_self()
            return self.requested

    return SigtermAtStep()
