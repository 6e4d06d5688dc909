"""`mlcls train`: options -> config -> the training loop -> where the run was saved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlcls.cli.options import ConfigFile, OnError, Overrides, Rejects, choices, option, value_of
from mlcls.cli.output import check_apart, err, out, print_notes, rejects_file
from mlcls.config import Config, check_remote_code_asked, load_config
from mlcls.errors import MlclsError, shell_command
from mlcls.run.layout import CONFIG

Precision = choices("Precision", ("auto", "bf16", "fp16", "fp32"))
FreezeEncoder = Annotated[bool | None, option("train.freeze_encoder", "--freeze-encoder", show_default=False)]
TrainData = Annotated[
    Path | None, typer.Option(help="Training file, or a folder with train.jsonl (and test.jsonl, validation.jsonl); "
                              "it replaces the config's data: a split it does not give is none.")
]
Resume = Annotated[Path | None, typer.Option("--resume", help="Continue an interrupted run (runs/<name>) from its "
                                             "checkpoint; it keeps its own config.")]
TrustRemoteCode = Annotated[bool, typer.Option(
    "--trust-remote-code", help="Allow code from the encoder's repository (sets model.trust_remote_code) and from "
    "the run of --init-from; with --resume, the code that the run's own config asks for. Only for sources you "
    "trust.")]
InitFrom = Annotated[Path | None, option("model.init_from", "--init-from", show_default=False)]
KeepLabels = Annotated[bool | None, option("model.init_keep_labels", "--init-keep-labels", show_default=False)]


def train(
    config: ConfigFile = None,
    set_: Overrides = None,
    loss: Annotated[str | None, option("loss.name", "--loss")] = None,
    epochs: Annotated[int | None, option("train.epochs", "--epochs", min=1)] = None,
    lr: Annotated[float | None, option("train.lr", "--lr")] = None,
    batch_size: Annotated[int | None, option("train.batch_size", "--batch-size", min=1)] = None,
    max_length: Annotated[int | None, option("model.max_length", "--max-length", min=8)] = None,
    model: Annotated[str | None, option("model.encoder", "--model")] = None,
    data: TrainData = None,
    out_dir: Annotated[Path | None, option("output.dir", "--out")] = None,
    name: Annotated[str | None, option("output.name", "--name")] = None,
    seed: Annotated[int | None, option("train.seed", "--seed")] = None,
    freeze_encoder: FreezeEncoder = None,
    train_top_layers: Annotated[int | None, option("train.train_top_layers", "--train-top-layers", min=1)] = None,
    patience: Annotated[int | None, option("train.patience", "--patience", min=0)] = None,
    grad_accum: Annotated[int | None, option("train.grad_accum", "--grad-accum", min=1)] = None,
    precision: Annotated[Precision | None, option("train.precision", "--precision")] = None,
    resume: Resume = None,
    init_from: InitFrom = None,
    init_keep_labels: KeepLabels = None,
    on_error: OnError = None,
    rejects: Rejects = None,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Fine-tune a classifier and write a self-contained run directory (runs/<name>, runs/latest).

    Data-parallel on several GPUs (or CPU processes): accelerate launch --multi_gpu --num_processes N -m mlcls train
    """
    options: dict[str, Any] = {
        "loss.name": loss, "train.epochs": epochs, "train.lr": lr, "train.batch_size": batch_size,
        "model.max_length": max_length, "model.encoder": model, "output.dir": out_dir and str(out_dir),
        "output.name": name, "train.seed": seed, "data.on_error": value_of(on_error),
        "train.freeze_encoder": freeze_encoder, "train.train_top_layers": train_top_layers,
        "train.patience": patience, "train.grad_accum": grad_accum, "train.precision": value_of(precision),
        "model.init_from": init_from and str(init_from), "model.init_keep_labels": init_keep_labels,
        **_data_options(data),
    }
    clears = _data_clears(options) if resume is None else []  # (with --resume, --data is refused below)
    cfg, resume_dir = _resolve(config, [*clears, *(set_ or [])], options, resume, trust_remote_code)
    check_apart({"data.train": cfg.data.train, "data.validation": cfg.data.validation, "data.test": cfg.data.test,
                 "--config": config}, {"--rejects": rejects},
                {"model.init_from": cfg.model.init_from, "the run to resume": resume_dir})
    print_notes(cfg.notes)
    # Function-local: the training loop pulls in torch and transformers, which `mlcls --help` must not load.
    from mlcls.training.entry import train as run_training
    from mlcls.training.host_malloc import keep_freed_memory

    keep_freed_memory()  # glibc keeps each step's freed activations for the next (unless MALLOC_* is set)
    with rejects_file(rejects) as rejected:
        result = run_training(cfg, err, rejected, resume=resume_dir, trust_remote_code=bool(trust_remote_code))
    if not result.main_process:
        return
    if result.metrics["validation"]:
        out.print(_validation_line(result.metrics), markup=False)
    out.print(f"run saved to {result.run_dir} ({result.metrics['wall_seconds']:.0f} s); "
              f"next: {shell_command('mlcls', 'eval', result.run_dir)}", markup=False)  # a name may hold [brackets]


def _validation_line(metrics: dict[str, Any]) -> str:
    val, folds = metrics["validation"], metrics.get("fold_best_epochs")  # cross-fitted: each fold kept its epoch
    kept = f"out-of-fold, the folds' epochs {', '.join(map(str, folds))}" if folds else f"epoch {metrics['best_epoch']}"
    # The rule's cut-offs were tuned on these very articles: a little optimistic, which the line says (the test
    # figure to report is `mlcls eval`'s).
    return (f"validation ({kept}; the decision rule tuned on it): micro-F1 {val['micro_f1']:.4f}  "
            f"macro-F1 {val['macro_f1']:.4f}")


def _resolve(config: Path | None, set_: list[str] | None, options: dict[str, Any],
             resume: Path | None, trust_remote_code: bool = False) -> tuple[Config, Path | None]:
    """The config to train with, and the run to resume (None: a new run). A resumed run keeps the config it
    was started with, so any other setting is a usage error rather than silently ignored.

    --trust-remote-code: a new run's model.trust_remote_code (the user's own encoder); on --resume, the user's
    leave for the run's config.yaml to ask for remote code. An unfinished run may come from someone else, and
    its config is its author's, not the user's: as predict does, mlcls then runs none of its code unless told.
    The same holds for a run to start from (model.init_from): the code it carries runs only with the flag on
    this command line, not with a config's model.trust_remote_code, which was written for the user's encoder."""
    if resume is None:
        if trust_remote_code:
            options = {**options, "model.trust_remote_code": True}
        from mlcls.run.parent import check_parent_code

        resolved = load_config(config, set_ or [], options)
        check_remote_code_asked(resolved, config)
        check_parent_code(resolved.model.init_from, trust_remote_code)
        return resolved, None
    given = [k for k, v in options.items() if v is not None] + (["--config"] if config else []) + (
        ["--set"] if set_ else [])
    if given:
        raise typer.BadParameter(f"--resume continues a run with its own config; remove the other "
                                 f"settings ({', '.join(given)})")
    from mlcls.run.find import resumable_run
    from mlcls.run.model_files import check_remote_code

    resume_dir = resumable_run(resume)
    resumed = load_config(resume_dir / CONFIG)
    check_remote_code(resume_dir, [], resumed, trust_remote_code)
    return resumed, resume_dir


DATA_SPLITS = (("data.test", "test.jsonl"), ("data.validation", "validation.jsonl"))  # a --data folder's


def _data_options(data: Path | None) -> dict[str, Any]:
    """--data as config keys: a file is data.train; a folder gives whichever of its split files exist."""
    if data is None:
        return {}
    if not data.is_dir():
        return {"data.train": str(data)}
    train_file = data / "train.jsonl"
    if not train_file.is_file():
        raise MlclsError(f"{train_file}: not found (--data names a folder without train.jsonl)")
    options: dict[str, Any] = {"data.train": str(train_file)}
    for key, filename in DATA_SPLITS:
        if (data / filename).is_file():
            options[key] = str(data / filename)
    return options


def _data_clears(options: dict[str, Any]) -> list[str]:
    """--data replaces the config's data: the splits it does not give (a file: test and validation; a folder:
    those it lacks) are cleared, so that the config's test file (the demo's, by default) is not what `mlcls eval`
    later scores as this data's, nor its validation file what thresholds are tuned on. As --set items placed
    before the user's own, so that a --set data.test=... still wins. `options`: the command's, where
    _data_options put what --data gives (data.train always; nothing without --data, and nothing is cleared)."""
    if options.get("data.train") is None:
        return []
    return [f"{key}=null" for key, _ in DATA_SPLITS if options.get(key) is None]
