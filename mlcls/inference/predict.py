"""`mlcls predict`: one output line per input record, in input order, streamed chunk by chunk and resumable."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from mlcls.atomic import (
    WriteError,
    atomic_open,
    close_quietly,
    describe_os_error,
    failed_write,
    make_folder,
    open_for_writing,
    release_lock,
    try_lock,
)
from mlcls.data.records import Record
from mlcls.decision.rules import DecisionRule
from mlcls.errors import Interrupted, MlclsError, Terminated, sigterm_as_interrupt
from mlcls.inference.loading import LoadedRun
from mlcls.inference.scoring import CHUNK_RECORDS, score_records
from mlcls.run.files import files_fingerprint


def parse_scores_mode(text: str) -> int | str:
    """--scores: 'predicted' (the chosen labels' scores), 'all', or 'top-N' (the N highest) -> mode or N."""
    if text in ("predicted", "all"):
        return text
    digits = text[4:]  # at most 9 (int() refuses past 4,300); ASCII, not "²"
    if text.startswith("top-") and 0 < len(digits) <= 9 and digits.isascii() and digits.isdigit() and int(digits):
        return int(digits)
    raise MlclsError(f"--scores {text!r}: expected predicted, all or top-N (e.g. top-5)")


def prediction_row(record: Record, scores: np.ndarray, chosen: np.ndarray, labels: list[str],
                   mode: int | str = "predicted") -> dict:
    """The id, the predicted labels (highest score first) and the scores that `mode` asks for."""
    picked = sorted(np.flatnonzero(chosen), key=lambda i: -scores[i])
    if mode == "all":
        shown = range(len(labels))
    elif mode == "predicted":
        shown = picked
    else:
        shown = np.argsort(-scores, kind="stable")[: int(mode)]
    return {"id": record.id, "labels": [labels[i] for i in picked],
            "scores": {labels[i]: round(float(scores[i]), 4) for i in shown}}


class JsonlWriter:
    def __init__(self, out: IO[str], labels: list[str], mode: int | str):
        self.out = out

    def write(self, row: dict) -> None:
        self.out.write(json.dumps(row, ensure_ascii=False) + "\n")


def plain_label(label: str) -> bool:
    """Whether `label` reads back unchanged from an `a;b` labels cell and an `a=0.97;b=0.81` scores cell."""
    return (label == label.strip() and not label.startswith(("[", "{"))
            and not any(char in label for char in ';=,"\r\n'))


class CsvWriter:
    """id, labels, then either a column per label (--scores all) or the scores in `scores`. The cells are `a;b`
    and `a=0.97;b=0.81` when every label of the run reads back unchanged so; when one does not (it holds `;`,
    `=`, `,`, a quote or a line break, starts with `[` or `{`, or has spaces around it), both cells are JSON
    in every row of the file: `["a", "b"]` and `{"a": 0.97, "b": 0.81}`."""

    def __init__(self, out: IO[str], labels: list[str], mode: int | str):
        self.writer = csv.writer(out)
        self.labels, self.all = labels, mode == "all"
        self.json = not all(plain_label(label) for label in labels)
        self.writer.writerow(["id", "labels", *(labels if self.all else ["scores"])])

    def write(self, row: dict) -> None:
        scores = row["scores"]
        if self.json:
            cells = [json.dumps(row["labels"], ensure_ascii=False), json.dumps(scores, ensure_ascii=False)]
        else:
            cells = [";".join(row["labels"]), ";".join(f"{name}={value}" for name, value in scores.items())]
        tail = [scores[name] for name in self.labels] if self.all else cells[1:]
        self.writer.writerow([row["id"], cells[0], *tail])


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter}


def write_predictions(
    run: LoadedRun, records: Iterable[Record], out: IO[str], batch_size: int | None,
    rule: DecisionRule | None = None,
    scores: int | str = "predicted", fmt: str = "jsonl", chunk_records: int = CHUNK_RECORDS,
    checksum: Checksum | None = None,
) -> int:
    """Write one line per record to `out` (decisions by `rule`, default the run's); return the number written.

    The output is flushed after every chunk, so an interrupted run leaves whole chunks of whole lines; then
    `checksum`, given, is brought up to the records written."""
    rule = rule or run.thresholds
    labels = run.labels.labels
    writer = WRITERS[fmt](out, labels, scores)
    written = 0
    for chunk, chunk_scores in score_records(run, records, batch_size, chunk_records):
        chosen = rule.apply(chunk_scores, labels)
        for row, record in enumerate(chunk):
            writer.write(prediction_row(record, chunk_scores[row], chosen[row], labels, scores))
            written += 1
            if checksum is not None:
                checksum.add(record)
        out.flush()
        if checksum is not None:
            checksum.save()
    return written


# Each field of a prediction recipe, in the words of the command line: those kept as a hash, then the others.
RECIPE_HASHED = {"run": "run (--model)", "model": "version of the run's files (trained again since?)",
                 "rule": "decision rule (--threshold, --top-k, --min-labels)"}
RECIPE_OPTIONS = {"precision": "--precision", "scores": "--scores", "format": "--format"}


def prediction_recipe(run: LoadedRun, rule: DecisionRule | None, scores: int | str, fmt: str) -> dict[str, Any]:
    """How predictions are made, as `--resume` compares it: the run (its path, and its files' sizes and times: a run
    trained again under the same name is another model), the precision, the decision rule with its overrides
    (--threshold, --top-k, --min-labels), --scores and the format. Short (hashes), since it is rewritten with the
    checksum after every chunk."""
    rule_dict = (rule or run.thresholds).to_dict()
    return {"run": _short_hash(str(Path(run.path).resolve())), "model": files_fingerprint(run.path),
            "rule": _short_hash(rule_dict), "precision": run.precision, "scores": str(scores), "format": fmt}


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checksum:
    """What the predictions in OUTPUT.partial were made from: a running sha256 over the id and text of each
    record written, kept beside it in OUTPUT.partial.sha256 as {"records": N, "sha256": ...}, rewritten whole
    (a temporary file renamed) after every chunk. `--resume` recomputes it over the input's first N records and
    refuses input whose ids or texts changed, which the ids alone do not show."""

    def __init__(self, partial: Path, recipe: dict[str, Any] | None = None):
        self.partial, self.path = partial, partial.with_name(f"{partial.name}.sha256")
        self.hash, self.count, self.saved = hashlib.sha256(), 0, 0  # records hashed; records the file vouches for
        self.states: list = []  # the hash after each record hashed since the last save
        self.digest: str | None = None  # the stored one, read by `stored`
        self.recipe = recipe or {}  # how the predictions are made (prediction_recipe): a resume must make them alike
        self.stored_recipe: dict[str, Any] | None = None  # the stored one (None: a file written before recipes)

    def absorb(self, record: Record) -> None:
        self.hash.update(json.dumps([record.id, record.text]).encode() + b"\n")
        self.count += 1

    def add(self, record: Record) -> None:
        self.absorb(record)
        self.states.append(self.hash.copy())

    def save(self, count: int | None = None) -> None:
        count = self.count if count is None else count
        digest = self.hash if count == self.count else self.states[count - self.saved - 1]
        with atomic_open(self.path) as handle:
            handle.write(json.dumps({"records": count, "sha256": digest.hexdigest(), "recipe": self.recipe}) + "\n")
        self.states, self.saved = self.states[count - self.saved:], count

    def stored(self) -> int | None:
        """The number of records OUTPUT.partial.sha256 vouches for, None when there is no such file."""
        try:
            kept = json.loads(self.path.read_text())
            self.digest = kept["sha256"]
            self.stored_recipe = kept.get("recipe")
            return int(kept["records"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            raise MlclsError(f"{self.path}: not a checksum of {self.partial}; cannot resume from it: run again "
                             "without --resume") from None

    def verify(self) -> None:
        """After absorbing the input's first records: refuse input whose records differ from those written."""
        if self.count == 0:
            return
        if self.stored() is None:
            raise MlclsError(f"{self.partial}: no checksum beside it ({self.path.name}), so whether the input "
                             "changed since cannot be checked; run again without --resume")
        if self.hash.hexdigest() != self.digest:
            raise MlclsError(f"{self.partial}: the input's first {self.count} records are not the ones these "
                             "predictions were made from (same ids, but a text changed); run again without --resume")
        self.check_recipe()
        self.saved = self.count

    def check_recipe(self) -> None:
        """Refuse to append predictions made otherwise than those written (another model, rule or --scores): the
        file would mix the two, where it must equal an uninterrupted run's."""
        if not isinstance(self.stored_recipe, dict):
            return
        for key, value in self.recipe.items():
            if key not in self.stored_recipe or self.stored_recipe[key] == value:
                continue
            if key in RECIPE_HASHED:
                made = f"another {RECIPE_HASHED[key]} than this command's"
            else:
                made = f"{RECIPE_OPTIONS.get(key, key)} {self.stored_recipe[key]!r}, this command has {value!r}"
            raise MlclsError(f"{self.partial}: was written with {made}; resume with the interrupted command's model "
                             "and options, or run again without --resume")

    def settle(self) -> int:
        """After a stop: the number of whole lines OUTPUT.partial keeps, each vouched for by the checksum file
        (saved now if it can be; lines it cannot vouch for are cut, to be predicted again)."""
        whole = _cut_torn_line(self.partial)
        if self.saved < whole <= self.count:
            try:
                self.save(whole)
                return whole
            except (OSError, MlclsError):
                pass
        if whole > self.saved:
            with suppress(OSError):
                _keep_lines(self.partial, self.saved)
            return self.saved
        return whole


class PredictionInterrupted(Interrupted):
    """A prediction run stopped by Ctrl-C (or SIGTERM) with its partial output kept for --resume."""

    def __init__(self, partial: Path, kept: int, terminated: bool = False):
        stopped = "stopped by SIGTERM" if terminated else "interrupted"
        super().__init__(f"{stopped}: {kept} predictions kept in {partial}; rerun with --resume to continue",
                         Terminated.exit_code if terminated else 130)


class Written(NamedTuple):
    """What predict_to_file wrote: predictions by this call, and those a resumed file already held."""

    new: int
    earlier: int = 0

    @property
    def total(self) -> int:
        return self.new + self.earlier


def predict_to_file(
    run: LoadedRun, records: Iterable[Record], output: Path, batch_size: int | None,
    rule: DecisionRule | None = None,
    scores: int | str = "predicted", fmt: str = "jsonl", resume: bool = False, chunk_records: int = CHUNK_RECORDS,
) -> int:
    """Predictions into OUTPUT.partial, renamed to OUTPUT when complete.

    On Ctrl-C the partial file is kept (whole lines only) and `PredictionInterrupted` raised; `resume=True` then
    checks that its lines are the first records of the input (same ids, same order), skips those and
    appends the rest, so the final file equals an uninterrupted run's. On any other error the partial
    file of a fresh run is removed (a resumed run keeps it, cut after its last whole line), even when closing
    it fails too; a file-system fault (full disk, permission) is a one-line WriteError. Returns how many
    predictions this call wrote, and how many the resumed partial file held before it.

    The output is claimed first (an flock on .OUTPUT.lock beside it): a second `mlcls predict -o OUTPUT` while
    this one writes is refused in one line before it writes anything, instead of both writing one .partial."""
    if resume and fmt != "jsonl":
        raise MlclsError("--resume works with JSONL output")
    lock = claim_output(output)
    try:
        with sigterm_as_interrupt():
            return _predict_to_file(run, records, output, batch_size, rule, scores, fmt, resume, chunk_records)
    finally:
        release_lock(lock)


def claim_output(output: Path) -> IO:
    """The lock on `output` for this process, or a one-line error when another process writes it now."""
    lock = output.with_name(f".{output.name}.lock")
    try:
        make_folder(output.parent)
        handle = try_lock(lock)
    except OSError as exc:
        raise WriteError(f"{output}: cannot write there ({describe_os_error(exc)})") from None
    if handle is None:
        raise MlclsError(f"{output}: another mlcls predict is writing this file now (it holds {lock}); choose "
                         "another --output, or wait for it to finish")
    return handle


def _predict_to_file(run: LoadedRun, records: Iterable[Record], output: Path, batch_size: int | None,
                     rule: DecisionRule | None, scores: int | str, fmt: str, resume: bool,
                     chunk_records: int) -> Written:
    partial = output.with_name(f"{output.name}.partial")
    checksum = Checksum(partial, prediction_recipe(run, rule, scores, fmt))
    earlier = 0
    if resume:  # checked here, before anything is written
        records, earlier = _after_done(records, partial, checksum)
    else:
        with suppress(OSError):
            checksum.path.unlink(missing_ok=True)  # of an earlier run
    try:
        handle = open_for_writing(partial, append=resume)
    except OSError as exc:
        raise WriteError(f"{partial}: cannot write ({describe_os_error(exc)})") from None
    written, finishing = 0, False
    try:
        written = write_predictions(run, records, handle, batch_size, rule, scores, fmt, chunk_records, checksum)
        finishing = True  # every OSError from here on is ours: flushing the rest, closing, renaming
        handle.close()
        os.replace(partial, output)
        with suppress(OSError):
            checksum.path.unlink(missing_ok=True)
        return Written(written, earlier)
    except KeyboardInterrupt as exc:
        close_quietly(handle)
        raise PredictionInterrupted(partial, checksum.settle(), isinstance(exc, Terminated)) from None
    except BaseException as exc:
        # close() flushes what is buffered and, on a full disk, raises again: the cleanup must not stop there.
        close_quietly(handle)
        kept = 0
        if resume:  # a resumed run keeps the progress it was given, whole lines only
            kept = checksum.settle()
        else:  # a fresh run leaves no half file
            for path in (partial, checksum.path):
                with suppress(OSError):
                    path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and (finishing or failed_write(exc, partial)):
            target = partial if failed_write(exc, partial) else output
            left = (f"{kept} predictions are kept in {partial}: rerun with --resume once the cause is fixed"
                    if resume else "no file was left")
            raise WriteError(f"{target}: cannot write the predictions ({describe_os_error(exc)}); {left}") from None
        raise


def _whole_lines(partial: Path) -> bytes:
    """A partial output's whole lines; an incomplete last line (a kill mid-write) is cut off the file."""
    data = partial.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(partial, "r+b") as handle:
            handle.truncate(end)
    return data[:end]


def _cut_torn_line(partial: Path) -> int:
    """Cut a partial output after its last whole line; return the number of whole lines."""
    try:
        return _whole_lines(partial).count(b"\n")
    except OSError:
        return 0


def _complete_ids(partial: Path) -> list[str]:
    """Ids of the whole lines of a partial output (its incomplete last line cut off)."""
    ids = []
    for number, line in enumerate(_whole_lines(partial).splitlines(), start=1):
        try:
            ids.append(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            raise MlclsError(f"{partial}:{number}: not a prediction line; cannot resume from this file") from None
    return ids


def _keep_lines(partial: Path, count: int) -> None:
    """Cut a partial output after its first `count` lines."""
    data = partial.read_bytes()
    end = 0
    for _ in range(count):
        end = data.index(b"\n", end) + 1
    with open(partial, "r+b") as handle:
        handle.truncate(end)


def _after_done(records: Iterable[Record], partial: Path, checksum: Checksum) -> tuple[Iterator[Record], int]:
    """The records after those whose predictions OUTPUT.partial holds, and how many it holds, once the input's
    first records are shown to be those (same ids in the same order, and the same ids and texts by the checksum).
    Lines the checksum does not vouch for yet (written after its last update) are cut, to be predicted again."""
    if not partial.is_file():
        raise MlclsError(f"{partial}: nothing to resume (no partial output from an interrupted run)")
    done = _complete_ids(partial)
    whole, vouched = len(done), checksum.stored()
    if vouched is not None and vouched > whole:
        raise MlclsError(f"{partial}: holds {whole} whole lines where {checksum.path.name} counts {vouched}: "
                         "they do not belong together; run again without --resume")
    done = done if vouched is None else done[:vouched]
    iterator = iter(records)
    for position, expected in enumerate(done, start=1):
        record = next(iterator, None)
        if record is None or record.id != expected:
            found = "the end of the input" if record is None else f"id {record.id!r}"
            raise MlclsError(f"{partial}:{position}: has id {expected!r} where the input has {found}: "
                             "the partial output belongs to other input")
        checksum.absorb(record)
    checksum.verify()
    if len(done) < whole:
        _keep_lines(partial, len(done))
    return iterator, len(done)
