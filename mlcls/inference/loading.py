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


def load_run(run: str | Path | None, device: str = "auto", int8: bool = False) -> LoadedRun:
    """A finished run, ready to score: one model, or the K fold models of a cross-fitted run as one ensemble."""
    import torch

    from mlcls.model.classifier import FoldEnsemble, quiet_transformers

    path = resolve_run(run)
    if (path / "model.onnx").is_file():  # an ONNX export (`mlcls export`): scored with ONNX Runtime
        from mlcls.inference.onnx_run import load_onnx_run

        return load_onnx_run(path, device, int8)
    from mlcls.inference.validation import validate_run

    validate_run(path)  # every file there, whole and consistent, before anything heavy loads
    config = load_run_config(path)
    try:
        labels = LabelSpace.load(path / "labels.json")
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path / 'labels.json'}: corrupt ({exc})") from None
    thresholds = DecisionRule.load(path / "thresholds.json")

    quiet_transformers()
    folders = model_folders(path)
    members = [load_model(folder, config, len(labels)) for folder in folders]
    tokenizer = members[0][1]
    model = members[0][0] if len(members) == 1 else FoldEnsemble([m for m, _ in members])

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if int8:
        if device != "cpu":
            raise MlclsError("--int8 is a CPU mode (dynamic int8 quantisation); on a GPU, inference runs in bf16")
        for member in [model] if len(members) == 1 else model.members:
            member.encoder = quantized_int8(member.encoder)
    from mlcls.model.lexical import LexicalModel

    lexical = LexicalModel.load(path)
    return LoadedRun(path, config, labels, thresholds, model, tokenizer, torch.device(device), lexical)


def load_run_config(path: Path) -> Config:
    from mlcls.config import read_yaml_mapping

    try:
        return Config.from_dict(read_yaml_mapping(path / "config.yaml"), where=str(path / "config.yaml"))
    except ConfigError as exc:
        raise RunDirError(f"{path / 'config.yaml'}: {exc}") from None


def model_folders(run: Path) -> list[Path]:
    """Where a run's model lives: the run itself (encoder/ + head.safetensors), or, for a cross-fitted run
    that predicts with its fold models, each folds/fold-K."""
    if (run / "head.safetensors").exists():
        return [run]
    folds = sorted((run / "folds").glob("fold-*"), key=lambda p: int(p.name.removeprefix("fold-")))
    if not folds:
        raise RunDirError(f"{run / 'head.safetensors'}: missing from the run directory (is this a complete mlcls "
                          "run?)")
    return folds


def load_model(folder: Path, config: Config, num_labels: int):
    """(classifier, tokenizer) of one model folder (encoder/ + head.safetensors), checked to be whole."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from mlcls.model.classifier import MultiLabelClassifier

    trust = config.model.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder / "encoder", trust_remote_code=trust)
        encoder = AutoModel.from_pretrained(folder / "encoder", use_safetensors=True, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{folder / 'encoder'}: cannot load ({str(exc).splitlines()[0]})") from None
    check_tokenizer_fits(folder / "encoder", tokenizer, encoder)
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
