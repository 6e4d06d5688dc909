"""Reuters-21578: the parser on hand-made SGML, the counts of the real collection, the CLI converter."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.data.records import read_records
from mlcls.data.reuters import make_split, parse_sgml, read_collection
from mlcls.errors import DataError
from tests.conftest import reuters_dir

runner = CliRunner()

SNIPPET = (
    b'<!DOCTYPE lewis SYSTEM "lewis.dtd">\n'
    b'<REUTERS TOPICS="YES" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="5544" NEWID="1">\n'
    b"<DATE>26-FEB-1987 15:01:01.79</DATE>\n"
    b"<TOPICS><D>cocoa</D><D>trade</D></TOPICS>\n<PLACES><D>el-salvador</D></PLACES>\n"
    b"<PEOPLE></PEOPLE>\n<ORGS></ORGS>\n<EXCHANGES></EXCHANGES>\n<COMPANIES></COMPANIES>\n"
    b"<UNKNOWN> &#5;&#5;&#5;C T\n&#22;&#22;&#1;f0704&#31;reute</UNKNOWN>\n"
    b"<TEXT>&#2;\n<TITLE>BAHIA COCOA &lt;REVIEW&gt; &amp; CAF\xc9</TITLE>\n"
    b"<DATELINE>    SALVADOR, Feb 26 - </DATELINE>"
    b"<BODY>Showers continued\nin the Bahia zone.\n Reuter\n&#3;</BODY></TEXT>\n"
    b"</REUTERS>\n"
    b'<REUTERS TOPICS="YES" LEWISSPLIT="TEST" CGISPLIT="TRAINING-SET" OLDID="5545" NEWID="2">\n'
    b"<DATE>26-FEB-1987</DATE>\n<TOPICS></TOPICS>\n<PLACES><D>usa</D></PLACES>\n<PEOPLE></PEOPLE>\n"
    b"<ORGS></ORGS>\n<EXCHANGES></EXCHANGES>\n<COMPANIES></COMPANIES>\n"
    b'<TEXT TYPE="BRIEF">&#2;\n******<TITLE>STANDARD OIL &lt;SRD> TO FORM FINANCIAL UNIT\n</TITLE>\n'
    b"Blah blah blah.\n&#3;\n</TEXT>\n</REUTERS>\n"
    b'<REUTERS TOPICS="NO" LEWISSPLIT="TRAIN" CGISPLIT="TRAINING-SET" OLDID="5546" NEWID="3">\n'
    b"<DATE>26-FEB-1987</DATE>\n<TOPICS><D>grain</D></TOPICS>\n<PLACES></PLACES>\n<PEOPLE></PEOPLE>\n"
    b"<ORGS></ORGS>\n<EXCHANGES></EXCHANGES>\n<COMPANIES></COMPANIES>\n"
    b'<TEXT TYPE="UNPROC">&#2;\nraw text only &amp; no tags\n&#3;</TEXT>\n</REUTERS>\n'
)


def test_parser_decodes_entities_latin1_and_text_types():
    articles = list(parse_sgml(SNIPPET.decode("latin-1")))
    assert [a.newid for a in articles] == ["1", "2", "3"]
    first, brief, unproc = articles
    assert first.title == "BAHIA COCOA <REVIEW> & CAF\u00c9"
    assert first.body == "Showers continued\nin the Bahia zone.\n Reuter"  # &#3; and the control chars are gone
    assert first.dateline == "SALVADOR, Feb 26 -"
    assert first.categories["topics"] == ["cocoa", "trade"] and first.categories["places"] == ["el-salvador"]
    assert (first.lewissplit, first.topics_attr, first.oldid) == ("TRAIN", "YES", "5544")
    assert brief.text_type == "BRIEF" and brief.body == ""
    assert brief.title == "STANDARD OIL <SRD> TO FORM FINANCIAL UNIT"
    assert brief.categories["topics"] == []
    assert unproc.text_type == "UNPROC" and unproc.body == "raw text only & no tags" and unproc.title == ""


def fake_collection(folder: Path) -> Path:
    """22 SGML files: the snippet in the first, plus a test article carrying only 'cocoa'."""
    folder.mkdir(parents=True, exist_ok=True)
    first = SNIPPET.split(b"</REUTERS>")[0] + b"</REUTERS>\n"
    extra = (first.replace(b'NEWID="1"', b'NEWID="1000"').replace(b'LEWISSPLIT="TRAIN"', b'LEWISSPLIT="TEST"')
             .replace(b"<D>trade</D>", b""))
    for i in range(22):
        content = SNIPPET + extra if i == 0 else b'<!DOCTYPE lewis SYSTEM "lewis.dtd">\n'
        (folder / f"reut2-{i:03d}.sgm").write_bytes(content)
    return folder


def fake_tarball(path: Path) -> Path:
    source = fake_collection(path.parent / "fake-sgml")
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(source.iterdir()):
            tar.add(file, arcname=file.name)
        readme = b"not an sgml file"
        info = tarfile.TarInfo("README.txt")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return path


def test_splits_on_the_hand_made_collection(tmp_path):
    articles = read_collection(fake_collection(tmp_path / "sgml"))
    modapte = make_split(articles, "modapte")
    assert [r["id"] for r in modapte.train] == ["1"]  # NEWID 3 has TOPICS="NO"
    assert [r["id"] for r in modapte.test] == ["2", "1000"]
    assert modapte.test[0]["labels"] == []  # the zero-topic article is kept
    apte = make_split(articles, "apte90")
    assert apte.labels == ["cocoa"]  # 'trade' has a training article but no test article
    assert [(r["id"], r["labels"]) for r in apte.train] == [("1", ["cocoa"])]
    assert [r["id"] for r in apte.test] == ["1000"]  # the zero-topic test article is dropped


def test_tarball_source_and_cli(tmp_path):
    tarball = fake_tarball(tmp_path / "reuters21578.tar.gz")
    result = runner.invoke(app, ["data", "reuters", "--source", str(tarball), "--out", str(tmp_path / "out"),
                                 "--split", "modapte"])
    assert result.exit_code == 0, result.output
    train = list(read_records(tmp_path / "out" / "train.jsonl"))
    assert [(r.id, r.labels) for r in train] == [("1", {"cocoa": 1.0, "trade": 1.0})]
    row = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert row["places"] == ["el-salvador"] and row["date"].startswith("26-FEB-1987")
    assert "2 articles, 1 with no topics label" in result.stdout


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="expected 22 reut2"):
        read_collection(tmp_path)
    (tmp_path / "x.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="not a readable tar archive"):
        read_collection(tmp_path / "x.tar.gz")
    result = runner.invoke(app, ["data", "reuters", "--source", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "not found" in result.stderr


# ------------------------------------------------------------------- the real collection


@pytest.fixture(scope="module")
def collection():
    folder = reuters_dir()
    if folder is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Reuters-21578 not found: set MLCLS_REUTERS_DIR or provide ../shared/data/reuters21578")
        pytest.skip("Reuters-21578 not found (set MLCLS_REUTERS_DIR)")
    return read_collection(folder)


def test_real_collection_counts(collection):
    assert len(collection) == 21578
    assert len({a.newid for a in collection}) == 21578
    modapte = make_split(collection, "modapte")
    assert (len(modapte.train), len(modapte.test)) == (9603, 3299)
    assert sum(not r["labels"] for r in modapte.train) == 1828
    assert sum(not r["labels"] for r in modapte.test) == 280
    apte = make_split(collection, "apte90")
    assert len(apte.labels) == 90
    assert (len(apte.train), len(apte.test)) == (7770, 3019)
    assert all(r["labels"] for r in apte.train + apte.test)
    assert all(r["title"] or r["text"] for r in modapte.train + modapte.test)
    assert not any("&#" in r["text"] or "\x03" in r["text"] for r in modapte.train + modapte.test)
