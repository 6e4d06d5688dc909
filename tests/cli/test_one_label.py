"""A run of one label ("is this about cocoa?"): binary tagging through the same commands. Its ranking figures
are left out (one label ranks nothing; scikit-learn refuses nDCG and coverage there): eval was an internal error."""

from __future__ import annotations

import json

from tests.conftest import TINY_RECORDS, _cli, tiny_config, write_jsonl


def test_a_run_of_one_label_trains_evaluates_and_predicts(tmp_path, tiny_encoder):
    rows = [{**r, "labels": [x for x in r["labels"] if x == "cocoa"]} for r in TINY_RECORDS]
    data = write_jsonl(tmp_path / "cocoa.jsonl", rows)
    config = tiny_config(tmp_path, tiny_encoder, data)
    trained = _cli("train", "-c", str(config), "--name", "cocoa", "--set", "train.epochs=3")
    assert trained.exit_code == 0, trained.output
    run = tmp_path / "runs" / "cocoa"
    assert json.loads((run / "labels.json").read_text())["labels"] == ["cocoa"]
    scored = _cli("eval", str(run), "--json", str(tmp_path / "report.json"))
    assert scored.exit_code == 0, scored.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["labels_with_support"] == 1 and 0.0 <= report["micro_f1"] <= 1.0
    assert set(report["ranking"]) == {"articles", "precision_at_1", "precision_at_3", "precision_at_5"}
    predicted = _cli("predict", str(data), "--model", str(run))
    assert predicted.exit_code == 0, predicted.output
    assert len([line for line in predicted.stdout.splitlines() if line.strip()]) == len(rows)
