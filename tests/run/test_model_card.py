"""The model card (README.md, Hugging Face format) and provenance.json of a run, and `mlcls eval`'s use of them:
the provenance summary in --json, the warning when the evaluated file is the training or validation file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mlcls.cli import app
from mlcls.evaluation.evaluate import eval_notes
from mlcls.run import provenance
from mlcls.run.files import read_config as load_run_config
from mlcls.run.model_card import render_model_card, write_model_card
from mlcls.run.provenance import command_line, git_state, provenance_summary, write_provenance
from tests.conftest import TINY_RECORDS, write_jsonl

runner = CliRunner()


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A copy of the tiny run (the shared one stays as training left it), with provenance.json and README.md
    written as the training's finish step writes them."""
    folder, _, _ = trained
    run = tmp_path / "runs" / "tiny"
    shutil.copytree(folder / "runs" / "tiny", run)
    write_provenance(run, load_run_config(run))
    write_model_card(run)
    return run


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_provenance_records_versions_device_command_and_data_hashes(run_copy, trained):
    _, data, _ = trained
    record = json.loads((run_copy / "provenance.json").read_text())
    assert record["mlcls"]["version"] == "0.1.0"
    assert set(record["packages"]) >= {"torch", "transformers", "accelerate"} and record["packages"]["torch"]
    assert record["python"].count(".") == 2
    assert record["training"] == {"device": "cpu", "precision": "fp32", "processes": 1}  # from metrics.json
    assert isinstance(record["command"]["argv"], list) and record["command"]["line"]
    digest = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    for key in ("train", "validation", "test"):  # the tiny config names one file for all three
        assert record["data"][key]["sha256"] == digest
        assert record["data"][key]["records"] == len(TINY_RECORDS)
        assert record["data"][key]["path"] == str(Path(data).absolute())


def test_provenance_tolerates_missing_files_and_no_git(run_copy, tmp_path, monkeypatch):
    config = load_run_config(run_copy)
    config.data.test = str(tmp_path / "gone.jsonl")
    monkeypatch.setattr(provenance, "project_dir", lambda: tmp_path)  # not a git checkout
    write_provenance(run_copy, config)
    record = json.loads((run_copy / "provenance.json").read_text())
    assert record["data"]["test"]["missing"] is True and "sha256" not in record["data"]["test"]
    assert "git_commit" not in record["mlcls"]
    assert git_state(tmp_path) == {}
    monkeypatch.setattr(provenance, "_git", lambda *args: None)  # no git program at all
    assert git_state(Path(__file__).parents[2]) == {}


def test_git_commit_is_recorded_in_a_checkout():
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    state = git_state(root)
    assert len(state["git_commit"]) == 40 and isinstance(state["git_dirty"], bool)


def test_command_line_names_the_program_not_its_path():
    assert command_line(["/x/.venv/bin/mlcls", "train", "--set", "a=b c"]) == "mlcls train --set 'a=b c'"
    assert command_line(["/x/mlcls/__main__.py", "eval"]) == "python -m mlcls eval"
    assert command_line([]) == ""


def test_model_card_front_matter_and_sections(run_copy):
    card = (run_copy / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["pipeline_tag"] == "text-classification"
    assert {"multi-label", "mlcls", "text-classification"} <= set(meta["tags"])
    assert "base_model" not in meta  # the tiny encoder is a local folder, not a Hub model
    metrics = json.loads((run_copy / "metrics.json").read_text())["validation"]
    results = meta["model-index"][0]["results"][0]
    values = {m["args"]["average"]: m["value"] for m in results["metrics"]}
    assert values == {"micro": round(metrics["micro_f1"], 4), "macro": round(metrics["macro_f1"], 4)}
    assert meta["metrics"] == ["f1"] and results["task"]["type"] == "text-classification"
    stats = json.loads((run_copy / "label_stats.json").read_text())["labels"]
    for label in ("cocoa", "grain", "oil"):  # training support and validation F1 (1.0: the memorised set)
        assert f"| {label} | {int(stats[label]['positives'])} | 1.000 |" in card
    for heading in ("## Labels (3)", "## Decision rule", "## Data", "## Training", "## Validation metrics",
                    "## Provenance", "## How to use it"):
        assert heading in card, heading
    assert "per-label (3 tuned" in card and "mlcls predict" in card and "mlcls export" in card
    assert "| micro-F1 | 1.0000 |" in card
    summary = provenance_summary(run_copy)
    assert f"commit {summary['git_commit'][:12]}" in card if summary.get("git_commit") else "trained with mlcls" in card


def test_base_model_is_the_hub_encoder_name(run_copy):
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["model"]["encoder"] = "sentence-transformers/all-MiniLM-L6-v2"
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert _front_matter(render_model_card(run_copy))["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_card_of_a_run_with_files_missing_or_broken_still_renders(run_copy):
    for name in ("tuning_scores.npz", "metrics.json", "provenance.json", "label_stats.json"):
        (run_copy / name).unlink()
    card = render_model_card(run_copy)
    assert "model-index" not in _front_matter(card) and "| cocoa | - | - |" in card
    assert "no provenance.json" in card
    (run_copy / "thresholds.json").write_text("{not json")
    (run_copy / "config.yaml").write_text(": : :")
    write_model_card(run_copy)  # never raises over the run's files
    assert _front_matter((run_copy / "README.md").read_text())["pipeline_tag"] == "text-classification"


def test_eval_json_has_the_provenance_and_warns_on_the_training_file(run_copy, trained, tmp_path):
    _, data, _ = trained
    result = runner.invoke(app, ["eval", str(run_copy), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    digest = hashlib.sha256(Path(data).read_bytes()).hexdigest()
    assert report["provenance"]["data"]["train"]["sha256"] == digest
    assert report["provenance"]["mlcls_version"] == "0.1.0" and report["provenance"]["precision"] == "fp32"
    assert (f"note: {data} is the training and validation file of tiny (same sha256): these figures measure how "
            "well it fits the data it learned from") in result.stderr
    # another file: no warning; a copy of the training file under another name: the same warning
    other = write_jsonl(tmp_path / "other.jsonl", TINY_RECORDS[:6])
    result = runner.invoke(app, ["eval", str(run_copy), "--data", str(other)])
    assert result.exit_code == 0 and "same sha256" not in result.stderr
    renamed = tmp_path / "renamed.jsonl"
    shutil.copy(data, renamed)
    result = runner.invoke(app, ["eval", str(run_copy), "--data", str(renamed)])
    assert "renamed.jsonl is the training and validation file of tiny" in result.stderr


def test_eval_warns_about_the_validation_file_alone(run_copy, tmp_path):
    record = json.loads((run_copy / "provenance.json").read_text())
    record["data"]["train"]["sha256"] = "0" * 64
    (run_copy / "provenance.json").write_text(json.dumps(record))
    notes = provenance.data_overlap_notes(run_copy, record["data"]["validation"]["path"])
    assert len(notes) == 1 and "is the validation file of tiny" in notes[0] and "optimistic" in notes[0]


def test_a_run_without_provenance_has_no_summary(run_copy):
    (run_copy / "provenance.json").unlink()
    assert provenance_summary(run_copy) is None
    assert eval_notes(run_copy, run_copy / "labels.json") == []


def test_card_written_while_training_finishes_names_the_run(run_copy):
    staging = run_copy.parent / ".tiny.incomplete"  # where the finish step writes it, before the rename
    run_copy.rename(staging)
    write_model_card(staging)
    card = (staging / "README.md").read_text()
    assert card.split("---\n", 2)[2].lstrip().startswith("# tiny\n")
    assert _front_matter(card)["model-index"][0]["name"] == "tiny"
