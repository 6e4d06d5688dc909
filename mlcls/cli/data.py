"""`mlcls data reuters`, `mlcls data stats`, `mlcls config` and `mlcls losses`: the data and the settings,
before any training.

`data stats` reads a tokenizer (transformers) and `data reuters` the training cache, so their modules are
imported inside the commands: every module here is imported to build `mlcls --help`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mlcls.cli.options import ConfigFile, JsonOut, Overrides, choices
from mlcls.cli.output import check_apart, check_stdout_apart, err, out, print_notes, require_stdout, write_atomically
from mlcls.config import commented_yaml, load_config
from mlcls.data import reuters as reuters_choices  # light: standard library only

DEFAULT_CONFIG_HEADER = """\
# mlcls configuration: `mlcls config` prints this (each key's meaning is declared once, in mlcls/config/sections.py).
# Values resolve as: built-in defaults < a file (-c) < --set key=value < named options (--loss, ...).
# Relative paths are relative to the directory you run mlcls from."""

ReutersSplit = choices("ReutersSplit", reuters_choices.SPLITS)
ReutersLabels = choices("ReutersLabels", reuters_choices.CATEGORY_FIELDS)


def losses() -> None:
    """List the losses `--loss` accepts, with their parameters and defaults."""
    require_stdout("the list")
    from rich.table import Table

    from mlcls.loss_specs import LOSSES

    table = Table(show_header=True, header_style="bold")
    table.add_column("name")
    table.add_column("description")
    table.add_column("parameters (defaults)")
    for spec in LOSSES.values():
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items()) or "-"
        table.add_row(spec.name, spec.description, params)
    out.print(table)


def config_(config: ConfigFile = None, set_: Overrides = None) -> None:
    """Print the resolved config (defaults < FILE < --set), every key with its meaning.

    With no options this is configs/default.yaml: every key, its default and what it does."""
    require_stdout("the config")
    cfg = load_config(config, set_ or [])
    print_notes(cfg.notes)
    out.print(commented_yaml(cfg, DEFAULT_CONFIG_HEADER), end="", markup=False, highlight=False)


def data_reuters(
    source: Annotated[Path | None, typer.Option(
        help="A local copy: the folder of reut2-*.sgm files or reuters21578.tar.gz (default: download).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Where train.jsonl and test.jsonl go.")] = Path("data/reuters"),
    split: Annotated[ReutersSplit, typer.Option(help="modapte: all ModApte articles (zero-topic kept); "
                                                "apte90: the 90 topics with train and test articles.")]
    = ReutersSplit.apte90,
    labels: Annotated[ReutersLabels, typer.Option(help="Which category set becomes the labels.")]
    = ReutersLabels.topics,
    url: Annotated[str | None, typer.Option(help="Download from this mirror instead.", hidden=True)] = None,
    checksum: Annotated[str | None, typer.Option(help="sha256:HEX or md5:HEX of the tarball.")] = None,
) -> None:
    """Convert Reuters-21578 into train.jsonl / test.jsonl (ModApte or ApteMod-90 split)."""
    from mlcls.data import reuters
    from mlcls.data.download import fetch
    from mlcls.training.cache import cache_root

    if source is None:
        path = fetch(url or reuters.REUTERS_URL, cache_root() / "reuters21578.tar.gz",
                     checksum or reuters.REUTERS_CHECKSUM, err)
    else:
        path = source
    result = reuters.make_split(reuters.read_collection(path), split.value, labels.value)
    written = reuters.write_split(result, out_dir)
    for name, records in (("train", result.train), ("test", result.test)):
        empty = sum(1 for r in records if not r["labels"])
        out.print(f"{written[name]}: {len(records)} articles, {empty} with no {labels.value} label")
    out.print(f"{len(result.labels)} {labels.value} labels ({split.value} split)")


def data_stats(
    file: Annotated[Path, typer.Argument(help="A labelled JSONL/CSV/TSV/JSON/Parquet file.")],
    json_out: JsonOut = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config (field names, encoder).")] = None,
    model: Annotated[str | None, typer.Option(help="Tokenizer for the length statistics.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Report the share of texts longer than this.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Labels listed by frequency (most and least frequent).")] = 10,
) -> None:
    """Records, labels per record, label frequencies (head / medium / tail), text length in tokens."""
    require_stdout("the statistics")
    from mlcls.evaluation.data_stats import file_stats
    from mlcls.evaluation.report import stats_tables

    check_apart({"FILE": file, "--config": config}, {"--json": json_out})
    check_stdout_apart({"FILE": file, "--config": config})
    report = file_stats(file, load_config(config, [], {"model.encoder": model, "model.max_length": max_length}))
    for table in stats_tables(report, top):
        out.print(table)
    print_notes(report["notes"])
    if json_out is not None:
        write_atomically(json_out, lambda f: json.dump(report, f, indent=1))
        err.print(f"statistics written to {json_out}", markup=False)
