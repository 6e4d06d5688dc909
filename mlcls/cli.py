"""The `mlcls` command line: parse options, resolve the config, call one function, render the result.

torch and transformers are imported inside the commands, never at module level: `mlcls --help` and
usage errors answer at once.

Exit codes: 0 success, 1 runtime or data error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlcls.data import reuters as reuters_choices  # light: standard library only
from mlcls.errors import Interrupted, MlclsError

app = typer.Typer(
    name="mlcls",
    help="Train, evaluate and apply multi-label text classifiers (zero, one or many topics per article).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Records per inference batch.")]
Int8 = Annotated[bool, typer.Option("--int8", help="CPU: run the encoder's linear layers in int8 (faster; "
                                    "check the accuracy cost with `mlcls eval --int8`).")]
ThresholdOpt = Annotated[
    float | None, typer.Option("--threshold", min=0.0, max=1.0, help="One fixed cut-off instead of the run's rule.")
]


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum: how Typer spells an option that takes one of a few words."""
    return Enum(name, {value: value for value in values}, type=str)


OnErrorPolicy = _choices("OnErrorPolicy", ("fail", "skip"))
OutputFormat = _choices("OutputFormat", ("jsonl", "csv"))
Precision = _choices("Precision", ("auto", "bf16", "fp16", "fp32"))
OnError = Annotated[
    OnErrorPolicy | None,
    typer.Option("--on-error", help="A bad record: stop (fail), or skip and count it (skip). Default: the config's "
                 "data.on_error (predict: fail)."),
]
Rejects = Annotated[Path | None, typer.Option("--rejects", help="With --on-error skip: copy skipped lines here.")]
TopK = Annotated[int | None, typer.Option("--top-k", min=1, help="The K best labels per article instead.")]
MinLabels = Annotated[
    int | None, typer.Option("--min-labels", min=0, max=1, help="1: an article left empty gets its best label.")
]


def _guarded(debug: bool, action: Callable[[], Any]) -> Any:
    """Run a command body; a user-fixable error becomes one line on stderr and exit code 1."""
    try:
        return action()
    except MlclsError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Interrupted as exc:  # Ctrl-C with the work so far kept: the message says how to go on
        err.print(str(exc), markup=False)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(130) from None
    except BrokenPipeError:
        # `mlcls predict big.jsonl | head`: the reader left. Not an error; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort, typer.BadParameter):  # a usage error: Typer prints it, exit 2
        raise
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if debug:
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                  markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")] = None,
    loss: Annotated[str | None, typer.Option(help="Loss name (see `mlcls losses`).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    lr: Annotated[float | None, typer.Option(help="Encoder learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per text.")] = None,
    model: Annotated[str | None, typer.Option(help="Encoder: hub name or local folder.")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Training file, or a folder with train.jsonl (and test.jsonl, validation.jsonl)."),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for runs (default: runs).")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: timestamp and loss).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    freeze_encoder: Annotated[
        bool | None, typer.Option("--freeze-encoder", help="Train only the head, on cached encoder embeddings.",
                                  show_default=False)] = None,
    train_top_layers: Annotated[
        int | None, typer.Option("--train-top-layers", min=1, help="Fine-tune only the top N transformer layers.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(min=0, help="Stop after N epochs without a better validation micro-F1 (0: off).")
    ] = None,
    grad_accum: Annotated[int | None, typer.Option("--grad-accum", min=1, help="Micro-batches per step.")] = None,
    precision: Annotated[
        Precision | None, typer.Option(help="Mixed precision (auto: bf16 where the hardware has it, else fp32).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue an interrupted run (runs/<name>) from its checkpoint; "
                                  "it keeps its own config.")] = None,
    on_error: OnError = None,
    rejects: Rejects = None,
    debug: Debug = False,
) -> None:
    """Fine-tune a classifier and write a self-contained run directory (runs/<name>, runs/latest).

    Data-parallel on several GPUs (or CPU processes): accelerate launch --multi_gpu --num_processes N -m mlcls train
    """

    def body() -> None:
        from mlcls.config import load_config

        options: dict[str, Any] = {
            "loss.name": loss, "train.epochs": epochs, "train.lr": lr, "train.batch_size": batch_size,
            "model.max_length": max_length, "model.encoder": model, "output.dir": _str(out_dir),
            "output.name": name, "train.seed": seed, "data.on_error": on_error and on_error.value,
            "train.freeze_encoder": freeze_encoder, "train.train_top_layers": train_top_layers,
            "train.patience": patience, "train.grad_accum": grad_accum,
            "train.precision": precision and precision.value,
        }
        options.update(_data_options(data))
        resume_dir = None
        if resume is not None:
            given = [k for k, v in options.items() if v is not None] + (["--config"] if config else []) + (
                ["--set"] if set_ else [])
            if given:
                raise typer.BadParameter(f"--resume continues a run with its own config; remove the other "
                                         f"settings ({', '.join(given)})")
            from mlcls.inference.rundir import resumable_run

            resume_dir = resumable_run(resume)
            cfg = load_config(resume_dir / "config.yaml")
        else:
            cfg = load_config(config, set_ or [], options)
        for note in cfg.notes:
            err.print(f"note: {note}", markup=False)

        from mlcls.training.loop import train as run_training

        with _rejects_file(rejects) as rejected:
            result = run_training(cfg, err, rejected, resume=resume_dir)
        if not result.main_process:
            return
        val = result.metrics["validation"]
        if val:
            out.print(f"validation (epoch {result.metrics['best_epoch']}): micro-F1 {val['micro_f1']:.4f}  "
                      f"macro-F1 {val['macro_f1']:.4f}")
        out.print(f"run saved to {result.run_dir} ({result.metrics['wall_seconds']:.0f} s); "
                  f"next: mlcls eval {result.run_dir}")

    _guarded(debug, body)


@app.command("eval")
def eval_(
    runs: Annotated[list[Path] | None, typer.Argument(help="Run directory (default: runs/latest); several with "
                                                      "--compare.", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled file (default: the run's data.test).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")] = None,
    threshold: ThresholdOpt = None,
    top_k: TopK = None,
    min_labels: MinLabels = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG figures into this folder.")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Score every RUN given; one column per run.")] = False,
    labels: Annotated[str | None, typer.Option(help="Per-label table: only these labels (comma-separated).")] = None,
    top: Annotated[int, typer.Option(min=0, help="Per-label table: the N most and N least frequent (0: all).")] = 15,
    on_error: OnError = None,
    rejects: Rejects = None,
    batch_size: BatchSize = 64,
    int8: Int8 = False,
    debug: Debug = False,
) -> None:
    """Score a run on labelled data: F1, precision, recall, ranking, no-topic articles, per label."""

    def body() -> None:
        from mlcls.data.records import ReadPolicy
        from mlcls.evaluation.evaluate import evaluate
        from mlcls.evaluation.report import compare_table, per_label_table, summary_table
        from mlcls.inference.decision import with_overrides
        from mlcls.inference.loading import load_run

        if len(runs or []) > 1 and not compare:
            raise MlclsError("several runs given: add --compare to score them side by side")
        reports, names = [], []
        for run in runs or [None]:
            loaded = load_run(run, int8=int8)
            rule = with_overrides(loaded.thresholds, threshold, top_k, min_labels)
            with _rejects_file(rejects) as rejected:
                policy = ReadPolicy(on_error.value if on_error else loaded.config.data.on_error, rejected)
                reports.append(evaluate(loaded, data, batch_size, rule, plots is not None, policy))
            for path in policy.stats:
                for line in policy.report(path):
                    err.print(f"note: {line}", markup=False)
            names.append(loaded.path.name if loaded.path.name not in names else f"{loaded.path.name}#{len(names) + 1}")
            for name, count in list(reports[-1]["unknown_labels"].items())[:10]:
                err.print(f"note: label '{name}' ({count} records) in {reports[-1]['data']} is not in the "
                          f"vocabulary of {loaded.path.name}: not scored", markup=False)
        if compare:
            out.print(compare_table(names, reports))
        else:
            report = reports[0]
            out.print(per_label_table(report, top, labels.split(",") if labels else None))
            out.print(summary_table(report, f"{report['data']} with {names[0]}"))
        if plots is not None:
            from mlcls.evaluation.plots import write_plots

            for name, report in zip(names, reports, strict=True):
                folder = plots / name if compare else plots
                for path in write_plots(report, folder):
                    err.print(f"figure written to {path}", markup=False)
        for report in reports:
            report.pop("_arrays", None)
        if json_out is not None:
            payload = dict(zip(names, reports, strict=True)) if compare else reports[0]
            _write_atomically(json_out, lambda f: json.dump(payload, f, indent=1))
            err.print(f"report written to {json_out}", markup=False)

    _guarded(debug, body)


@app.command()
def predict(
    file: Annotated[str, typer.Argument(help="JSONL/CSV/Parquet records to tag; - reads JSONL from stdin.")],
    model: Annotated[Path | None, typer.Option("--model", help="Run directory (default: runs/latest).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output JSONL (default: stdout).")] = None,
    threshold: ThresholdOpt = None,
    top_k: TopK = None,
    min_labels: MinLabels = None,
    scores: Annotated[str, typer.Option(help="Scores written: predicted, all, or top-N (e.g. top-5).")] = "predicted",
    fmt: Annotated[OutputFormat | None, typer.Option("--format", help="jsonl or csv (default: from the output "
                                                     "file's suffix, else jsonl).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from OUTPUT.partial.")] = False,
    on_error: OnError = None,
    rejects: Rejects = None,
    batch_size: BatchSize = 64,
    int8: Int8 = False,
    debug: Debug = False,
) -> None:
    """Tag articles: one JSONL line per input record, in input order, with labels and scores."""

    def body() -> None:
        from mlcls.data.records import FieldSpec, ReadPolicy, read_records
        from mlcls.inference.decision import with_overrides
        from mlcls.inference.loading import load_run
        from mlcls.inference.predict import parse_scores_mode, predict_to_file, write_predictions

        mode = parse_scores_mode(scores)
        fmt_name = fmt.value if fmt else ("csv" if output is not None and output.suffix.lower() == ".csv" else "jsonl")
        loaded = load_run(model, int8=int8)
        rule = with_overrides(loaded.thresholds, threshold, top_k, min_labels)
        fields = FieldSpec.from_config(loaded.config.data)
        with _rejects_file(rejects) as rejected:
            policy = ReadPolicy(on_error.value if on_error else "fail", rejected)
            records = read_records(file, fields, require_labels=False, policy=policy)
            if output is None:
                if resume:
                    raise MlclsError("--resume needs --output: the file an interrupted run was writing")
                write_predictions(loaded, records, sys.stdout, batch_size, rule, mode, fmt_name)
            else:
                written = predict_to_file(loaded, records, output, batch_size, rule, mode, fmt_name, resume)
                err.print(f"{written} predictions written to {output}", markup=False)
        for line in policy.report(file):
            err.print(f"note: {line}", markup=False)

    _guarded(debug, body)


@app.command()
def losses(debug: Debug = False) -> None:
    """List the losses `--loss` accepts, with their parameters and defaults."""

    def body() -> None:
        from rich.table import Table

        from mlcls.model.loss_specs import LOSSES

        table = Table(show_header=True, header_style="bold")
        table.add_column("name")
        table.add_column("description")
        table.add_column("parameters (defaults)")
        for spec in LOSSES.values():
            params = ", ".join(f"{k}={v}" for k, v in spec.params.items()) or "-"
            table.add_row(spec.name, spec.description, params)
        out.print(table)

    _guarded(debug, body)


data_app = typer.Typer(help="Datasets: convert Reuters-21578; describe a labelled file.", no_args_is_help=True)
app.add_typer(data_app, name="data")


ReutersSplit = _choices("ReutersSplit", reuters_choices.SPLITS)
ReutersLabels = _choices("ReutersLabels", reuters_choices.CATEGORY_FIELDS)


@data_app.command("reuters")
def data_reuters(
    source: Annotated[Path | None, typer.Option(
        help="A local copy: the folder of reut2-*.sgm files or reuters21578.tar.gz (default: download).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where train.jsonl and test.jsonl go.")] = Path("data/reuters"),
    split: Annotated[ReutersSplit, typer.Option(help="modapte: all ModApte articles (zero-topic kept); "
                                                "apte90: the 90 topics with train and test articles.")]
    = ReutersSplit.apte90,
    labels: Annotated[ReutersLabels, typer.Option(help="Which category set becomes the labels.")]
    = ReutersLabels.topics,
    url: Annotated[str | None, typer.Option(help="Download from this mirror instead.", hidden=True)] = None,
    checksum: Annotated[str | None, typer.Option(help="sha256:HEX or md5:HEX of the tarball.")] = None,
    debug: Debug = False,
) -> None:
    """Convert Reuters-21578 into train.jsonl / test.jsonl (ModApte or ApteMod-90 split)."""

    def body() -> None:
        from mlcls.data import reuters
        from mlcls.data.download import fetch
        from mlcls.training.cache import cache_root

        if source is None:
            path = fetch(url or reuters.REUTERS_URL, cache_root() / "reuters21578.tar.gz",
                         checksum or reuters.REUTERS_CHECKSUM, err)
        else:
            path = source
        result = reuters.make_split(reuters.read_collection(path), split.value, labels.value)
        written = reuters.write_split(result, out_dir)
        for name, records in (("train", result.train), ("test", result.test)):
            empty = sum(1 for r in records if not r["labels"])
            out.print(f"{written[name]}: {len(records)} articles, {empty} with no {labels.value} label")
        out.print(f"{len(result.labels)} {labels.value} labels ({split.value} split)")

    _guarded(debug, body)


@data_app.command("stats")
def data_stats(
    file: Annotated[Path, typer.Argument(help="A labelled JSONL/CSV/Parquet file.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config (field names, encoder).")] = None,
    model: Annotated[str | None, typer.Option(help="Tokenizer for the length statistics.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Report the share of texts longer than this.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Labels listed by frequency (most and least frequent).")] = 10,
    debug: Debug = False,
) -> None:
    """Records, labels per record, label frequencies (head / medium / tail), text length in tokens."""

    def body() -> None:
        from mlcls.config import load_config
        from mlcls.data.records import FieldSpec, read_records
        from mlcls.data.stats import dataset_stats
        from mlcls.evaluation.report import stats_tables

        cfg = load_config(config, [], {"model.encoder": model, "model.max_length": max_length})
        records = list(read_records(file, FieldSpec.from_config(cfg.data)))
        from transformers import AutoTokenizer

        from mlcls.model.classifier import quiet_transformers, resolve_encoder

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(cfg.model.encoder))
        lengths = [len(ids) for ids in tokenizer([r.text for r in records], truncation=False)["input_ids"]]
        report = dataset_stats(records, lengths, cfg.model.max_length)
        report["file"] = str(file)
        report["tokenizer"] = cfg.model.encoder
        for table in stats_tables(report, top):
            out.print(table)
        if json_out is not None:
            _write_atomically(json_out, lambda f: json.dump(report, f, indent=1))
            err.print(f"statistics written to {json_out}", markup=False)

    _guarded(debug, body)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _data_options(data: Path | None) -> dict[str, Any]:
    if data is None:
        return {}
    if not data.is_dir():
        return {"data.train": str(data)}
    train_file = data / "train.jsonl"
    if not train_file.is_file():
        raise MlclsError(f"{train_file}: not found (--data names a folder without train.jsonl)")
    options: dict[str, Any] = {"data.train": str(train_file)}
    for key, filename in (("data.test", "test.jsonl"), ("data.validation", "validation.jsonl")):
        if (data / filename).is_file():
            options[key] = str(data / filename)
    return options


@contextmanager
def _rejects_file(path: Path | None):
    """The --rejects file, written atomically (and only complete when the command succeeds), or None."""
    if path is None:
        yield None
        return
    from mlcls.atomic import atomic_open

    with atomic_open(path, "wb") as handle:
        yield handle


def _write_atomically(path: Path, write: Callable[[Any], Any]) -> Any:
    """Write to a temporary file beside `path`, then rename: an error or a kill leaves no half file."""
    from mlcls.atomic import atomic_open

    with atomic_open(path) as handle:
        return write(handle)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
