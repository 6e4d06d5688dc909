"""What the benchmark scripts share, in one place: running the `mlcls` CLI, naming the machine, reading a trained
hold-out run's validation rows, and writing tables into docs/benchmarks.md. Scripts import this module and
`mlcls.api`, never each other.

    from benchlib import eval_command, machine, mlcls_command, run_all, write_block  # scripts/ is on sys.path

docs/benchmarks.md holds one table per benchmark, between `<!-- NAME:start -->` and `<!-- NAME:end -->`:
a rerun replaces its own block and leaves the text around it alone.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple


def mlcls_command(*args: str) -> list[str]:
    """`python -m mlcls ARGS` with this interpreter (the CLI is the product users run); printed as it starts."""
    print("$ mlcls " + " ".join(args), flush=True)
    return [sys.executable, "-m", "mlcls", *args]


def run_all(commands: list[list[str]], parallel: int, quiet: bool = False) -> None:
    """Run the commands (trainings, evaluations), `parallel` at a time: on a GPU several small runs share the
    card well."""
    pending = list(commands)
    running: list[subprocess.Popen] = []
    failed = 0
    while pending or running:
        while pending and len(running) < parallel:
            running.append(subprocess.Popen(pending.pop(0), stdout=subprocess.DEVNULL if quiet else None))
        time.sleep(1)
        for process in [p for p in running if p.poll() is not None]:
            running.remove(process)
            failed += process.returncode != 0
    if failed:
        raise SystemExit(f"{failed} command(s) failed; see their output above")


def eval_command(run: Path, folder: Path, save_scores: bool = False) -> list[str]:
    """`mlcls eval RUN --json FOLDER/RUN-NAME.eval.json`: the run scored on its config's test file; with
    save_scores, its test scores too (FOLDER/RUN-NAME.test-scores.npz), to study decision rules offline."""
    extra = ["--save-scores", str(folder / f"{run.name}.test-scores.npz")] if save_scores else []
    return mlcls_command("eval", str(run), "--json", str(folder / f"{run.name}.eval.json"), *extra)


def machine() -> str:
    """The device the numbers were measured on, for the line above a table."""
    import platform

    import torch  # imported here: a script that never names its machine should not pay for torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"{cpu_model() or platform.machine() + ' CPU'}, {os.cpu_count()} cores"


def cpu_model() -> str | None:
    """The CPU's model name and the flags that decide bf16 speed (Linux: /proc/cpuinfo), or None."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name or 'CPU'} ({', '.join(bf16) if bf16 else 'no native bf16'})"


def pct(value: float | None) -> str:
    """An F1 (0..1) as percentage points for a table; a frequency group with no label to score has no F1
    (null), which is not 0."""
    return "-" if value is None else f"{100 * value:.2f}"


class HoldOutRun(NamedTuple):
    config: Any  # mlcls.api.Config
    labels: list[str]
    train: list  # the training part `mlcls train` drew (mlcls.api.Record)
    texts: list[str]  # the validation articles' texts, in the order of `saved`
    saved: Any  # RUN/tuning_scores.npz: ids, targets, mask, encoder_probs (and the blend's probs)
    priors: Any  # each label's training rate (RUN/label_stats.json), what prior_quantile and hybrid read


def hold_out_run(run: Path, train_file: Path | None = None, overrides: list[str] | None = None) -> HoldOutRun:
    """A trained run with a validation hold-out and model.lexical: tfidf, as the lexical studies read it: its
    config (with `train_file` as data.train when given, and `overrides`, `--set` style), labels, the seeded
    training part that `mlcls train` drew, its saved validation scores with their texts, and its label priors.
    SystemExit for a cross-fitted run (out-of-fold scores), one without the encoder's own scores or without readable
    label statistics."""
    import json

    import numpy as np

    from mlcls.api import load_config, peek_label_stats, training_split

    config = load_config(run / "config.yaml", overrides)
    if (json.loads((run / "metrics.json").read_text()).get("folds") or 1) > 1:
        raise SystemExit(f"{run}: cross-fitted (its tuning scores are out-of-fold); this study takes hold-out runs")
    if train_file is not None:
        config.data.train = str(train_file)
    saved = np.load(run / "tuning_scores.npz", allow_pickle=False)
    if "encoder_probs" not in saved:
        raise SystemExit(f"{run}: tuning_scores.npz has no encoder_probs (a run without model.lexical: tfidf)")
    stats = peek_label_stats(run)
    if stats is None:
        raise SystemExit(f"{run}: no readable label statistics (label_stats.json)")
    labels = json.loads((run / "labels.json").read_text())["labels"]
    train, validation = training_split(config)
    by_id = {r.id: r for r in validation}
    return HoldOutRun(config, labels, train, [by_id[i].text for i in saved["ids"].tolist()], saved, stats.prior())


def write_block(doc: Path, name: str, table: str, heading: str | None = None) -> None:
    """Put `table` into the block `name` of `doc`; a block not there yet is appended (under `heading`).

    Benchmarks run side by side (on a GPU) may finish together: the read-modify-write holds a lock."""
    with open(doc.with_name(doc.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_block(doc, name, table, heading)


def _write_block(doc: Path, name: str, table: str, heading: str | None) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    elif heading and heading in text:
        # a second block under a heading already there (e.g. another prefix): end of that section, no repeat
        at = text.find("\n## ", text.index(heading) + len(heading))
        at = len(text) if at < 0 else at
        text = text[:at].rstrip("\n") + f"\n\n{block}\n" + text[at:]
    else:
        text += f"\n{heading}\n\n{block}\n" if heading else f"\n{block}\n"
    doc.write_text(text)
