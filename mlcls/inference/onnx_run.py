"""An ONNX export (`mlcls export`), loaded for scoring with ONNX Runtime: `load_run` hands such a folder here.

The result is a LoadedRun like any other: config, labels, decision rule, tokenizer and the lexical model
come from the export's files, and `model` is an OnnxModel, which answers the call that mlcls's scoring makes
of a classifier (`model(input_ids, attention_mask)` -> logits, as a torch tensor; `num_labels`;
`eval()` / `train()` / `training`). So `mlcls predict`, `eval` and `serve` run an export through the same
code as a torch run (scoring.score_records: tokenize, length-sorted batches, sigmoid, the lexical blend).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from mlcls.errors import MlclsError, RunDirError, first_line
from mlcls.inference.loaded import LoadedRun, load_run_files
from mlcls.model.classifier import quiet_transformers
from mlcls.run.files import peek_manifest, read_onnx_manifest
from mlcls.run.layout import CONFIG, LABELS, MANIFEST, ONNX_MODEL, THRESHOLDS, TOKENIZER_CONFIG
from mlcls.run.lexical import load_lexical
from mlcls.run.model_files import check_remote_code
from mlcls.run.validation import validate_export

REQUIRED = (ONNX_MODEL, MANIFEST, CONFIG, LABELS, THRESHOLDS, TOKENIZER_CONFIG)
ONNX_EXTRA = 'pip install "mlcls[onnx]"'
OUTPUTS = ("probabilities", "logits")  # the graph's outputs: per-label probabilities and their log-odds


class OnnxModel:
    """An ONNX Runtime session that scores like MultiLabelClassifier: token ids in, logits out."""

    def __init__(self, path: Path, providers: list[str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidGraph, Fail, ...)
            first = first_line(exc)
            raise RunDirError(f"{path}: cannot load the ONNX model ({first})") from None
        self.path = path
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = {o.name: o for o in self.session.get_outputs()}
        if "logits" not in outputs or not {"input_ids", "attention_mask"} <= set(self.input_names):
            raise RunDirError(f"{path}: not an mlcls export (inputs {', '.join(self.input_names)}; outputs "
                              f"{', '.join(outputs)}; expected input_ids, attention_mask -> probabilities, logits)")
        width = outputs["logits"].shape[-1]
        self._num_labels = width if isinstance(width, int) else None
        self.training = False

    @property
    def num_labels(self) -> int:
        if self._num_labels is None:
            raise RunDirError(f"{self.path}: the graph does not say how many labels it scores")
        return self._num_labels

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:  # scoring restores the mode it found: always eval here
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self

    def feed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        ids = np.asarray(input_ids, dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.asarray(attention_mask, dtype=np.int64)}
        if "token_type_ids" in self.input_names:  # one text per row: every token is of type 0
            feed["token_type_ids"] = np.zeros_like(ids)
        return feed

    def outputs(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, logits) of a batch."""
        probs, logits = self.session.run(list(OUTPUTS), self.feed(input_ids, attention_mask))
        return probs, logits

    def __call__(self, input_ids, attention_mask):
        import torch

        feed = self.feed(input_ids.detach().cpu().numpy(), attention_mask.detach().cpu().numpy())
        return torch.from_numpy(self.session.run(["logits"], feed)[0])


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


def providers_for(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = "CUDAExecutionProvider" in available
    if device == "cuda" and not gpu:
        raise MlclsError("this onnxruntime has no CUDA provider (install onnxruntime-gpu), or use the CPU")
    if device in ("cuda", "auto") and gpu:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_onnx_run(path: Path, device: str = "auto", int8: bool = False, trust_remote_code: bool = False):
    """The export in `path` as a LoadedRun whose model is an OnnxModel (inputs and outputs on the CPU; ONNX
    Runtime moves them to its device itself). `trust_remote_code`: as load_run's (a tokenizer may carry code)."""
    import torch

    require_onnx(export=False)
    for name in REQUIRED:
        if not (path / name).exists():
            raise RunDirError(f"{path / name}: missing from the ONNX export (is this a complete `mlcls export` "
                              "folder?)")
    validate_export(path, REQUIRED)  # each file readable, no link out of the folder, lexical/ of these labels
    manifest = read_onnx_manifest(path)
    if int8 and manifest.get("quantize") != "int8":
        raise MlclsError(f"{path}: --int8 quantises a torch run; this ONNX export is fp32: make an int8 one with "
                         "`mlcls export RUN --format onnx --quantize int8`")
    config, labels, thresholds = load_run_files(path)  # the rule checked against the labels there
    check_remote_code(path, [path], config, trust_remote_code)
    model = OnnxModel(path / ONNX_MODEL, providers_for(device))
    if model.num_labels != len(labels):
        raise RunDirError(f"{path / ONNX_MODEL}: the graph scores {model.num_labels} labels but "
                          f"{path / LABELS} has {len(labels)}: the files come from different exports")
    tokenizer = _tokenizer(path, manifest, trust_remote_code)
    lexical = load_lexical(path)
    return LoadedRun(path, config, labels, thresholds, model, tokenizer, torch.device("cpu"), lexical)


def _tokenizer(path: Path, manifest: dict[str, Any], trust_remote_code: bool):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path}: cannot load the tokenizer ({first_line(exc)})") from None
    expected = manifest.get("vocab_size")
    if isinstance(expected, int) and len(tokenizer) != expected:
        raise RunDirError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the export was made with {expected} "
                          "(a tokenizer file is missing or belongs to another model)")
    return tokenizer


def export_note(run_dir: Path) -> str | None:
    """What `mlcls eval` says about an export it scores: ONNX Runtime, and int8 when quantised."""
    manifest = peek_manifest(Path(run_dir))
    if manifest is None or manifest.get("format") != "onnx":
        return None
    kind = "int8-quantised ONNX export" if manifest.get("quantize") == "int8" else "ONNX export (fp32)"
    return f"{Path(run_dir).name} is an {kind} of {manifest.get('source_run')}: scored with ONNX Runtime"
