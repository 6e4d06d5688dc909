"""`mlcls export RUN --format onnx|hf --out DIR [--quantize int8]`: check the request and the run, then hand it
to the format's module (the package's doc says what each writes)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mlcls.errors import MlclsError, sigterm_as_interrupt
from mlcls.export.hf import export_hf
from mlcls.export.onnx import export_onnx
from mlcls.export.staging import ExportResult, check_target
from mlcls.inference.onnx_run import require_onnx
from mlcls.run.find import resolve_run
from mlcls.run.layout import ONNX_MODEL
from mlcls.run.validation import validate_run

FORMATS = ("onnx", "hf")
QUANTIZE = ("int8",)


def export_run(run: str | Path | None, out: str | Path, fmt: str = "onnx", quantize: str | None = None,
               note: Callable[[str], None] | None = None, trust_remote_code: bool = False) -> ExportResult:
    """Export the finished run `run` (default: runs/latest) to the folder `out`; see the package's doc.
    `trust_remote_code`: --trust-remote-code (a run that carries code is loaded only with it)."""
    note = note or (lambda line: None)
    if fmt not in FORMATS:
        raise MlclsError(f"unknown --format {fmt!r}: choose onnx (one graph for ONNX Runtime) or hf (a "
                         "Transformers-native model)")
    if quantize is not None and quantize not in QUANTIZE:
        raise MlclsError(f"unknown --quantize {quantize!r}: the choice is int8")
    if quantize is not None and fmt == "hf":
        raise MlclsError("--quantize int8 is for --format onnx (ONNX Runtime's int8); a --format hf export keeps "
                         "the model's fp32 weights")
    out = Path(out)
    check_target(out)
    source = resolve_run(run)
    inside = os.path.realpath(out)
    if inside == str(source) or inside.startswith(str(source) + os.sep):  # source: resolved by resolve_run
        raise MlclsError(f"{out}: inside the run it exports ({source}); writing there would change that run "
                         "(choose a folder outside it)")
    if (source / ONNX_MODEL).is_file():
        raise MlclsError(f"{source}: already an ONNX export; export the run it was made from")
    validate_run(source)
    with sigterm_as_interrupt():  # a SIGTERM removes the staging folder, as Ctrl-C does (staging.staged)
        if fmt == "hf":
            return export_hf(source, out, note, trust_remote_code)
        require_onnx(export=True)
        return export_onnx(source, out, quantize, note, trust_remote_code)
