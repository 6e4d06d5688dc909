"""An output file never replaces an input or another output: `predict data.jsonl -o data.jsonl` would swap the
user's articles for predictions, and `--rejects X -o X` kept one of the two files while reporting both
written. Each is refused in one line before anything is read, and the input is left as it was."""

from __future__ import annotations

import os
import shutil

import pytest
import yaml

from tests.conftest import _cli


def _copies(trained, tmp_path):
    """A copy of the tiny run whose test file is a copy of the data (what eval reads by default)."""
    folder, data, _ = trained
    mine = tmp_path / "articles.jsonl"
    shutil.copy(data, mine)
    run = tmp_path / "run"
    shutil.copytree(folder / "runs" / "tiny", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["test"] = str(mine)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run, mine, mine.read_bytes()


def _refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_predict_output_on_its_input_is_refused(trained, tmp_path, monkeypatch):
    run, mine, before = _copies(trained, tmp_path)
    _refused(_cli("predict", str(mine), "--model", str(run), "-o", str(mine)), "--output", "the input file")
    monkeypatch.chdir(tmp_path)  # the same file by another name: relative, and through a link
    (tmp_path / "link.jsonl").symlink_to(mine)
    _refused(_cli("predict", "articles.jsonl", "--model", str(run), "-o", "link.jsonl"), "--output")
    os.link(mine, tmp_path / "hard.jsonl")  # and a hard link: the same file under a second name
    _refused(_cli("predict", str(mine), "--model", str(run), "--on-error", "skip", "--rejects",
                  str(tmp_path / "hard.jsonl")), "--rejects")
    assert mine.read_bytes() == before


def test_predict_output_and_rejects_in_one_file_are_refused(trained, tmp_path):
    run, mine, _ = _copies(trained, tmp_path)
    both = tmp_path / "both.jsonl"
    _refused(_cli("predict", str(mine), "--model", str(run), "--on-error", "skip", "--rejects", str(both),
                  "-o", str(both)), "--output", "--rejects")
    assert not both.exists()


def test_train_rejects_on_its_training_file_is_refused(trained, tmp_path):
    run, mine, before = _copies(trained, tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"].update(train=str(mine), validation=str(mine))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    _refused(_cli("train", "-c", str(tmp_path / "c.yaml"), "--on-error", "skip", "--rejects", str(mine),
                  "--out", str(tmp_path / "runs")), "--rejects", "data.train")
    assert mine.read_bytes() == before and not (tmp_path / "runs").exists()


def test_eval_outputs_on_the_scored_file_are_refused(trained, tmp_path, monkeypatch):
    import mlcls.evaluation.evaluate as evaluate_module

    run, mine, before = _copies(trained, tmp_path)
    _refused(_cli("eval", str(run), "--data", str(mine), "--json", str(mine)), "--json", "--data")
    # the run's own test file (no --data): read off the run's config, before any run is loaded or scored
    monkeypatch.setattr(evaluate_module, "load_run", lambda *a, **k: pytest.fail("the run was loaded"))
    _refused(_cli("eval", str(run), "--on-error", "skip", "--rejects", str(mine)), "--rejects", "the test file")
    _refused(_cli("eval", str(run), "--json", str(mine)), "--json", "the test file of run")
    monkeypatch.undo()
    _refused(_cli("eval", str(run), "--save-scores", str(tmp_path / "s.npz"), "--json", str(tmp_path / "s.npz")),
             "--save-scores", "--json")
    assert mine.read_bytes() == before and not (tmp_path / "s.npz").exists()


def test_eval_plots_naming_a_file_is_one_line_and_writes_nothing(trained, tmp_path):
    run, mine, before = _copies(trained, tmp_path)
    _refused(_cli("eval", str(run), "--plots", str(mine), "--save-scores", str(tmp_path / "s.npz")),
             "--plots takes the folder")
    assert mine.read_bytes() == before and not (tmp_path / "s.npz").exists()


def test_predict_output_a_folder_is_refused_before_scoring_and_dash_is_stdout(trained, tmp_path):
    run, mine, _ = _copies(trained, tmp_path)
    _refused(_cli("predict", str(mine), "--model", str(run), "-o", str(tmp_path)), "a folder; --output names the file")
    result = _cli("predict", str(mine), "--model", str(run), "-o", "-")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == len(mine.read_text().splitlines())


def test_outputs_inside_the_run_read_or_onto_a_config_or_a_stats_input_are_refused(trained, tmp_path, monkeypatch):
    """`eval RUN --json RUN/thresholds.json` broke the run it scored; `predict -o RUN/labels.json` too; `data stats
    F --json F` replaced the data with statistics; `train --rejects CONFIG` replaced the config."""
    run, mine, before = _copies(trained, tmp_path)
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    _refused(_cli("eval", str(run), "--json", str(run / "thresholds.json")), "--json", "inside the run")
    _refused(_cli("eval", str(run), "--plots", str(run / "figures")), "--plots", "inside the run")
    _refused(_cli("predict", str(mine), "--model", str(run), "-o", str(run / "labels.json"), "--format", "jsonl"),
             "--output", "inside the run")
    monkeypatch.chdir(tmp_path)  # runs/latest, the default run, is protected as well
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "latest").symlink_to(run, target_is_directory=True)
    _refused(_cli("eval", "--json", "runs/latest/metrics.json"), "--json", "inside the run runs/latest")
    _refused(_cli("predict", str(mine), "-o", str(run / "p.jsonl")), "--output", "inside the run runs/latest")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == kept
    _refused(_cli("data", "stats", str(mine), "--json", str(mine)), "--json", "FILE")
    config = tmp_path / "c.yaml"
    settings = yaml.safe_load((run / "config.yaml").read_text())
    settings["data"].update(train=str(mine), validation=None)
    config.write_text(yaml.safe_dump(settings))
    text = config.read_text()
    _refused(_cli("train", "-c", str(config), "--on-error", "skip", "--rejects", str(config), "--out",
                  str(tmp_path / "new-runs")), "--rejects", "--config")
    assert mine.read_bytes() == before and config.read_text() == text


def test_an_output_name_too_long_for_the_files_beside_it_is_one_line(trained, tmp_path):
    """A 246-byte name is a valid file name, but not OUT.partial.sha256's temporary beside it (the error came at
    the end), and a 256-byte one made is_dir() raise: an internal error."""
    run, mine, _ = _copies(trained, tmp_path)
    for length in (227, 256):
        long_name = tmp_path / ("y" * (length - len(".jsonl")) + ".jsonl")
        _refused(_cli("predict", str(mine), "--model", str(run), "-o", str(long_name)), "--output",
                 f"a name of {length} bytes; at most 226")
    too_long = tmp_path / ("y" * 237 + ".json")  # 242 bytes: its temporary name would be 256
    _refused(_cli("eval", str(run), "--json", str(too_long)), "--json", "at most 241")
    _refused(_cli("export", str(run), "--out", str(tmp_path / ("x" * 250))), "--out", "at most 235")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["articles.jsonl", "run"]


def test_rejects_dash_is_refused_and_an_error_stays_one_line_whatever_a_name_holds(trained, tmp_path, monkeypatch):
    run, mine, _ = _copies(trained, tmp_path)
    monkeypatch.chdir(tmp_path)
    _refused(_cli("predict", str(mine), "--model", str(run), "--on-error", "skip", "--rejects", "-"), "--rejects -")
    assert not (tmp_path / "-").exists()  # was created, a file named "-"
    _refused(_cli("predict", "new\nline.jsonl", "--model", str(run)), "new\\nline.jsonl: file not found")


def test_eval_compare_refuses_before_scoring_what_it_could_not_write_or_read_twice(trained, tmp_path):
    """--plots PARENT --compare puts each run's figures in PARENT/<run name>/: with PARENT the runs' folder, that
    is inside each run. --save-scores holds one run's scores, and standard input can be read once: both were said
    only after every run was scored (or, for stdin, as "the file is empty" at the second run)."""
    run, mine, _ = _copies(trained, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(run, other)
    kept = sorted(p.name for p in run.iterdir())
    _refused(_cli("eval", str(run), str(other), "--compare", "--plots", str(tmp_path)), "--plots (for",
             "inside the run")
    assert sorted(p.name for p in run.iterdir()) == kept
    _refused(_cli("eval", str(run), str(other), "--compare", "--save-scores", str(tmp_path / "s.npz")),
             "--save-scores writes one run's scores")
    _refused(_cli("eval", str(run), str(other), "--compare", "--data", "-"), "standard input can be read once")
