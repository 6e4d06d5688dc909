"""`mlcls predict --format csv` writes cells that read back to the same labels and scores, whatever the labels
hold: `a;b` and `a=0.97` while every label of the run reads back so, JSON cells otherwise."""

from __future__ import annotations

import csv
import io
import json
import shutil

from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.data.records import read_records
from mlcls.inference.predict import CsvWriter, plain_label

runner = CliRunner()

AWKWARD = ["énergie; oil=gas", 'say "hi", then', "two\nlines", "[bracketed]", " padded ", "plain"]


def _read_cells(text: str) -> list[dict]:
    """What a user of the CSV does: the csv module, then JSON for a cell that starts with [ or {."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [{"id": row["id"], "labels": json.loads(row["labels"]), "scores": json.loads(row["scores"])}
            for row in rows]


def test_csv_output_round_trips_labels_holding_separators_quotes_and_newlines(tmp_path):
    rows = [{"id": "n1", "labels": [AWKWARD[0], AWKWARD[2]], "scores": {AWKWARD[0]: 0.97, AWKWARD[2]: 0.61}},
            {"id": "n,2", "labels": [], "scores": {}},
            {"id": "n3", "labels": AWKWARD[1:], "scores": {name: 0.5 for name in AWKWARD[1:]}}]
    out = io.StringIO(newline="")
    writer = CsvWriter(out, sorted(AWKWARD), "predicted")
    for row in rows:
        writer.write(row)
    assert _read_cells(out.getvalue()) == rows
    # and the labels cell reads back through mlcls's own CSV reader (as training data), labels unchanged but for
    # the spaces around " padded ": mlcls trims label names in every format (a run trained before it did, or
    # labels given another way, can hold one)
    path = tmp_path / "pred.csv"
    path.write_text(out.getvalue().replace("scores", "text"), newline="")
    records = list(read_records(path))
    assert [sorted(r.labels) for r in records] == [sorted(name.strip() for name in row["labels"]) for row in rows]


def test_csv_output_of_plain_labels_keeps_the_short_form():
    out = io.StringIO(newline="")
    writer = CsvWriter(out, ["cocoa", "grain", "oil"], "predicted")
    writer.write({"id": "x", "labels": ["oil", "grain"], "scores": {"oil": 0.9, "grain": 0.7}})
    assert out.getvalue().splitlines() == ["id,labels,scores", "x,oil;grain,oil=0.9;grain=0.7"]
    assert all(plain_label(name) for name in ("cocoa", "ship-lines", "u.s. trade"))
    assert not any(plain_label(name) for name in AWKWARD[:-1])


def test_csv_with_a_column_per_label_round_trips_awkward_label_names():
    out = io.StringIO(newline="")
    writer = CsvWriter(out, AWKWARD, "all")
    writer.write({"id": "x", "labels": [AWKWARD[0]], "scores": dict.fromkeys(AWKWARD, 0.25)})
    header, row = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert header == ["id", "labels", *AWKWARD]
    assert json.loads(row[1]) == [AWKWARD[0]] and row[2:] == ["0.25"] * len(AWKWARD)


def _relabelled_run(trained, tmp_path, names: dict[str, str]):
    """A copy of the tiny run whose labels carry other names (labels.json and every file that names them)."""
    folder, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(folder / "runs" / "tiny", copy)

    def rename(value):
        if isinstance(value, dict):
            return {names.get(k, k): rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        return names.get(value, value) if isinstance(value, str) else value

    for path in copy.glob("*.json"):
        path.write_text(json.dumps(rename(json.loads(path.read_text()))))
    return copy


def test_cli_predict_csv_with_awkward_labels_reads_back_to_the_jsonl_output(trained, tmp_path):
    names = {"cocoa": AWKWARD[0], "grain": AWKWARD[1], "oil": AWKWARD[2]}
    run = _relabelled_run(trained, tmp_path, names)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"id": f"r{i}", "text": text}) + "\n" for i, text in enumerate(
        ["cocoa beans harvest", "crude oil barrel and wheat grain", "museum festival", "cocoa oil grain"])))
    for scores in ("predicted", "all"):
        as_jsonl = runner.invoke(app, ["predict", str(data), "--model", str(run), "--scores", scores])
        out = tmp_path / "pred.csv"
        as_csv = runner.invoke(app, ["predict", str(data), "--model", str(run), "--scores", scores, "-o", str(out)])
        assert as_jsonl.exit_code == 0 and as_csv.exit_code == 0, as_jsonl.output + as_csv.output
        expected = [json.loads(line) for line in as_jsonl.stdout.splitlines()]
        assert any(row["labels"] for row in expected)
        if scores == "predicted":
            assert _read_cells(out.read_text()) == expected
        else:
            table = list(csv.DictReader(out.open(newline="")))
            assert [(r["id"], json.loads(r["labels"])) for r in table] == [(e["id"], e["labels"]) for e in expected]
            assert [{name: float(r[name]) for name in names.values()} for r in table] == [e["scores"] for e in expected]
