"""--format hf: a run trained with model.head transformers as a transformers model folder (the package's doc)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlcls.errors import MlclsError
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
from mlcls.run.files import read_config
from mlcls.run.layout import ENCODER, LEXICAL, model_folders
from mlcls.run.lexical import lexical_weight
from mlcls.run.provenance import package_version


def refuse_hf(source: Path) -> None:
    """--format hf takes one Transformers-native model whose scores are the run's own: say why not, else nothing."""
    config = read_config(source)
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
    if config.model.long_text != "truncate":
        raise MlclsError(f"{source}: the run reads long texts as model.long_text {config.model.long_text}, which "
                         "transformers.pipeline does not do (it truncates); export it with --format onnx, whose "
                         "windows mlcls scores and pools as the run does")
    weight = lexical_weight(source) if (source / LEXICAL).exists() else None
    if weight:
        raise MlclsError(f"{source}: the run blends a TF-IDF model into its scores (weight {weight:g}) and its "
                         "rule was tuned on the blend; transformers would give the encoder's part alone. Export it "
                         "with --format onnx, or train with model.lexical none")


def export_hf(source: Path, out: Path, note: Callable[[str], None], trust_remote_code: bool = False) -> ExportResult:
    """The run's AutoModelForSequenceClassification folder with the run's small files and its model card, at the
    top of `out`: `from_pretrained(out)`, `pipeline("text-classification", model=out, top_k=None,
    truncation=True)` and the Hub take it as it is. Checked before the rename: transformers loads the copy and
    scores as mlcls does."""
    import torch

    refuse_hf(source)
    loaded = load_run(source, device="cpu", precision="fp32", trust_remote_code=trust_remote_code)
    note(f"exporting {source} ({len(loaded.labels)} labels) as a transformers model ...")
    with staged(out) as staging:
        shutil.copytree(source / ENCODER, staging, dirs_exist_ok=True)
        copy_run_files(source, staging)
        check = check_hf_export(staging, loaded.model, len(loaded.tokenizer), loaded.config.model.max_length,
                                trust_remote_code)
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
        worst = worst_difference(worst, got.numpy(), expected.numpy())
        rows += len(ids)
    return {"max_abs_diff": worst, "rows": rows, "tolerance": FP32_TOLERANCE}
