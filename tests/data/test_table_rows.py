"""CSV, TSV and Parquet tables (mlcls/data/table_rows.py): what a header lacks, rows that run over lines, and a
file of nothing but bad rows, each said in one line; Parquet read without a copy in the datasets cache."""

from __future__ import annotations

import pytest

from mlcls.data.records import FieldSpec, ReadPolicy, read_records
from mlcls.errors import DataError


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_header_without_the_text_or_labels_column_is_the_files_error_on_its_own_line(tmp_path):
    # Before: "d.csv:2: missing text field 'text'" for a header written "id, text, labels" (line 1's fault), and
    # under skip "no records: all 1 lines were skipped as bad", with no reason.
    spaced = _write(tmp_path / "d.csv", "id, text, labels\n1,cocoa up,cocoa\n")
    for policy in (ReadPolicy("fail"), ReadPolicy("skip")):
        with pytest.raises(DataError, match=r"d\.csv:1: header: no text column 'text' \(data\.text_fields\); the "
                           r"columns are 'id', ' text', ' labels' \(did you mean ' text'\?\)$"):
            list(read_records(spaced, policy=policy))
    no_labels = _write(tmp_path / "e.tsv", "\n\nid\ttext\ttopics\n1\tcocoa up\tcocoa\n")
    with pytest.raises(DataError, match=r"e\.tsv:3: header: no labels column 'labels' \(data\.label_field\); the "
                       r"columns are 'id', 'text', 'topics'$"):
        list(read_records(no_labels))
    # predict reads no labels: the same file is fine there; several text fields need only one of them
    assert [r.text for r in read_records(no_labels, require_labels=False)] == ["cocoa up"]
    titled = _write(tmp_path / "f.csv", "title,labels\nCocoa up,cocoa\n")
    fields = FieldSpec(text_fields=("title", "text"))
    assert [r.text for r in read_records(titled, fields)] == ["Cocoa up"]


def test_a_quote_never_closed_before_the_next_rows_is_said_not_silent(tmp_path):
    # The csv module reads on to the next '"' it finds: rows 2-3 become one record with row 3's labels. Quoted
    # line breaks are legitimate CSV, so the rows are kept; the note says where to look.
    path = _write(tmp_path / "d.tsv", 'id\ttext\tlabels\n1\t"Cocoa rises\tcocoa\n2\tWheat falls" today\twheat\n'
                  "3\tOil\toil\n")
    policy = ReadPolicy()
    records = list(read_records(path, policy=policy))
    assert [(r.id, r.line) for r in records] == [("1", 2), ("3", 4)]
    assert policy.report(path) == [
        f"1 row of {path} ran over several lines (the first from line 2): a quoted cell holds line breaks; where "
        "none should, a '\"' is not closed on that line and the rows after it were read into its cell"]
    one_line_each = _write(tmp_path / "e.csv", 'id,text,labels\n1,"cocoa, up",cocoa\n')
    policy = ReadPolicy()
    list(read_records(one_line_each, policy=policy))
    assert policy.report(one_line_each) == []


def test_a_file_of_only_bad_records_says_why_in_its_one_line(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": "", "labels": []}\nnot json\n{"text": " ", "labels": []}\n\n')
    with pytest.raises(DataError, match=r"d\.jsonl: no records: all 3 lines were skipped as bad \(2 empty text, 1 "
                       r"invalid JSON; and 1 blank line\); the first, on line 1: empty text \(text\)$"):
        list(read_records(path, policy=ReadPolicy("skip")))
    one = _write(tmp_path / "e.jsonl", '{"labels": []}\n')
    with pytest.raises(DataError, match=r"e\.jsonl: no records: the one line was skipped as bad \(1 missing "
                       r"text\); the first, on line 1: missing text field 'text'$"):
        list(read_records(one, policy=ReadPolicy("skip")))


def test_parquet_is_read_in_batches_without_datasets_and_its_cache(tmp_path, monkeypatch):
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    import mlcls.data.table_rows as table_rows

    monkeypatch.setitem(sys.modules, "datasets", None)  # any import of it fails: no copy in its cache either
    monkeypatch.setattr(table_rows, "PARQUET_BATCH", 2)  # rows cross batch boundaries
    texts = [f"article {i}" for i in range(5)]
    table = pa.table({"id": pa.array([10, 11, 12, 13, 14], pa.int64()), "text": texts,
                      "labels": [["a"], [], ["a", "b"], ["b"], []]})
    pq.write_table(table, str(tmp_path / "d.parquet"), row_group_size=3)
    policy = ReadPolicy("skip")
    records = list(read_records(tmp_path / "d.parquet", policy=policy))
    assert [(r.id, r.line, r.text) for r in records] == [(str(10 + i), i + 1, texts[i]) for i in range(5)]
    assert [r.labels for r in records][2] == {"a": 1.0, "b": 1.0}
    # a bad row is named by its row, and counted in rows
    bad = pa.table({"text": ["fine", None, "also fine"], "labels": [["a"], ["a"], ["b"]]})
    pq.write_table(bad, str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError, match=r"bad\.parquet:2: text field 'text' must be a string, got null"):
        list(read_records(tmp_path / "bad.parquet"))
    policy = ReadPolicy("skip")
    assert len(list(read_records(tmp_path / "bad.parquet", policy=policy))) == 2
    assert policy.report(tmp_path / "bad.parquet") == [f"skipped 1 row of {tmp_path / 'bad.parquet'}: 1 missing text"]


def test_rejects_of_csv_files_begin_with_their_header_once(tmp_path):
    """--rejects of a CSV input reads back as a CSV file: its header, then the rejected rows. Two files of one
    header read under one policy (train and validation) write it once; a file of another header writes its own."""
    import io

    train = _write(tmp_path / "train.csv", "id,text,labels\n1,,x\n2,ok,x\n")
    validation = _write(tmp_path / "val.csv", "\ufeffid,text,labels\r\n3,fine,y\r\n4,,y\r\n")
    other = _write(tmp_path / "other.csv", "text,labels,id\n,z,5\nok,z,6\n")
    rejects = io.BytesIO()
    policy = ReadPolicy("skip", rejects)
    for path in (train, validation, other):
        assert len(list(read_records(path, policy=policy))) == 1
    assert rejects.getvalue() == b"id,text,labels\n1,,x\n4,,y\r\ntext,labels,id\n,z,5\n"


def test_parquet_json_and_map_columns_read_as_datasets_gives_them(tmp_path):
    """A labels column written with datasets' Json feature (arrow.json) holds JSON text, and a map column holds
    (key, value) pairs, in pyarrow: decoded to the list or object they are."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": pa.array(['"x"', "7"], pa.json_()),
        "text": ["wheat up", "oil down"],
        "labels": pa.array(['["grain"]', '{"crude": 0.8, "gas": null}'], pa.json_()),
        "scored": pa.array([[("grain", 1.0)], [("crude", 0.5), ("gas", 0.0)]], pa.map_(pa.string(), pa.float64())),
    })
    pq.write_table(table, str(tmp_path / "j.parquet"))
    records = list(read_records(tmp_path / "j.parquet"))
    assert [(r.id, r.labels) for r in records] == [("x", {"grain": 1.0}), ("7", {"crude": 0.8, "gas": None})]
    by_map = list(read_records(tmp_path / "j.parquet", FieldSpec(label_field="scored")))
    assert [r.labels for r in by_map] == [{"grain": 1.0}, {"crude": 0.5, "gas": 0.0}]
