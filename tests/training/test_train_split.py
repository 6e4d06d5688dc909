from __future__ import annotations

from mlcls.data.records import Record
from mlcls.training.split import hold_out


def test_hold_out_is_seeded_and_keeps_every_label_in_training():
    data = [Record(str(i), "t", {"common": 1.0}, i) for i in range(50)]
    data += [Record("rare", "t", {"rare": 1.0, "common": 1.0}, 51)]
    for seed in range(20):
        train, val = hold_out(data, 0.5, seed)
        assert len(train) + len(val) == len(data)
        assert any("rare" in r.labels for r in train)  # its only article never goes to validation
    assert hold_out(data, 0.2, 1) == hold_out(data, 0.2, 1)
    assert hold_out(data, 0.0, 1) == (data, [])


def test_a_labels_only_positive_stays_in_training_though_others_name_it_unannotated_or_below_half():
    """Another article naming the label with null (not annotated) or a confidence under 0.5 keeps it in the
    vocabulary, but gives the model no positive to learn from: the only article carrying it stays in train."""
    data = [Record(str(i), "t", {"common": 1.0}, i) for i in range(50)]
    data += [Record("rare", "t", {"rare": 1.0}, 51), Record("unsure", "t", {"rare": None, "common": 1.0}, 52),
             Record("weak", "t", {"rare": 0.2, "common": 1.0}, 53), Record("soft", "t", {"soft": 0.6}, 54)]
    moved = 0
    for seed in range(30):
        for stratified in (False, True):
            train, val = hold_out(data, 0.5, seed, stratified)
            assert len(train) + len(val) == len(data)
            assert any(r.id == "rare" for r in train) and any(r.id == "soft" for r in train)
            moved += any(r.id in ("unsure", "weak") for r in val)
    assert moved  # the seeds did put the other articles naming `rare` into validation: the case was met


def test_training_split_notes_repeated_ids_and_ids_shared_with_the_validation_file(tmp_path):
    from mlcls.config import load_config
    from mlcls.training.split import training_split
    from tests.conftest import write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", [{"id": "a", "text": "x", "labels": ["p"]},
                                                   {"id": "b", "text": "y", "labels": ["q"]},
                                                   {"id": "a", "text": "z", "labels": ["p"]},
                                                   {"text": "no id", "labels": ["q"]}])
    validation = write_jsonl(tmp_path / "val.jsonl", [{"id": "c", "text": "u", "labels": ["p"]},
                                                      {"id": "b", "text": "y", "labels": ["q"]},
                                                      {"id": "d", "text": "t", "labels": ["p"]},
                                                      {"text": "no id either", "labels": ["q"]}])
    config = load_config(None, overrides=[f"data.train={train}", f"data.validation={validation}"])
    notes: list[str] = []
    records, held = training_split(config, note=notes.append)
    assert (len(records), len(held)) == (4, 4)  # nothing dropped
    assert notes == [
        f"1 record of {train} repeats an earlier record's id (first: {train}:3 has the id 'a' of {train}:1); each "
        "is kept as its own article",
        # both files' line 4 have no id ("4" stands in for each): no evidence of one article on both sides
        f"1 of the 4 records of {validation} has an id that a record of {train} has (first: 'b', {validation}:2 "
        f"and {train}:2): if it is the same article, the validation figures are too high"]
    # one file named two ways, as training and validation file: its notes once, and no "shared" ids
    notes.clear()
    (tmp_path / "sub").mkdir()
    training_split(load_config(None, overrides=[f"data.train={train}",
                                                f"data.validation={tmp_path / 'sub' / '..' / 'train.jsonl'}"]),
                   note=notes.append)
    assert len(notes) == 2 and "repeats an earlier record's id" in notes[0]
    # ... and that every validation article is trained on: the figures that choose the rule are too high
    assert notes[1] == (f"data.validation is data.train ({tmp_path / 'sub' / '..' / 'train.jsonl'}): the decision "
                        "rule and the kept epoch are chosen on articles the model trains on, so the validation "
                        "figures are too high (data.validation: null holds out data.val_fraction of it instead)")


def test_the_hold_out_notes_ids_it_put_on_both_sides(tmp_path):
    from mlcls.config import load_config
    from mlcls.training.split import training_split
    from tests.conftest import write_jsonl

    rows = [{"id": f"n{i}", "text": f"t{i}", "labels": ["p" if i % 2 else "q"]} for i in range(40)]
    train = write_jsonl(tmp_path / "train.jsonl", rows + [{**row, "text": row["text"] + " again"} for row in rows])
    notes: list[str] = []
    kept, held = training_split(load_config(None, overrides=[f"data.train={train}", "data.val_fraction=0.25"]),
                                note=notes.append)
    both = {r.id for r in kept} & {r.id for r in held}
    assert len(kept) + len(held) == 80 and both  # some article's two copies did land on both sides
    first = next(r for r in held if r.id in both)
    in_kept = next(r for r in kept if r.id == first.id)
    assert notes[1] == (f"{sum(r.id in both for r in held)} of the 20 records held out of {train} for validation "
                        f"have an id that a record left in training has (first: {first.id!r}, {train}:{first.line} "
                        f"and {train}:{in_kept.line}): if they are the same articles, the validation figures are "
                        "too high")


def test_a_record_with_every_entry_null_is_not_counted_as_having_no_label(tmp_path):
    """`labels: []` is an answer (no topic); every label null is none: the summary line counts them apart."""
    from rich.console import Console

    from mlcls.config import load_config
    from mlcls.training.data import read_training_data
    from tests.conftest import write_jsonl

    rows = [{"text": "cocoa up", "labels": ["cocoa"]}, {"text": "oil down", "labels": ["oil"]},
            {"text": "museum", "labels": []}, {"text": "unread", "labels": {"cocoa": None, "oil": None}}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    console = Console(record=True, width=300)
    read_training_data(load_config(None, overrides=[f"data.train={train}", f"data.validation={train}",
                                                    "data.text_fields=[text]"]), console, None)
    assert ("4 training and 4 validation records, 2 labels; 1 training records have no label, 1 no annotated "
            "label (every entry null)") in console.export_text()
