"""The run directory: everything `eval` and `predict` need, offline.

runs/<name>/
  config.yaml        the resolved config the run was trained with
  labels.json        the label vocabulary (sorted, from the training data)
  label_stats.json   training label frequencies (for losses and reports)
  encoder/           encoder + tokenizer (save_pretrained, safetensors)
  head.safetensors   the classification head
  thresholds.json    the decision rule, tuned on validation
  metrics.json       validation metrics of the kept epoch, timings
  train_log.jsonl    one line per epoch
runs/latest -> <name>

While training, the run lives in runs/.<name>.incomplete/ with its config.yaml and checkpoint/ (see
checkpoint.py), which is what `mlcls train --resume runs/<name>` continues from.

A run is written under a hidden temporary name and renamed into place when complete, so a killed
training never leaves a half-written run that `eval` would pick up.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcls.checkpoint import find_checkpoint
from mlcls.config import Config
from mlcls.data import LabelSpace
from mlcls.errors import ConfigError, MlclsError, RunDirError
from mlcls.thresholds import DecisionRule

REQUIRED_FILES = ("config.yaml", "labels.json", "encoder", "head.safetensors", "thresholds.json")
LATEST = "latest"


def staging_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.incomplete"


def ensure_new_run(runs_root: Path, name: str) -> Path:
    final = runs_root / name
    if final.exists():
        raise RunDirError(f"{final}: a run with this name exists already (choose another --name)")
    return final


def begin_run(runs_root: Path, name: str) -> Path:
    final = ensure_new_run(runs_root, name)  # checked again: another run may have taken the name meanwhile
    staging = staging_dir(final)
    if find_checkpoint(staging) is not None:
        raise RunDirError(f"{staging}: an interrupted run of this name has a checkpoint; continue it with "
                          f"`mlcls train --resume {final}`, or delete that folder")
    if staging.exists():
        shutil.rmtree(staging)  # left by an earlier run of the same name killed before its first checkpoint
    staging.mkdir(parents=True)
    return staging


def finish_run(staging: Path) -> Path:
    """Rename the complete run into place and point runs/latest at it (atomically: a rename)."""
    final = staging.parent / staging.name[1 : -len(".incomplete")]
    staging.rename(final)
    link = final.parent / LATEST
    tmp_link = final.parent / f".{LATEST}.tmp"
    if tmp_link.is_symlink() or tmp_link.exists():
        tmp_link.unlink()
    tmp_link.symlink_to(final.name)
    os.replace(tmp_link, link)
    return final


def resumable_run(run: Path, runs_root: Path = Path("runs")) -> Path:
    """The unfinished run directory that `train --resume RUN` continues: RUN may be runs/<name> (as the
    interruption message prints it), the hidden runs/.<name>.incomplete itself, or a bare name."""
    candidates = [run, staging_dir(run)]
    if not run.is_absolute() and len(run.parts) == 1:
        candidates += [runs_root / run, staging_dir(runs_root / run)]
    for candidate in candidates:
        if find_checkpoint(candidate) is not None:
            if not (candidate / "config.yaml").is_file():
                raise RunDirError(f"{candidate / 'config.yaml'}: missing; cannot resume this run")
            return candidate
    for candidate in candidates:
        if (candidate / "head.safetensors").exists():
            raise RunDirError(f"{candidate}: this run finished; there is nothing to resume")
    raise RunDirError(f"{run}: no interrupted run with a checkpoint found there")


def save_model(run_dir: Path, model, tokenizer) -> None:
    from safetensors.torch import save_file

    model.encoder.save_pretrained(run_dir / "encoder")
    tokenizer.save_pretrained(run_dir / "encoder")
    save_file(model.head_state(), str(run_dir / "head.safetensors"))


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


def resolve_run(run: str | Path | None, runs_root: str | Path = "runs") -> Path:
    path = Path(run) if run is not None else Path(runs_root) / LATEST
    if not path.exists():
        if run is None:
            raise RunDirError(f"{path}: no run found (train one with `mlcls train`, or name a run directory)")
        raise RunDirError(f"{path}: run directory not found")
    path = path.resolve()
    for name in REQUIRED_FILES:
        if not (path / name).exists():
            raise RunDirError(f"{path / name}: missing from the run directory (is this a complete mlcls run?)")
    return path


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
    from mlcls.model import MultiLabelClassifier, quiet_transformers

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
