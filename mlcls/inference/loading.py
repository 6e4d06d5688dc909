"""A finished run directory, loaded for scoring: config, labels, decision rule, encoder + head, tokenizer."""

from __future__ import annotations

from pathlib import Path

from mlcls.config import Config
from mlcls.errors import MlclsError, RunDirError
from mlcls.inference.loaded import LoadedRun, load_run_files
from mlcls.inference.onnx_run import load_onnx_run
from mlcls.model.classifier import FoldEnsemble, quiet_transformers
from mlcls.precision import PRECISIONS, choose_inference_precision, linear_weights_in_bf16
from mlcls.run.files import export_format, peek_manifest, read_onnx_manifest
from mlcls.run.find import resolve_run
from mlcls.run.layout import CARD, ENCODER, MANIFEST, ONNX_MODEL, model_folders
from mlcls.run.lexical import load_lexical
from mlcls.run.model_files import check_remote_code, load_model
from mlcls.run.validation import validate_run


def quantized_int8(encoder):
    """The encoder with its Linear layers in int8 (weights quantised once, activations per batch): about
    1.5x faster matrix products on x86 CPUs, at a small cost in accuracy that `mlcls eval --int8` shows.

    torch's own dynamic quantisation, not a new dependency; torch marks it deprecated in favour of
    torchao, so a torch without it gives a clear error rather than a crash."""
    import warnings

    import torch

    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        raise MlclsError(f"--int8 needs torch's dynamic quantisation, which torch {torch.__version__} lacks") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)


def load_run(run: str | Path | None, device: str = "auto", int8: bool = False, precision: str | None = None,
             trust_remote_code: bool = False) -> LoadedRun:
    """A finished run, ready to score: one model, or the K fold models of a cross-fitted run as one ensemble.

    `precision` (auto, fp32, bf16; None: the run's model.inference_precision) is resolved for the device here
    (choose_inference_precision) and travels with the run to score_records. `trust_remote_code`: whether the
    user allowed this command to run code that the run carries (--trust-remote-code); a run that asks for it
    without that is refused in one line, whatever its own config says. Loaded for bf16, the model's linear layers
    are bf16 (precision.linear_weights_in_bf16): it scores under bf16 autocast (score_records does), and a caller
    that wants the fp32 model (to export it, to run it by hand) asks for precision="fp32"."""
    import torch

    path = resolve_run(run)
    if precision is not None and precision not in PRECISIONS:
        raise MlclsError(f"--precision {precision!r}: the choice is auto, fp32 or bf16")
    _check_device(device, torch)
    if (path / ONNX_MODEL).is_file():  # an ONNX export (`mlcls export`): scored with ONNX Runtime
        return _load_onnx(path, device, int8, precision, trust_remote_code)
    refuse_hf_export(path)
    validate_run(path)  # every file there, whole and consistent, before anything heavy loads
    config, labels, thresholds = load_run_files(path)
    model, tokenizer = _load_models(path, config, len(labels), trust_remote_code)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if int8 and device != "cpu":
        raise MlclsError("--int8 is a CPU mode (dynamic int8 quantisation); on a GPU, inference runs in bf16")
    source = "--precision" if precision is not None else "the run's model.inference_precision"
    chosen, note = choose_inference_precision(device, precision or config.model.inference_precision, int8, source)
    if int8:
        for member in getattr(model, "members", [model]):
            member.replace_encoder(quantized_int8(member.encoder))
    if chosen == "bf16":  # scored under bf16 autocast only: cast once, not at every pass (the same logits)
        linear_weights_in_bf16(model)
    return LoadedRun(path, config, labels, thresholds, model, tokenizer, torch.device(device), load_lexical(path),
                     chosen, note)


def _check_device(device: str, torch) -> None:
    """auto, cpu, cuda or cuda:N, and a GPU there when one is named: one line (the API's callers too), not torch's
    RuntimeError or an AssertionError from a CPU-only build."""
    kind, _, index = str(device).partition(":")
    if kind not in ("auto", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise MlclsError(f"device {device!r}: the choice is auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise MlclsError(f"device {device!r}: no GPU is available here (torch {torch.__version__}); use cpu or auto")


def _load_models(path: Path, config: Config, num_labels: int, trust_remote_code: bool):
    """(model, tokenizer): one model, or the fold models of a cross-fitted run as one FoldEnsemble."""
    folders = model_folders(path, config.train.folds)
    check_remote_code(path, [folder / ENCODER for folder in folders], config, trust_remote_code)
    quiet_transformers()
    members = [load_model(folder, config, num_labels, trust_remote_code) for folder in folders]
    # Every fold scores the token ids of fold 1's tokenizer: a fold with another vocabulary would read garbage.
    vocabulary = members[0][1].get_vocab()
    for folder, (_, tokenizer) in zip(folders[1:], members[1:], strict=True):
        if tokenizer.get_vocab() != vocabulary:
            raise RunDirError(f"{folder / ENCODER}: its tokenizer is not fold 1's ({folders[0] / ENCODER}): the folds "
                              "of a run share one tokenizer; this fold comes from another run")
    model = members[0][0] if len(members) == 1 else FoldEnsemble([m for m, _ in members])
    return model, members[0][1]


def _load_onnx(path: Path, device: str, int8: bool, precision: str | None, trust_remote_code: bool) -> LoadedRun:
    loaded = load_onnx_run(path, device, int8, trust_remote_code)
    loaded.precision, loaded.precision_note = onnx_precision(path, precision or loaded.config.model.inference_precision)
    return loaded


def refuse_hf_export(path: Path) -> None:
    """A --format hf export is transformers' folder; mlcls scores the run it came from."""
    if export_format(path) == "hf":
        source = (peek_manifest(path) or {}).get("source_run", f"see {MANIFEST}")
        raise MlclsError(f"{path}: a --format hf export, for transformers (its {CARD} shows how); mlcls scores "
                         f"the run it came from: {source}")


def onnx_precision(path: Path, asked: str) -> tuple[str, str]:
    """An ONNX export runs in ONNX Runtime as exported (fp32, or int8 when quantised): bf16 does not apply."""
    kind = "int8" if read_onnx_manifest(path).get("quantize") == "int8" else "fp32"
    note = f"precision {kind} (an ONNX export, run by ONNX Runtime as exported)"
    if asked == "bf16":
        note += "; bf16 does not apply to ONNX exports and is ignored"
    return kind, note
