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
    model: Any  # MultiLabelClassifier, in eval mode on `device`
    tokenizer: Any
    device: Any


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
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from mlcls.config import read_yaml_mapping
    from mlcls.model.classifier import MultiLabelClassifier, quiet_transformers

    path = resolve_run(run)
    try:
        config = Config.from_dict(read_yaml_mapping(path / "config.yaml"), where=str(path / "config.yaml"))
    except ConfigError as exc:
        raise RunDirError(f"{path / 'config.yaml'}: {exc}") from None
    try:
        labels = LabelSpace.load(path / "labels.json")
    except (ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path / 'labels.json'}: corrupt ({exc})") from None
    thresholds = DecisionRule.load(path / "thresholds.json")

    quiet_transformers()
    trust = config.model.trust_remote_code
    try:
        tokenizer = AutoTokenizer.from_pretrained(path / "encoder", trust_remote_code=trust)
        encoder = AutoModel.from_pretrained(path / "encoder", use_safetensors=True, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path / 'encoder'}: cannot load ({str(exc).splitlines()[0]})") from None
    model = MultiLabelClassifier(encoder, len(labels), config.model.pooling, config.model.dropout)
    try:
        head = load_file(str(path / "head.safetensors"))
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in head.items()})
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise RunDirError(f"{path / 'head.safetensors'}: corrupt or does not match labels.json ({exc})") from None

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if int8:
        if device != "cpu":
            raise MlclsError("--int8 is a CPU mode (dynamic int8 quantisation); on a GPU, inference runs in bf16")
        model.encoder = quantized_int8(model.encoder)
    return LoadedRun(path, config, labels, thresholds, model, tokenizer, torch.device(device))
