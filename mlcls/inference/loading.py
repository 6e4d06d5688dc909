"""A finished run directory, loaded for scoring: config, labels, decision rule, encoder + head, tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcls.config import Config
from mlcls.data.labels import LabelSpace
from mlcls.errors import ConfigError, MlclsError, RunDirError
from mlcls.inference.decision import DecisionRule
from mlcls.inference.rundir import resolve_run


@dataclass
class LoadedRun:
    path: Path
    config: Config
    labels: LabelSpace
    thresholds: DecisionRule
    model: Any  # MultiLabelClassifier (or FoldEnsemble), in eval mode on `device`
    tokenizer: Any
    device: Any
    lexical: Any = None  # LexicalModel when the run blends one in (model.lexical: tfidf)
    # What score_records runs the model in: fp32, bf16 (autocast) or int8 (--int8; fp32 around it). None: bf16 on
    # a GPU with bf16, else fp32 (a LoadedRun built by hand). load_run sets it, and `precision_note` says why.
    precision: str | None = None
    precision_note: str = ""


PRECISIONS = ("auto", "fp32", "bf16")


def choose_inference_precision(device: str, precision: str, int8: bool = False,
                               source: str = "--precision") -> tuple[str, str]:
    """(fp32 | bf16 | int8, the line that says so) for scoring on `device` (cpu or cuda).

    auto is bf16 on a GPU with bf16 and on a CPU with native bf16 (AVX512-BF16, AMX: the test training's auto
    uses), fp32 elsewhere: without native bf16 a CPU runs bf16 matrix products many times slower than fp32.
    `source` names where an explicit choice came from (--precision, or the run's config key). --int8 runs
    the linear layers in int8: bf16 given with it on the command line is an error; auto, or bf16 from
    the run's config, gives way to it."""
    import torch

    from mlcls.training import devices  # the module, not the function: a test may replace cpu_has_fast_bf16

    if precision not in PRECISIONS:
        raise MlclsError(f"{source} {precision!r}: the choice is auto, fp32 or bf16")
    if int8:
        if precision == "bf16" and source == "--precision":
            raise MlclsError("--int8 and --precision bf16 exclude each other on a CPU: choose one of them")
        why = f"--int8, not bf16 from {source}" if precision == "bf16" else "--int8"
        return "int8", f"precision int8 ({why}): the encoder's linear layers in dynamic int8, the rest in fp32"
    if str(device).startswith("cuda"):
        has_bf16 = torch.cuda.is_bf16_supported()
        if precision == "auto":
            return ("bf16", "precision bf16 (auto: this GPU runs bf16)") if has_bf16 else \
                ("fp32", "precision fp32 (auto: this GPU lacks bf16)")
        if precision == "bf16" and not has_bf16:
            raise MlclsError(f"bf16 ({source}): this GPU does not run bf16; use --precision fp32 or auto")
        return precision, f"precision {precision} ({source})"
    native = devices.cpu_has_fast_bf16()
    if precision == "auto":
        return ("bf16", "precision bf16 (auto: this CPU has native bf16)") if native else \
            ("fp32", "precision fp32 (auto: this CPU lacks native bf16, which would run many times slower)")
    if precision == "bf16" and not native:
        return "bf16", (f"precision bf16 ({source}); this CPU lacks native bf16: expect it many times slower than "
                        "fp32")
    return precision, f"precision {precision} ({source})"


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


def load_run(run: str | Path | None, device: str = "auto", int8: bool = False,
             precision: str | None = None) -> LoadedRun:
    """A finished run, ready to score: one model, or the K fold models of a cross-fitted run as one ensemble.

    `precision` (auto, fp32, bf16; None: the run's model.inference_precision) is resolved for the device here
    (choose_inference_precision) and travels with the run to score_records."""
    import torch

    from mlcls.model.classifier import FoldEnsemble, quiet_transformers

    path = resolve_run(run)
    if precision is not None and precision not in PRECISIONS:
        raise MlclsError(f"--precision {precision!r}: the choice is auto, fp32 or bf16")
    if (path / "model.onnx").is_file():  # an ONNX export (`mlcls export`): scored with ONNX Runtime
        from mlcls.inference.onnx_run import load_onnx_run

        loaded = load_onnx_run(path, device, int8)
        loaded.precision, loaded.precision_note = onnx_precision(path, precision or
                                                                 loaded.config.model.inference_precision)
        return loaded
    from mlcls.inference.validation import validate_run

    refuse_hf_export(path)
    validate_run(path)  # every file there, whole and consistent, before anything heavy loads
    config, labels, thresholds = load_run_files(path)

    quiet_transformers()
    folders = model_folders(path, config.train.folds)
    members = [load_model(folder, config, len(labels)) for folder in folders]
    tokenizer = members[0][1]
    model = members[0][0] if len(members) == 1 else FoldEnsemble([m for m, _ in members])

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if int8 and device != "cpu":
        raise MlclsError("--int8 is a CPU mode (dynamic int8 quantisation); on a GPU, inference runs in bf16")
    source = "--precision" if precision is not None else "the run's model.inference_precision"
    chosen, note = choose_inference_precision(device, precision or config.model.inference_precision, int8, source)
    if int8:
        for member in [model] if len(members) == 1 else model.members:
            member.replace_encoder(quantized_int8(member.encoder))
    from mlcls.model.lexical import LexicalModel

    lexical = LexicalModel.load(path)
    return LoadedRun(path, config, labels, thresholds, model, tokenizer, torch.device(device), lexical, chosen, note)


def refuse_hf_export(path: Path) -> None:
    """A --format hf export is transformers' folder; mlcls scores the run it came from."""
    from mlcls.inference.export import MANIFEST
    from mlcls.training.provenance import read_json

    manifest = read_json(path / MANIFEST)
    if isinstance(manifest, dict) and manifest.get("format") == "hf":
        raise MlclsError(f"{path}: a --format hf export, for transformers (its README.md shows how); mlcls scores "
                         f"the run it came from: {manifest.get('source_run', 'see export.json')}")


def onnx_precision(path: Path, asked: str) -> tuple[str, str]:
    """An ONNX export runs in ONNX Runtime as exported (fp32, or int8 when quantised): bf16 does not apply."""
    from mlcls.inference.onnx_run import read_manifest

    kind = "int8" if read_manifest(path).get("quantize") == "int8" else "fp32"
    note = f"precision {kind} (an ONNX export, run by ONNX Runtime as exported)"
    if asked == "bf16":
        note += "; bf16 does not apply to ONNX exports and is ignored"
    return kind, note


def load_run_files(path: Path) -> tuple[Config, LabelSpace, DecisionRule]:
    """A run's (or an export's) config, label vocabulary and decision rule."""
    config = load_run_config(path)
    try:
        labels = LabelSpace.load(path / "labels.json")
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path / 'labels.json'}: corrupt ({exc})") from None
    return config, labels, DecisionRule.load(path / "thresholds.json")


def load_run_config(path: Path) -> Config:
    from mlcls.config import read_yaml_mapping

    try:
        return Config.from_dict(read_yaml_mapping(path / "config.yaml"), where=str(path / "config.yaml"))
    except ConfigError as exc:
        raise RunDirError(f"{path / 'config.yaml'}: {exc}") from None


def model_folders(run: Path, folds: int) -> list[Path]:
    """Where a run's model lives: the run itself (encoder/ + head.safetensors; also a cross-fitted run with
    train.refit), or else, for a cross-fitted run (`folds` = its train.folds), each folds/fold-1 .. fold-K.
    Whether they are all there is validation.validate_run's to check."""
    if (run / "head.safetensors").exists() or (run / "encoder").exists() or folds <= 1:
        return [run]
    return [run / "folds" / f"fold-{k}" for k in range(1, folds + 1)]


def load_model(folder: Path, config: Config, num_labels: int):
    """(classifier, tokenizer) of one model folder (encoder/ + head.safetensors; with model.head transformers
    encoder/ alone, the whole AutoModelForSequenceClassification), checked to be whole."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from mlcls.model.classifier import MultiLabelClassifier, NativeClassifier

    trust = config.model.trust_remote_code
    native = config.model.head == "transformers"
    kind = AutoModelForSequenceClassification if native else AutoModel
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder / "encoder", trust_remote_code=trust)
        encoder = kind.from_pretrained(folder / "encoder", use_safetensors=True, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{folder / 'encoder'}: cannot load ({str(exc).splitlines()[0]})") from None
    check_tokenizer_fits(folder / "encoder", tokenizer, encoder)
    if native:
        return NativeClassifier(encoder), tokenizer
    model = MultiLabelClassifier(encoder, num_labels, config.model.pooling, config.model.dropout)
    try:
        head = load_file(str(folder / "head.safetensors"))
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()})
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise RunDirError(f"{folder / 'head.safetensors'}: corrupt or does not match labels.json ({exc})") from None
    return model, tokenizer


def check_tokenizer_fits(folder: Path, tokenizer, encoder) -> None:
    """A run whose tokenizer file is gone still loads: transformers builds a tokenizer from what is left (a
    handful of special tokens), every word becomes [UNK], and every article scores the same. A tokenizer
    must cover (nearly) the encoder's vocabulary: embedding tables may be padded past it, never 10x larger."""
    embeddings = encoder.get_input_embeddings().num_embeddings
    if len(tokenizer) > embeddings or len(tokenizer) < 0.9 * embeddings:
        raise RunDirError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the encoder's vocabulary has "
                          f"{embeddings} (a tokenizer file is missing or belongs to another model)")
