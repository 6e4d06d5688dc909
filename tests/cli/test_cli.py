"""The real CLI, end to end, with the tiny encoder: train -> eval -> predict, and the error paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mlcls.cli import app
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

runner = CliRunner()


def test_train_writes_a_self_contained_run(trained):
    folder, _, result = trained
    run = folder / "runs" / "tiny"
    for name in ("config.yaml", "labels.json", "label_stats.json", "head.safetensors", "thresholds.json",
                 "metrics.json", "train_log.jsonl", "encoder/model.safetensors", "encoder/tokenizer_config.json"):
        assert (run / name).exists(), name
    assert (folder / "runs" / "latest").resolve() == run.resolve()
    assert json.loads((run / "labels.json").read_text())["labels"] == ["cocoa", "grain", "oil"]
    assert len((run / "train_log.jsonl").read_text().splitlines()) == 40
    assert not list((folder / "runs").glob(".*incomplete"))
    assert "run saved to" in result.stdout


def test_eval_reaches_f1_one_on_the_memorised_set(trained, tmp_path):
    folder, _, _ = trained
    report_path = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", str(folder / "runs" / "latest"), "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["micro_f1"] == 1.0 and report["macro_f1"] == 1.0 and report["subset_accuracy"] == 1.0
    assert report["records"] == 12 and report["records_without_gold_labels"] == 3
    assert {row["label"] for row in report["per_label"]} == {"cocoa", "grain", "oil"}
    assert "micro-F1" in result.stdout and "macro-F1" in result.stdout
    # the articles with no topic are counted, and a perfect model leaves them empty
    assert report["no_gold_label"] == {"articles": 3, "share_predicted_empty": 1.0, "false_alarm_rate": 0.0,
                                       "mean_labels_predicted": 0.0}
    # Per-label thresholds separate every label (F1 1.0); how one article ranks its labels against each other is
    # another matter after 40 epochs on 12 records: at most one of the 9 articles' top label may miss.
    assert report["ranking"]["precision_at_1"] >= 8 / 9 and report["ranking"]["lrap"] > 0.9
    assert report["ranking"]["articles"] == 9
    assert set(report["frequency_groups"]) == {"head", "medium", "tail"}
    assert report["decision_rule"].startswith("per-label")


def test_eval_overrides_plots_and_compare(trained, tmp_path):
    folder, _, _ = trained
    run = str(folder / "runs" / "tiny")
    result = runner.invoke(app, ["eval", run, "--top-k", "1", "--min-labels", "1", "--json", str(tmp_path / "k.json"),
                                 "--plots", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "k.json").read_text())
    assert report["decision_rule"] == "top-1 + at least one label"
    assert report["no_gold_label"]["share_predicted_empty"] == 0.0  # top-1 tags every article
    for name in ("per_label_f1_vs_frequency.png", "precision_recall_micro.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["eval", run, run, "--compare", "--threshold", "0.99", "--json",
                                 str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert "runs compared" in result.stdout and "tail macro-F1" in result.stdout
    assert set(json.loads((tmp_path / "c.json").read_text())) == {"tiny", "tiny#2"}
    assert runner.invoke(app, ["eval", run, run]).exit_code == 1  # several runs need --compare


def test_eval_compare_writes_each_rejected_line_once(trained, tmp_path):
    # Every run reads the same file; its bad lines went to --rejects once per run before.
    folder, _, _ = trained
    run = str(folder / "runs" / "tiny")
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "cocoa", "labels": ["cocoa"]}, {"text": 3, "labels": []}])
    rejects = tmp_path / "rejects.jsonl"
    result = runner.invoke(app, ["eval", run, run, "--compare", "--data", str(data), "--on-error", "skip",
                                 "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert rejects.read_text().splitlines() == ['{"text": 3, "labels": []}']


def test_eval_notes_ids_that_repeat_and_scores_every_record(trained, tmp_path):
    folder, _, _ = trained
    data = write_jsonl(tmp_path / "rep.jsonl", [{"id": "x", "text": "cocoa beans", "labels": ["cocoa"]},
                                                {"id": "x", "text": "crude oil", "labels": ["oil"]}])
    result = runner.invoke(app, ["eval", str(folder / "runs" / "tiny"), "--data", str(data), "--json",
                                 str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["records"] == 2
    note = (f"1 record of {data} repeats an earlier record's id (first: {data}:2 has the id 'x' of {data}:1); "
            "each is kept as its own article")
    assert note in report["notes"]
    assert "note: 1 record of" in result.stderr and "repeats an earlier record's id" in " ".join(result.stderr.split())


def test_the_no_topic_figures_count_only_articles_known_to_have_none(trained, tmp_path):
    """Not an article whose topics the run does not know (it has one), nor one with a null entry (it may have that
    one); and what was predicted for them is the whole output, a prediction on a null entry included."""
    folder, _, _ = trained
    data = write_jsonl(tmp_path / "nogold.jsonl", [
        {"id": "n1", "text": "museum festival concert", "labels": []},
        {"id": "n2", "text": "crude oil concert", "labels": {"oil": None}},
        {"id": "n3", "text": "gold ship museum", "labels": ["gold"]},
        {"id": "n4", "text": "cocoa beans", "labels": ["cocoa"]},
        {"id": "n5", "text": "wheat harvest", "labels": {"grain": 0.2}}])
    result = runner.invoke(app, ["eval", str(folder / "runs" / "tiny"), "--data", str(data), "--top-k", "1",
                                 "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    # n1 and n5 (grain below 0.5): top-1 tags each with one of the run's 3 labels
    assert report["no_gold_label"] == {"articles": 2, "share_predicted_empty": 0.0, "false_alarm_rate": 1 / 3,
                                       "mean_labels_predicted": 1.0}


def test_predict_keeps_order_ids_and_labels(trained, tmp_path):
    folder, data, _ = trained
    unlabelled = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in TINY_RECORDS])
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(unlabelled), "--model", str(folder / "runs" / "tiny"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in TINY_RECORDS]
    assert [sorted(line["labels"]) for line in lines] == [sorted(r["labels"]) for r in TINY_RECORDS]
    assert all(set(line["scores"]) == set(line["labels"]) for line in lines)
    assert all(0.0 <= s <= 1.0 for line in lines for s in line["scores"].values())


def test_predict_from_stdin_to_stdout(trained):
    folder, _, _ = trained
    stdin = '{"text": "crude oil barrel"}\n{"text": "museum concert"}\n'
    result = runner.invoke(app, ["predict", "-", "--model", str(folder / "runs" / "tiny")], input=stdin)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["1", "2"]
    assert lines[0]["labels"] == ["oil"] and lines[1]["labels"] == []
    result = runner.invoke(app, ["predict", "-", "--model", str(folder / "runs" / "tiny"), "--min-labels", "1"],
                           input=stdin)
    assert [len(json.loads(line)["labels"]) for line in result.stdout.splitlines()] == [1, 1]


def test_bad_record_gives_one_line_error_and_no_output_file(trained, tmp_path):
    folder, _, _ = trained
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"text": "crude oil"}', '{"text": 42}'])
    out = tmp_path / "pred.jsonl"
    result = runner.invoke(app, ["predict", str(bad), "--model", str(folder / "runs" / "tiny"), "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}:2: text field 'text' must be a string, got a number"
    assert "Traceback" not in result.output
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_train_on_bad_data_fails_cleanly(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"text": "a", "labels": ["x"]}', '{"text": "b", "labels": {"x": 2}}'])
    result = runner.invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {bad}:2: confidence of label 'x' is 2, outside [0, 1]"
    assert not (tmp_path / "runs").exists()


def test_train_data_replaces_the_configs_splits(tiny_encoder, tmp_path):
    """--data is this training's data: the config's test and validation files (the demo's test by default) must not
    stay the run's, for `mlcls eval` to score later as this data's; a folder's own splits are taken, and a --set
    of the user's still wins."""
    import yaml

    other = write_jsonl(tmp_path / "other.jsonl", TINY_RECORDS)  # the config's splits: another data set
    config = str(tiny_config(tmp_path, tiny_encoder, other))
    folder = tmp_path / "mine"
    folder.mkdir()
    train_file = write_jsonl(folder / "train.jsonl", TINY_RECORDS)
    test_file = write_jsonl(folder / "test.jsonl", TINY_RECORDS[:6])

    def trained_with(name, *args):
        result = runner.invoke(app, ["train", "-c", config, "--epochs", "1", "--name", name, *args])
        assert result.exit_code == 0, result.output
        return yaml.safe_load((tmp_path / "runs" / name / "config.yaml").read_text())["data"]

    data = trained_with("file", "--data", str(train_file))
    assert (data["train"], data["test"], data["validation"]) == (str(train_file), None, None)
    data = trained_with("folder", "--data", str(folder))
    assert (data["train"], data["test"], data["validation"]) == (str(train_file), str(test_file), None)
    data = trained_with("own-test", "--data", str(train_file), "--set", f"data.test={other}")
    assert (data["test"], data["validation"]) == (str(other), None)
    data = trained_with("no-data")
    assert (data["train"], data["test"], data["validation"]) == (str(other), str(other), str(other))


def test_missing_and_broken_runs_are_clear_errors(trained, tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert result.exit_code == 1 and "run directory not found" in result.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("{}")
    result = runner.invoke(app, ["predict", "x.jsonl", "--model", str(broken)])
    assert result.exit_code == 1 and "labels.json: missing from the run directory" in result.stderr


def test_usage_errors_exit_2():
    assert runner.invoke(app, ["train", "--epochs", "many"]).exit_code == 2
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2


def test_config_error_exits_1_with_one_line():
    result = runner.invoke(app, ["train", "--loss", "nope"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: unknown loss 'nope' (valid: bce, weighted, confidence, focal,")


def test_losses_lists_the_registry():
    result = runner.invoke(app, ["losses"])
    assert result.exit_code == 0
    for name in ("bce", "weighted", "confidence", "focal", "asl", "cb", "db", "cb_ntr", "sqrt_inverse", "gamma_neg"):
        assert name in result.stdout


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mlcls.cli import app\n"
        "for args in (['--help'], ['train', '--help'], ['eval', '--help'], ['predict', '--help'], ['losses'],\n"
        "             ['serve', '--help'], ['export', '--help'], ['data', 'reuters', '--help'],\n"
        "             ['data', 'stats', '--help'], ['config'], ['--version']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'accelerate', 'sklearn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_skip_policy_on_the_command_line(trained, tmp_path):
    folder, data, _ = trained
    run = str(folder / "runs" / "tiny")
    bad = write_jsonl(tmp_path / "mixed.jsonl", ['{"id": "a", "text": "crude oil"}', '{"id": "b", "text": 4}', "{",
                                                 '{"id": "c", "text": "cocoa beans"}'])
    out, rejects = tmp_path / "pred.jsonl", tmp_path / "rejects.jsonl"
    result = runner.invoke(app, ["predict", str(bad), "--model", run, "-o", str(out), "--on-error", "skip",
                                 "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "c"]
    assert rejects.read_text().splitlines() == ['{"id": "b", "text": 4}', "{"]
    assert f"note: skipped 2 lines of {bad}: 1 text not a string, 1 invalid JSON" in result.stderr

    labelled = write_jsonl(tmp_path / "labelled.jsonl", [*TINY_RECORDS, '{"text": "x", "labels": "oil"}'])
    result = runner.invoke(app, ["eval", run, "--data", str(labelled), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 1 and f"{labelled}:13: labels must be a list" in result.stderr  # the run's policy: fail
    result = runner.invoke(app, ["eval", run, "--data", str(labelled), "--on-error", "skip", "--json",
                                 str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["records"] == 12 and report["skipped_lines"] == {"bad labels": 1}


def test_train_skips_bad_records_when_asked(tmp_path, tiny_encoder):
    data = write_jsonl(tmp_path / "tiny.jsonl", [*TINY_RECORDS, '{"text": "", "labels": []}', "not json"])
    config = tiny_config(tmp_path, tiny_encoder, data)
    result = runner.invoke(app, ["train", "-c", str(config), "--epochs", "1", "--name", "fails"])
    assert result.exit_code == 1 and f"{data}:13: empty text" in result.stderr
    rejects = tmp_path / "rejected.jsonl"
    result = runner.invoke(app, ["train", "-c", str(config), "--epochs", "1", "--name", "skips", "--on-error", "skip",
                                 "--rejects", str(rejects)])
    assert result.exit_code == 0, result.output
    assert f"skipped 2 lines of {data}: 1 empty text, 1 invalid JSON" in result.stderr
    assert len(rejects.read_text().splitlines()) == 4  # the same two lines, read once as train, once as validation


def test_train_prints_bracketed_names_as_given_and_says_what_it_leaves_out(tmp_path, tiny_encoder):
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    validation = write_jsonl(tmp_path / "val.jsonl",
                             [{"id": "v1", "text": "cocoa beans", "labels": ["cocoa", "misc[/]x"]}])
    config = str(tiny_config(tmp_path, tiny_encoder, data))
    # rich reads [...] as markup: a run name or label holding brackets was swallowed, or raised after the training
    result = runner.invoke(app, ["train", "-c", config, "--epochs", "1", "--name", "exp[v2]",
                                 "--set", f"data.validation={validation}"])
    assert result.exit_code == 0, result.output
    assert "(ignored): misc[/]x (1)" in result.stderr
    assert f"next: mlcls eval {tmp_path / 'runs' / 'exp[v2]'}" in " ".join(result.stdout.split()).replace("'", "")
    result = runner.invoke(app, ["train", "-c", config, "--epochs", "1", "--name", "alone", "--set",
                                 "data.validation=null", "--set", "data.val_fraction=0",
                                 "--set", "model.lexical=tfidf"])
    assert result.exit_code == 0, result.output
    assert ("note: model.lexical: tfidf is left out: its blend weight is chosen on validation data"
            in " ".join(result.stderr.split()))
    assert not (tmp_path / "runs" / "alone" / "lexical").exists()


def test_predict_scores_modes_and_csv(trained, tmp_path):
    import csv

    folder, _, _ = trained
    run = str(folder / "runs" / "tiny")
    stdin = '{"id": "x", "text": "crude oil barrel"}\n{"id": "y", "text": "museum concert"}\n'
    result = runner.invoke(app, ["predict", "-", "--model", run, "--scores", "all"], input=stdin)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(r["scores"]) == {"cocoa", "grain", "oil"} for r in rows) and rows[1]["labels"] == []
    result = runner.invoke(app, ["predict", "-", "--model", run, "--scores", "top-2"], input=stdin)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [len(r["scores"]) for r in rows] == [2, 2] and next(iter(rows[0]["scores"])) == "oil"
    for bad in ("top-0", "top-\u00b2", "bogus"):  # a bad option value is a usage error (exit 2), never internal
        refused = runner.invoke(app, ["predict", "-", "--model", run, "--scores", bad], input=stdin)
        assert refused.exit_code == 2 and "expected predicted, all or top-N" in refused.output, refused.output
    for name in ("pred.jsonl.gz", "pred.csv.xz", "pred.parquet", "pred.json"):  # a file nothing would read back
        refused = runner.invoke(app, ["predict", "-", "--model", run, "-o", str(tmp_path / name)], input=stdin)
        assert refused.exit_code == 1 and not (tmp_path / name).exists(), refused.output
        assert ("does not compress" if name.endswith((".gz", ".xz")) else "writes JSON Lines or CSV") in refused.stderr

    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", "-", "--model", run, "-o", str(out), "--scores", "all"], input=stdin)
    assert result.exit_code == 0, result.output
    table = list(csv.reader(out.open()))
    assert table[0] == ["id", "labels", "cocoa", "grain", "oil"]
    assert [row[:2] for row in table[1:]] == [["x", "oil"], ["y", ""]]
    assert all(0.0 <= float(v) <= 1.0 for row in table[1:] for v in row[2:])
    result = runner.invoke(app, ["predict", "-", "--model", run, "--format", "csv"], input=stdin)
    lines = result.stdout.splitlines()
    assert lines[0] == "id,labels,scores" and lines[1].startswith("x,oil,oil=")


@pytest.mark.parametrize(("name", "content", "message"), [
    ("head.safetensors", b"not a safetensors file", "head.safetensors: corrupt or does not match labels.json"),
    ("thresholds.json", b"{not json", "thresholds.json: not a valid decision rule"),
    ("labels.json", b"[1, 2", "labels.json: corrupt"),
    ("config.yaml", b"train: [1\n", "config.yaml:"),
])
def test_corrupt_run_files_are_named(trained, tmp_path, name, content, message):
    import shutil

    folder, _, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(folder / "runs" / "tiny", copy)
    (copy / name).write_bytes(content)
    result = runner.invoke(app, ["predict", "-", "--model", str(copy)], input='{"text": "oil"}\n')
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.output


def test_int8_predictions_stay_close_to_fp32(trained, tmp_path):
    folder, data, _ = trained
    run = str(folder / "runs" / "tiny")
    scores = {}
    for name, extra in (("fp32", []), ("int8", ["--int8"])):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["predict", str(data), "--model", run, "--scores", "all", "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        scores[name] = [json.loads(line)["scores"] for line in out.read_text().splitlines()]
    import torch

    from mlcls.inference.loading import load_run

    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in load_run(run, int8=True).model.modules())
    for fp32, int8 in zip(scores["fp32"], scores["int8"], strict=True):
        assert fp32.keys() == int8.keys()
        assert max(abs(fp32[k] - int8[k]) for k in fp32) < 0.05
    result = runner.invoke(app, ["eval", run, "--data", str(data), "--int8"])
    assert result.exit_code == 0 and "micro" in result.stdout


def test_version_and_app_level_debug(tmp_path):
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mlcls {version('mlcls')}"
    missing = tmp_path / "nothing"
    plain = runner.invoke(app, ["eval", str(missing)])
    assert plain.exit_code == 1 and plain.stderr.startswith("error: ") and "Traceback" not in plain.stderr
    debug = runner.invoke(app, ["--debug", "eval", str(missing)])
    assert debug.exit_code == 1
    from mlcls.errors import RunDirError

    assert isinstance(debug.exception, RunDirError)  # --debug lets the error through, traceback and all


def test_option_help_comes_from_the_config_fields():
    from mlcls.config import config_help

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for key in ("train.patience", "train.freeze_encoder", "model.max_length", "output.name"):
        assert config_help(key) in " ".join(result.stdout.split()), key


def test_eval_saves_scores_for_offline_study(trained, tmp_path):
    import numpy as np

    folder, data, _ = trained
    out = tmp_path / "scores.npz"
    result = runner.invoke(app, ["eval", str(folder / "runs" / "tiny"), "--data", str(data), "--save-scores", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as saved:
        assert saved["probs"].shape == saved["targets"].shape == saved["mask"].shape == (len(TINY_RECORDS), 3)
        assert saved["ids"].tolist() == [r["id"] for r in TINY_RECORDS]
        assert ((saved["probs"] >= 0) & (saved["probs"] <= 1)).all()


# --------------------------------------------------------------------------- data paths of a run, eval notes


def test_a_run_saves_its_data_paths_absolute(tmp_path, monkeypatch):
    from mlcls.config import absolute_data_paths, load_config

    monkeypatch.chdir(tmp_path)
    config = load_config(None, ["data.train=d/train.jsonl", "data.test=/abs/test.jsonl", "data.validation=null"])
    assert absolute_data_paths(config) is config
    assert config.data.train == str(tmp_path / "d" / "train.jsonl")
    assert config.data.test == "/abs/test.jsonl" and config.data.validation is None
    # an encoder named by a folder here is saved absolute (train --resume from another folder loads it); a Hub
    # name stays a name
    (tmp_path / "enc").mkdir()
    local = load_config(None, ["model.encoder=enc"])
    assert absolute_data_paths(local).model.encoder == str(tmp_path / "enc")
    assert absolute_data_paths(load_config(None)).model.encoder == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_tilde_in_a_path_key_is_the_home_folder(tmp_path, monkeypatch):
    """output.dir `~/runs` made a folder named `~` in the working folder; data and encoder paths were not found."""
    from mlcls.config import load_config

    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(None, ["data.train=~/d/train.jsonl", "output.dir=~/runs", "model.encoder=~/enc",
                                "model.init_from=~/runs/parent", "train.cache_dir=~/cache"])
    assert config.data.train == str(tmp_path / "d" / "train.jsonl") and config.output.dir == str(tmp_path / "runs")
    assert config.model.encoder == str(tmp_path / "enc") and config.model.init_from == str(tmp_path / "runs/parent")
    from mlcls.training.cache import cache_root

    # the cache folder is expanded where it is used: a config printed by `mlcls config` keeps `~` there
    assert config.train.cache_dir == "~/cache" and cache_root(config.train.cache_dir) == tmp_path / "cache"


def _old_run(trained, root, test_path: str):
    """A copy of the tiny run as runs trained before data paths were saved absolute: data.test relative to
    `root`, where it was trained, and output.dir `runs`."""
    import shutil

    import yaml

    folder, data, _ = trained
    run = root / "runs" / "old"
    shutil.copytree(folder / "runs" / "tiny", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["test"], config["output"]["dir"] = test_path, "runs"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "data").mkdir(exist_ok=True)
    shutil.copy(data, root / "data" / "t.jsonl")
    return run


def test_eval_of_an_old_run_from_another_folder_finds_its_test_file(trained, tmp_path, monkeypatch):
    # Before: "error: data/t.jsonl: file not found" from any folder but the one the run was trained in.
    run = _old_run(trained, tmp_path / "project", "data/t.jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(app, ["eval", str(run), "--json", "r.json"])
    assert result.exit_code == 0, result.output
    there = tmp_path / "project" / "data" / "t.jsonl"
    assert (f"note: data.test of old is data/t.jsonl, relative to the folder it was trained in: reading {there}"
            in result.stderr)
    assert json.loads((tmp_path / "elsewhere" / "r.json").read_text())["data"] == str(there)
    monkeypatch.chdir(tmp_path / "project")  # from where it was trained: no note
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0 and "relative to the folder" not in result.stderr


def test_eval_of_a_moved_old_run_says_where_its_test_file_was(trained, tmp_path, monkeypatch):
    import shutil

    run = _old_run(trained, tmp_path / "project", "data/t.jsonl")
    moved = tmp_path / "archive" / "old"
    shutil.move(run, moved)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", str(moved)])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: data/t.jsonl: not found; data.test in {moved / 'config.yaml'} is "
                                     "relative to the folder the run was trained in: run eval from there, or pass "
                                     "--data FILE")
    assert runner.invoke(app, ["eval", str(moved), "--data", str(tmp_path / "project" / "data" / "t.jsonl")]) \
        .exit_code == 0


def test_eval_notes_empty_frequency_groups(trained):
    # The tiny run's labels all have fewer than 8 training articles: head and medium are empty (shown as -).
    folder, _, _ = trained
    result = runner.invoke(app, ["eval", str(folder / "runs" / "tiny")])
    assert result.exit_code == 0, result.output
    assert ("note: tiny has no head or medium labels (head: at least 35 training articles; medium: 8 to 34 training "
            "articles): those groups are shown as -") in result.stderr


def test_eval_notes_data_whose_labels_the_run_does_not_know(trained, tmp_path):
    folder, _, _ = trained
    run = str(folder / "runs" / "tiny")
    foreign = write_jsonl(tmp_path / "foreign.jsonl", [{"text": "crude oil", "labels": ["energy"]},
                                                       {"text": "cocoa beans", "labels": ["food", "energy"]}])
    result = runner.invoke(app, ["eval", run, "--data", str(foreign)])
    assert result.exit_code == 0, result.output
    assert (f"note: none of the labels in {foreign} is in the vocabulary of tiny (2 unknown: 'energy', 'food'): "
            "every article counts as having no topic, so F1 is 0; is this the data the run was trained for?"
            in " ".join(result.stderr.split()))
    assert "none of the 3 tail labels of tiny has a gold article" in " ".join(result.stderr.split())
    unlabelled = write_jsonl(tmp_path / "none.jsonl", [{"text": "museum", "labels": []}])
    result = runner.invoke(app, ["eval", run, "--data", str(unlabelled)])
    assert result.exit_code == 0, result.output
    assert f"note: no article in {unlabelled} has a gold label" in result.stderr


@pytest.mark.parametrize("folds", [1, 2])
def test_a_trained_run_finds_its_data_from_any_folder(tiny_encoder, tmp_path, monkeypatch, folds):
    import yaml

    write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, tmp_path / "tiny.jsonl")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "-c", str(config), "--name", "rel", "--epochs", "1",
                                 "--set", "data.train=tiny.jsonl", "--set", "data.test=tiny.jsonl",
                                 "--set", "data.validation=null", "--set", f"train.folds={folds}"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "runs" / "rel" / "config.yaml").read_text())
    assert saved["data"]["train"] == saved["data"]["test"] == str(tmp_path / "tiny.jsonl")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    result = runner.invoke(app, ["eval", str(tmp_path / "runs" / "rel")])
    assert result.exit_code == 0 and "relative to the folder" not in result.stderr, result.output


def test_eval_labels_that_the_run_lacks_are_said_not_dropped(trained):
    folder, data, _ = trained
    result = runner.invoke(app, ["eval", str(folder / "runs" / "tiny"), "--data", str(data),
                                 "--labels", "cocoa, nosuch"])
    assert result.exit_code == 0, result.output
    assert "note: --labels: 'nosuch' is not a label of tiny" in result.stderr
    assert "'cocoa' is not" not in result.stderr and "cocoa" in result.stdout
