"""--format onnx: the run as one ONNX graph for ONNX Runtime, with its tokenizer and small files (the
package's doc says what the folder holds and how it is checked)."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.errors import MlclsError, first_line
from mlcls.export.staging import (
    FP32_TOLERANCE,
    ExportResult,
    copy_run_files,
    random_batches,
    staged,
    worst_difference,
    write_manifest_and_card,
)
from mlcls.inference.loading import load_run
from mlcls.inference.onnx_run import OUTPUTS, OnnxModel
from mlcls.model.classifier import FoldEnsemble
from mlcls.run.layout import LEXICAL, ONNX_MODEL
from mlcls.run.provenance import package_version

# ONNX files over 2 GiB must keep their weights in an external data file beside the graph.
EXTERNAL_DATA_BYTES = 1_800_000_000


# ------------------------------------------------------------------------------------------ the graph


def export_graph(model) -> Any:
    """The torch module that is exported: (input_ids, attention_mask[, token_type_ids]) -> (probabilities,
    logits), for one MultiLabelClassifier or the members of a FoldEnsemble."""
    import torch
    from torch import nn

    members = list(model.members) if isinstance(model, FoldEnsemble) else [model]
    for member in members:
        if member.pooling not in ("mean", "cls", "native"):
            raise MlclsError(f"cannot export pooling {member.pooling!r} (mean and cls can be)")

    class ExportGraph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            logits = [self.logits(m, input_ids, attention_mask, token_type_ids) for m in self.members]
            if len(logits) == 1:
                return torch.sigmoid(logits[0]), logits[0]
            probs = torch.stack([torch.sigmoid(x) for x in logits]).mean(0)  # as FoldEnsemble
            return probs, torch.logit(probs, eps=1e-7)

        @staticmethod
        def logits(member, input_ids, attention_mask, token_type_ids):
            # the member's own forward, with the token type ids passed on when the graph takes them
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return member(input_ids, attention_mask, **extra).float()

    return ExportGraph().eval()


def takes_token_types(model, tokenizer) -> bool:
    """Whether the graph should take token_type_ids: the tokenizer emits them and the encoder accepts them.
    mlcls scores single texts, whose token types are all 0, and the graph gets zeros from mlcls; taking them
    lets `session.run(None, dict(tokenizer(texts, return_tensors="np")))` work as it does for BERT models."""
    import inspect

    encoder = (model.members[0] if isinstance(model, FoldEnsemble) else model).encoder
    try:
        accepts = "token_type_ids" in inspect.signature(encoder.forward).parameters
    except (TypeError, ValueError):
        accepts = False
    return accepts and "token_type_ids" in getattr(tokenizer, "model_input_names", [])


def example_inputs(vocab_size: int, token_types: bool) -> tuple:
    """Two rows of 8 tokens, the second padded: sizes above 1, so the exporter keeps both axes dynamic."""
    import torch

    ids = (torch.arange(16, dtype=torch.long).reshape(2, 8) % max(vocab_size, 1))
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0
    return (ids, mask, torch.zeros_like(ids)) if token_types else (ids, mask)


@contextlib.contextmanager
def _quiet(enabled: bool = True):
    """The exporter and the quantiser talk on stdout, stderr, warnings and logging; a command prints one line."""
    if not enabled:
        yield
        return
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def to_onnx(graph, inputs: tuple, names: list[str], path: Path, external: bool) -> None:
    import torch

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    shapes = tuple({0: batch, 1: sequence} for _ in names)
    with _quiet():
        torch.onnx.export(graph, inputs, str(path), dynamo=True, input_names=names, output_names=list(OUTPUTS),
                          dynamic_shapes=shapes, external_data=external, optimize=True, verbose=False)


def quantize_int8(fp32: Path, int8: Path, external: bool) -> None:
    """onnxruntime's dynamic quantisation: int8 weights, activations quantised per batch at run time. Per channel
    (a scale per output row of each weight matrix): on all-MiniLM-L6-v2 fine-tuned on the demo data it halved the
    probabilities' difference from fp32 (mean 0.0035 vs 0.0097 per tensor; largest 0.076 vs 0.144) at the
    same speed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         use_external_data_format=external)


# ------------------------------------------------------------------------------------------ the folder


def export_onnx(source: Path, out: Path, quantize: str | None, note: Callable[[str], None],
                trust_remote_code: bool = False) -> ExportResult:
    # fp32: the graph is exported in fp32 (a run loaded for bf16 scoring keeps its linear layers in bf16)
    loaded = load_run(source, device="cpu", precision="fp32", trust_remote_code=trust_remote_code)
    model, tokenizer = loaded.model, loaded.tokenizer
    members = len(model.members) if isinstance(model, FoldEnsemble) else 1
    token_types = takes_token_types(model, tokenizer)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    what = f"{members} fold models as one graph" if members > 1 else "one model"
    note(f"exporting {source} ({what}, {len(loaded.labels)} labels) to ONNX"
         + (" with int8 quantisation" if quantize else "") + " ...")
    with staged(out) as staging:
        write_graph(source, model, len(tokenizer), names, staging / ONNX_MODEL, quantize)
        check = check_export(staging / ONNX_MODEL, model, len(tokenizer), token_types,
                             loaded.config.model.max_length, quantize)
        if quantize is None and check["max_abs_diff"] > FP32_TOLERANCE:
            raise MlclsError(f"{source}: the exported graph's probabilities differ from the torch model's by up to "
                             f"{check['max_abs_diff']:.2e} (more than {FP32_TOLERANCE:g}); nothing was written")
        tokenizer.save_pretrained(staging)
        copy_run_files(source, staging)
        if (source / LEXICAL).is_dir():
            shutil.copytree(source / LEXICAL, staging / LEXICAL)
        manifest = onnx_manifest(loaded, names, members, quantize, staging / ONNX_MODEL, check)
        write_manifest_and_card(source, staging, manifest)
    return ExportResult(out, source, manifest)


def write_graph(source: Path, model, vocab_size: int, names: list[str], path: Path, quantize: str | None) -> None:
    """The graph at `path`: exported in fp32 (beside it first, when it is then quantised to int8)."""
    external = sum(p.numel() * 4 for p in model.parameters()) > EXTERNAL_DATA_BYTES
    fp32 = path if quantize is None else path.with_name("model.fp32.onnx")
    try:
        to_onnx(export_graph(model), example_inputs(vocab_size, "token_type_ids" in names), names, fp32, external)
    except (OSError, MlclsError):
        raise
    except Exception as exc:
        first = first_line(exc)
        raise MlclsError(f"{source}: torch.onnx.export cannot export this model ({type(exc).__name__}: "
                         f"{first}); mlcls --debug shows the traceback") from exc
    if quantize == "int8":
        quantize_int8(fp32, path, external)
        for extra in path.parent.glob(f"{fp32.name}*"):  # the fp32 graph and its external data, if any
            extra.unlink()


def onnx_manifest(loaded, names: list[str], members: int, quantize: str | None, graph: Path,
                  check: dict[str, Any]) -> dict[str, Any]:
    """export.json of an ONNX export: what was exported, how, with which versions, and the parity check."""
    import torch

    model = loaded.config.model
    return {
        "format": "onnx",
        "file": graph.name,
        "quantize": quantize,
        "inputs": names,
        "outputs": list(OUTPUTS),
        "opset": _opset(graph),
        "members": members,
        "pooling": model.pooling if model.head == "linear" else "native",
        "num_labels": len(loaded.labels),
        "vocab_size": len(loaded.tokenizer),
        "max_length": model.max_length,
        # the graph scores one window; a long-text mode cuts an article into windows (head_tail, chunks) and pools
        # the windows' logits (chunks) before the decision rule, as mlcls's ONNX runtime does (data/windows.py)
        "long_text": {"mode": model.long_text, "head_tokens": model.head_tokens, "chunk_overlap": model.chunk_overlap,
                      "max_chunks": model.max_chunks, "chunk_pooling": model.chunk_pooling},
        "lexical_weight": loaded.lexical.weight if loaded.lexical is not None else None,
        "lexical_blend": loaded.lexical.blend_space if loaded.lexical is not None else None,
        "source_run": str(loaded.path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mlcls_version": package_version("mlcls"),
        "torch": torch.__version__,
        **{name: package_version(name) for name in ("onnx", "onnxscript", "onnxruntime")},
        "check": check,
    }


def check_export(path: Path, model, vocab_size: int, token_types: bool, max_length: int,
                 quantize: str | None) -> dict[str, Any]:
    """The largest difference between the graph's probabilities (both outputs: `probabilities`, and the sigmoid
    of `logits`, which mlcls scores with) and the torch model's, on batches of random token ids of several
    sizes, padded rows included."""
    import torch

    session = OnnxModel(path, ["CPUExecutionProvider"])
    worst, rows = 0.0, 0
    for ids, mask in random_batches(vocab_size, max_length):
        batch = len(ids)
        with torch.inference_mode():
            expected = torch.sigmoid(model(ids, mask).float()).numpy()
        probs, logits = session.outputs(ids.numpy(), mask.numpy())
        got = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        worst = worst_difference(worst_difference(worst, probs, expected), got, expected)
        rows += batch
    return {"max_abs_diff": worst, "rows": rows, "tolerance": FP32_TOLERANCE if quantize is None else None}


def _opset(path: Path) -> int | None:
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:
        return None
