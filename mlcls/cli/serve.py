"""`mlcls serve` and `mlcls export`: a run behind HTTP, or written out for use outside mlcls.

The server and the exporter are imported inside the commands: they load torch, transformers, FastAPI or
ONNX (seconds, and optional extras), and every module here is imported to build `mlcls --help`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlcls.cli.options import BatchSize, Int8, PrecisionOpt, RunArg, TrustRemoteCode, value_of
from mlcls.cli.output import err, out
from mlcls.errors import shell_command
from mlcls.run.layout import ONNX_MODEL


def _note(line: str) -> None:
    err.print(line, markup=False, highlight=False)


def serve(
    run: RunArg = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default; 0.0.0.0: every interface, "
                                      "then use --token-file).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one, printed at start).")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Records scored together, at most (dynamic "
                                           "batching across requests).")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="How long a request waits for others "
                                               "to batch with, at most.")] = 10.0,
    max_records: Annotated[int, typer.Option("--max-records", min=1, help="Records per request, at most.")] = 1000,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", min=1, help="Characters of one record's text, "
                                                "at most.")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Bytes of one request body, at "
                                                "most.")] = 10 * 2**20,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Require 'Authorization: Bearer TOKEN' "
                                                    "(the file's content) on every endpoint but /health and the "
                                                    "docs pages.")] = None,
    drain_seconds: Annotated[float, typer.Option("--drain-seconds", min=0.0, help="After SIGTERM or Ctrl-C, how "
                                                 "long the requests in flight get to finish; the rest are answered "
                                                 "503 with Retry-After.")] = 30.0,
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Serve a run over HTTP (FastAPI): /v1/predict, /v1/labels, /v1/model, /health, /ready, /docs.

    Needs the optional "serve" extra (FastAPI and uvicorn)."""
    from mlcls.serving.server import serve as run_server
    from mlcls.serving.settings import Limits, ServeSettings

    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, batch_size=batch_size,
                             limits=Limits(max_records, max_text_chars, max_body_bytes), drain_seconds=drain_seconds)
    run_server(run, host, port, settings, token_file, int8, _note, precision=value_of(precision),
               trust_remote_code=trust_remote_code)


def export(
    run: RunArg = None,
    out_dir: Annotated[Path, typer.Option("--out", help="The folder to write (it must not exist, or be empty).",
                                          show_default=False)] = ...,
    fmt: Annotated[str, typer.Option("--format", help="onnx: one graph, token ids -> per-label probabilities, for "
                                     "ONNX Runtime; hf: a Transformers-native model (runs trained with that head).")]
    = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 quantisation of the weights (smaller, "
                                                 "faster on CPU; see its F1 cost with mlcls eval --compare).")] = None,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Export a run for use outside mlcls: the ONNX graph, or the transformers model, with its tokenizer, labels,
    decision rule and model card.

    `mlcls predict --model DIR`, `mlcls eval DIR` and `mlcls serve DIR` run an ONNX export with ONNX Runtime (the
    onnx extra: pip install "mlcls\\[onnx]"). --format hf needs a run trained with --set model.head=transformers;
    `transformers.pipeline("text-classification", model=DIR, top_k=None, truncation=True)` loads it."""
    from mlcls.export.command import export_run

    result = export_run(run, out_dir, fmt, quantize, _note, trust_remote_code)
    manifest = result.manifest
    if manifest["format"] == "hf":
        out.print(f"exported to {result.path} ({manifest['architecture']}, {manifest['num_labels']} labels; "
                  f"transformers' probabilities agree with mlcls's within {result.max_abs_diff:.1e}); next: "
                  f"pipeline(\"text-classification\", model=\"{result.path}\", top_k=None, truncation=True)",
                  markup=False, highlight=False)
        return
    size = sum(p.stat().st_size for p in result.path.iterdir() if p.name.startswith(ONNX_MODEL)) / 2**20
    agree = (f"agrees with the torch model within {result.max_abs_diff:.1e}" if manifest["quantize"] is None
             else f"differs from the torch model by up to {result.max_abs_diff:.3f} (int8)")
    out.print(f"exported to {result.path} ({ONNX_MODEL} {size:.1f} MiB, opset {manifest['opset']}; its probability "
              f"{agree}); next: {shell_command('mlcls', 'eval', result.path)} --data FILE",
              markup=False, highlight=False)
