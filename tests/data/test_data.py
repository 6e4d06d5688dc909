from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mlcls.data.ids import repeated_ids
from mlcls.data.labels import LabelSpace
from mlcls.data.records import FieldSpec, ReadPolicy, Record, read_records
from mlcls.errors import DataError
from mlcls.run.files import read_labels, write_labels
from tests.conftest import write_jsonl


def _write(path, text: str):
    path.write_bytes(text.encode())
    return path


def test_reads_hard_soft_masked_and_empty_labels(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "n1", "text": "Cocoa prices fell", "labels": ["cocoa", "trade"]},
        {"id": "n2", "text": "Shares of ...", "labels": []},
        {"id": 7, "text": "Grain", "labels": {"grain": 1.0, "wheat": 0.6, "corn": None}},
        {"text": "no id here", "labels": ["cocoa"]},
    ])
    records = list(read_records(path))
    assert [r.id for r in records] == ["n1", "n2", "7", "4"]  # the line number stands in for a missing id
    assert records[0].labels == {"cocoa": 1.0, "trade": 1.0}
    assert records[1].labels == {}  # kept: "no topic" is an answer
    assert records[2].labels == {"grain": 1.0, "wheat": 0.6, "corn": None}


def test_label_names_are_trimmed_in_every_format(tmp_path):
    # A CSV cell's names were trimmed and a JSON list's were not: " earn" became a topic of its own.
    jsonl = write_jsonl(tmp_path / "d.jsonl", ['{"text": "a", "labels": [" cocoa ", "trade"]}',
                                               '{"text": "b", "labels": {"cocoa\\t": 0.5, " corn": null}}'])
    csv = _write(tmp_path / "d.csv", 'text,labels\na," cocoa ; trade"\nb,"{""cocoa "": 0.5, "" corn"": null}"\n')
    for path in (jsonl, csv):
        records = list(read_records(path))
        assert [r.labels for r in records] == [{"cocoa": 1.0, "trade": 1.0}, {"cocoa": 0.5, "corn": None}]


def test_bom_crlf_and_blank_lines_are_tolerated_and_counted(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "a", "labels": []}\r\n\r\n{"text": "b", "labels": ["x"]}\r\n')
    policy = ReadPolicy()
    records = list(read_records(path, policy=policy))
    assert [r.text for r in records] == ["a", "b"]
    assert records[1].line == 3
    stats = policy.stats[str(path)]
    assert stats.blank_lines == 1 and stats.records == 2


BAD_RECORDS = [
    ('{"text": "a", "labels": [}', 'invalid JSON'),
    ('["text", "labels"]', "expected a JSON object, got a list"),
    ('{"body": "a", "labels": []}', "missing text field 'text'"),
    ('{"text": 3, "labels": []}', "text field 'text' must be a string, got a number"),
    ('{"text": null, "labels": []}', "text field 'text' must be a string, got null"),
    ('{"text": "   ", "labels": []}', "empty text"),
    ('{"text": "a"}', "missing labels field 'labels'"),
    ('{"text": "a", "labels": "cocoa"}', "labels must be a list of names or an object"),
    ('{"text": "a", "labels": ["cocoa", 3]}', "labels list must hold non-empty strings, got a number"),
    ('{"text": "a", "labels": ["cocoa", " "]}', "labels list must hold non-empty strings, got a blank name"),
    ('{"text": "a", "labels": {"": 1.0}}', "labels object has a blank label name ('')"),
    ('{"text": "a", "labels": {"cocoa": 1.5}}', "confidence of label 'cocoa' is 1.5, outside [0, 1]"),
    ('{"text": "a", "labels": {"cocoa": 1.0, " cocoa": 0.5}}', "labels object names label 'cocoa' twice"),
    ('{"text": "a", "labels": {"cocoa ": 1.5}}', "confidence of label 'cocoa' is 1.5"),
    ('{"text": "a", "labels": {"cocoa": -0.1}}', "outside [0, 1]"),
    ('{"text": "a", "labels": {"cocoa": "high"}}', "must be a number in [0, 1] or null, got a string"),
    ('{"text": "a", "labels": {"cocoa": true}}', "got a boolean"),
    ('{"text": "a", "id": [1], "labels": []}', "id field 'id' must be a string or an integer"),
    # Each of these three raised an internal error (no file, no line, not skippable) before.
    ('{"text": "a", "id": "b\\ud800", "labels": []}', "id field 'id' holds an unpaired surrogate"),
    ('{"text": "a", "labels": ["ok", "b\\udc00"]}', "a label name holds an unpaired surrogate"),
    ('{"text": "a", "labels": {"b\\ud800": 1}}', "a label name holds an unpaired surrogate"),
    ('{"text": "a", "id": ' + "1" * 5000 + ', "labels": []}', "invalid JSON: number too long"),
    ('{"text": "a", "labels": {"cocoa": 1' + "0" * 400 + '}}', "confidence of label 'cocoa' is a 401-digit number, "
                                                              "outside [0, 1]"),
]


@pytest.mark.parametrize(("line", "problem"), BAD_RECORDS)
def test_each_bad_record_names_file_line_and_problem(tmp_path, line, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", ['{"text": "fine", "labels": []}', line])
    with pytest.raises(DataError) as info:
        list(read_records(path))
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert problem in message


def test_non_utf8_bytes_are_an_error_with_the_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok", "labels": []}\n{"text": "caf\xe9", "labels": []}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not valid UTF-8"):
        list(read_records(path))


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.jsonl: no records: the file is empty$"):
        list(read_records(empty))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n  \n\r\n")
    with pytest.raises(DataError, match=r"blank\.jsonl: no records: the file holds only 3 blank lines$"):
        list(read_records(blank))
    for name, text, problem in [("blank.csv", "\n\n", "the file holds only 2 blank lines"),
                                ("header.csv", "id,text,labels\n", "the file holds a header and no rows"),
                                ("empty.csv", "", "the file is empty")]:
        with pytest.raises(DataError, match=f"{name}: no records: {problem}$"):
            list(read_records(_write(tmp_path / name, text)))
    with pytest.raises(DataError, match="file not found"):
        list(read_records(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="unsupported file type '.xml'"):
        list(read_records(write_jsonl(tmp_path / "d.xml", ["<a/>"])))


def test_text_from_several_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"title": "Cocoa", "body": "Prices fell.", "labels": []},
        {"title": "Headline only", "labels": []},
        {"body": "Body only", "labels": []},
        {"other": "x", "labels": []},
    ])
    fields = FieldSpec(text_fields=("title", "body"), text_separator=" | ")
    reader = read_records(path, fields)
    assert [next(reader).text for _ in range(3)] == ["Cocoa | Prices fell.", "Headline only", "Body only"]
    with pytest.raises(DataError, match=r":4: missing text: none of the fields 'title', 'body' is present"):
        next(reader)


def test_configurable_field_names_and_unlabelled_input(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"doc": "D1", "content": "x", "topics": ["a"]}, {"content": "y"}])
    fields = FieldSpec(text_fields=("content",), label_field="topics", id_field="doc")
    records = list(read_records(path, fields, require_labels=False))
    assert (records[0].id, records[0].text) == ("D1", "x")
    assert (records[1].id, records[1].labels) == ("2", None)
    labelled = write_jsonl(tmp_path / "l.jsonl", [{"doc": "D1", "content": "x", "topics": ["a"]}])
    assert next(read_records(labelled, fields)).labels == {"a": 1.0}


def test_unlabelled_reading_ignores_the_labels_field(tmp_path):
    # `predict` reads with require_labels=False and ignores labels (README): malformed ones are no error there.
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"id": "a", "text": "x", "labels": {"economy": 1.5}},
        {"id": "b", "text": "y", "labels": "cocoa"},
        {"id": "c", "text": "z", "labels": [3]},
        {"id": "d", "text": "w"},
    ])
    records = list(read_records(path, require_labels=False))
    assert [(r.id, r.labels) for r in records] == [("a", None), ("b", None), ("c", None), ("d", None)]
    with pytest.raises(DataError, match=r"d\.jsonl:1: confidence of label 'economy' is 1\.5"):
        list(read_records(path))  # training and eval still check them
    csv_path = tmp_path / "d.csv"
    csv_path.write_text('id,text,labels\na,x,"{""economy"": 1.5}"\nb,y,"[not json"\n')
    assert [r.id for r in read_records(csv_path, require_labels=False)] == ["a", "b"]


def test_csv_and_parquet_load_through_datasets(tmp_path):
    from datasets import Dataset

    rows = {"id": ["c1", "c2", "c3"], "text": ["cocoa up", "nothing", "grain and oil"],
            "labels": ["cocoa", "", "grain;oil"]}
    Dataset.from_dict(rows).to_csv(str(tmp_path / "d.csv"), index=False)
    records = list(read_records(tmp_path / "d.csv"))
    assert [r.labels for r in records] == [{"cocoa": 1.0}, {}, {"grain": 1.0, "oil": 1.0}]
    assert records[2].line == 4  # header on line 1

    Dataset.from_dict({"id": ["p1", "p2"], "text": ["a", "b"], "labels": [["x", "y"], []]}).to_parquet(
        str(tmp_path / "d.parquet"))
    records = list(read_records(tmp_path / "d.parquet"))
    assert [r.labels for r in records] == [{"x": 1.0, "y": 1.0}, {}]


def test_csv_cell_may_hold_json_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,labels\n"a","{""x"": 0.7, ""y"": null}"\n"b","[""x""]"\n')
    records = list(read_records(path))
    assert [r.labels for r in records] == [{"x": 0.7, "y": None}, {"x": 1.0}]


def test_csv_cells_are_the_strings_they_are(tmp_path):
    # Nothing is type-guessed: zero-padded ids keep their zeros, numeric label codes are labels, numeric-looking
    # text is text; a blank id cell gets the line number, as a JSONL record without an id.
    path = _write(tmp_path / "d.csv", "id,text,labels\n007,cocoa up,3\n010,2024,17\n,grain,3;17\n0042,1.5e3,\n")
    records = list(read_records(path))
    assert [r.id for r in records] == ["007", "010", "4", "0042"]
    assert [r.text for r in records] == ["cocoa up", "2024", "grain", "1.5e3"]
    assert [r.labels for r in records] == [{"3": 1.0}, {"17": 1.0}, {"3": 1.0, "17": 1.0}, {}]


def test_csv_blank_id_does_not_spoil_the_other_rows_under_skip(tmp_path):
    # One blank id cell used to turn the id column into floats: every row was rejected, and under skip the
    # good rows went and the blank one stayed.
    path = _write(tmp_path / "d.csv", 'id,text,labels\n1,oil,oil\n,grain,grain\n9,"",oil\n4,corn,grain\n')
    policy = ReadPolicy("skip")
    records = list(read_records(path, policy=policy))
    assert [(r.id, r.text) for r in records] == [("1", "oil"), ("3", "grain"), ("4", "corn")]
    assert policy.stats[str(path)].skipped == {"empty text": 1}


def test_csv_rows_are_reported_on_their_physical_line(tmp_path):
    # Rows after multi-line cells: the line a row starts on, as an editor shows it (the row index put this
    # bad row on line 4; it sits on line 7).
    text = 'id,text,labels\na,"two\nlines",x\nb,"three\nmore\nlines",y\nc,"  ",z\n'
    path = _write(tmp_path / "d.csv", text)
    with pytest.raises(DataError, match=r"d\.csv:7: empty text"):
        list(read_records(path))
    records = list(read_records(path, policy=ReadPolicy("skip")))
    assert [(r.id, r.line) for r in records] == [("a", 2), ("b", 4)]
    assert records[1].text == "three\nmore\nlines"


def test_csv_bad_rows_are_skippable_with_their_line(tmp_path):
    import io

    path = tmp_path / "d.csv"
    path.write_bytes(b'\xef\xbb\xbfid,text,labels\r\n'  # 1: BOM and CRLF are fine
                     b'a,fine,x\r\n'  # 2
                     b'\r\n'  # 3: blank, not a record
                     b'b,"caf\xe9",x\r\n'  # 4: not UTF-8
                     b'c,one,two,three\r\n'  # 5: a cell too many
                     b'd,short\r\n'  # 6: a cell short
                     b'e,"' + b"long " * 40_000 + b'",y\r\n'  # 7: 200 kB, beyond the csv module's default limit
                     b'f,"never closed,x\r\n'  # 8: runs to the end of the file inside a quoted cell
                     b'g,lost,y\r\n')  # 9
    rejects = io.BytesIO()
    policy = ReadPolicy("skip", rejects)
    records = list(read_records(path, policy=policy))
    assert [(r.id, r.line) for r in records] == [("a", 2), ("e", 7)]
    assert records[1].text == ("long " * 40_000).strip()
    stats = policy.stats[str(path)]
    assert stats.skipped == {"wrong number of cells": 2, "not valid UTF-8": 1, "invalid CSV": 1}
    assert stats.blank_lines == 1
    rejected = rejects.getvalue()  # the file's header, then the skipped rows' own lines: a CSV file again
    assert rejected.startswith(b'\xef\xbb\xbfid,text,labels\r\nb,"caf\xe9",x\r\nc,one,two,three\r\nd,short\r\n')
    assert rejected.endswith(b'f,"never closed,x\r\ng,lost,y\r\n')
    (tmp_path / "rejects.csv").write_bytes(rejected)
    again = ReadPolicy("skip")  # read back, each row is rejected for the reason it was
    with pytest.raises(DataError, match=r"rejects\.csv: no records: all 4 lines were skipped as bad"):
        list(read_records(tmp_path / "rejects.csv", policy=again))
    assert again.stats[str(tmp_path / "rejects.csv")].skipped == stats.skipped

    lines = path.read_bytes().split(b"\r\n")
    for line, problem in [(4, "not valid UTF-8 (byte 7 of the line)"), (5, "4 cells where the header has 3"),
                          (6, "2 cells where the header has 3"), (8, "unterminated quoted cell")]:
        with pytest.raises(DataError, match=rf"one\.csv:{line}: {re.escape(problem)}"):
            list(read_records(_only(path, lines, line)))


def _only(path, lines, keep):
    """The file with the bad rows other than line `keep` blanked out (the line numbers stay)."""
    bad = {4, 5, 6, 8, 9} - {keep} - ({9} if keep == 8 else set())
    path.with_name("one.csv").write_bytes(b"\r\n".join(b"" if i + 1 in bad else line for i, line in enumerate(lines)))
    return path.with_name("one.csv")


def test_csv_header_faults(tmp_path):
    with pytest.raises(DataError, match=r"d\.csv:1: header: column 'text' appears twice"):
        list(read_records(_write(tmp_path / "d.csv", "id,text,text\n1,a,b\n")))


def test_an_unreadable_input_is_a_data_error(tmp_path, monkeypatch):
    import builtins

    import mlcls.data.formats as formats_module  # where input files are opened

    def forbidden(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(formats_module, "open", forbidden, raising=False)
    for name in ("d.jsonl", "d.csv"):
        path = _write(tmp_path / name, "id,text\n1,a\n")
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: cannot read \(permission denied\)$"):
            list(read_records(path))
    assert builtins.open is not forbidden


def test_label_space_round_trip(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"text": "a", "labels": ["grain", "cocoa"]},
        {"text": "b", "labels": []},
        {"text": "c", "labels": {"wheat": 0.6, "corn": None, "grain": 0.0}},
    ])
    records = list(read_records(path))
    space = LabelSpace.from_records(records)
    assert space.labels == ["cocoa", "corn", "grain", "wheat"]  # sorted; a masked-only label is still a label
    encoded = space.encode(records)
    np.testing.assert_allclose(encoded.targets, [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0.6]], rtol=1e-6)
    np.testing.assert_array_equal(encoded.mask, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 1, 1]])
    assert space.decode(encoded.targets[0] >= 0.5) == ["cocoa", "grain"]
    assert space.decode(encoded.targets[1] >= 0.5) == []

    write_labels(tmp_path, space)
    assert read_labels(tmp_path).labels == space.labels
    assert json.loads((tmp_path / "labels.json").read_text()) == {"labels": space.labels}


def test_unknown_labels_are_counted_not_fatal(tmp_path):
    space = LabelSpace(["cocoa", "grain"])
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "labels": ["cocoa", "tea"]},
                                               {"text": "b", "labels": ["tea", "rubber"]}])
    encoded = space.encode(list(read_records(path)))
    assert encoded.unknown_labels == {"tea": 2, "rubber": 1}
    np.testing.assert_array_equal(encoded.targets, [[1, 0], [0, 0]])


# --------------------------------------------------------------------------- the bad-input policy

MIXED = (
    b'\xef\xbb\xbf{"id": "ok1", "text": "fine", "labels": ["a"]}\r\n'  # BOM and CRLF: fine
    b"\n"  # blank: not a record
    b'{"id": "j", "text": "broken", "labels": [}\n'  # invalid JSON
    b'{"id": "u", "text": "caf\xe9", "labels": []}\n'  # not UTF-8
    b'{"id": "e", "text": "  ", "labels": []}\n'  # empty text
    b'{"id": "n", "text": 7, "labels": []}\n'  # text not a string
    b'{"id": "c", "text": "x", "labels": {"a": 3}}\n'  # confidence out of range
    b'{"id": "long", "text": "' + b"word " * 200_000 + b'", "labels": []}\n'  # ~1 MB of text: fine
    b'{"id": "t", "text": "truncated last li'  # a last line cut off mid-record
)


def test_skip_policy_counts_by_reason_and_keeps_the_rejected_lines(tmp_path):
    import io

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(MIXED)
    rejects = io.BytesIO()
    policy = ReadPolicy("skip", rejects)
    records = list(read_records(path, policy=policy))
    assert [r.id for r in records] == ["ok1", "long"]
    stats = policy.stats[str(path)]
    assert stats.skipped == {"invalid JSON": 2, "not valid UTF-8": 1, "empty text": 1, "text not a string": 1,
                             "bad labels": 1}
    assert stats.blank_lines == 1
    assert policy.report(path)[0] == (f"skipped 6 lines of {path}: 2 invalid JSON, 1 not valid UTF-8, 1 empty text, "
                                      "1 text not a string, 1 bad labels")
    rejected = rejects.getvalue().splitlines()
    assert len(rejected) == 6 and rejected[0].startswith(b'{"id": "j"') and rejected[-1].endswith(b"last li")

    with pytest.raises(DataError, match=r"mixed\.jsonl:3: invalid JSON"):  # the default policy stops at the first
        list(read_records(path))


def test_skip_policy_with_nothing_left_is_still_an_error(tmp_path):

    path = write_jsonl(tmp_path / "bad.jsonl", ["{", "[]"])
    with pytest.raises(DataError, match="no records: all 2 lines were skipped as bad"):
        list(read_records(path, policy=ReadPolicy("skip")))


def test_reader_fuzz_any_bytes_give_records_or_a_clear_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st


    fragments = st.sampled_from([b'{"text": "a", "labels": ["x"]}', b'{"text": ', b'"labels": {"x": 0.5}', b"}",
                                 b"\n", b"\r\n", b"\xff", b"\xef\xbb\xbf", b"null", b"[", b'"', b"1e999", b"{}"])
    data = st.one_of(st.binary(max_size=200), st.lists(fragments, max_size=30).map(b"".join))
    path = tmp_path / "fuzz.jsonl"

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data, st.sampled_from(["fail", "skip"]))
    def check(blob, on_error):
        path.write_bytes(blob)
        try:
            records = list(read_records(path, policy=ReadPolicy(on_error)))
        except DataError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return
        assert all(isinstance(r.text, str) and r.text.strip() for r in records)

    check()


def test_csv_reader_fuzz_any_bytes_give_records_or_a_clear_error(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fragments = st.sampled_from([b"id,text,labels", b"1,a,x", b",", b'"', b'""', b"\n", b"\r\n", b"\r", b"\xff",
                                 b"\xef\xbb\xbf", b"\x00", b"a;b", b'"x\ny"', b"[", b"{}", b" "])
    data = st.one_of(st.binary(max_size=200), st.lists(fragments, max_size=30).map(b"".join))
    path = tmp_path / "fuzz.csv"

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data, st.sampled_from(["fail", "skip"]), st.booleans())
    def check(blob, on_error, labelled):
        path.write_bytes(blob)
        try:
            records = list(read_records(path, require_labels=labelled, policy=ReadPolicy(on_error)))
        except DataError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)
            return
        assert all(isinstance(r.text, str) and r.text.strip() and isinstance(r.id, str) for r in records)
        assert all(1 <= r.line <= blob.count(b"\n") + 1 for r in records)

    check()


def test_text_with_an_unpaired_surrogate_is_a_bad_record(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "text": "fine", "labels": []}\n{"id": "b", "text": "bad \\ud800 x", "labels": []}\n')
    with pytest.raises(DataError, match=r"s.jsonl:2: text holds an unpaired surrogate"):
        list(read_records(path, FieldSpec(text_fields=("text",))))
    policy = ReadPolicy("skip")
    assert [r.id for r in read_records(path, FieldSpec(text_fields=("text",)), policy=policy)] == ["a"]


def test_records_no_output_could_hold_are_skipped_and_counted(tmp_path):
    # An id or a label that no UTF-8 file can hold, or a number Python will not read: skipped under skip as
    # any bad record is, never an internal error when the output is written.
    lines = ['{"id": "a", "text": "fine", "labels": ["x"]}', '{"id": "\\ud800", "text": "t", "labels": []}',
             '{"id": "c", "text": "t", "labels": ["\\udfff"]}', '{"id": ' + "9" * 4400 + ', "text": "t", "labels": []}']
    path = write_jsonl(tmp_path / "u.jsonl", lines)
    policy = ReadPolicy("skip")
    assert [r.id for r in read_records(path, policy=policy)] == ["a"]
    assert policy.stats[str(path)].skipped == {"bad id": 1, "invalid Unicode": 1, "invalid JSON": 1}


def test_a_number_too_long_in_a_json_array_or_a_csv_labels_cell_names_its_record(tmp_path):
    array = tmp_path / "a.json"
    array.write_text('[{"text": "a", "labels": []}, {"text": "b", "id": ' + "7" * 4400 + ', "labels": []}]')
    with pytest.raises(DataError, match=r"a\.json: record 2: invalid JSON: number too long"):
        list(read_records(array))
    cells = tmp_path / "c.csv"
    cells.write_text('text,labels\nok,x\nbad,"{""x"": ' + "1" * 4400 + '}"\n')
    with pytest.raises(DataError, match=r"c\.csv:3: labels cell is not valid JSON: number too long"):
        list(read_records(cells))


def test_a_blank_id_is_the_line_number_in_every_format(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", ['{"id": "", "text": "a", "labels": []}',
                                                '{"id": "  ", "text": "b", "labels": []}',
                                                '{"id": "k", "text": "c", "labels": []}'])
    assert [r.id for r in read_records(path)] == ["1", "2", "k"]


def test_repeated_ids_are_noted_with_their_lines_and_kept(tmp_path):
    path = write_jsonl(tmp_path / "ids.jsonl", ['{"id": "a", "text": "x", "labels": []}',
                                                '{"text": "y", "labels": []}',
                                                '{"id": "a", "text": "z", "labels": []}',
                                                '{"id": 2, "text": "w", "labels": []}',
                                                '{"id": "a", "text": "v", "labels": []}'])
    records = list(read_records(path))
    assert len(records) == 5  # kept: each is its own article
    # the id-less record on line 2 has "2" standing in, which the record with id 2 does not repeat
    assert repeated_ids(records, path) == (f"2 records of {path} repeat an earlier record's id (first: {path}:3 has "
                                           f"the id 'a' of {path}:1); each is kept as its own article")
    assert repeated_ids(records[:2], path) is None
    assert "first: record 3 of a.json has the id 'a' of record 1 of a.json" in repeated_ids(records[:3], "a.json",
                                                                                           "records")
    # a long id is cut in the note; records of two files joined (equal line numbers) still count
    long = [Record("x" * 200, "t", None, 1), Record("x" * 200, "t", None, 1)]
    assert repeated_ids(long, "f.jsonl") == (f"1 record of f.jsonl repeats an earlier record's id (first: f.jsonl:1 "
                                             f"has the id '{'x' * 57}...' of f.jsonl:1); each is kept as its own "
                                             "article")


def test_parquet_struct_labels_read_null_as_absent(tmp_path):
    # pandas and `datasets` write labels given as objects as a struct column: every row carries every label,
    # null where the record named none. Those are the record's negatives, as in the JSONL it came from, not
    # "not annotated" (which would drop them from the loss and the metrics without a word).
    from datasets import Dataset

    rows = {"text": ["wheat up", "oil down"], "labels": [{"grain": 1.0, "crude": None}, {"grain": None, "crude": 0.8}]}
    Dataset.from_dict(rows).to_parquet(str(tmp_path / "s.parquet"))
    records = list(read_records(tmp_path / "s.parquet"))
    assert [r.labels for r in records] == [{"grain": 1.0}, {"crude": 0.8}]


def test_skip_counts_lines_that_are_not_objects_under_one_reason(tmp_path):
    """Before, each JSON type was its own reason: "1 expected a JSON object, got a list, 1 expected ..."."""
    path = write_jsonl(tmp_path / "types.jsonl", ['{"text": "fine", "labels": []}', "[1]", '"x"', "5", "null", "true"])
    policy = ReadPolicy("skip")
    assert len(list(read_records(path, policy=policy))) == 1
    assert policy.stats[str(path)].skipped == {"not an object": 5}
    assert policy.report(path)[0] == f"skipped 5 lines of {path}: 5 not an object"


def test_a_pipe_is_not_reported_as_a_missing_file(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match=r"pipe: not a regular file \(a pipe or a device\): give the records on "
                       "standard input as `-`"):
        list(read_records(tmp_path / "pipe"))


def test_a_folder_is_not_reported_as_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="a folder, not a file"):
        list(read_records(tmp_path))


def test_a_name_the_file_system_refuses_is_a_data_error(tmp_path):
    # Path.is_file() raises for a name over 255 bytes: it was an "internal error: OSError"
    with pytest.raises(DataError, match=r"x{10}\.jsonl: cannot read \(file name too long\)$"):
        list(read_records(tmp_path / ("x" * 300 + ".jsonl")))


def test_parquet_empty_or_not_parquet_is_one_clear_line(tmp_path, capfd):
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string()), "labels": pa.array([], pa.list_(pa.string()))}),
                   str(empty))
    with pytest.raises(DataError, match="no records: the file is empty"):
        list(read_records(empty))
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"broken\.parquet: cannot read PARQUET: Parquet magic bytes not found"):
        list(read_records(broken))
    assert capfd.readouterr().err == ""  # before, `datasets` logged its own "Failed to read file" lines


def test_label_stats_count_articles_from_half_and_read_old_files_without_the_count():
    """The frequency groups and the baseline count articles (a soft label from 0.5 up, as `mlcls data stats` does);
    the priors and losses keep the confidences summed. A label_stats.json saved before the count reads as before."""
    from mlcls.data.labels import LabelStats
    from mlcls.data.records import Record
    from mlcls.data.stats import frequency_group

    records = [Record(f"c{i}", "t", {"cocoa": 0.6}, i) for i in range(10)]
    records += [Record(f"o{i}", "t", {"oil": 1.0}, 10 + i) for i in range(5)]
    records += [Record(f"w{i}", "t", {"oil": 0.45}, 20 + i) for i in range(5)]
    space = LabelSpace.from_records(records)
    encoded = space.encode(records)
    stats = LabelStats.from_encoded(space.labels, encoded.targets, encoded.mask)
    assert stats.counts() == {"cocoa": 10.0, "oil": 5.0}
    assert stats.positives.tolist() == pytest.approx([6.0, 7.25])  # what the priors and losses use
    assert {name: frequency_group(n) for name, n in stats.counts().items()} == {"cocoa": "medium", "oil": "tail"}
    again = LabelStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again.counts() == stats.counts() and again.positives.tolist() == stats.positives.tolist()
    old = stats.to_dict()
    for entry in old["labels"].values():
        del entry["articles"]
    assert LabelStats.from_dict(old).counts() == pytest.approx({"cocoa": 6.0, "oil": 7.25})
    assert frequency_group(7.25) == "tail"  # an old run's soft count under 8 articles is no medium label
    with pytest.raises(ValueError, match=r"labels.oil.articles: expected a number >= 0"):
        LabelStats.from_dict({**old, "labels": {"oil": {"positives": 1, "annotated": 2, "articles": -1}}})
