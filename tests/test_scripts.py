"""scripts/: every script imports (in a fresh interpreter, as `python scripts/NAME.py` would), reaches mlcls only
through `mlcls.api`, and shares code only through scripts/benchlib.py; plus the pure parts of the scripts
(bench_thresholds' rule table, bench_losses' commands, benchlib's doc blocks) on small inputs.

    pytest -q tests/test_scripts.py
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlcls.api import DecisionOverrides, compute_metrics, evaluate_runs
from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT_FILES = sorted(SCRIPTS.glob("*.py"))
SCRIPT_NAMES = {path.stem for path in SCRIPT_FILES}


def imported_modules(path: Path) -> list[str]:
    """Every module a script imports, at any depth (workers import inside functions), as dotted names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from mlcls import api` names the module mlcls.api; `from x import name` names x itself
            found += [f"{node.module}.{a.name}" if node.module == "mlcls" else node.module for a in node.names]
    return found


def has_main_block(path: Path) -> bool:
    """True when the script ends in `if __name__ == "__main__":`."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name) \
                and node.test.left.id == "__name__":
            return True
    return False


# A fresh interpreter per script: one script's imports (torch, a stale module) cannot help or hide another's.
SMOKE = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
module = importlib.import_module(sys.argv[2])
print(json.dumps({"main": callable(getattr(module, "main", None))}))
"""


def test_there_are_scripts_and_benchmarks_doc_is_gone():
    assert {"benchlib", "bench_losses", "bench_thresholds", "reuters_accuracy"} <= SCRIPT_NAMES
    assert "benchmarks_doc" not in SCRIPT_NAMES  # write_block lives in benchlib now


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_every_script_imports(path):
    done = subprocess.run([sys.executable, "-c", SMOKE, str(SCRIPTS), path.stem], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    if has_main_block(path):
        assert json.loads(done.stdout.strip().splitlines()[-1])["main"], f"{path.name}: no callable main()"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_scripts_reach_mlcls_only_through_the_public_api(path):
    private = [name for name in imported_modules(path)
               if (name == "mlcls" or name.startswith("mlcls.")) and name != "mlcls.api"]
    assert private == [], f"{path.name} imports {private}; scripts may import mlcls.api only"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.stem)
def test_scripts_share_code_only_through_benchlib(path):
    others = [name for name in imported_modules(path)
              if name.split(".")[0] in SCRIPT_NAMES - {"benchlib"}]
    assert others == [], f"{path.name} imports other scripts {others}; shared helpers belong in benchlib.py"


def test_the_import_checks_see_what_they_should(tmp_path):
    path = tmp_path / "sample.py"
    path.write_text("import mlcls.api\nfrom mlcls import api\ndef f():\n    from mlcls.data.labels import LabelSpace\n"
                    "    from bench_losses import row\n    import reuters_accuracy\n")
    assert imported_modules(path) == ["mlcls.api", "mlcls.api", "mlcls.data.labels", "bench_losses",
                                      "reuters_accuracy"]


@pytest.fixture
def script(monkeypatch):
    """Import a script as a module, scripts/ on sys.path as when it runs; forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    yield importlib.import_module
    for name in SCRIPT_NAMES:
        sys.modules.pop(name, None)


# ------------------------------------------------------------------ bench_thresholds' rule table

LABELS = ["a", "b"]
# Tuning scores: every positive below 0.5, so the fixed 0.5 rule predicts nothing there, while the tuned
# global cut-off (0.35: the grid's perfect cut-offs run 0.11-0.35, ties go nearest 0.5) separates them.
TUNE_PROBS = np.array([[0.45, 0.10], [0.40, 0.35], [0.10, 0.42], [0.05, 0.05]], dtype=np.float32)
TUNE_TARGETS = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32)
TEST_SCORES = np.array([[0.6, 0.4], [0.4, 0.9], [0.2, 0.3]], dtype=np.float32)
TEST_TARGETS = np.array([[1, 1], [0, 1], [0, 0]], dtype=np.float32)
PRIORS = np.array([0.5, 0.5])
COUNTS = {"a": 40.0, "b": 3.0}  # a is a head label (>= 35 training positives), b a tail one (<= 7)


@pytest.fixture
def rule_table(script):
    bench = script("bench_thresholds")
    rows = bench.rule_rows(TUNE_PROBS, TUNE_TARGETS, np.ones_like(TUNE_TARGETS), PRIORS, COUNTS, TEST_SCORES,
                           TEST_TARGETS, np.ones_like(TEST_TARGETS), LABELS)
    return bench, {(r["rule"], r["min_labels"]): r for r in rows}, rows


def test_rule_rows_cover_every_rule_with_and_without_min_labels(rule_table):
    bench, by_key, rows = rule_table
    assert len(rows) == 2 * len(bench.RULES) == 18
    assert [r["rule"] for r in rows[::2]] == [shown for shown, *_ in bench.RULES]
    assert [r["min_labels"] for r in rows[:2]] == [0, 1]


def test_fixed_rule_row_is_compute_metrics_at_half(rule_table):
    _, by_key, _ = rule_table
    fixed = by_key[("fixed 0.5", 0)]
    expected = compute_metrics(TEST_TARGETS, np.ones_like(TEST_TARGETS), TEST_SCORES >= 0.5, LABELS)
    assert fixed["test_micro_f1"] == expected["micro_f1"] == pytest.approx(0.8)  # TP 2, FN 1, FP 0
    assert fixed["test_macro_f1"] == expected["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert fixed["tuning_micro_f1"] == 0.0  # every tuning positive lies below 0.5
    # by training frequency: a (head) is right on test, b (tail) has F1 2/3, no label is medium
    assert (fixed["head_macro_f1"], fixed["medium_macro_f1"]) == (1.0, None)
    assert fixed["tail_macro_f1"] == pytest.approx(2 / 3)


def test_min_labels_and_top_k_rows(rule_table):
    _, by_key, _ = rule_table
    # at least one label: the empty third test article gets b (0.3); the fourth tuning article gets a
    assert by_key[("fixed 0.5", 1)]["test_micro_f1"] == pytest.approx(2 / 3)  # TP 2, FP 1, FN 1
    assert by_key[("fixed 0.5", 1)]["tuning_micro_f1"] == pytest.approx(0.75)  # TP 3, FP 1, FN 1
    assert by_key[("top_k 1", 0)]["test_micro_f1"] == pytest.approx(2 / 3)
    # the tuned global cut-off, 0.35, fits the tuning scores exactly and finds all three test positives
    assert by_key[("global", 0)]["tuning_macro_f1"] == 1.0
    assert by_key[("global", 0)]["test_micro_f1"] == pytest.approx(6 / 7)  # TP 3, FP 1, FN 0


def test_the_picked_rule_is_the_first_best_on_tuning_scores(rule_table):
    _, _, rows = rule_table
    picked = [r for r in rows if r["picked"]]
    assert [(r["rule"], r["min_labels"]) for r in picked] == [("global", 0)]
    assert picked[0]["tuning_macro_f1"] == max(r["tuning_macro_f1"] for r in rows)


def test_markdown_marks_the_pick_and_shows_empty_groups_as_a_dash(rule_table):
    bench, _, rows = rule_table
    for r in rows:
        r["run"] = "tiny"
    text = bench.markdown(rows, "python scripts/bench_thresholds.py runs/tiny")
    table = [line for line in text.splitlines() if line.startswith("| tiny |")]
    assert len(table) == 2 * len(bench.RULES)
    assert table[2].startswith("| tiny | **global** | 0 | **100.00 / 100.00** |")
    assert table[0] == "| tiny | fixed 0.5 | 0 | 0.00 / 0.00 | 80.00 | 83.33 | 100.00 / - / 66.67 |"
    assert "never used for choosing" in text


def test_bench_thresholds_on_a_trained_run_agrees_with_mlcls_eval(script, trained):
    """The real path: a run's tuning_scores.npz, label_stats.json and test file. The fixed 0.5 row is what
    `mlcls eval --threshold 0.5` reports; the run's own rule, re-tuned on the scores it was tuned on, scores
    what `mlcls eval` reports."""
    folder, _, _ = trained
    run = folder / "runs" / "tiny"
    assert (run / "tuning_scores.npz").is_file()  # training keeps the scores its rule was tuned on
    rows = {(r["rule"], r["min_labels"]): r for r in script("bench_thresholds").run_rows(run, 8)}
    assert len(rows) == 18 and {r["run"] for r in rows.values()} == {"tiny"}
    fixed = evaluate_runs([run], None, 8, DecisionOverrides(threshold=0.5)).reports[0]
    assert rows[("fixed 0.5", 0)]["test_micro_f1"] == pytest.approx(fixed["micro_f1"])
    assert rows[("fixed 0.5", 0)]["test_macro_f1"] == pytest.approx(fixed["macro_f1"])
    own = evaluate_runs([run], None, 8).reports[0]
    assert own["decision_rule"].startswith("per-label")  # the tiny config's rule: per_label, min_positives 3
    assert rows[("per_label (min_positives 3)", 0)]["test_micro_f1"] == pytest.approx(own["micro_f1"])


def test_bench_thresholds_explains_a_run_without_tuning_scores(script, tmp_path):
    with pytest.raises(SystemExit, match="tuning_scores.npz: not found"):
        script("bench_thresholds").tuning_scores(tmp_path, 2)


# ------------------------------------------------------------------ bench_lexical_c: training's own choice


@pytest.mark.parametrize("space", ["probability", "logit"])  # model.lexical_blend
def test_bench_lexical_c_at_the_runs_c_makes_the_choice_training_made(script, tmp_path, tiny_encoder, space):
    """At the C (and blend) the run was trained with, the study refits the same lexical model on the same rows and
    must choose the weight that training chose, by the held-out figure that training recorded for it."""
    from rich.console import Console

    from mlcls.api import load_config, train

    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS * 2)
    # One slow epoch: the encoder alone is imperfect (0.62 held out), so the weight chosen is not the tie-break 0
    config = load_config(tiny_config(tmp_path, tiny_encoder, data),
                         ["train.epochs=1", "train.head_lr=1e-3", "model.lexical=tfidf", "model.lexical_c=3",
                          f"model.lexical_blend={space}"], {"output.name": "lex"})
    result = train(config, Console(stderr=True, quiet=True))
    weight = result.metrics["lexical_weight"]
    [row] = script("bench_lexical_c").study(result.run_dir, [3.0], [space], None)
    assert row["weight"] == weight > 0 and row["blend"] == space
    recorded = result.metrics["lexical_weights_tried"][f"{weight:.1f}"]
    assert (row["micro"] + row["macro"]) / 200 == pytest.approx(recorded, abs=1e-4)


# ------------------------------------------------------------------ bench_lexical_refit: no leak into the scored half


def test_bench_lexical_refit_adds_the_tuning_half_and_never_the_scored_one(script, tmp_path, tiny_encoder,
                                                                           monkeypatch):
    """The kept model is fitted on `mlcls train`'s training part; each refit on that part plus the half that the
    weight and rule were chosen on, and the two directions' additions are the validation rows, each once."""
    from collections import Counter

    from mlcls.api import load_config, training_split

    records = [{**r, "id": f"{r['id']}-{i}"} for i in range(4) for r in TINY_RECORDS]
    data = write_jsonl(tmp_path / "tiny.jsonl", records)
    path = tiny_config(tmp_path, tiny_encoder, data)
    path.write_text(path.read_text().replace(f"validation: {data}", "validation: null, val_fraction: 0.5"))
    config = load_config(path)
    module = script("bench_lexical_refit")
    fitted, real = [], module.fit_lexical

    def recording(texts, targets, mask, c):
        fitted.append(list(texts))
        return real(texts, targets, mask, c)

    monkeypatch.setattr(module, "fit_lexical", recording)
    rows = module.study_alone(path, seed=config.train.seed, splits=1)

    train, validation = training_split(config)
    kept, *refits = fitted
    assert kept == [r.text for r in train] and len(refits) == len(rows) == 2
    added = [refit[len(kept):] for refit in refits]
    assert all(refit[:len(kept)] == kept for refit in refits) and all(added)
    assert Counter(added[0]) + Counter(added[1]) == Counter(r.text for r in validation)
    assert all(0 <= row[key] <= 100 for row in rows for key in ("kept_micro", "kept_macro", "refit_micro"))


# ------------------------------------------------------------------ bench_losses: one code path, one flag


def test_bench_losses_frozen_mode_runs_mlcls_train_with_freeze_encoder(script):
    bench = script("bench_losses")
    args = bench.parse_args(["--data", "data/reuters", "--seed", "7", "--runs", "out"])
    command = bench.training_command("focal", "bench-frozen-focal", args)
    assert command[:3] == [sys.executable, "-m", "mlcls"]
    cli = command[3:]
    assert cli[:4] == ["train", "-c", "configs/reuters.yaml", "--freeze-encoder"]
    assert cli[cli.index("--loss") + 1] == "focal" and cli[cli.index("--epochs") + 1] == "40"
    assert cli[cli.index("--seed") + 1] == "7" and cli[cli.index("--out") + 1] == "out"
    sets = [cli[i + 1] for i, item in enumerate(cli) if item == "--set"]
    assert sets == ["data.train=data/reuters/train.jsonl", "data.test=data/reuters/test.jsonl",
                    "threshold.rule=per_label", "model.long_text=truncate"]  # one cached vector per article


def test_bench_losses_finetune_mode_is_the_same_command_without_freezing(script):
    bench = script("bench_losses")
    frozen = bench.training_command("bce", "run", bench.parse_args(["--set", "train.lr=1e-4"]))
    finetune = bench.training_command("bce", "run", bench.parse_args(["--mode", "finetune", "--set", "train.lr=1e-4"]))
    # fine-tuning keeps the config's epochs and long-text mode; the user's --set comes last, so it wins
    dropped = ("--freeze-encoder", "--epochs", "40")
    kept = [item for item in frozen if item not in dropped]
    assert finetune == [item for i, item in enumerate(kept)
                        if "model.long_text=truncate" not in (item, kept[min(i + 1, len(kept) - 1)])]
    assert finetune[-2:] == ["--set", "train.lr=1e-4"]


def test_bench_losses_config_is_what_the_trainings_run_with(script, monkeypatch):
    monkeypatch.chdir(SCRIPTS.parent)  # --config's default, configs/reuters.yaml, is relative to the repository
    bench = script("bench_losses")
    config = bench.config_of(bench.parse_args(["--rule", "global"]))
    assert (config.train.freeze_encoder, config.train.epochs, config.train.seed) == (True, 40, 42)
    assert config.threshold.rule == "global"
    assert bench.config_of(bench.parse_args(["--mode", "finetune"])).train.freeze_encoder is False


# ------------------------------------------------------------------ benchlib


def test_write_block_replaces_its_block_and_appends_new_ones(script, tmp_path):
    benchlib = script("benchlib")
    doc = tmp_path / "benchmarks.md"
    benchlib.write_block(doc, "one", "| a |", "## One")
    benchlib.write_block(doc, "two", "| b |", "## Two")
    benchlib.write_block(doc, "one", "| a, again |", "## One")
    text = doc.read_text()
    assert text == ("# Benchmarks\n\n## One\n\n<!-- one:start -->\n| a, again |\n<!-- one:end -->\n"
                    "\n## Two\n\n<!-- two:start -->\n| b |\n<!-- two:end -->\n")
    benchlib.write_block(doc, "one:second", "| c |", "## One")  # a second block under a heading already there
    assert doc.read_text().index("one:second:start") < doc.read_text().index("## Two")


def test_mlcls_command_runs_this_interpreters_cli(script, capsys):
    benchlib = script("benchlib")
    assert benchlib.mlcls_command("eval", "runs/x") == [sys.executable, "-m", "mlcls", "eval", "runs/x"]
    assert benchlib.eval_command(Path("runs/x"), Path("out")) == [
        sys.executable, "-m", "mlcls", "eval", "runs/x", "--json", str(Path("out") / "x.eval.json")]
    assert "$ mlcls eval runs/x" in capsys.readouterr().out


# ------------------------------------------------------------------ bench_train_malloc: the setting changes no result


def test_bench_train_malloc_runs_both_arms_and_finds_the_same_figures(script, tmp_path, tiny_encoder):
    """Both arms are the real `mlcls train` in a child process; the kept arm sets glibc's malloc (on glibc Linux) and
    the other does not, and a training's figures must not depend on the allocator."""
    import argparse

    bench = script("bench_train_malloc")
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    args = argparse.Namespace(config=str(tiny_config(tmp_path, tiny_encoder, data)), seed=3,
                              set=["train.epochs=1"], repeats=1)
    results = [bench.run_arm(arm, args, tmp_path / arm) for arm in ("kept", "glibc")]
    assert all(r["train_s"] > 0 and r["peak_rss_mib"] > 0 for r in results)
    assert results[0]["figures"] == results[1]["figures"]
    assert results[0]["figures"]["thresholds"]  # the thresholds file was read, not an empty comparison
    assert "the same in every run" in bench.table(results, args)
