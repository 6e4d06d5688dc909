"""`mlcls data stats FILE`: what a labelled file holds (data/stats.py), with text lengths counted in the
tokens of the config's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlcls.data.ids import reading_notes
from mlcls.data.records import FieldSpec, ReadPolicy, read_records
from mlcls.data.stats import dataset_stats
from mlcls.model.classifier import load_tokenizer


def file_stats(path: str | Path, config) -> dict[str, Any]:
    """`mlcls data stats`: dataset_stats of a labelled file, with text lengths in the config's encoder's tokens."""
    policy = ReadPolicy()
    records = list(read_records(path, FieldSpec.from_config(config.data), policy=policy))
    tokenizer = load_tokenizer(config.model.encoder)
    lengths = [len(ids) for ids in tokenizer([r.text for r in records], truncation=False)["input_ids"]]
    report = dataset_stats(records, lengths, config.model.max_length)
    report["file"] = str(path)
    report["tokenizer"] = config.model.encoder
    report["notes"] = reading_notes(policy, path, records)  # blank lines, repeated ids
    return report
