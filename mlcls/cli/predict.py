"""`mlcls eval` and `mlcls predict`: a run's scores on labelled data, and its labels for new articles.

The evaluation and inference modules are imported inside the commands: they load torch and transformers
(seconds), and every module here is imported to build `mlcls --help`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mlcls.cli.options import (
    BatchSize,
    Int8,
    JsonOut,
    MinLabels,
    OnError,
    PrecisionOpt,
    Rejects,
    Threshold,
    TopK,
    TrustRemoteCode,
    choices,
    value_of,
)
from mlcls.cli.output import (
    check_apart,
    check_stdout_apart,
    err,
    out,
    print_notes,
    rejects_file,
    require_stdout,
    write_atomically,
)
from mlcls.errors import MlclsError
from mlcls.run.layout import LATEST

LATEST_RUN = Path("runs") / LATEST  # the run a command without --model (eval: without RUN) loads

OutputFormat = choices("OutputFormat", ("jsonl", "csv", "parquet"))
Engine = choices("Engine", ("local", "ray"))
INT8_TRADE = ("note: --int8 trades accuracy for speed (int8 linear layers: faster on x86 CPUs, scores move a "
              "little); `mlcls eval RUN --int8` beside `mlcls eval RUN` shows what it costs")

Runs = Annotated[list[Path] | None, typer.Argument(help="Run directory (default: runs/latest); several with "
                                                   "--compare.", show_default=False)]
# predict --engine ray: an archive of shards on Ray Data (mlcls/archive/)
EngineOpt = Annotated[Engine, typer.Option("--engine", help="local: this process; ray: on Ray Data (the ray extra), "
                                           "INPUT a file, a folder of shards or a glob, --output a folder of shards.")]
Address = Annotated[str | None, typer.Option("--address", help="--engine ray: join the Ray cluster there (e.g. auto, "
                                             "ray://head:10001); default: start Ray on this machine.")]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="--engine ray: workers, each loading the run "
                                             "once (default: as many as the CPUs, or GPUs, allow).")]
ThreadsPerWorker = Annotated[int | None, typer.Option("--threads-per-worker", min=1, help="--engine ray: torch "
                                                      "threads (and CPUs asked of Ray) per worker (default: 1).")]
GpusPerWorker = Annotated[float | None, typer.Option("--gpus-per-worker", min=0.0, help="--engine ray: GPUs per "
                                                     "worker (default: 0, the CPU).")]
SaveScores = Annotated[Path | None, typer.Option("--save-scores", help="Write the scores, gold targets and mask to "
                                                 "this .npz (to study decision rules offline; one run).")]


def eval_(
    runs: Runs = None,
    data: Annotated[Path | None, typer.Option(help="Labelled file (default: the run's data.test).")] = None,
    json_out: JsonOut = None,
    threshold: Threshold = None,
    top_k: TopK = None,
    min_labels: MinLabels = None,
    plots: Annotated[Path | None, typer.Option(help="Write PNG figures into this folder.")] = None,
    save_scores: SaveScores = None,
    compare: Annotated[bool, typer.Option("--compare", help="Score every RUN given; one column per run.")] = False,
    labels: Annotated[str | None, typer.Option(help="Per-label table: only these labels (comma-separated).")] = None,
    top: Annotated[int, typer.Option(min=0, help="Per-label table: the N most and N least frequent (0: all).")] = 15,
    on_error: OnError = None,
    rejects: Rejects = None,
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Score a run on labelled data: F1, precision, recall, ranking, no-topic articles, per label."""
    require_stdout("the report")
    from mlcls.evaluation.evaluate import DecisionOverrides, evaluate_runs
    from mlcls.evaluation.report import compare_table, per_label_table, summary_table

    outputs = _eval_outputs(runs or [], data, compare, {"--rejects": rejects, "--json": json_out,
                                                         "--save-scores": save_scores}, plots)
    with rejects_file(rejects) as rejected:
        scored = evaluate_runs(runs or [None], data, batch_size, DecisionOverrides(threshold, top_k, min_labels),
                               keep_scores=plots is not None or save_scores is not None, on_error=value_of(on_error),
                               rejects=rejected, int8=int8, precision=value_of(precision),
                               trust_remote_code=trust_remote_code)
        if data is None:  # again, as loaded (a config the check above could not read); before --rejects is renamed
            check_apart({f"the test file of {name}": report["data"] for name, report in
                         zip(scored.names, scored.reports, strict=True)}, outputs)
    print_notes(scored.notes)
    names, reports = scored.names, scored.reports
    if compare:
        out.print(compare_table(names, reports))
    else:
        report = reports[0]
        only = [name.strip() for name in labels.split(",") if name.strip()] if labels else None
        out.print(per_label_table(report, top, only))
        print_notes(_unknown_labels(only or [], [row["label"] for row in report["per_label"]], names[0]))
        out.print(summary_table(report, f"{report['data']} with {names[0]}"))
    _write_reports(names, reports, compare, save_scores, plots, json_out)


def _eval_outputs(runs: list[Path], data: Path | None, compare: bool, outputs: dict[str, Path | None],
                  plots: Path | None) -> dict[str, Path | None]:
    """eval's output files, each refused in one line before any run is loaded where it cannot be written (an
    input, another output, inside a run) or what it asks for cannot be done; returned with the figures' paths."""
    from mlcls.evaluation.evaluate import run_name

    if len(runs) > 1 and not compare:
        raise MlclsError("several runs given: add --compare to score them side by side")
    if outputs["--save-scores"] is not None and len(runs) > 1:
        raise MlclsError("--save-scores writes one run's scores: give one run")
    if str(data) == "-" and len(runs) > 1:
        raise MlclsError("--data -: standard input can be read once; with --compare, give the records as a file")
    outputs = {**outputs, "--plots": plots and plots / "figure.png"}
    if plots is not None and compare:  # each run's figures go to PLOTS/<its name>/: never into a run
        names: list[str] = []
        for run in runs:
            names.append(run_name(Path(os.path.realpath(run)), names))
            outputs[f"--plots (for {run})"] = plots / names[-1] / "figure.png"
    check_apart({"--data": data}, outputs,
                {f"the run {run or LATEST_RUN}": run or LATEST_RUN for run in runs or [None]})
    if plots is not None and plots.exists() and not plots.is_dir():
        raise MlclsError(f"{plots}: a file; --plots takes the folder the figures go to")
    scored = {"--data": data} if data is not None else _own_test_files(runs or [None])  # read off each config
    check_apart(scored, outputs)
    check_stdout_apart(scored)  # `mlcls eval --data d.jsonl >> d.jsonl` would append the report to the data
    return outputs


def _own_test_files(runs: list[Path | None]) -> dict[str, Path]:
    """The test file each run's config names (data.test), where its config can be read without loading the run;
    a run that cannot be read is left to the loader, which says why."""
    from mlcls.evaluation.evaluate import config_test_file, run_name
    from mlcls.run.files import read_config
    from mlcls.run.find import resolve_run

    found: dict[str, Path] = {}
    names: list[str] = []
    for run in runs:
        try:
            path = resolve_run(run)
            test = config_test_file(read_config(path), path, [])
        except MlclsError:
            continue
        names.append(run_name(path, names))
        found[f"the test file of {names[-1]}"] = test
    return found


def _unknown_labels(asked: list[str], known: list[str], run: str) -> list[str]:
    """--labels names that the run has no row for: said, with the nearest names, rather than left out."""
    import difflib

    notes = []
    for name in asked:
        if name not in known:
            near = difflib.get_close_matches(name, known, n=3)
            notes.append(f"--labels: '{name}' is not a label of {run}"
                         + (f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""))
    return notes


def _write_reports(names: list[str], reports: list[dict[str, Any]], compare: bool, save_scores: Path | None,
                   plots: Path | None, json_out: Path | None) -> None:
    """eval's files: the scores (.npz), the figures, then the JSON report (without the score arrays)."""
    if save_scores is not None:  # one run (checked before scoring)
        arrays = reports[0]["_arrays"]
        write_atomically(save_scores, lambda f: _save_npz(f, arrays), binary=True)
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
        write_atomically(json_out, lambda f: json.dump(payload, f, indent=1))
        err.print(f"report written to {json_out}", markup=False)


def _save_npz(handle, arrays: dict[str, Any]) -> None:
    import numpy as np

    np.savez_compressed(handle, **{k: arrays[k] for k in ("probs", "targets", "mask")},
                        ids=np.array(arrays["ids"], dtype=str))


def predict(
    file: Annotated[str, typer.Argument(help="JSONL/CSV/TSV/JSON/Parquet records to tag; - reads JSONL from stdin; "
                                        "with --engine ray also a folder of shards or a glob.")],
    model: Annotated[Path | None, typer.Option("--model", help="Run directory (default: runs/latest).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output JSONL (default: stdout); with "
                                                "--engine ray the folder of output shards.")] = None,
    threshold: Threshold = None,
    top_k: TopK = None,
    min_labels: MinLabels = None,
    scores: Annotated[str, typer.Option(help="Scores written: predicted, all, or top-N (e.g. top-5).")] = "predicted",
    fmt: Annotated[OutputFormat | None, typer.Option("--format", help="jsonl or csv (default: from the output "
                                                     "file's suffix, else jsonl); --engine ray: also parquet.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from OUTPUT.partial "
                                         "(--engine ray: a rerun continues by itself).")] = False,
    on_error: OnError = None,
    rejects: Rejects = None,
    batch_size: BatchSize = None,
    int8: Int8 = False,
    precision: PrecisionOpt = None,
    trust_remote_code: TrustRemoteCode = False,
    engine: EngineOpt = Engine.local,
    address: Address = None,
    workers: Workers = None,
    threads_per_worker: ThreadsPerWorker = None,
    gpus_per_worker: GpusPerWorker = None,
) -> None:
    """Tag articles: one JSONL line per input record, in input order, with labels and scores."""
    from mlcls.inference.predict import parse_scores_mode

    try:
        mode = parse_scores_mode(scores)
    except MlclsError as exc:  # a bad option value: a usage error (exit 2), as typer's own checks
        raise typer.BadParameter(str(exc).removeprefix("--scores "), param_hint="--scores") from None
    decisions = (threshold, top_k, min_labels)
    loading = {"int8": int8, "precision": value_of(precision), "trust_remote_code": trust_remote_code}
    if engine.value == "ray":
        ray_options = {"address": address, "workers": workers, "threads_per_worker": threads_per_worker or 1,
                       "gpus_per_worker": gpus_per_worker or 0.0}
        _predict_on_ray(file, model, output, mode, value_of(fmt), decisions, value_of(on_error), rejects, batch_size,
                        loading, ray_options)
        return
    given = [name for name, value in (("--address", address), ("--workers", workers),
                                      ("--threads-per-worker", threads_per_worker),
                                      ("--gpus-per-worker", gpus_per_worker)) if value is not None]
    if given or value_of(fmt) == "parquet":
        raise MlclsError(f"{given[0] if given else '--format parquet'} is for --engine ray (a folder of shards); "
                         "this is --engine local")
    fmt_name = _output_format(output, value_of(fmt))
    _predict_local(file, model, output, mode, fmt_name, decisions, resume, value_of(on_error), rejects, batch_size,
                   loading)


def _output_format(output: Path | None, fmt: str | None) -> str:
    """--format, else the output's suffix: .csv is CSV, others JSON Lines. A suffix that promises what the file
    would not be (compressed, Parquet, a JSON array, TSV) is refused: nothing, mlcls included, would read it back."""
    from mlcls.data.formats import COMPRESSIONS

    last = output.suffix.lower() if output is not None else ""
    if last in COMPRESSIONS:
        raise MlclsError(f"{output}: predict does not compress its output; write {output.with_suffix('').name} and "
                         "compress it, or pipe stdout (no --output) through gzip")
    if fmt is not None:
        return fmt
    if last in (".parquet", ".json", ".tsv"):
        raise MlclsError(f"{output}: predict writes JSON Lines or CSV; name the file .jsonl or .csv, or give --format")
    return "csv" if last == ".csv" else "jsonl"


def _predict_local(file: str, model: Path | None, output: Path | None, mode: int | str, fmt_name: str,
                   decisions: tuple, resume: bool, on_error: str | None, rejects: Path | None,
                   batch_size: int | None, loading: dict[str, Any]) -> None:
    """One process reads FILE and writes one line per record, to stdout or OUTPUT (resumable)."""
    if output is not None and str(output) == "-":  # the usual spelling of stdout, not a file named "-"
        output = None
    check_apart({"the input file": file}, {"--output": output, "--rejects": rejects},
                {f"the run {model or LATEST_RUN}": model or LATEST_RUN})
    if output is not None and output.is_dir():  # said now, not after the whole input is scored
        raise MlclsError(f"{output}: a folder; --output names the file the predictions go to")
    if output is None:
        require_stdout("the predictions (no --output)")
        check_stdout_apart({"the input file": file}, "redirect to another file, or give --output")
    if resume and output is None:  # said before the run is loaded (seconds), not after
        raise MlclsError("--resume needs --output: the file an interrupted run was writing")
    if resume and fmt_name != "jsonl":
        raise MlclsError("--resume works with JSONL output")
    from mlcls.data.records import FieldSpec, ReadPolicy, read_records
    from mlcls.decision.rules import with_overrides
    from mlcls.inference.loading import load_run
    from mlcls.inference.predict import predict_to_file, write_predictions

    loaded = load_run(model, **loading)
    rule = with_overrides(loaded.thresholds, *decisions)
    fields = FieldSpec.from_config(loaded.config.data)
    with rejects_file(rejects) as rejected:
        policy = ReadPolicy(on_error or "fail", rejected)
        records = read_records(file, fields, require_labels=False, policy=policy)
        if output is None:
            write_predictions(loaded, records, sys.stdout, batch_size, rule, mode, fmt_name)
        else:
            written = predict_to_file(loaded, records, output, batch_size, rule, mode, fmt_name, resume)
            earlier = f", {written.earlier} of them written by an earlier run" if written.earlier else ""
            err.print(f"{written.total} predictions written to {output}{earlier}", markup=False)
    print_notes(policy.report(file))
    # at the end, beside the other notes: an error stays the one line on stderr
    err.print(f"note: {loaded.precision_note}", markup=False, highlight=False)
    if loaded.config.model.long_text != "truncate":  # what reading long texts whole cost
        err.print(f"note: model.long_text {loaded.config.model.long_text}: {loaded.windows.describe()}",
                  markup=False, highlight=False)
    if loading["int8"]:
        err.print(INT8_TRADE, markup=False, highlight=False)


def _predict_on_ray(file: str, model: Path | None, output: Path | None, mode: int | str, fmt: str | None,
                    decisions: tuple, on_error: str | None, rejects: Path | None, batch_size: int | None,
                    loading: dict[str, Any], ray_options: dict[str, Any]) -> None:
    """The shards of FILE on Ray Data, into the folder OUTPUT (mlcls/archive/)."""
    from mlcls.archive.engine import predict_archive, resolve_job_run
    from mlcls.archive.job import ArchiveJob
    from mlcls.archive.ray_session import import_ray

    if output is None:
        raise MlclsError("--engine ray needs --output OUT_DIR: the folder the output shards go to")
    import_ray()  # a missing extra: one line, before anything else
    check_apart({"the input": file}, {"--rejects": rejects, "--output": output},
                {f"the run {model or LATEST_RUN}": model or LATEST_RUN})
    # the folder as the file system resolves it (no `..`, no link): what the input is compared with
    job = ArchiveJob(resolve_job_run(model), Path(os.path.realpath(output)), mode, fmt or "jsonl", *decisions,
                     on_error or "fail", batch_size=batch_size, **loading, **ray_options)
    result = predict_archive(file, job, rejects, err)
    earlier = f", {result.already_done} of them written by an earlier run" if result.already_done else ""
    err.print(f"{result.records} predictions written to {output} in {result.shards} shards{earlier}", markup=False)
    print_notes(result.notes)
    if loading["int8"]:
        err.print(INT8_TRADE, markup=False, highlight=False)
