"""The training loop, top to bottom: setup -> epochs (train, validate, keep the best) -> save the run."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mlcls.batching import length_grouped_batches, pad_batch, tokenize
from mlcls.config import Config
from mlcls.data import FieldSpec, LabelSpace, ReadPolicy, Record, read_records
from mlcls.errors import ConfigError, DataError
from mlcls.losses import LabelStats, build_loss
from mlcls.metrics import compute_metrics
from mlcls.model import build_model
from mlcls.predict import score_token_ids
from mlcls.rundir import begin_run, ensure_new_run, finish_run, save_model, write_json
from mlcls.thresholds import DecisionRule, tune


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # validation metrics of the kept epoch, plus timings


def train(config: Config, console: Console | None = None, rejects: IO[bytes] | None = None) -> TrainResult:
    console = console or Console(stderr=True)
    started = time.perf_counter()

    # ---------------------------------------------------------------- setup: data
    seed_everything(config.train.seed)
    fields = FieldSpec.from_config(config.data)
    policy = ReadPolicy(config.data.on_error, rejects)
    train_records = read_all(config.data.train, fields, console, policy)
    if config.data.validation:
        val_records = read_all(config.data.validation, fields, console, policy)
    else:
        train_records, val_records = hold_out(train_records, config.data.val_fraction, config.train.seed)
    labels = LabelSpace.from_records(train_records)
    if len(labels) == 0:
        raise DataError(config.data.train, None, "no labels in the training data: nothing to learn")
    train_enc = labels.encode(train_records)
    val_enc = labels.encode(val_records)
    if val_enc.unknown_labels:
        console.print(f"[yellow]note:[/] validation labels not in the training vocabulary (ignored): "
                      f"{_counts(val_enc.unknown_labels)}")
    stats = LabelStats.from_encoded(labels.labels, train_enc.targets, train_enc.mask)
    console.print(
        f"{len(train_records)} training and {len(val_records)} validation records, {len(labels)} labels; "
        f"{int((train_enc.targets.max(axis=1, initial=0) < 0.5).sum())} training records have no label"
    )

    # ---------------------------------------------------------------- setup: model, loss, optimizer
    run_name = config.output.name or _default_run_name(config)
    runs_root = Path(config.output.dir)
    ensure_new_run(runs_root, run_name)  # fail now, not after an hour of training
    accelerator = make_accelerator(config.train.device, config.train.precision)
    device = accelerator.device
    loss_fn = build_loss(config.loss.name, config.loss.params, stats).to(device)
    model, tokenizer = build_model(config.model, len(labels))
    model.init_head(stats.prior())
    pad_id = tokenizer.pad_token_id or 0
    train_ids = tokenize(tokenizer, [r.text for r in train_records], config.model.max_length)
    val_ids = tokenize(tokenizer, [r.text for r in val_records], config.model.max_length)

    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.train.lr)
    steps_per_epoch = math.ceil(len(train_ids) / config.train.batch_size)
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = linear_warmup_decay(optimizer, int(config.train.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    console.print(
        f"encoder {config.model.encoder}, loss {config.loss.name}, device {device.type}, "
        f"precision {_precision_name(accelerator)}, {config.train.epochs} epochs x {steps_per_epoch} steps"
    )

    # ---------------------------------------------------------------- the loop
    rng = np.random.default_rng(config.train.seed)
    train_targets = torch.from_numpy(train_enc.targets)
    train_mask = torch.from_numpy(train_enc.mask)
    lengths = [len(ids) for ids in train_ids]
    best: dict[str, Any] | None = None
    log: list[dict[str, Any]] = []
    train_seconds = 0.0
    samples_seen = 0

    with _progress(console) as progress:
        task = progress.add_task("train", total=total_steps, loss=float("nan"), rate=0.0)
        for epoch in range(1, config.train.epochs + 1):
            model.train()
            epoch_start = time.perf_counter()
            loss_sum, loss_count = 0.0, 0
            for batch in length_grouped_batches(lengths, config.train.batch_size, rng):
                input_ids, attention_mask = pad_batch([train_ids[i] for i in batch], pad_id)
                logits = model(input_ids.to(device), attention_mask.to(device))
                loss = loss_fn(logits, train_targets[batch].to(device), train_mask[batch].to(device))
                accelerator.backward(loss)
                if config.train.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)

                # .item() waits for the device; once a step is cheap next to a transformer step.
                loss_sum += loss.item()
                loss_count += 1
                samples_seen += len(batch)
                elapsed = train_seconds + time.perf_counter() - epoch_start
                progress.update(task, advance=1, loss=loss_sum / loss_count, rate=samples_seen / elapsed,
                                description=f"epoch {epoch}/{config.train.epochs}")
            train_seconds += time.perf_counter() - epoch_start

            # ------------------------------------------------------------ validate, keep the best
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / max(1, loss_count)}
            if val_records:
                probs = score_token_ids(accelerator.unwrap_model(model), val_ids, pad_id,
                                        config.train.eval_batch_size, device)
                thresholds = choose_thresholds(config, probs, val_enc.targets, val_enc.mask, labels.labels)
                predicted = thresholds.apply(probs, labels.labels)
                metrics = compute_metrics(val_enc.targets, val_enc.mask, predicted, labels.labels)
                entry.update(val_micro_f1=metrics["micro_f1"], val_macro_f1=metrics["macro_f1"],
                             decisions=thresholds.describe())
                improved = best is None or metrics["micro_f1"] > best["metrics"]["micro_f1"]
            else:
                thresholds, metrics, improved = untuned_rule(config), {}, True
            log.append(entry)
            progress.console.print(_epoch_line(entry, config.train.epochs, improved and bool(val_records)))
            if improved:
                # A copy on the CPU: the kept weights must not change as training goes on.
                state = {k: v.detach().to("cpu", copy=True)
                         for k, v in accelerator.unwrap_model(model).state_dict().items()}
                best = {"epoch": epoch, "state": state, "thresholds": thresholds, "metrics": metrics}

    # ---------------------------------------------------------------- save the run
    assert best is not None
    model = accelerator.unwrap_model(model)
    model.load_state_dict(best["state"])
    summary = {
        "best_epoch": best["epoch"],
        "validation": {k: v for k, v in best["metrics"].items() if k != "per_label"},
        "train_records": len(train_records),
        "validation_records": len(val_records),
        "train_seconds": round(train_seconds, 2),
        "train_samples_per_second": round(samples_seen / max(train_seconds, 1e-9), 2),
        "device": device.type,
        "precision": _precision_name(accelerator),
    }
    staging = begin_run(runs_root, run_name)
    config.output.name = run_name
    config.save(staging / "config.yaml")
    labels.save(staging / "labels.json")
    stats.save(staging / "label_stats.json")
    save_model(staging, model, tokenizer)
    best["thresholds"].save(staging / "thresholds.json")
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    write_json(staging / "metrics.json", summary)
    (staging / "train_log.jsonl").write_text("".join(_json_line(e) for e in log))
    run_dir = finish_run(staging)
    return TrainResult(run_dir, summary)


# -------------------------------------------------------------------- helpers of the loop


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_all(path: str, fields: FieldSpec, console: Console, policy: ReadPolicy) -> list[Record]:
    records = list(read_records(path, fields, policy=policy))
    for line in policy.report(path):
        console.print(f"note: {line}", markup=False)
    return records


def hold_out(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Split a validation set off the training records (random, seeded). Thresholds are tuned on it."""
    if fraction <= 0 or len(records) < 2:
        return records, []
    n_val = min(len(records) - 1, max(1, round(len(records) * fraction)))
    order = np.random.default_rng(seed).permutation(len(records))
    val_idx = set(order[:n_val].tolist())
    # A label whose every article landed in validation would vanish from the vocabulary, and the model
    # could never predict it (on Reuters, several topics have a single training article): such articles
    # go back to training.
    in_train = {name for i, r in enumerate(records) if i not in val_idx for name in (r.labels or {})}
    for i in sorted(val_idx):
        if any(name not in in_train for name in (records[i].labels or {})):
            val_idx.discard(i)
            in_train.update(records[i].labels or {})
    return ([r for i, r in enumerate(records) if i not in val_idx],
            [r for i, r in enumerate(records) if i in val_idx])


def make_accelerator(device: str, precision: str):
    from accelerate import Accelerator

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda, but no CUDA GPU is available")
    on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if precision == "auto":
        if on_cuda:
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
    if precision == "fp16" and not on_cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU (use bf16 or fp32 on a CPU)")
    return Accelerator(cpu=not on_cuda, mixed_precision="no" if precision == "fp32" else precision)


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays on CPUs with native bf16 (AVX512-BF16, AMX) and is ~20x slower without."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent from some builds
        return False


def param_groups(model, config: Config) -> list[dict[str, Any]]:
    """Encoder at lr, head at head_lr; no weight decay on biases and LayerNorm weights (1-D tensors)."""
    groups = []
    for part, lr in ((model.encoder, config.train.lr), (model.head, config.train.head_lr)):
        params = [p for p in part.parameters() if p.requires_grad]
        groups.append({"params": [p for p in params if p.ndim >= 2], "lr": lr,
                       "weight_decay": config.train.weight_decay})
        groups.append({"params": [p for p in params if p.ndim < 2], "lr": lr, "weight_decay": 0.0})
    return groups


def linear_warmup_decay(optimizer, warmup_steps: int, total_steps: int):
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)


def choose_thresholds(config: Config, probs, targets, mask, labels: list[str]) -> DecisionRule:
    t = config.threshold
    return tune(probs, targets, mask, labels, t.rule, t.default, t.min_positives, t.top_k, t.min_labels)


def untuned_rule(config: Config) -> DecisionRule:
    """With no validation data nothing can be tuned: top_k stays top_k, anything else is the fixed cut-off."""
    t = config.threshold
    rule = "top_k" if t.rule == "top_k" else "fixed"
    return DecisionRule(rule, t.default, top_k=t.top_k, min_labels=t.min_labels)


def _precision_name(accelerator) -> str:
    return "fp32" if accelerator.mixed_precision == "no" else str(accelerator.mixed_precision)


def _default_run_name(config: Config) -> str:
    base = f"{datetime.now():%Y%m%d-%H%M%S}-{config.loss.name}"
    name, n = base, 1
    while (Path(config.output.dir) / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[rate]:.1f} samples/s"),
        TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
    )


def _epoch_line(entry: dict[str, Any], epochs: int, kept: bool) -> str:
    line = f"epoch {entry['epoch']}/{epochs}  train loss {entry['train_loss']:.4f}"
    if "val_micro_f1" in entry:
        line += (f"  val micro-F1 {entry['val_micro_f1']:.4f}  macro-F1 {entry['val_macro_f1']:.4f}"
                 f"  ({entry['decisions']})")
    return line + ("  [green]kept[/]" if kept else "")


def _counts(counter) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counter.most_common(10)) + (
        f" and {len(counter) - 10} more" if len(counter) > 10 else "")


def _json_line(entry: dict[str, Any]) -> str:
    return json.dumps(entry) + "\n"
