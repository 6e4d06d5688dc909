"""The `mlcls` command line: parse options, resolve the config, call one function, render the result.

torch and transformers are imported inside the commands, never at module level: `mlcls --help` and
usage errors answer at once.

Exit codes: 0 success, 1 runtime or data error (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mlcls.config import config_help
from mlcls.data import reuters as reuters_choices  # light: standard library only
from mlcls.errors import Interrupted, MlclsError
from mlcls.run.layout import CONFIG, ONNX_MODEL

app = typer.Typer(
    name="mlcls",
    help="Train, evaluate and apply multi-label text classifiers (zero, one or many topics per article).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
# --debug is an option of the app (mlcls --debug train ...) or the environment (MLCLS_DEBUG=1).
_debug = {"on": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"mlcls {package_version('mlcls')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _app_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Train, evaluate and apply multi-label text classifiers (zero, one or many topics per article)."""
    _debug["on"] = debug or os.environ.get("MLCLS_DEBUG", "") not in ("", "0")


def option(key: str, *names: str, **kwargs: Any) -> Any:
    """A typer.Option whose help is the config field's (declared once, in config.py)."""
    return typer.Option(*names, help=config_help(key), **kwargs)
BatchSize = Annotated[int | None, typer.Option("--batch-size", min=1, help="Records per inference batch "
                                               "(default: 16 on a CPU, 64 on a GPU).", show_default=False)]
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
InferencePrecision = _choices("InferencePrecision", ("auto", "fp32", "bf16"))
PrecisionOpt = Annotated[  # eval / predict / serve; None: the run's model.inference_precision (auto unless set)
    InferencePrecision | None, option("model.inference_precision", "--precision", show_default=False)
]
INT8_TRADE = ("note: --int8 trades accuracy for speed (int8 linear layers: faster on x86 CPUs, scores move a "
              "little); `mlcls eval RUN --int8` beside `mlcls eval RUN` shows what it costs")
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


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command body whose user-fixable errors become one line on stderr and exit code 1 (a bug of ours:
    one line too, with the traceback under --debug); Ctrl-C with the work kept exits 130."""

    @functools.wraps(command)  # Typer reads the options from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> Any:
        debug = _debug["on"]
        try:
            return command(*args, **kwargs)
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
            err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with mlcls --debug for the traceback)",
                      markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return run


@app.command()
@guarded
def train(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")] = None,
    loss: Annotated[str | None, option("loss.name", "--loss")] = None,
    epochs: Annotated[int | None, option("train.epochs", "--epochs", min=1)] = None,
    lr: Annotated[float | None, option("train.lr", "--lr")] = None,
    batch_size: Annotated[int | None, option("train.batch_size", "--batch-size", min=1)] = None,
    max_length: Annotated[int | None, option("model.max_length", "--max-length", min=8)] = None,
    model: Annotated[str | None, option("model.encoder", "--model")] = None,
    data: Annotated[
        Path | None,
        typer.Option(help="Training file, or a folder with train.jsonl (and test.jsonl, validation.jsonl)."),
    ] = None,
    out_dir: Annotated[Path | None, option("output.dir", "--out")] = None,
    name: Annotated[str | None, option("output.name", "--name")] = None,
    seed: Annotated[int | None, option("train.seed", "--seed")] = None,
    freeze_encoder: Annotated[bool | None, option("train.freeze_encoder", "--freeze-encoder", show_default=False)] \
        = None,
    train_top_layers: Annotated[int | None, option("train.train_top_layers", "--train-top-layers", min=1)] = None,
    patience: Annotated[int | None, option("train.patience", "--patience", min=0)] = None,
    grad_accum: Annotated[int | None, option("train.grad_accum", "--grad-accum", min=1)] = None,
    precision: Annotated[Precision | None, option("train.precision", "--precision")] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue an interrupted run (runs/<name>) from its checkpoint; "
                                  "it keeps its own config.")] = None,
    on_error: OnError = None,
    rejects: Rejects = None,
) -> None:
    """Fine-tune a classifier and write a self-contained run directory (runs/<name>, runs/latest).

    Data-parallel on several GPUs (or CPU processes): accelerate launch --multi_gpu --num_processes N -m mlcls train
    """
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
        from mlcls.run.find import resumable_run

        resume_dir = resumable_run(resume)
        cfg = load_config(resume_dir / CONFIG)
    else:
        cfg = load_config(config, set_ or [], options)
    for note in cfg.notes:
        err.print(f"note: {note}", markup=False)

    from mlcls.training.entry import train as run_training

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


@app.command("eval")
@guarded
def eval_(
    runs: Annotated[list[Path] | None, typer.Argument(help="Run directory (default: runs/latest); several with "
                                                      "--compare.", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(help="Labelled file (default: the run's data.test).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")] = None,
    threshold: ThresholdOpt = None,
    top_k: TopK = None,
    min_labels: MinLabels = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG figures into this folder.")] = None,
    save_scores: Annotated[Path | None, typer.Option(
        "--save-scores", help="Write the scores, gold targets and mask to this .npz (to study decision rules "
        "offline; one run).")] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Score every RUN given; one column per run.")] = False,
    labels: Annotated[str | None, typer.Option(help="Per-label table: only these labels (comma-separated).")] = None,
    top: Annotated[int, typer.Option(min=0, help="Per-label table: the N most and N least frequent (0: all).")] = 15,
    on_error: OnError = None,
    rejects: Rejects = None,
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
) -> None:
    """Score a run on labelled data: F1, precision, recall, ranking, no-topic articles, per label."""
    from mlcls.evaluation.evaluate import DecisionOverrides, evaluate_runs
    from mlcls.evaluation.report import compare_table, per_label_table, summary_table

    if len(runs or []) > 1 and not compare:
        raise MlclsError("several runs given: add --compare to score them side by side")
    with _rejects_file(rejects) as rejected:
        scored = evaluate_runs(runs or [None], data, batch_size, DecisionOverrides(threshold, top_k, min_labels),
                               keep_scores=plots is not None or save_scores is not None,
                               on_error=on_error and on_error.value,
                               rejects=rejected, int8=int8, precision=precision and precision.value)
    for note in scored.notes:
        err.print(f"note: {note}", markup=False)
    names, reports = scored.names, scored.reports
    if compare:
        out.print(compare_table(names, reports))
    else:
        report = reports[0]
        out.print(per_label_table(report, top, labels.split(",") if labels else None))
        out.print(summary_table(report, f"{report['data']} with {names[0]}"))
    if save_scores is not None:
        if len(reports) > 1:
            raise MlclsError("--save-scores writes one run's scores: give one run")
        arrays = reports[0]["_arrays"]
        _write_atomically(save_scores, lambda f: _save_npz(f, arrays), binary=True)
        err.print(f"scores written to {save_scores}", markup=False)
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


@app.command()
@guarded
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
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
) -> None:
    """Tag articles: one JSONL line per input record, in input order, with labels and scores."""
    from mlcls.data.records import FieldSpec, ReadPolicy, read_records
    from mlcls.decision.rules import with_overrides
    from mlcls.inference.loading import load_run
    from mlcls.inference.predict import parse_scores_mode, predict_to_file, write_predictions

    mode = parse_scores_mode(scores)
    fmt_name = fmt.value if fmt else ("csv" if output is not None and output.suffix.lower() == ".csv" else "jsonl")
    loaded = load_run(model, int8=int8, precision=precision and precision.value)
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
    # at the end, beside the other notes: an error stays the one line on stderr
    err.print(f"note: {loaded.precision_note}", markup=False, highlight=False)
    if int8:
        err.print(INT8_TRADE, markup=False, highlight=False)


@app.command()
@guarded
def losses() -> None:
    """List the losses `--loss` accepts, with their parameters and defaults."""
    from rich.table import Table

    from mlcls.loss_specs import LOSSES

    table = Table(show_header=True, header_style="bold")
    table.add_column("name")
    table.add_column("description")
    table.add_column("parameters (defaults)")
    for spec in LOSSES.values():
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items()) or "-"
        table.add_row(spec.name, spec.description, params)
    out.print(table)


@app.command()
@guarded
def serve(
    run: Annotated[Path | None, typer.Argument(help="Run directory (default: runs/latest).", show_default=False)]
    = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default; 0.0.0.0: every interface, "
                                      "then use --token-file).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one, printed at start).")] = 8000,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Records scored together, at most (dynamic "
                                           "batching across requests).")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0, help="How long a request waits for others "
                                               "to batch with, at most.")] = 10.0,
    max_records: Annotated[int, typer.Option("--max-records", min=1, help="Records per request, at most.")] = 1000,
    max_text_chars: Annotated[int, typer.Option("--max-text-chars", min=1, help="Characters of one record's text, "
                                                "at most.")] = 100_000,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Bytes of one request body, at "
                                                "most.")] = 10 * 2**20,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="Require 'Authorization: Bearer TOKEN' "
                                                    "(the file's content) on every endpoint but /health.")] = None,
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
) -> None:
    """Serve a run over HTTP (FastAPI): /v1/predict, /v1/labels, /v1/model, /health, /ready, /docs.

    Needs the optional "serve" extra (FastAPI and uvicorn)."""
    from mlcls.serving.server import serve as run_server
    from mlcls.serving.settings import Limits, ServeSettings

    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, batch_size=batch_size,
                             limits=Limits(max_records, max_text_chars, max_body_bytes))
    run_server(run, host, port, settings, token_file, int8, lambda line: err.print(line, markup=False,
                                                                                     highlight=False),
               precision=precision and precision.value)


@app.command("config")
@guarded
def config_(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")] = None,
) -> None:
    """Print the resolved config (defaults < FILE < --set), every key with its meaning.

    With no options this is configs/default.yaml: every key, its default and what it does."""
    from mlcls.config import commented_yaml, load_config

    cfg = load_config(config, set_ or [])
    for note in cfg.notes:
        err.print(f"note: {note}", markup=False)
    out.print(commented_yaml(cfg, DEFAULT_CONFIG_HEADER), end="", markup=False, highlight=False)


DEFAULT_CONFIG_HEADER = """\
# mlcls configuration: `mlcls config` prints this (each key's meaning is declared once, in mlcls/config.py).
# Values resolve as: built-in defaults < a file (-c) < --set key=value < named options (--loss, ...).
# Relative paths are relative to the directory you run mlcls from."""


@app.command()
@guarded
def export(
    run: Annotated[Path | None, typer.Argument(help="Run directory (default: runs/latest).", show_default=False)]
    = None,
    out_dir: Annotated[Path, typer.Option("--out", help="The folder to write (it must not exist, or be empty).",
                                          show_default=False)] = ...,
    fmt: Annotated[str, typer.Option("--format", help="onnx: one graph, token ids -> per-label probabilities, for "
                                     "ONNX Runtime; hf: a Transformers-native model (runs trained with that head).")]
    = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: dynamic int8 quantisation of the weights (smaller, "
                                                 "faster on CPU; see its F1 cost with mlcls eval --compare).")] = None,
) -> None:
    """Export a run for use outside mlcls: the ONNX graph, or the transformers model, with its tokenizer, labels,
    decision rule and model card.

    `mlcls predict --model DIR`, `mlcls eval DIR` and `mlcls serve DIR` run an ONNX export with ONNX Runtime (the
    onnx extra: pip install "mlcls\\[onnx]"). --format hf needs a run trained with --set model.head=transformers;
    `transformers.pipeline("text-classification", model=DIR, top_k=None, truncation=True)` loads it."""
    from mlcls.export.command import export_run

    result = export_run(run, out_dir, fmt, quantize, lambda line: err.print(line, markup=False, highlight=False))
    manifest = result.manifest
    if manifest["format"] == "hf":
        out.print(f"exported to {result.path} ({manifest['architecture']}, {manifest['num_labels']} labels; "
                  f"transformers' probabilities agree with mlcls's within {result.max_abs_diff:.1e}); next: "
                  f"pipeline(\"text-classification\", model=\"{result.path}\", top_k=None, truncation=True)",
                  markup=False,
                  highlight=False)
        return
    size = sum(p.stat().st_size for p in result.path.iterdir() if p.name.startswith(ONNX_MODEL)) / 2**20
    agree = (f"agrees with the torch model within {result.max_abs_diff:.1e}" if manifest["quantize"] is None
             else f"differs from the torch model by up to {result.max_abs_diff:.3f} (int8)")
    out.print(f"exported to {result.path} (model.onnx {size:.1f} MiB, opset {manifest['opset']}; its probability "
              f"{agree}); next: mlcls eval {result.path} --data FILE", markup=False, highlight=False)


data_app = typer.Typer(help="Datasets: convert Reuters-21578; describe a labelled file.", no_args_is_help=True)
app.add_typer(data_app, name="data")


ReutersSplit = _choices("ReutersSplit", reuters_choices.SPLITS)
ReutersLabels = _choices("ReutersLabels", reuters_choices.CATEGORY_FIELDS)


@data_app.command("reuters")
@guarded
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
) -> None:
    """Convert Reuters-21578 into train.jsonl / test.jsonl (ModApte or ApteMod-90 split)."""
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


@data_app.command("stats")
@guarded
def data_stats(
    file: Annotated[Path, typer.Argument(help="A labelled JSONL/CSV/Parquet file.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config (field names, encoder).")] = None,
    model: Annotated[str | None, typer.Option(help="Tokenizer for the length statistics.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Report the share of texts longer than this.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Labels listed by frequency (most and least frequent).")] = 10,
) -> None:
    """Records, labels per record, label frequencies (head / medium / tail), text length in tokens."""
    from mlcls.config import load_config
    from mlcls.evaluation.data_stats import file_stats
    from mlcls.evaluation.report import stats_tables

    report = file_stats(file, load_config(config, [], {"model.encoder": model, "model.max_length": max_length}))
    for table in stats_tables(report, top):
        out.print(table)
    if json_out is not None:
        _write_atomically(json_out, lambda f: json.dump(report, f, indent=1))
        err.print(f"statistics written to {json_out}", markup=False)


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


def _write_atomically(path: Path, write: Callable[[Any], Any], binary: bool = False) -> Any:
    """Write to a temporary file beside `path`, then rename: an error or a kill leaves no half file."""
    from mlcls.atomic import atomic_open

    with atomic_open(path, "wb" if binary else "w") as handle:
        return write(handle)


def _save_npz(handle, arrays: dict[str, Any]) -> None:
    import numpy as np

    np.savez_compressed(handle, **{k: arrays[k] for k in ("probs", "targets", "mask")},
                        ids=np.array(arrays["ids"], dtype=str))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
