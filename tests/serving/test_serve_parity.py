"""`mlcls serve` answers as `mlcls predict` writes, whatever the records are batched with.

The server scores the records of concurrent requests together (dynamic batching), so a record is padded and
batched with other records than in a file given to `mlcls predict`. In fp32 that moves a probability by at most
a few 1e-7 (the bundled MiniLM: 4.8e-7 over 480 demo articles), below the 4 decimals written; in bf16 by up to
2e-3 (README, "Same answers as predict"). Here, on the tiny run: 48 records of 2 to 30 words sent as 48
concurrent one-record requests, scored in calls of 16 in arrival order, give predict's rows: exactly in fp32,
the same labels and scores within 2e-3 in bf16.

    pytest -q tests/serving/test_serve_parity.py
"""

from __future__ import annotations

import asyncio
import json
import random
import re

import pytest
from typer.testing import CliRunner

from mlcls.cli import app as cli_app
from tests.conftest import TINY_RECORDS, write_jsonl

pytest.importorskip("fastapi", reason="the serve extra (pip install 'mlcls[serve]')")
from mlcls.serving.app import create_app  # noqa: E402
from mlcls.serving.settings import ServeSettings  # noqa: E402

BF16_TOLERANCE = 2e-3


def mixed_records(n: int = 48) -> list[dict]:
    words = sorted({w for r in TINY_RECORDS for w in re.findall(r"[a-z]+", r["text"])})
    rng = random.Random(7)
    return [{"id": f"m{i}", "text": " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))}
            for i in range(n)]


def predict_rows(run_dir, tmp_path, rows, precision: str) -> list[dict]:
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    result = CliRunner().invoke(cli_app, ["predict", str(source), "--model", str(run_dir), "-o", str(out),
                                          "--scores", "all", "--precision", precision])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def served_rows(run, rows) -> list[dict]:
    import httpx

    app = create_app(run, ServeSettings(max_batch=16, max_wait_ms=120_000))  # full calls of 16, never the clock

    async def ask():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as session:
                return await asyncio.gather(*(session.post("/v1/predict", json={"records": [row], "scores": "all"})
                                              for row in rows))

    answers = asyncio.run(ask())
    assert app.state.batcher.stats.calls == 3 and app.state.batcher.stats.largest == 16
    return [answer.json()["predictions"][0] for answer in answers]


def test_fp32_rows_are_predicts_exactly_under_dynamic_batching(run_dir, loaded, tmp_path):
    rows = mixed_records()
    assert loaded.precision == "fp32"
    assert served_rows(loaded, rows) == predict_rows(run_dir, tmp_path, rows, "fp32")


def test_bf16_rows_are_predicts_within_the_stated_tolerance(run_dir, tmp_path):
    from mlcls.inference.loading import load_run

    rows = mixed_records()
    served = served_rows(load_run(run_dir, precision="bf16"), rows)
    expected = predict_rows(run_dir, tmp_path, rows, "bf16")
    assert [row["labels"] for row in served] == [row["labels"] for row in expected]
    for got, want in zip(served, expected, strict=True):
        assert got["scores"].keys() == want["scores"].keys()
        assert max(abs(got["scores"][k] - want["scores"][k]) for k in got["scores"]) <= BF16_TOLERANCE + 1e-4
