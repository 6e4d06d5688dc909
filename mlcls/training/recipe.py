"""One model's training, read top to bottom: read the data -> prepare -> fit (epochs: steps, then validate and keep the
best) -> finish (write the run).

The data is read and validated before anything heavy exists, so a bad file fails in a second. Devices,
precision and data parallelism live in devices.py; this file is the recipe (entry.py chooses it or
cross-fitting). Ctrl-C (or SIGTERM) is a request read
between optimizer steps: the loop checkpoints and raises `TrainingInterrupted` from one place.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mlcls.config import Config
from mlcls.data.batching import length_grouped_batches
from mlcls.decision.metrics import compute_metrics
from mlcls.decision.rules import DecisionRule
from mlcls.decision.tuning import choose_thresholds, untuned_rule
from mlcls.errors import resume_command
from mlcls.model.attention import use_training_attention
from mlcls.model.classifier import build_model, check_max_length, set_trainable
from mlcls.model.lexical import fit_lexical
from mlcls.model.losses import build_loss
from mlcls.run.checkpoint import remove_checkpoints, save_checkpoint
from mlcls.run.files import (
    write_label_stats,
    write_labels,
    write_metrics,
    write_rule,
    write_train_log,
    write_tuning_scores,
)
from mlcls.run.layout import CHECKPOINT, TRACKING, crossfit_parent, tracking_name
from mlcls.run.lifecycle import discard_unstarted, finish_run, held_runs, release_run, run_write_error
from mlcls.run.model_card import write_model_card
from mlcls.run.model_files import save_model
from mlcls.run.provenance import write_provenance
from mlcls.training.claim import claim_run
from mlcls.training.data import TrainingData, TrainingInterrupted, TrainResult
from mlcls.training.devices import (
    any_process,
    end_tracking,
    flat_hparams,
    make_accelerator,
    precision_name,
    process_share,
    start_tracking,
)
from mlcls.training.fusion import fuse_lexical
from mlcls.training.hooks import EpochEnd, OnEpoch
from mlcls.training.init_from import read_start, start_data, start_model
from mlcls.training.inputs import Inputs, article_lengths, batch_logits, prepare_inputs, validation_scores
from mlcls.training.interrupt import StopSignal
from mlcls.training.optimizer import learning_rates, linear_warmup_decay, param_groups
from mlcls.training.resume import TrainingState, data_fingerprint, restore, seed_everything, trainer_state
from mlcls.training.sampling import epoch_articles, epoch_size, repeat_factors


@dataclass
class Trainer:
    """Everything `fit` and `finish` work on, built by `prepare`."""

    config: Config
    data: TrainingData
    accelerator: Any
    console: Console
    staging: Path  # runs/.<name>.incomplete: checkpoints live here until the run is complete
    final: Path  # runs/<name>
    model: Any  # as prepared by Accelerate (wrapped under data parallelism)
    core: Any  # the MultiLabelClassifier itself
    tokenizer: Any
    loss_fn: Any
    optimizer: Any
    scheduler: Any
    inputs: Inputs  # each article's windows of token ids (or a frozen encoder's pooled vectors)
    pad_id: int
    rng: np.random.Generator  # batch order
    repeats: np.ndarray | None  # train.repeat_threshold: each training article's repeat factor (sampling.py)
    state: TrainingState
    best_weights: dict[str, torch.Tensor] | None
    steps_per_epoch: int
    total_steps: int

    @property
    def device(self):
        return self.accelerator.device

    @property
    def split_passes(self) -> bool:
        """Whether a batch's windows may take two passes, each padded to its own width (training_passes): on a
        CPU, which pays for every padded token (a GPU pays per kernel launch; unmeasured there), and with the
        model unwrapped: data parallelism's wrapper (which Accelerate puts on even one process when LOCAL_RANK is
        set) is built for one forward before each backward."""
        return self.device.type == "cpu" and self.model is self.core


def train_one(config: Config, data: TrainingData, console: Console, resume: Path | None,
              stop: StopSignal, on_epoch: OnEpoch | None = None) -> TrainResult:
    """Train one model on `data` into a run (or, with `resume`: an unfinished run's directory, continue it).
    `on_epoch`: called after every epoch (hooks.py); an exception it raises ends the training there."""
    started = time.perf_counter()
    accelerator = make_accelerator(config.train.device, config.train.precision)
    held_before = held_runs()
    try:
        try:
            trainer = prepare(config, data, accelerator, console, resume)
        except BaseException:  # set up failed before the first step: no run to resume, so no folder left
            if resume is None:
                for staging in held_runs() - held_before:
                    discard_unstarted(staging)
            raise
        with _progress(console) as progress, stop.on_signals():
            fit(trainer, progress, stop, on_epoch)
        return finish(trainer, started)
    finally:  # the run name is free again once this training ends, however it ends
        end_tracking(accelerator)
        for staging in held_runs() - held_before:
            release_run(staging)


# -------------------------------------------------------------------- prepare


def prepare(config: Config, data: TrainingData, accelerator, console: Console, resume: Path | None) -> Trainer:
    """The run directory, the model and its inputs, the loss, the optimizer; a checkpoint's state on resume."""
    seed_everything(config.train.seed)
    start = read_start(config)  # model.init_from: the run checked to fit, before this run is claimed
    staging, final = claim_run(config, resume, accelerator)
    device = accelerator.device
    data = start_data(start, data, console if crossfit_parent(final) is None else None)  # a fold's: said once
    loss_fn = build_loss(config.loss.name, config.loss.params, data.stats).to(device)
    if start is None:
        model, tokenizer = build_model(config.model, data.labels.labels)
        model.init_head(data.stats.prior())
    else:  # the run's model, a head row per label of this data
        model, tokenizer = start_model(config, data, start)
    check_max_length(model, config.model)
    set_trainable(model, config.train.freeze_encoder, config.train.train_top_layers)
    model.to(device)
    use_training_attention(model, device)  # eager on a CPU: fused attention trains slowly there (attention.py)
    pad_id = tokenizer.pad_token_id or 0
    inputs = prepare_inputs(config, data, accelerator, model, tokenizer, pad_id, console)

    repeats, articles_per_epoch = None, len(inputs.train)
    if config.train.repeat_threshold > 0:
        repeats = repeat_factors(data.stats, data.train_enc.targets, data.train_enc.mask,
                                 config.train.repeat_threshold)
        articles_per_epoch = epoch_size(repeats)
        console.print(f"rare topics oversampled (train.repeat_threshold {config.train.repeat_threshold:g}): "
                      f"{articles_per_epoch} article visits an epoch for {len(repeats)} articles "
                      f"({articles_per_epoch / len(repeats):.2f} each)", markup=False)
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.train.lr)
    batches_per_epoch = math.ceil(math.ceil(articles_per_epoch / config.train.batch_size) / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches_per_epoch / config.train.grad_accum)
    total_steps = steps_per_epoch * config.train.epochs
    scheduler = linear_warmup_decay(optimizer, int(config.train.warmup_ratio * total_steps), total_steps)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    core = accelerator.unwrap_model(wrapped)

    rng = np.random.default_rng(config.train.seed)
    fingerprint = data_fingerprint(inputs.train, inputs.val, data.train_enc, data.val_enc)
    state, best_weights = TrainingState(epoch_rng=rng.bit_generator.state, data_fingerprint=fingerprint,
                                        processes=accelerator.num_processes), None
    if resume is not None:
        state, best_weights = restore(resume, core, optimizer, scheduler, fingerprint, accelerator.num_processes,
                                      accelerator.scaler)
        console.print(f"resuming {final.name} after epoch {state.epoch}, step {state.step}/{total_steps}",
                      markup=False)
    rng.bit_generator.state = state.epoch_rng
    world = accelerator.num_processes
    console.print(
        f"encoder {config.model.encoder}, loss {config.loss.name}, device {device.type}"
        f"{f' x {world} processes' if world > 1 else ''}, precision {precision_name(accelerator)}, "
        f"{_trained_part(config)}, {config.train.epochs} epochs x {steps_per_epoch} steps", markup=False
    )
    if config.train.report_to:  # logs under the staging folder travel with the run when it is renamed
        start_tracking(accelerator, config.train.report_to, staging / TRACKING, tracking_name(final),
                       flat_hparams(config.to_dict()))
    return Trainer(config, data, accelerator, console, staging, final, wrapped, core, tokenizer, loss_fn, optimizer,
                   scheduler, inputs, pad_id, rng, repeats, state, best_weights,
                   steps_per_epoch, total_steps)


# -------------------------------------------------------------------- fit


def fit(t: Trainer, progress: Progress, stop: StopSignal, on_epoch: OnEpoch | None = None) -> None:
    """Epochs until the last one, or early stopping; Ctrl-C or SIGTERM checkpoints and raises TrainingInterrupted."""
    task = progress.add_task("train", total=t.total_steps, completed=t.state.step, loss=float("nan"), rate=0.0)
    epochs = t.config.train.epochs
    for epoch in range(t.state.epoch + 1, epochs + 1):
        if t.state.stopped_early:
            break
        train_epoch(t, epoch, progress, task, stop)
        end_of_epoch(t, epoch, progress)
        last = epoch == epochs or t.state.stopped_early
        if not last and any_process(t.accelerator, stop.should_stop(t.state.step)):  # Ctrl-C in its last step
            interrupt(t, epoch, stop)
        every = t.config.train.checkpoint_every
        if every and epoch % every == 0 and not last:
            checkpoint(t)
        if on_epoch is not None:  # after the checkpoint: a training the hook stops here can be resumed from it
            on_epoch(EpochEnd(epoch, epochs, dict(t.state.log[-1]), dict(t.state.best_metrics), last))


def train_epoch(t: Trainer, epoch: int, progress: Progress, task, stop: StopSignal) -> None:
    """One epoch of optimizer steps, from where the state says this epoch stands."""
    cfg, state, accelerator = t.config.train, t.state, t.accelerator
    t.model.train()
    epoch_start = time.perf_counter()
    state.epoch_rng = t.rng.bit_generator.state
    lengths = article_lengths(t.inputs)
    if t.repeats is None:  # every article once (no draw: the batch order is what it was before the option)
        batches = length_grouped_batches(lengths, cfg.batch_size, t.rng)
    else:  # rare topics' articles repeated: batches of indices into the epoch's visits, mapped back to articles
        visits = epoch_articles(t.repeats, t.rng)
        batches = [visits[b] for b in length_grouped_batches([lengths[i] for i in visits], cfg.batch_size, t.rng)]
    batches = process_share(batches, accelerator.num_processes, accelerator.process_index)
    targets, mask = torch.from_numpy(t.data.train_enc.targets), torch.from_numpy(t.data.train_enc.mask)
    for first in range(state.batches_done, len(batches), cfg.grad_accum):
        group = batches[first : first + cfg.grad_accum]
        step_loss = 0.0
        for i, batch in enumerate(group):
            # Gradients are averaged across processes only on the group's last micro-batch.
            with nullcontext() if i == len(group) - 1 else accelerator.no_sync(t.model):
                logits = batch_logits(t.model, t.inputs, batch, t.pad_id, t.device, t.config.model.chunk_pooling,
                                      t.split_passes)
                loss = t.loss_fn(logits, targets[batch].to(t.device), mask[batch].to(t.device))
                accelerator.backward(loss / len(group))
            # .item() waits for the device; once a step is cheap next to a transformer step.
            item = loss.item()
            step_loss += item
            state.loss_sum += item
            state.loss_count += 1
            state.samples_seen += len(batch) * accelerator.num_processes
        if cfg.grad_clip > 0:
            accelerator.clip_grad_norm_(t.model.parameters(), cfg.grad_clip)
        rates = learning_rates(t.optimizer) if cfg.report_to else {}  # the rates this step uses
        t.optimizer.step()
        t.scheduler.step()
        t.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batches_done = first + len(group)
        if cfg.report_to:  # this process's loss (the main process logs)
            accelerator.log({"train/loss": step_loss / len(group), **rates}, step=state.step)

        elapsed = state.train_seconds + time.perf_counter() - epoch_start
        progress.update(task, advance=1, loss=state.loss_sum / state.loss_count,
                        rate=state.samples_seen / elapsed, description=f"epoch {epoch}/{cfg.epochs}")
        if state.batches_done < len(batches) and any_process(accelerator, stop.should_stop(state.step)):
            state.train_seconds += time.perf_counter() - epoch_start
            interrupt(t, epoch, stop)
    state.train_seconds += time.perf_counter() - epoch_start


def end_of_epoch(t: Trainer, epoch: int, progress: Progress) -> None:
    """Validate, tune the decision rule, keep the weights of the best epoch so far, decide on early stopping."""
    state, config = t.state, t.config
    entry: dict[str, Any] = {"epoch": epoch, "train_loss": state.loss_sum / max(1, state.loss_count)}
    if t.data.validation:
        rule, metrics = validate(t)
        entry.update(val_micro_f1=metrics["micro_f1"], val_macro_f1=metrics["macro_f1"], decisions=rule.describe())
        key = config.train.select_metric
        improved = state.best_epoch == 0 or metrics[key] > state.best_metrics[key]
    else:  # nothing to compare with: the last epoch is kept
        rule, metrics, improved = untuned_rule(config), {}, True
    state.log.append(entry)
    if config.train.report_to:  # at the run's step count: some trackers (wandb) want steps that only grow
        t.accelerator.log({"epoch": epoch, "train/epoch_loss": entry["train_loss"],
                           **{f"val/{k}": float(metrics[k]) for k in TRACKED_METRICS if k in metrics}},
                          step=state.step)
    state.epoch, state.batches_done, state.loss_sum, state.loss_count = epoch, 0, 0.0, 0
    progress.console.print(_epoch_line(entry, config.train.epochs, improved and bool(t.data.validation)))
    if improved:
        # A copy on the CPU: the kept weights must not change as training goes on.
        t.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in t.core.state_dict().items()}
        state.best_epoch, state.best_thresholds = epoch, asdict(rule)
        state.best_metrics = {k: v for k, v in metrics.items() if k != "per_label"}
        state.epochs_without_gain = 0
    else:
        state.epochs_without_gain += 1
    if config.train.patience and t.data.validation and state.epochs_without_gain >= config.train.patience:
        state.stopped_early = True
        progress.console.print(f"stopping early: no better validation {config.train.select_metric} for "
                               f"{state.epochs_without_gain} epochs (train.patience)")
    state.epoch_rng = t.rng.bit_generator.state


# The validation figures sent to the trackers after each epoch (train.report_to).
TRACKED_METRICS = ("micro_f1", "macro_f1", "micro_precision", "micro_recall", "macro_precision", "macro_recall",
                   "samples_f1", "hamming_loss", "subset_accuracy")


def validate(t: Trainer) -> tuple[DecisionRule, dict[str, Any]]:
    """The decision rule tuned on this epoch's validation scores, and the metrics it reaches there."""
    labels, enc = t.data.labels.labels, t.data.val_enc
    probs = validation_scores(t.core, t.inputs, t.pad_id, t.config, t.device)
    rule = choose_thresholds(t.config, probs, enc.targets, enc.mask, labels, t.data.stats.prior())
    metrics = compute_metrics(enc.targets, enc.mask, rule.apply(probs, labels), labels)
    return rule, metrics


def checkpoint(t: Trainer) -> None:
    """Every process arrives here together; the main one writes."""
    t.accelerator.wait_for_everyone()
    if t.accelerator.is_main_process:
        state = t.state
        current_is_best = state.best_epoch == state.epoch and state.batches_done == 0
        save_checkpoint(t.staging, asdict(state), t.core.state_dict(),
                        None if current_is_best or t.best_weights is None else t.best_weights,
                        trainer_state(t.optimizer, t.scheduler, t.accelerator.scaler))
    t.accelerator.wait_for_everyone()


def interrupt(t: Trainer, epoch: int, stop: StopSignal) -> None:
    """The one way out of a stopped run: save a checkpoint and say how to continue."""
    checkpoint(t)
    resume = resume_command(t.final, t.accelerator.num_processes)
    raise TrainingInterrupted(f"{stop.what} in epoch {epoch}, after step {t.state.step}/{t.total_steps}: checkpoint "
                              f"saved in {t.staging / CHECKPOINT}; continue with: {resume}", stop.exit_code)


# -------------------------------------------------------------------- finish


def finish(t: Trainer, started: float) -> TrainResult:
    """Write the kept epoch's model, labels, rule and metrics; rename the run into place."""
    state, accelerator = t.state, t.accelerator
    assert t.best_weights is not None
    summary = {
        "best_epoch": state.best_epoch,
        "epochs_trained": state.epoch,
        "stopped_early": state.stopped_early,
        "validation": state.best_metrics,
        "train_records": len(t.data.train),
        "validation_records": len(t.data.validation),
        "train_seconds": round(state.train_seconds, 2),
        "train_samples_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
        "device": t.device.type,
        "processes": accelerator.num_processes,
        "precision": precision_name(accelerator),
        "wall_seconds": round(time.perf_counter() - started, 2),  # of this invocation (a resumed one: since resuming)
    }
    if t.repeats is not None:
        summary["article_visits_per_epoch"] = epoch_size(t.repeats)
    if t.config.model.long_text != "truncate":  # what reading long texts whole costs: windows per article
        summary["windows_per_article"] = round(t.inputs.windows_per_article, 3)
    final = t.final
    end_tracking(accelerator)  # the trackers' files closed before their folder is renamed
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        staging = t.staging
        try:
            write_run_files(t, summary)
        except Exception as exc:  # a full disk or a read-only folder: one line that says what is kept
            error = run_write_error(staging, staging, "", exc)
            if error is exc:
                raise
            raise error from None
        final = finish_run(staging)
    accelerator.wait_for_everyone()
    return TrainResult(final.resolve(), summary, accelerator.is_main_process)


# -------------------------------------------------------------------- helpers of the stages


def write_run_files(t: Trainer, summary: dict[str, Any]) -> None:
    """The kept epoch's model, labels, rule, scores, metrics and log, into the staging folder."""
    staging, state = t.staging, t.state
    t.core.load_state_dict(t.best_weights)
    write_labels(staging, t.data.labels)
    write_label_stats(staging, t.data.stats)
    save_model(staging, t.core, t.tokenizer)
    rule = DecisionRule(**state.best_thresholds)
    if t.data.validation:  # the scores the rule was tuned on, for choosing rules offline (bench_thresholds)
        probs = validation_scores(t.core, t.inputs, t.pad_id, t.config, t.device)
        parts = {}
        if t.config.model.lexical == "tfidf":
            rule, probs, parts = lexical_fusion(t, probs, summary)
        write_tuning_scores(staging, probs, t.data.val_enc, [r.id for r in t.data.validation], **parts)
    write_rule(staging, rule)
    write_metrics(staging, summary)
    write_train_log(staging, state.log)
    if crossfit_parent(t.final) is None:  # a cross-fitted run describes itself once, not per fold or refit
        write_provenance(staging, t.config)
        write_model_card(staging)
    remove_checkpoints(staging)


def lexical_fusion(t: Trainer, encoder_probs: np.ndarray, summary: dict[str, Any]):
    """model.lexical: fit TF-IDF + logistic regression on the training records and fuse it with the kept epoch's
    validation scores (fusion.py). Returns (rule, blended scores, the parts for tuning_scores.npz)."""
    train_enc, val_enc, labels = t.data.train_enc, t.data.val_enc, t.data.labels.labels
    model = fit_lexical([r.text for r in t.data.train], train_enc.targets, train_enc.mask,
                        t.config.model.lexical_c)
    lexical_probs = model.probabilities([r.text for r in t.data.validation])
    fusion = fuse_lexical(t.config, model, encoder_probs, lexical_probs, val_enc, labels, t.data.stats.prior(),
                          t.staging)
    metrics = compute_metrics(val_enc.targets, val_enc.mask, fusion.rule.apply(fusion.probs, labels), labels)
    summary["validation"] = {k: v for k, v in metrics.items() if k != "per_label"}
    summary.update(fusion.summary)
    t.console.print(f"lexical fusion: weight {model.weight:.1f} ({model.blend_space}); "
                    f"validation micro-F1 {metrics['micro_f1']:.4f}  "
                    f"macro-F1 {metrics['macro_f1']:.4f}  ({fusion.rule.describe()})", markup=False)
    return fusion.rule, fusion.probs, fusion.parts


def _trained_part(config: Config) -> str:
    if config.train.freeze_encoder:
        return "head only (frozen encoder)"
    if config.train.train_top_layers is not None:
        return f"top {config.train.train_top_layers} layers + head"
    return "all layers"


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


