"""Inputs beyond plain JSONL/CSV/Parquet: compressed files (gzip, bz2, xz by suffix), TSV, and a .json file
holding an array of records, each read lazily, with errors that name the line (or, in an array, the record)."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import re
import tracemalloc

import pytest
from typer.testing import CliRunner

import mlcls.data.formats as formats
from mlcls.cli import app
from mlcls.data.records import ReadPolicy, read_records
from mlcls.errors import DataError
from tests.conftest import TINY_RECORDS

runner = CliRunner()
COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
ROWS = [{"id": f"n{i}", "text": f"text {i}", "labels": ["a"] if i % 2 else []} for i in range(6)]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _ids(path, **kwargs) -> list[str]:
    return [r.id for r in read_records(path, **kwargs)]


@pytest.mark.parametrize("suffix", ["gz", "bz2", "xz"])
def test_compressed_jsonl_and_csv_read_like_plain_ones(tmp_path, suffix):
    path = tmp_path / f"d.jsonl.{suffix}"
    path.write_bytes(COMPRESS[suffix](_jsonl(ROWS)))
    assert _ids(path) == [r["id"] for r in ROWS]
    table = tmp_path / f"d.CSV.{suffix.upper()}"  # suffixes in any case
    table.write_bytes(COMPRESS[suffix](b'id,text,labels\n007,"two\nlines",a;b\n008,plain,\n'))
    records = list(read_records(table))
    assert [(r.id, r.text, r.labels, r.line) for r in records] == [
        ("007", "two\nlines", {"a": 1.0, "b": 1.0}, 2), ("008", "plain", {}, 4)]
    bad = tmp_path / f"bad.ndjson.{suffix}"
    bad.write_bytes(COMPRESS[suffix](_jsonl(ROWS[:2]) + b'{"text": 3, "labels": []}\n' + _jsonl(ROWS[2:])))
    with pytest.raises(DataError, match=rf"^{re.escape(str(bad))}:3: text field 'text' must be a string"):
        list(read_records(bad))
    policy = ReadPolicy("skip")
    assert len(_ids(bad, policy=policy)) == 6
    assert policy.report(bad) == [f"skipped 1 line of {bad}: 1 text not a string"]


@pytest.mark.parametrize(("suffix", "damage", "problem"), [
    ("gz", lambda blob: blob[: len(blob) - 20], "cannot decompress: the gzip data ends early (a truncated file?)"),
    ("gz", lambda blob: b"plain text, not gzip\n", "cannot decompress: not valid gzip data (Not a gzipped file"),
    ("bz2", lambda blob: blob[:40] + b"\0" * 40 + blob[80:], "cannot decompress: not valid bz2 data (Invalid data"),
    ("xz", lambda blob: blob[: len(blob) - 30], "cannot decompress: the xz data ends early (a truncated file?)"),
])
def test_a_damaged_compressed_file_stops_in_one_line_under_either_policy(tmp_path, suffix, damage, problem):
    rows = [{"id": f"n{i}", "text": f"text number {i} " * 20, "labels": []} for i in range(200)]
    path = tmp_path / f"d.jsonl.{suffix}"
    path.write_bytes(damage(COMPRESS[suffix](_jsonl(rows))))
    for on_error in ("fail", "skip"):
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:\d+: {re.escape(problem)}") as info:
            list(read_records(path, policy=ReadPolicy(on_error)))
        assert "\n" not in str(info.value)


def test_unsupported_and_uncompressible_names(tmp_path):
    for name in ("d.gz", "d.parquet.gz", "d.jsonl.zip"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(_jsonl(ROWS)))
        with pytest.raises(DataError, match=r"unsupported file type '\.(gz|parquet\.gz|zip)' \(use one of"):
            list(read_records(path))


def test_compressed_input_is_read_in_bounded_memory(tmp_path):
    # ~30 MB of JSONL, 40 kB compressed: reading it all must not hold more than a sliver of it at once
    path = tmp_path / "big.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        line = (json.dumps({"text": "cocoa beans harvest " * 15, "labels": ["cocoa"]}) + "\n").encode()
        for _ in range(100):
            handle.write(line * 1000)
    tracemalloc.start()
    try:
        assert sum(1 for _ in read_records(path)) == 100_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak


def test_tsv_is_read_like_csv(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text('id\ttext\tlabels\n007\tcocoa, beans; more\tcocoa;trade\n\n'
                    '8\t"a tab\tinside"\t["x;y"]\n9\t\tcocoa\n', newline="")
    with pytest.raises(DataError, match=r"d\.tsv:5: empty text"):
        list(read_records(path))
    policy = ReadPolicy("skip")
    records = list(read_records(path, policy=policy))
    assert [(r.id, r.text, r.labels, r.line) for r in records] == [
        ("007", "cocoa, beans; more", {"cocoa": 1.0, "trade": 1.0}, 2), ("8", "a tab\tinside", {"x;y": 1.0}, 4)]
    assert policy.stats[str(path)].blank_lines == 1
    gzipped = tmp_path / "d.tsv.gz"
    gzipped.write_bytes(gzip.compress(b"id\ttext\tlabels\n1\toil\toil\n"))
    assert _ids(gzipped) == ["1"]


def test_a_json_array_of_records(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("\ufeff" + json.dumps(ROWS, indent=2, ensure_ascii=False))
    records = list(read_records(path))
    assert [(r.id, r.line) for r in records] == [(row["id"], i) for i, row in enumerate(ROWS, start=1)]
    assert records[1].labels == {"a": 1.0} and records[0].labels == {}
    no_ids = tmp_path / "no_ids.json.bz2"
    no_ids.write_bytes(bz2.compress(json.dumps([{"text": "x", "labels": []}, {"text": "y", "labels": []}]).encode()))
    assert _ids(no_ids) == ["1", "2"]  # the record's number stands in for a missing id


def test_errors_in_a_json_array_name_the_record(tmp_path):
    path = tmp_path / "d.json"
    rows = [ROWS[0], {"labels": []}, ROWS[2], 7, ROWS[4]]
    path.write_text(json.dumps(rows, indent=1)[:-1] + ', {"text": "a", "labels": [}\n, {"text": "z", "labels": []}]')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: record 2: missing text field 'text'$"):
        list(read_records(path))
    rejects = io.BytesIO()
    policy = ReadPolicy("skip", rejects)
    assert _ids(path, policy=policy) == ["n0", "n2", "n4", "7"]
    assert policy.report(path) == [f"skipped 3 records of {path}: 1 missing text, 1 not an object, 1 invalid JSON"]
    rejected = rejects.getvalue().decode().splitlines()  # one line per skipped record, however it was laid out
    assert [json.loads(line) for line in rejected[:2]] == [{"labels": []}, 7] and len(rejected) == 3


@pytest.mark.parametrize(("content", "problem"), [
    ('"just a string"', "a .json file holds an array of records, [{...}, {...}], or one record per line "
                        "(JSON Lines); this one starts with a string"),
    ("42", "this one starts with a number"),
    ('{\n  "id": "n1",\n  "text": "one record over several lines"\n}', ":1: invalid JSON: Expecting property name"),
    ("[1, 2, 3]", ": record 1: expected a record (a JSON object), got a number: a .json file holds an array"),
    ("[]", ": no records: the array is empty"),
    ("  [ ]  ", ": no records: the array is empty"),
    ('[{"text": "a", "labels": []}] trailing', ":1: invalid JSON array: expected nothing after the array's "
                                               "closing ']', found 't'"),
    ('[{"text": "a", "labels": []}\n {"text": "b", "labels": []}]', ":2: invalid JSON array: expected ',' or ']' "
                                                                    "after record 1, found '{'"),
    ('[{"text": "a", "labels": []},\n]', ":2: invalid JSON array: expected a record after record 1, found ']'"),
    ('[{"text": "a", "labels": []},\n {"text": "b", "lab', ":2: invalid JSON array: record 2 is cut off by the "
                                                          "end of the file (a truncated file?)"),
])
def test_a_json_file_that_is_not_an_array_of_records_is_one_line(tmp_path, content, problem):
    path = tmp_path / "d.json"
    path.write_text(content)
    for on_error in ("fail", "skip"):
        with pytest.raises(DataError) as info:
            list(read_records(path, policy=ReadPolicy(on_error)))
        message = str(info.value)
        assert message.startswith(str(path)) and "\n" not in message
        if on_error == "fail" or not problem.startswith((":1: invalid JSON:", ": record")):  # the file as a whole
            assert problem in message, message
        else:  # each record skipped as bad, and no record left
            assert re.search(r"no records: (all \d+ (lines|records) were|the one (line|record) was) skipped as bad "
                             r"\(.+\); the first(, on line \d+)?: .+; a \.json file holds", message), message


def test_json_lines_in_a_json_file_are_still_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(_jsonl(ROWS))
    assert _ids(path) == [r["id"] for r in ROWS]


def test_a_json_array_is_streamed_record_by_record(tmp_path, monkeypatch):
    # records far larger than a read, and texts full of brackets, quotes and escapes across every boundary
    monkeypatch.setattr(formats, "_CHUNK", 7)
    rows = [{"id": f"n{i}", "text": f'{i} ]}}"\\ [{{' * (i * 30 + 1) + " \u00e9\u2603 ok", "labels": ["a"]}
            for i in range(12)]
    path = tmp_path / "d.json.xz"
    path.write_bytes(lzma.compress(json.dumps(rows, indent=3, ensure_ascii=False).encode()))
    assert [(r.id, r.text) for r in read_records(path)] == [(row["id"], row["text"].strip()) for row in rows]
    monkeypatch.undo()
    big = tmp_path / "big.json.gz"
    with gzip.open(big, "wt") as handle:
        handle.write("[\n" + ",\n".join(json.dumps({"text": f"cocoa {{beans}} [{i}]", "labels": []}, indent=1)
                                        for i in range(100_000)) + "\n]\n")
    tracemalloc.start()
    try:
        assert sum(1 for _ in read_records(big)) == 100_000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak


def test_json_array_reader_fuzz_any_text_gives_records_or_a_clear_error(tmp_path, monkeypatch):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    monkeypatch.setattr(formats, "_CHUNK", 5)
    fragments = st.sampled_from(['{"text": "a", "labels": ["x"]}', "[", "]", ",", "{", "}", '"', "\\", " ", "\n",
                                 '"te]xt"', "1", "null", ":", "\ufeff", "\udcff"])
    data = st.lists(fragments, max_size=30).map("".join)
    path = tmp_path / "fuzz.json"

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data, st.sampled_from(["fail", "skip"]))
    def check(text, on_error):
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        try:
            records = list(read_records(path, policy=ReadPolicy(on_error)))
        except DataError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return
        assert all(isinstance(r.text, str) and r.text.strip() for r in records)

    check()


def test_every_command_reads_the_new_formats(trained, tiny_encoder, tmp_path):
    folder, _, _ = trained
    run = folder / "runs" / "tiny"
    records = [{"id": r["id"], "text": r["text"], "labels": r["labels"]} for r in TINY_RECORDS]
    array = tmp_path / "in.json.gz"
    array.write_bytes(gzip.compress(json.dumps(records, indent=2).encode()))
    tsv = tmp_path / "in.tsv.bz2"
    tsv.write_bytes(bz2.compress(("id\ttext\tlabels\n" + "".join(
        f"{r['id']}\t{r['text']}\t{json.dumps(r['labels'])}\n" for r in records)).encode()))
    for data in (array, tsv):
        result = runner.invoke(app, ["predict", str(data), "--model", str(run)])
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [r["id"] for r in records]
        result = runner.invoke(app, ["eval", str(run), "--data", str(data)])
        assert result.exit_code == 0, result.output
        result = runner.invoke(app, ["data", "stats", str(data), "--model", str(tiny_encoder)])
        assert result.exit_code == 0 and "label groups" in result.stdout, result.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"text": "oil"}, {"text": 3}]))
    result = runner.invoke(app, ["predict", str(bad), "--model", str(run), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1 and result.stderr.strip() == (
        f"error: {bad}: record 2: text field 'text' must be a string, got a number")
    assert not list(tmp_path.glob("out.jsonl*"))
