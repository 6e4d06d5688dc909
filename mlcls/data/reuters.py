"""Reuters-21578 (Distribution 1.0): SGML parsing, the ModApte and ApteMod-90 splits, JSONL out.

The collection is read from a local copy (a folder of reut2-*.sgm files, or the distribution's
tarball) or downloaded from the UCI archive; it is never committed (research use only).

Parsing notes, all from the distribution's README and its bytes:
- the files are ASCII except one stray byte in reut2-017.sgm: decoded as latin-1, which cannot fail;
- text uses SGML character references (&lt; &amp; and control characters such as &#3; at the end of
  each body): `html.unescape` resolves them, and drops the control-character references;
- <TEXT TYPE="BRIEF"> has a title and no body; <TEXT TYPE="UNPROC"> has raw text and no title/body
  tags: that raw text is the body.
"""

from __future__ import annotations

import html
import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlcls.atomic import atomic_open
from mlcls.errors import DataError

CATEGORY_FIELDS = ("topics", "places", "people", "orgs", "exchanges")
SPLITS = ("modapte", "apte90")
NUM_SGML_FILES = 22

REUTERS_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/reuters21578-mld/reuters21578.tar.gz"
# The MD5 published for the distribution's tarball (the same file on David Lewis' and UCI's sites).
# A SHA-256 of the UCI file could not be obtained without network access; pass --checksum sha256:HEX
# to pin one.
REUTERS_CHECKSUM = "md5:a22faadd7dde0dfdd784e60087209aa6"

_ARTICLE = re.compile(r"<REUTERS\s([^>]*)>(.*?)</REUTERS>", re.S)
_ATTR = re.compile(r'(\w+)="([^"]*)"')
_TEXT = re.compile(r"<TEXT([^>]*)>(.*?)</TEXT>", re.S)
_D = re.compile(r"<D>(.*?)</D>", re.S)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Article:
    newid: str
    oldid: str
    topics_attr: str  # "YES", "NO" or "BYPASS"
    lewissplit: str  # "TRAIN", "TEST" or "NOT-USED"
    cgisplit: str
    date: str
    title: str
    dateline: str
    body: str
    text_type: str  # "NORM", "BRIEF" or "UNPROC"
    categories: dict[str, list[str]] = field(default_factory=dict)

    def record(self, labels: list[str]) -> dict:
        """Our record format: id = NEWID, title + text, labels; the other fields kept for users."""
        return {
            "id": self.newid, "title": self.title, "text": self.body, "labels": labels,
            "date": self.date, "dateline": self.dateline, **self.categories,
            "lewissplit": self.lewissplit, "cgisplit": self.cgisplit, "topics_attr": self.topics_attr,
            "oldid": self.oldid, "text_type": self.text_type,
        }


def clean(text: str) -> str:
    return _CONTROL.sub("", html.unescape(text)).strip()


def _element(name: str, block: str) -> str:
    match = re.search(rf"<{name}>(.*?)</{name}>", block, re.S)
    return match.group(1) if match else ""


def parse_sgml(content: str, source: str = "<sgml>") -> Iterator[Article]:
    """Articles of one SGML file's text (already decoded)."""
    for match in _ARTICLE.finditer(content):
        attrs = dict(_ATTR.findall(match.group(1)))
        inner = match.group(2)
        if "NEWID" not in attrs:
            raise DataError(source, content.count("\n", 0, match.start()) + 1, "<REUTERS> without NEWID")
        text_match = _TEXT.search(inner)
        text_attrs = dict(_ATTR.findall(text_match.group(1))) if text_match else {}
        text_block = text_match.group(2) if text_match else ""
        text_type = text_attrs.get("TYPE", "NORM")
        if text_type == "UNPROC":
            title, dateline, body = "", "", text_block
        else:
            title, dateline, body = (_element(n, text_block) for n in ("TITLE", "DATELINE", "BODY"))
        yield Article(
            newid=attrs["NEWID"], oldid=attrs.get("OLDID", ""), topics_attr=attrs.get("TOPICS", ""),
            lewissplit=attrs.get("LEWISSPLIT", ""), cgisplit=attrs.get("CGISPLIT", ""),
            date=clean(_element("DATE", inner)), title=clean(title), dateline=clean(dateline),
            body=clean(body), text_type=text_type,
            categories={name: [clean(d) for d in _D.findall(_element(name.upper(), inner))]
                        for name in CATEGORY_FIELDS},
        )


def read_collection(source: Path) -> list[Article]:
    """All 21,578 articles from a folder of reut2-*.sgm files or from the distribution's tarball."""
    if source.is_dir():
        files = sorted(source.glob("reut2-*.sgm"))
        if len(files) != NUM_SGML_FILES:
            raise DataError(source, None, f"expected {NUM_SGML_FILES} reut2-*.sgm files, found {len(files)}")
        contents = ((str(f), f.read_bytes()) for f in files)
    elif source.is_file():
        contents = _tarball_members(source)
    else:
        raise DataError(source, None, "not found (pass the folder of reut2-*.sgm files or the .tar.gz)")
    articles = []
    for name, raw in contents:
        articles.extend(parse_sgml(raw.decode("latin-1"), name))
    return articles


def _tarball_members(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with tarfile.open(path) as tar:
            members = sorted((m for m in tar.getmembers() if re.fullmatch(r"(.*/)?reut2-\d{3}\.sgm", m.name)),
                             key=lambda m: m.name)
            if len(members) != NUM_SGML_FILES:
                raise DataError(path, None, f"expected {NUM_SGML_FILES} reut2-*.sgm files inside, "
                                f"found {len(members)}")
            for member in members:
                handle = tar.extractfile(member)
                assert handle is not None
                yield f"{path}:{member.name}", handle.read()
    except tarfile.TarError as exc:
        raise DataError(path, None, f"not a readable tar archive ({exc})") from None


@dataclass
class Split:
    train: list[dict]
    test: list[dict]
    labels: list[str]  # the categories that the split's records may carry


def make_split(articles: list[Article], split: str = "modapte", category: str = "topics") -> Split:
    """ModApte: LEWISSPLIT TRAIN/TEST with TOPICS="YES" (9,603 / 3,299), articles with no category kept.

    apte90: of those, the categories with at least one training and one test article (90 topics), and
    the articles carrying at least one of them (7,770 / 3,019), labels restricted to those categories.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    train = [a for a in articles if a.topics_attr == "YES" and a.lewissplit == "TRAIN"]
    test = [a for a in articles if a.topics_attr == "YES" and a.lewissplit == "TEST"]
    if split == "modapte":
        labels = sorted({c for a in train + test for c in a.categories[category]})
        return Split([a.record(a.categories[category]) for a in train],
                     [a.record(a.categories[category]) for a in test], labels)
    in_train = Counter(c for a in train for c in set(a.categories[category]))
    in_test = Counter(c for a in test for c in set(a.categories[category]))
    keep = {c for c in in_train if c in in_test}

    def restricted(part: list[Article]) -> list[dict]:
        out = []
        for a in part:
            labels = [c for c in a.categories[category] if c in keep]
            if labels:
                out.append(a.record(labels))
        return out

    return Split(restricted(train), restricted(test), sorted(keep))


def write_split(result: Split, out_dir: Path) -> dict[str, Path]:
    """train.jsonl and test.jsonl, each written to a temporary name and renamed when complete."""
    paths = {}
    for name, records in (("train", result.train), ("test", result.test)):
        paths[name] = out_dir / f"{name}.jsonl"
        with atomic_open(paths[name]) as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return paths
