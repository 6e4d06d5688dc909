"""What `mlcls tune` shows: a table of the study's trials (every process's) with the best marked, a bar of the
slots done, and how each finished trial ended. While trials run, on a terminal, the table and the bar stay
on screen below the training's own progress (Rich nests live displays); elsewhere (a log) each finished trial
is one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from mlcls.run.layout import staging_dir
from mlcls.tune.ledger import (
    ERROR,
    ERROR_KIND,
    RUN,
    SURPLUS,
    duplicate_retries,
    is_base,
    retried,
    retries,
    root_number,
    takes_a_slot,
)

LIVE_ROWS = 8  # the trials the live table shows: the latest, and the best


def state_of(trial, again: dict[int, int]) -> str:
    """How a trial stands, in a few words (the trial of the base config's own values says so)."""
    state = _state(trial, again)
    return f"{state}, base config" if is_base(trial) else state


def _state(trial, again: dict[int, int]) -> str:
    name = trial.state.name.lower()
    if name == "fail":
        if trial.number in again:
            return f"retried as {again[trial.number]}"
        if trial.user_attrs.get(ERROR):  # the reason in full is a note under the table (failure_notes)
            return "failed: data error" if trial.user_attrs.get(ERROR_KIND) == "data" else "failed: config refused"
        return "failed"
    if name == "pruned":
        return f"pruned (epoch {trial.last_step})" if trial.last_step is not None else "pruned"
    if trial.system_attrs.get("failed_trial") is not None and name in ("running", "waiting"):
        return f"{name} (retry of {root_number(trial)})"
    return "done" if name == "complete" else name


def failure_notes(trials) -> list[str]:
    """Why each trial that failed by its own config or data failed, one line each (too long for the table)."""
    return [f"trial {t.number} failed: {t.user_attrs[ERROR]}" for t in trials
            if t.state.name == "FAIL" and t.user_attrs.get(ERROR)]


def best_of(trials) -> Any | None:
    """The complete trial with the highest figure (ties: the earlier one)."""
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return min(complete, key=lambda t: (-t.value, t.number), default=None)


def cell(value: Any) -> str:
    """A trial's value as the table and the log lines show it (3 significant digits: what tells trials apart)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def _minutes(trial) -> str:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return ""
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds() / 60:.1f}"


def trial_table(trials, keys: list[str], metric: str, rows: int | None = None, folder: Path | None = None) -> Table:
    """The trials (surplus ones left out) as a table, the best in bold; `rows`: only the latest ones and the best.
    `folder`: the study's, where a trial's run is looked for: one removed (--keep-best, a pruned trial's) says so."""
    shown = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    best = best_of(shown)
    if rows is not None and len(shown) > rows:
        shown = sorted({t.number: t for t in shown[-(rows - 1):] + ([best] if best else [])}.values(),
                       key=lambda t: t.number)
    again = retries(trials)
    table = Table(title=None, show_edge=False, pad_edge=False)
    for header in ("#", "state", *keys, f"val {metric}", "min", "run"):
        table.add_column(header, justify="right" if header in ("#", f"val {metric}", "min") else "left")
    for trial in shown:
        table.add_row(str(trial.number), state_of(trial, again), *(cell(trial.params.get(key)) for key in keys),
                      _cell_metric(trial), _minutes(trial), _run_cell(trial, folder),
                      style="bold green" if best is not None and trial.number == best.number else None)
    return table


def _run_cell(trial, folder: Path | None) -> str:
    """The trial's run; "(removed)" beside a finished (or pruned) trial's whose folder is gone, whole or unfinished
    (a running or failed trial's run may be unfinished, or never begun: it says nothing then)."""
    run = trial.user_attrs.get(RUN, "")
    finished = trial.state.name in ("COMPLETE", "PRUNED")
    if run and finished and folder is not None and not (folder / run).is_dir() and \
            not staging_dir(folder / run).is_dir():
        return f"{run} (removed)"
    return run


def _cell_metric(trial) -> str:
    if trial.value is not None and trial.state.name == "COMPLETE":
        return f"{trial.value:.4f}"
    steps = trial.intermediate_values
    return f"({steps[max(steps)]:.4f})" if steps else ""  # the last reported figure of a pruned or running trial


def status_line(trials, total: int, metric: str) -> Group:
    """The bar of slots done (complete, pruned or refused, across processes), and the best so far."""
    again, duplicates = retried(trials), duplicate_retries(trials)
    done = sum(1 for t in trials if t.state.is_finished() and takes_a_slot(t, again, duplicates))
    best = best_of(trials)
    best_text = f"best val {metric} {best.value:.4f} (trial {best.number})" if best else "no trial done yet"
    running = sum(1 for t in trials if t.state.name == "RUNNING")
    return Group(ProgressBar(total=total, completed=min(done, total), width=40),
                 Text(f"trials {done}/{total} done, {running} running; {best_text}"))


def trial_line(trial, metric: str) -> str:
    """One finished trial in one line (the log form)."""
    params = ", ".join(f"{key}={cell(value)}" for key, value in trial.params.items())
    state = trial.state.name.lower()
    figure = f" val {metric} {trial.value:.4f}" if trial.value is not None and state == "complete" else ""
    error = f": {trial.user_attrs[ERROR]}" if trial.user_attrs.get(ERROR) else ""
    base = ", the base config" if is_base(trial) else ""
    return f"trial {trial.number} {state}{figure}{error} ({params}{base})"


class StudyView:
    """The live table and bar (terminal), or a line per finished trial (anything else)."""

    def __init__(self, console: Console, keys: list[str], metric: str, total: int):
        self.console, self.keys, self.metric, self.total = console, keys, metric, total
        self.live: Live | None = None

    def show(self, trials) -> None:
        if self.live is not None:
            self.live.update(Group(trial_table(trials, self.keys, self.metric, LIVE_ROWS),
                                   status_line(trials, self.total, self.metric)), refresh=True)

    def finished(self, trial, trials) -> None:
        if self.live is None:
            self.console.print(trial_line(trial, self.metric), markup=False, highlight=False)
        self.show(trials)


@contextmanager
def study_view(console: Console, keys: list[str], metric: str, total: int, trials) -> Iterator[StudyView]:
    view = StudyView(console, keys, metric, total)
    # Rich nests live displays since 14 (the training's progress bar renders below this one); an older Rich
    # would refuse the training's, so the table is then left out.
    if not console.is_terminal or not hasattr(console, "_live_stack"):
        yield view
        return
    with Live(console=console, auto_refresh=False, transient=True) as live:
        view.live = live
        view.show(trials)
        yield view
