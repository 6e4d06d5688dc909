"""The training loop, top to bottom: setup -> epochs (train, validate, keep the best, checkpoint) -> save.

One loop serves one CPU, one GPU and data-parallel training under `accelerate launch` / `torchrun`: every
process reads the same data and draws the same batch order, takes its share of the batches, and
validates on the whole validation set (so every process reaches the same decisions: thresholds, best
epoch, early stop); only the main process writes files.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mlcls.batching import length_grouped_batches, pad_batch
from mlcls.cache import cache_root, cached_embeddings, cached_token_ids, token_ids_fingerprint, weights_fingerprint
from mlcls.checkpoint import find_checkpoint, load_checkpoint, remove_checkpoints, save_checkpoint
from mlcls.config import Config
from mlcls.data import FieldSpec, LabelSpace, ReadPolicy, Record, read_records
from mlcls.errors import ConfigError, DataError, Interrupted, MlclsError, RunDirError
from mlcls.interrupt import StopSignal
from mlcls.losses import LabelStats, build_loss
from mlcls.metrics import compute_metrics
from mlcls.model import build_model, set_trainable
from mlcls.predict import score_token_ids
from mlcls.rundir import begin_run, finish_run, save_model, staging_dir, write_json
from mlcls.thresholds import DecisionRule, tune


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]  # validation metrics of the kept epoch, plus timings
    main_process: bool = True  # under `accelerate launch`, only the main process reports


class TrainingInterrupted(Interrupted):
    """Ctrl-C: a checkpoint was saved; the message says how to continue."""


@dataclass
class TrainingState:
    """Where training stands: everything besides tensors that a checkpoint must carry to go on exactly."""

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # of this process's batches in epoch `epoch + 1`
    step: int = 0  # optimizer steps over the whole run
    epoch_rng: dict[str, Any] | None = None  # batch-order random state at the start of epoch `epoch + 1`
    loss_sum: float = 0.0  # of epoch `epoch + 1` so far
    loss_count: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    log: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    best_thresholds: dict[str, Any] | None = None
    epochs_without_gain: int = 0
    stopped_early: bool = False
    data_fingerprint: str = ""


def train(config: Config, console: Console | None = None, rejects: IO[bytes] | None = None,
          resume: Path | None = None, stop: StopSignal | None = None) -> TrainResult:
    """Train a run from `config`, or (with `resume`: an unfinished run's directory) continue one."""
    started = time.perf_counter()
    stop = stop or StopSignal()
    accelerator = make_accelerator(config.train.device, config.train.precision)
    device, main = accelerator.device, accelerator.is_main_process
    console = console or Console(stderr=True)
    if not main:
        console = Console(stderr=True, quiet=True)  # one process speaks

    # ---------------------------------------------------------------- setup: data
    seed_everything(config.train.seed)
    fields = FieldSpec.from_config(config.data)
    policy = ReadPolicy(config.data.on_error, rejects if main else None)
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
    if config.train.patience and not val_records:
        console.print("[yellow]note:[/] train.patience is ignored: there is no validation data to watch")

    # ---------------------------------------------------------------- setup: the run directory
    # Created now, hidden until complete (runs/.<name>.incomplete): checkpoints live in it.
    runs_root = Path(config.output.dir)
    if resume is None:
        run_name = _broadcast(accelerator, config.output.name or _default_run_name(config))
        config.output.name = run_name
        if main:
            begin_run(runs_root, run_name)
            config.save(staging_dir(runs_root / run_name) / "config.yaml")
        staging = staging_dir(runs_root / run_name)
    else:
        staging = resume
        run_name = config.output.name or ""
    accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- setup: model, inputs, loss, optimizer
    loss_fn = build_loss(config.loss.name, config.loss.params, stats).to(device)
    model, tokenizer = build_model(config.model, len(labels))
    model.init_head(stats.prior())
    set_trainable(model, config.train.freeze_encoder, config.train.train_top_layers)
    model.to(device)
    pad_id = tokenizer.pad_token_id or 0
    cache = cache_root(config.train.cache_dir)
    with accelerator.main_process_first():  # the first process fills the caches, the others read them
        train_ids, cached = cached_token_ids(tokenizer, [r.text for r in train_records], config.model.max_length, cache)
        val_ids, _ = cached_token_ids(tokenizer, [r.text for r in val_records], config.model.max_length, cache)
        console.print(f"token ids {'reused from' if cached else 'cached in'} {cache / 'tokens'}", markup=False)
        train_vectors = val_vectors = None
        if config.train.freeze_encoder:
            train_vectors, val_vectors = frozen_embeddings(model, [train_ids, val_ids], pad_id, config, device,
                                                           cache, console)

    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.train.lr)
    world = accelerator.num_processes
    batches_per_epoch = math.ceil(math.ceil(len(train_ids) / config.train.batch_size) / world)
    steps_per_epoch = math.ceil(batches_per_epoch / config.train.grad_accum)
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = linear_warmup_decay(optimizer, int(config.train.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    core = accelerator.unwrap_model(model)

    rng = np.random.default_rng(config.train.seed)
    state = TrainingState(epoch_rng=rng.bit_generator.state, data_fingerprint=data_fingerprint(train_ids, val_ids,
                                                                                        train_enc, val_enc))
    best_weights: dict[str, torch.Tensor] | None = None
    if resume is not None:
        state, best_weights = restore(resume, core, optimizer, scheduler, state.data_fingerprint)
        console.print(f"resuming {run_name} after epoch {state.epoch}, step {state.step}/{total_steps}",
                      markup=False)
    rng.bit_generator.state = state.epoch_rng
    console.print(
        f"encoder {config.model.encoder}, loss {config.loss.name}, device {device.type}"
        f"{f' x {world} processes' if world > 1 else ''}, precision {_precision_name(accelerator)}, "
        f"{_trained_part(config)}, {config.train.epochs} epochs x {steps_per_epoch} steps", markup=False
    )

    def checkpoint() -> None:
        """Every process arrives here together; the main one writes."""
        accelerator.wait_for_everyone()
        if main:
            current_is_best = state.best_epoch == state.epoch and state.batches_done == 0
            save_checkpoint(staging, asdict(state), core.state_dict(),
                            None if current_is_best or best_weights is None else best_weights,
                            trainer_state(optimizer, scheduler))
        accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- the loop
    train_targets = torch.from_numpy(train_enc.targets)
    train_mask = torch.from_numpy(train_enc.mask)
    lengths = [len(ids) for ids in train_ids]

    def forward(batch: np.ndarray) -> torch.Tensor:
        if train_vectors is not None:
            return model(pooled=train_vectors[batch].to(device))
        input_ids, attention_mask = pad_batch([train_ids[i] for i in batch], pad_id)
        return model(input_ids.to(device), attention_mask.to(device))

    with _progress(console) as progress, stop.on_ctrl_c():
        task = progress.add_task("train", total=total_steps, completed=state.step, loss=float("nan"), rate=0.0)
        for epoch in range(state.epoch + 1, config.train.epochs + 1):
            if state.stopped_early:
                break
            model.train()
            epoch_start = time.perf_counter()
            state.epoch_rng = rng.bit_generator.state
            batches = process_share(length_grouped_batches(lengths, config.train.batch_size, rng), world,
                                    accelerator.process_index)
            for first in range(state.batches_done, len(batches), config.train.grad_accum):
                group = batches[first : first + config.train.grad_accum]
                for i, batch in enumerate(group):
                    # Gradients are averaged across processes only on the group's last micro-batch.
                    with nullcontext() if i == len(group) - 1 else accelerator.no_sync(model):
                        logits = forward(batch)
                        loss = loss_fn(logits, train_targets[batch].to(device), train_mask[batch].to(device))
                        accelerator.backward(loss / len(group))
                    # .item() waits for the device; once a step is cheap next to a transformer step.
                    state.loss_sum += loss.item()
                    state.loss_count += 1
                    state.samples_seen += len(batch) * world
                if config.train.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                state.batches_done = first + len(group)

                elapsed = state.train_seconds + time.perf_counter() - epoch_start
                progress.update(task, advance=1, loss=state.loss_sum / state.loss_count,
                                rate=state.samples_seen / elapsed, description=f"epoch {epoch}/{config.train.epochs}")
                if state.batches_done < len(batches) and _any_process(accelerator, stop.should_stop(state.step)):
                    state.train_seconds += time.perf_counter() - epoch_start
                    checkpoint()
                    raise TrainingInterrupted(interrupted_message(epoch, state.step, total_steps, staging,
                                                                  runs_root / run_name))
            state.train_seconds += time.perf_counter() - epoch_start

            # ------------------------------------------------------------ validate, keep the best
            entry: dict[str, Any] = {"epoch": epoch, "train_loss": state.loss_sum / max(1, state.loss_count)}
            if val_records:
                probs = validation_scores(core, val_vectors, val_ids, pad_id, config, device)
                thresholds = choose_thresholds(config, probs, val_enc.targets, val_enc.mask, labels.labels)
                predicted = thresholds.apply(probs, labels.labels)
                metrics = compute_metrics(val_enc.targets, val_enc.mask, predicted, labels.labels)
                entry.update(val_micro_f1=metrics["micro_f1"], val_macro_f1=metrics["macro_f1"],
                             decisions=thresholds.describe())
                improved = state.best_epoch == 0 or metrics["micro_f1"] > state.best_metrics["micro_f1"]
            else:
                thresholds, metrics, improved = untuned_rule(config), {}, True
            state.log.append(entry)
            state.epoch, state.batches_done, state.loss_sum, state.loss_count = epoch, 0, 0.0, 0
            progress.console.print(_epoch_line(entry, config.train.epochs, improved and bool(val_records)))
            if improved:
                # A copy on the CPU: the kept weights must not change as training goes on.
                best_weights = {k: v.detach().to("cpu", copy=True) for k, v in core.state_dict().items()}
                state.best_epoch, state.best_thresholds = epoch, asdict(thresholds)
                state.best_metrics = {k: v for k, v in metrics.items() if k != "per_label"}
                state.epochs_without_gain = 0
            else:
                state.epochs_without_gain += 1
            if config.train.patience and val_records and state.epochs_without_gain >= config.train.patience:
                state.stopped_early = True
                progress.console.print(f"stopping early: no better validation micro-F1 for "
                                       f"{state.epochs_without_gain} epochs (train.patience)")
            state.epoch_rng = rng.bit_generator.state
            last = epoch == config.train.epochs or state.stopped_early
            if not last and _any_process(accelerator, stop.should_stop(state.step)):  # Ctrl-C in the epoch's last step
                checkpoint()
                raise TrainingInterrupted(interrupted_message(epoch, state.step, total_steps, staging,
                                                              runs_root / run_name))
            every = config.train.checkpoint_every
            if every and epoch % every == 0 and not last:
                checkpoint()

    # ---------------------------------------------------------------- save the run
    assert best_weights is not None
    summary = {
        "best_epoch": state.best_epoch,
        "epochs_trained": state.epoch,
        "stopped_early": state.stopped_early,
        "validation": state.best_metrics,
        "train_records": len(train_records),
        "validation_records": len(val_records),
        "train_seconds": round(state.train_seconds, 2),
        "train_samples_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
        "device": device.type,
        "processes": world,
        "precision": _precision_name(accelerator),
        "wall_seconds": round(time.perf_counter() - started, 2),  # of this invocation (a resumed one: since resuming)
    }
    final = runs_root / run_name
    accelerator.wait_for_everyone()
    if main:
        core.load_state_dict(best_weights)
        labels.save(staging / "labels.json")
        stats.save(staging / "label_stats.json")
        save_model(staging, core, tokenizer)
        DecisionRule(**state.best_thresholds).save(staging / "thresholds.json")
        write_json(staging / "metrics.json", summary)
        (staging / "train_log.jsonl").write_text("".join(_json_line(e) for e in state.log))
        remove_checkpoints(staging)
        final = finish_run(staging)
    accelerator.wait_for_everyone()
    return TrainResult(final.resolve(), summary, main)


# -------------------------------------------------------------------- helpers of the loop


def interrupted_message(epoch: int, step: int, total_steps: int, staging: Path, run: Path) -> str:
    return (f"interrupted in epoch {epoch}, after step {step}/{total_steps}: checkpoint saved in "
            f"{staging / 'checkpoint'}; continue with: mlcls train --resume {run}")


def frozen_embeddings(model, token_ids: list[list[list[int]]], pad_id: int, config: Config, device, cache: Path,
                      console: Console) -> list[torch.Tensor]:
    """Pooled vectors of each list of texts from the frozen encoder: computed once, cached on disk."""
    fingerprint = weights_fingerprint(model.encoder)
    out = []
    for ids in token_ids:
        vectors, hit = cached_embeddings(model, ids, pad_id, config.train.eval_batch_size, device, fingerprint, cache)
        console.print(f"frozen encoder: {len(ids)} embeddings {'reused from' if hit else 'computed, cached in'} "
                      f"{cache / 'embeddings'}", markup=False)
        out.append(torch.from_numpy(vectors))
    return out


def validation_scores(model, vectors: torch.Tensor | None, token_ids, pad_id: int, config: Config, device):
    if vectors is None:
        return score_token_ids(model, token_ids, pad_id, config.train.eval_batch_size, device)
    model.eval()
    with torch.inference_mode():
        probs = torch.sigmoid(model(pooled=vectors.to(device)).float()).cpu().numpy()
    model.train()
    return probs


def process_share(batches: list[np.ndarray], world: int, rank: int) -> list[np.ndarray]:
    """This process's batches: every world-th one. The list is first padded with its own first batches
    to a multiple of the process count (as torch's DistributedSampler pads), so that every process
    takes the same number of steps: data-parallel processes wait for each other at every step."""
    if world == 1:
        return batches
    short = -len(batches) % world
    return [*batches, *batches[:short]][rank::world]


def data_fingerprint(train_ids, val_ids, train_enc, val_enc) -> str:
    """What the checkpoint was trained on: resuming on other data would silently mix two runs."""
    h = hashlib.sha256()
    for ids in (train_ids, val_ids):
        h.update(token_ids_fingerprint(ids).encode())
    for enc in (train_enc, val_enc):
        h.update(np.ascontiguousarray(enc.targets).tobytes())
        h.update(np.ascontiguousarray(enc.mask).tobytes())
    return h.hexdigest()


def trainer_state(optimizer, scheduler) -> dict[str, Any]:
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore(run_dir: Path, model, optimizer, scheduler, fingerprint: str):
    """Load the checkpoint of `run_dir` into model, optimizer and scheduler; return (state, best weights)."""
    path = find_checkpoint(run_dir)
    if path is None:
        raise RunDirError(f"{run_dir}: no checkpoint to resume from")
    saved = load_checkpoint(path)
    try:
        state = TrainingState(**saved.state)
    except TypeError as exc:  # written by another version of mlcls
        raise RunDirError(f"{path / 'state.json'}: not a checkpoint state this mlcls can read ({exc})") from None
    if state.data_fingerprint != fingerprint:
        raise MlclsError(f"{path}: the training or validation data changed since this checkpoint was written "
                         "(same files and settings are needed to resume)")
    try:
        model.load_state_dict(saved.model)
        optimizer.load_state_dict(saved.trainer["optimizer"])
        scheduler.load_state_dict(saved.trainer["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise RunDirError(f"{path}: does not match this model ({str(exc).splitlines()[0]})") from None
    torch.set_rng_state(saved.trainer["torch_rng"])
    if "cuda_rng" in saved.trainer and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved.trainer["cuda_rng"])
    best = saved.best if saved.best is not None else {k: v.clone() for k, v in saved.model.items()}
    return state, best


def _any_process(accelerator, flag: bool) -> bool:
    """True on every process when it is true on one: all must stop at the same step, or they deadlock."""
    if accelerator.num_processes == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)


def _broadcast(accelerator, value: str) -> str:
    """The main process's value on every process (a timestamped run name may differ between them)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _trained_part(config: Config) -> str:
    if config.train.freeze_encoder:
        return "head only (frozen encoder)"
    if config.train.train_top_layers is not None:
        return f"top {config.train.train_top_layers} layers + head"
    return "all layers"



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

    on_cuda, precision = choose_precision(device, precision)
    return Accelerator(cpu=not on_cuda, mixed_precision="no" if precision == "fp32" else precision)


def choose_precision(device: str, precision: str) -> tuple[bool, str]:
    """(on a CUDA GPU?, fp32|bf16|fp16): auto is bf16 where the hardware runs it fast, fp16 on older GPUs,
    fp32 on CPUs without native bf16."""
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
    return on_cuda, precision


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
    return [g for g in groups if g["params"]]  # a frozen encoder leaves its groups empty


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
