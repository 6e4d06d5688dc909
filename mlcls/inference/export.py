"""`mlcls export RUN --format onnx|hf --out DIR [--quantize int8]`: a run as one ONNX graph for ONNX Runtime,
or (a run trained with model.head transformers) as a transformers model folder.

The graph goes from token ids and attention mask (and token type ids where the encoder and its tokenizer use
them) to per-label probabilities: the encoder, the pooling and the head are all inside, and batch and
sequence length are dynamic. It is produced by torch's maintained exporter (`torch.onnx.export(...,
dynamo=True)`, which translates the model through torch.export and onnxscript): no graph code is written by
hand. A cross-fitted run that predicts with its K fold models becomes one graph that averages their
probabilities, as `FoldEnsemble` does. The graph has two outputs: `probabilities` (batch x labels) and
`logits`, their log-odds (what mlcls's scoring takes, so an ONNX-backed run scores exactly as torch does).

DIR/
  model.onnx          the graph (int8 weights with --quantize int8: onnxruntime's dynamic quantisation)
  tokenizer files     save_pretrained's (AutoTokenizer.from_pretrained(DIR) loads them)
  labels.json, thresholds.json, config.yaml, label_stats.json, metrics.json, provenance.json  from the run
  lexical/            the run's TF-IDF model, when it blends one in (mlcls blends it the same way)
  export.json         what was exported, how, and the check below
  README.md           the model card

Before the folder is written, the export is checked: the graph's probabilities on a few batches of random
token ids against the torch model's. fp32 must agree within 1e-4 (else nothing is written); for int8 the
difference is reported. The folder is built under a temporary name beside DIR and renamed at the end, so an
error or Ctrl-C leaves nothing half-written.

`mlcls predict --model DIR`, `mlcls eval DIR` and `mlcls serve DIR` run such a folder with ONNX Runtime
(mlcls/inference/onnx_run.py).

--format hf writes the run's AutoModelForSequenceClassification (config.json with id2label and problem_type
multi_label_classification, model.safetensors, the tokenizer with model_max_length = the run's max length) at
the top of DIR, with the run's small files, export.json and the model card: `pipeline("text-classification",
model=DIR, top_k=None, truncation=True)` scores as mlcls does (checked before the rename, within 1e-4). It
refuses, in one line, runs whose scores one such model cannot give: mlcls's mean-pooled head, K fold models, a
blended TF-IDF model. mlcls itself scores the source run, not an hf export (one line says so).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.atomic import describe_os_error
from mlcls.errors import MlclsError
from mlcls.training.provenance import package_version, read_json

FORMATS = ("onnx", "hf")
QUANTIZE = ("int8",)
MODEL_FILE = "model.onnx"
MANIFEST = "export.json"
OUTPUTS = ("probabilities", "logits")
COPIED = ("config.yaml", "labels.json", "thresholds.json", "label_stats.json", "metrics.json", "provenance.json")
ONNX_EXTRA = 'pip install "mlcls[onnx]"'
FP32_TOLERANCE = 1e-4
# ONNX files over 2 GiB must keep their weights in an external data file beside the graph.
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass
class ExportResult:
    path: Path
    source: Path
    manifest: dict[str, Any]

    @property
    def max_abs_diff(self) -> float:
        return float(self.manifest["check"]["max_abs_diff"])


def require_onnx(export: bool) -> None:
    """One line naming the extra when a package that ONNX export (onnx, onnxscript, onnxruntime) or ONNX
    inference (onnxruntime) needs is missing."""
    modules = ("onnxruntime", "onnx", "onnxscript") if export else ("onnxruntime",)
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        what = "ONNX export" if export else "running an ONNX export"
        verb = "is" if len(missing) == 1 else "are"
        raise MlclsError(f"{what} needs {', '.join(missing)}, which {verb} not installed: {ONNX_EXTRA}")


def export_run(run: str | Path | None, out: str | Path, fmt: str = "onnx", quantize: str | None = None,
               note: Callable[[str], None] | None = None) -> ExportResult:
    """Export the finished run `run` (default: runs/latest) to the folder `out`; see the module's doc."""
    from mlcls.inference.rundir import resolve_run

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
    if (source / MODEL_FILE).is_file():
        raise MlclsError(f"{source}: already an ONNX export; export the run it was made from")
    from mlcls.inference.validation import validate_run

    validate_run(source)
    if fmt == "hf":
        return export_hf(source, out, note)
    require_onnx(export=True)
    return export_onnx(source, out, quantize, note)


def check_target(out: Path) -> None:
    if out.is_symlink() or out.exists():
        if not out.is_dir():
            raise MlclsError(f"{out}: exists and is not a folder; choose another --out")
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise MlclsError(f"{out}: cannot read ({describe_os_error(exc)})") from None
        if not empty:
            raise MlclsError(f"{out}: exists and is not empty; choose another --out, or delete it")


def refuse_hf(source: Path) -> None:
    """--format hf takes one Transformers-native model whose scores are the run's own: say why not, else nothing."""
    from mlcls.inference.loading import load_run_config, model_folders

    config = load_run_config(source)
    if config.model.head != "transformers":
        pooling = config.model.pooling
        how = "averages the encoder's token vectors" if pooling == "mean" else "takes the encoder's raw [CLS] vector"
        raise MlclsError(f"{source}: --format hf needs a run trained with model.head transformers, and this one "
                         f"{how} (model.pooling: {pooling}) into mlcls's own linear head, which "
                         "AutoModelForSequenceClassification cannot load without custom code; export it with "
                         "--format onnx (one graph for ONNX Runtime), or train with --set model.head=transformers")
    if len(model_folders(source, config.train.folds)) > 1:
        raise MlclsError(f"{source}: a cross-fitted run predicts with the mean of its {config.train.folds} fold "
                         "models, which one transformers model cannot hold; export it with --format onnx (one "
                         "graph, all folds), or train with train.refit")
    weight = lexical_weight(source)
    if weight:
        raise MlclsError(f"{source}: the run blends a TF-IDF model into its scores (weight {weight:g}) and its "
                         "rule was tuned on the blend; transformers would give the encoder's part alone. Export it "
                         "with --format onnx, or train with model.lexical none")


def lexical_weight(source: Path) -> float:
    """The weight at which the run blends its lexical model in (0: none), from its settings alone (as the model
    card reads it), without loading its vocabulary and weights."""
    settings = read_json(source / "lexical" / "settings.json")
    weight = settings.get("weight") if isinstance(settings, dict) else None
    return float(weight) if isinstance(weight, int | float) else 0.0


def export_hf(source: Path, out: Path, note: Callable[[str], None]) -> ExportResult:
    """The run's AutoModelForSequenceClassification folder with the run's small files and its model card, at the
    top of `out`: `from_pretrained(out)`, `pipeline("text-classification", model=out, top_k=None,
    truncation=True)` and the Hub take it as it is. Checked before the rename: transformers loads the copy and
    scores as mlcls does."""
    import torch

    from mlcls.inference.loading import load_run

    refuse_hf(source)
    loaded = load_run(source, device="cpu", precision="fp32")
    note(f"exporting {source} ({len(loaded.labels)} labels) as a transformers model ...")
    with staged(out) as staging:
        shutil.copytree(source / "encoder", staging, dirs_exist_ok=True)
        for name in COPIED:
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        check = check_hf_export(staging, loaded.model, len(loaded.tokenizer), loaded.config.model.max_length,
                                loaded.config.model.trust_remote_code)
        if check["max_abs_diff"] > FP32_TOLERANCE:
            raise MlclsError(f"{source}: transformers' scores of the export differ from mlcls's by up to "
                             f"{check['max_abs_diff']:.2e} (more than {FP32_TOLERANCE:g}); nothing was written")
        manifest = {
            "format": "hf",
            "architecture": (loaded.model.model.config.architectures or ["?"])[0],
            "num_labels": len(loaded.labels),
            "max_length": loaded.config.model.max_length,
            "source_run": str(source),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mlcls_version": package_version("mlcls"),
            "torch": torch.__version__,
            "transformers": package_version("transformers"),
            "check": check,
        }
        write_manifest_and_card(source, staging, manifest)
    return ExportResult(out, source, manifest)


def check_hf_export(folder: Path, model, vocab_size: int, max_length: int, trust: bool = False) -> dict[str, Any]:
    """The largest difference between the probabilities of the folder loaded by transformers alone
    (AutoModelForSequenceClassification, a sigmoid as pipeline applies for multi_label_classification) and
    mlcls's model, on random token ids of several batch shapes, padded rows included."""
    import torch
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True,
                                                                  trust_remote_code=trust).eval()
    worst, rows = 0.0, 0
    for ids, mask in random_batches(vocab_size, max_length):
        with torch.inference_mode():
            expected = torch.sigmoid(model(ids, mask).float())
            got = torch.sigmoid(reloaded(input_ids=ids, attention_mask=mask).logits.float())
        worst = max(worst, float((got - expected).abs().max()))
        rows += len(ids)
    return {"max_abs_diff": worst, "rows": rows, "tolerance": FP32_TOLERANCE}


def random_batches(vocab_size: int, max_length: int):
    """(token ids, attention mask) batches of 1, 3 and 5 rows of several lengths, rows padded within a batch."""
    import torch

    rng = np.random.default_rng(0)
    longest = max(2, min(max_length, 64))
    for batch, width in ((1, 2), (3, min(7, longest)), (5, longest)):
        ids = torch.from_numpy(rng.integers(0, max(vocab_size, 1), size=(batch, width)))
        mask = torch.ones((batch, width), dtype=torch.long)
        for row in range(1, batch):
            mask[row, max(1, width - row * width // batch):] = 0
        yield ids, mask


@contextlib.contextmanager
def staged(out: Path):
    """A hidden folder beside `out` to build the export in, renamed onto `out` when the block ends; on any error
    (Ctrl-C too) it is removed, so nothing half-written is left at `out`."""
    staging = _staging_folder(out)
    try:
        yield staging
        if out.is_dir():
            out.rmdir()  # empty (checked before): the rename takes its place
        staging.rename(out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise MlclsError(f"{out}: cannot write the export ({describe_os_error(exc)}); nothing was written") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_manifest_and_card(source: Path, staging: Path, manifest: dict[str, Any]) -> None:
    from mlcls.inference.model_card import write_model_card

    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    write_model_card(source, staging, export=manifest)


def _staging_folder(out: Path) -> Path:
    """A hidden folder beside `out`, renamed onto it when the export is whole (nothing half-written at `out`)."""
    staging = out.parent / f".{out.name}.export-{os.getpid()}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise MlclsError(f"{out}: cannot create the export folder ({describe_os_error(exc)})") from None
    return staging



# ------------------------------------------------------------------------------------------ the graph


def export_graph(model) -> Any:
    """The torch module that is exported: (input_ids, attention_mask[, token_type_ids]) -> (probabilities,
    logits), for one MultiLabelClassifier or the members of a FoldEnsemble."""
    import torch
    from torch import nn

    from mlcls.model.classifier import FoldEnsemble

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

    from mlcls.model.classifier import FoldEnsemble

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


def export_onnx(source: Path, out: Path, quantize: str | None, note: Callable[[str], None]) -> ExportResult:
    import torch

    from mlcls.inference.loading import load_run
    from mlcls.model.classifier import FoldEnsemble

    loaded = load_run(source, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    members = len(model.members) if isinstance(model, FoldEnsemble) else 1
    token_types = takes_token_types(model, tokenizer)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    external = weight_bytes > EXTERNAL_DATA_BYTES
    what = f"{members} fold models as one graph" if members > 1 else "one model"
    note(f"exporting {source} ({what}, {len(loaded.labels)} labels) to ONNX"
         + (" with int8 quantisation" if quantize else "") + " ...")

    with staged(out) as staging:
        graph = export_graph(model)
        inputs = example_inputs(len(tokenizer), token_types)
        fp32 = staging / (MODEL_FILE if quantize is None else "model.fp32.onnx")
        try:
            to_onnx(graph, inputs, names, fp32, external)
        except (OSError, MlclsError):
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise MlclsError(f"{source}: torch.onnx.export cannot export this model ({type(exc).__name__}: "
                             f"{first}); mlcls --debug shows the traceback") from exc
        if quantize == "int8":
            quantize_int8(fp32, staging / MODEL_FILE, external)
            fp32.unlink()
            for extra in staging.glob("model.fp32.onnx*"):
                extra.unlink()
        check = check_export(staging / MODEL_FILE, model, len(tokenizer), token_types,
                             loaded.config.model.max_length, quantize)
        if quantize is None and check["max_abs_diff"] > FP32_TOLERANCE:
            raise MlclsError(f"{source}: the exported graph's probabilities differ from the torch model's by up to "
                             f"{check['max_abs_diff']:.2e} (more than {FP32_TOLERANCE:g}); nothing was written")
        tokenizer.save_pretrained(staging)
        for name in COPIED:
            if (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        if (source / "lexical").is_dir():
            shutil.copytree(source / "lexical", staging / "lexical")
        manifest = {
            "format": "onnx",
            "file": MODEL_FILE,
            "quantize": quantize,
            "inputs": names,
            "outputs": list(OUTPUTS),
            "opset": _opset(staging / MODEL_FILE),
            "members": members,
            "pooling": loaded.config.model.pooling if loaded.config.model.head == "linear" else "native",
            "num_labels": len(loaded.labels),
            "vocab_size": len(tokenizer),
            "max_length": loaded.config.model.max_length,
            "lexical_weight": loaded.lexical.weight if loaded.lexical is not None else None,
            "source_run": str(source),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mlcls_version": package_version("mlcls"),
            "torch": torch.__version__,
            **{name: package_version(name) for name in ("onnx", "onnxscript", "onnxruntime")},
            "check": check,
        }
        write_manifest_and_card(source, staging, manifest)
    return ExportResult(out, source, manifest)


def check_export(path: Path, model, vocab_size: int, token_types: bool, max_length: int,
                 quantize: str | None) -> dict[str, Any]:
    """The largest difference between the graph's probabilities (both outputs: `probabilities`, and the sigmoid
    of `logits`, which mlcls scores with) and the torch model's, on batches of random token ids of several
    sizes, padded rows included."""
    import torch

    from mlcls.inference.onnx_run import OnnxModel

    session = OnnxModel(path, ["CPUExecutionProvider"])
    worst, rows = 0.0, 0
    for ids, mask in random_batches(vocab_size, max_length):
        batch = len(ids)
        with torch.inference_mode():
            expected = torch.sigmoid(model(ids, mask).float()).numpy()
        probs, logits = session.outputs(ids.numpy(), mask.numpy())
        got = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        worst = max(worst, float(np.abs(probs - expected).max()), float(np.abs(got - expected).max()))
        rows += batch
    return {"max_abs_diff": worst, "rows": rows, "tolerance": FP32_TOLERANCE if quantize is None else None}


def _opset(path: Path) -> int | None:
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:
        return None



