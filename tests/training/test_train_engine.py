"""The training engine: checkpoints and resume, Ctrl-C, early stopping, frozen-encoder cache, top layers,
the precision choice, and data-parallel training with 2 CPU processes. All with the tiny encoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file
from typer.testing import CliRunner

from mlcls import precision as devices
from mlcls.cli import app
from mlcls.config import load_config
from mlcls.errors import ConfigError, MlclsError
from mlcls.run.checkpoint import find_checkpoint, load_checkpoint
from mlcls.run.find import resumable_run
from mlcls.training import recipe as train_module
from mlcls.training.data import TrainingInterrupted
from mlcls.training.devices import process_share
from mlcls.training.entry import train
from mlcls.training.interrupt import StopAfterStep, StopSignal
from tests.conftest import TINY_RECORDS, sigterm_at_step, tiny_config, write_jsonl

runner = CliRunner()
quiet = Console(stderr=True, quiet=True)




def _config(tmp_path: Path, encoder: Path, name: str, *overrides: str, records=TINY_RECORDS):
    data = write_jsonl(tmp_path / "tiny.jsonl", records)
    # Dropout on, so that the torch random state matters to the result; 3 steps an epoch (6 batches / 2).
    return load_config(tiny_config(tmp_path, encoder, data),
                       ["model.dropout=0.2", "train.epochs=4", "train.batch_size=2", "train.grad_accum=2",
                        f"train.cache_dir={tmp_path / 'cache'}", *overrides],
                       {"output.name": name})


def _weights(run: Path) -> dict[str, torch.Tensor]:
    head = run / "head.safetensors"  # absent with model.head transformers: its head is inside encoder/
    return (load_file(str(head)) if head.exists() else {}) | load_file(str(run / "encoder" / "model.safetensors"))


def _assert_same_run(a: Path, b: Path) -> None:
    assert (a / "train_log.jsonl").read_text() == (b / "train_log.jsonl").read_text()
    assert (a / "thresholds.json").read_text() == (b / "thresholds.json").read_text()
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.parametrize(("stop_at", "head", "extra"),
                         [(6, "linear", ()), (5, "linear", ()), (5, "transformers", ()),
                          (5, "linear", ("train.repeat_threshold=0.9",))],
                         ids=["at-epoch-end", "mid-epoch", "mid-epoch-native-head", "mid-epoch-rare-oversampled"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, tiny_encoder, stop_at, head, extra):
    whole = train(_config(tmp_path, tiny_encoder, "whole", f"model.head={head}", *extra), quiet).run_dir

    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(_config(tmp_path, tiny_encoder, "cut", f"model.head={head}", *extra), quiet,
              stop=StopAfterStep(stop_at))
    staging = tmp_path / "runs" / ".cut.incomplete"
    assert not (tmp_path / "runs" / "cut").exists()  # nothing for eval to mistake for a finished run
    saved = load_checkpoint(find_checkpoint(staging))
    assert saved.state["step"] == stop_at

    resumed_from = resumable_run(tmp_path / "runs" / "cut")
    assert resumed_from == staging
    config = load_config(staging / "config.yaml")
    resumed = train(config, quiet, resume=resumed_from).run_dir
    assert resumed == (tmp_path / "runs" / "cut").resolve()
    assert not staging.exists() and not (resumed / "checkpoint").exists()
    _assert_same_run(whole, resumed)


def test_the_api_leaves_the_callers_config_as_given_and_resumes_only_with_the_runs_own(tmp_path, tiny_encoder):
    """A notebook trains one config object in a loop (the run's generated name went into it, and the second
    training was refused as 'exists already'); a resumed run goes on with its own config only (another loss
    trained the last epochs while config.yaml still said the first), and takes runs/NAME as the message says."""
    from mlcls.errors import ConfigError

    cfg = _config(tmp_path, tiny_encoder, None, "train.epochs=1")
    first, second = train(cfg, quiet).run_dir, train(cfg, quiet).run_dir
    assert first != second and cfg.output.name is None
    with pytest.raises(TrainingInterrupted):
        train(_config(tmp_path, tiny_encoder, "cut"), quiet, stop=StopAfterStep(3))
    other = _config(tmp_path, tiny_encoder, "cut", "loss.name=focal")
    with pytest.raises(ConfigError, match=r"loss.name is 'bce' there, 'focal' here: pass load_config"):
        train(other, quiet, resume=tmp_path / "runs" / "cut")
    own = load_config(tmp_path / "runs" / ".cut.incomplete" / "config.yaml")
    assert train(own, quiet, resume=str(tmp_path / "runs" / "cut")).run_dir == (tmp_path / "runs" / "cut").resolve()


def test_resume_through_the_cli_and_its_errors(tmp_path, tiny_encoder):
    cfg = _config(tmp_path, tiny_encoder, "cli")
    with pytest.raises(TrainingInterrupted):
        train(cfg, quiet, stop=StopAfterStep(3))
    # A new run under the same name would throw the checkpoint away: refused.
    again = runner.invoke(app, ["train", "-c", str(tmp_path / "tiny.yaml"), "--name", "cli"])
    assert again.exit_code == 1 and "--resume" in again.output
    # --resume keeps the run's own config: other settings are a usage error.
    mixed = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cli"), "--epochs", "9"])
    assert mixed.exit_code == 2 and "train.epochs" in mixed.output

    done = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cli")])
    assert done.exit_code == 0, done.output
    assert "resuming cli after epoch 1, step 3" in done.output
    finished = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "cli")])
    assert finished.exit_code == 1 and "finished" in finished.output
    missing = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "nope")])
    assert missing.exit_code == 1 and "no interrupted run" in missing.output


def test_resume_refuses_changed_data(tmp_path, tiny_encoder):
    with pytest.raises(TrainingInterrupted):
        train(_config(tmp_path, tiny_encoder, "drift"), quiet, stop=StopAfterStep(2))
    write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS[:-1])
    staging = tmp_path / "runs" / ".drift.incomplete"
    with pytest.raises(MlclsError, match="data changed"):
        train(load_config(staging / "config.yaml"), quiet, resume=staging)


def test_records_given_to_a_cross_fitted_training_are_refused(tmp_path, tiny_encoder):
    """train(config, data=...) with train.folds > 1 trained one model on the records given while config.yaml
    said folds: 5. Cross-fitting reads and splits data.train itself."""
    from mlcls.training.data import read_training_data

    config = _config(tmp_path, tiny_encoder, "folds")
    records = read_training_data(config, quiet, None)
    config.train.folds, config.data.validation = 3, None
    with pytest.raises(ConfigError, match=r"train.folds > 1 reads and splits the config's data.train itself"):
        train(config, quiet, data=records)
    assert not (tmp_path / "runs").exists()


def test_resume_refuses_another_number_of_processes(tmp_path, tiny_encoder):
    """Each process's share of the batches, batches_done and the steps are of the split the checkpoint was made
    under: a run interrupted under `accelerate launch --num_processes 2` and resumed as one process would train
    some batches twice and skip others, the schedule stretched. Said in one line instead."""
    import json

    from mlcls.run.layout import STATE

    with pytest.raises(TrainingInterrupted):
        train(_config(tmp_path, tiny_encoder, "split"), quiet, stop=StopAfterStep(2))
    staging = tmp_path / "runs" / ".split.incomplete"
    state_file = find_checkpoint(staging) / STATE
    state = json.loads(state_file.read_text())
    assert state["processes"] == 1
    state_file.write_text(json.dumps({**state, "processes": 2}))  # as two processes would have written it
    with pytest.raises(MlclsError, match=r"written by 2 training process\(es\), resumed by 1; resume with as many "
                       r"\(accelerate launch --num_processes 2\)"):
        train(load_config(staging / "config.yaml"), quiet, resume=staging)
    # a checkpoint written before the count was recorded is resumed as before, unchecked
    state_file.write_text(json.dumps({k: v for k, v in state.items() if k != "processes"}))
    assert train(load_config(staging / "config.yaml"), quiet, resume=staging).run_dir.is_dir()


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path, tiny_encoder, monkeypatch):
    cfg = _config(tmp_path, tiny_encoder, "crash", "train.epochs=3")
    real_save = torch.save
    calls = {"n": 0}

    def save_then_die(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: its model file is written, then the process "dies"
            raise SystemExit("killed while writing")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(SystemExit):
        train(cfg, quiet)
    monkeypatch.undo()

    staging = tmp_path / "runs" / ".crash.incomplete"
    assert (staging / "checkpoint.tmp").exists()  # the torn write
    kept = load_checkpoint(find_checkpoint(staging))
    assert kept.path.name == "checkpoint" and kept.state["epoch"] == 1  # the first one, whole
    # A kill between the two renames leaves only checkpoint.old: that one is used.
    (staging / "checkpoint").rename(staging / "checkpoint.old")
    assert find_checkpoint(staging) == staging / "checkpoint.old"
    finished = train(load_config(staging / "config.yaml"), quiet, resume=staging)
    assert finished.metrics["epochs_trained"] == 3


def test_early_stopping_stops_and_keeps_the_best_epoch(tmp_path, tiny_encoder, monkeypatch):
    # A validation score that only falls after epoch 1: patience 2 stops after epoch 3.
    scores = iter([0.9, 0.5, 0.4, 0.3, 0.2])
    real_metrics = train_module.compute_metrics

    def falling(*args, **kwargs):
        metrics = real_metrics(*args, **kwargs)
        metrics["micro_f1"] = next(scores)
        return metrics

    monkeypatch.setattr(train_module, "compute_metrics", falling)
    result = train(_config(tmp_path, tiny_encoder, "early", "train.epochs=5", "train.patience=2"), quiet)
    assert result.metrics["stopped_early"] is True
    assert result.metrics["epochs_trained"] == 3 and result.metrics["best_epoch"] == 1
    assert len((result.run_dir / "train_log.jsonl").read_text().splitlines()) == 3


def test_frozen_encoder_cache_is_reused_and_invalidated(tmp_path, tiny_encoder, monkeypatch):
    computed = []
    real_pool = train_module.build_model

    def counting_build(*args, **kwargs):
        model, tokenizer = real_pool(*args, **kwargs)
        original = model.pool

        def pool(input_ids, attention_mask):
            # The texts, not the one-token rows that fill a pass (data/batching.rows_by_length): distinct rows.
            computed.append(len({tuple(row.tolist()) for row, real in zip(input_ids, attention_mask, strict=True)
                                 if real.sum() > 1}))
            return original(input_ids, attention_mask)

        model.pool = pool
        return model, tokenizer

    monkeypatch.setattr(train_module, "build_model", counting_build)
    first = train(_config(tmp_path, tiny_encoder, "f1", "train.freeze_encoder=true"), quiet)
    # Validation is the training file here: its texts, tokens and vectors are the same, encoded once.
    assert sum(computed) == len(TINY_RECORDS)
    computed.clear()
    second = train(_config(tmp_path, tiny_encoder, "f2", "train.freeze_encoder=true"), quiet)
    assert computed == []  # every vector came from the cache
    assert (first.run_dir / "train_log.jsonl").read_text() == (second.run_dir / "train_log.jsonl").read_text()
    # The encoder stayed as it was: its saved weights equal the ones it started from.
    start = load_file(str(tiny_encoder / "model.safetensors"))
    saved = load_file(str(second.run_dir / "encoder" / "model.safetensors"))
    for key in saved:
        torch.testing.assert_close(saved[key], start[key])

    # Other data -> new vectors.
    train(_config(tmp_path, tiny_encoder, "f3", "train.freeze_encoder=true", records=TINY_RECORDS[:-1]), quiet)
    assert sum(computed) == len(TINY_RECORDS) - 1
    # Another encoder (same architecture and vocabulary, other weights) -> new vectors.
    computed.clear()
    other = tmp_path / "other-encoder"
    shutil.copytree(tiny_encoder, other)
    weights = load_file(str(other / "model.safetensors"))
    from safetensors.torch import save_file

    shifted = {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}
    save_file(shifted, str(other / "model.safetensors"))
    train(_config(tmp_path, tiny_encoder, "f4", "train.freeze_encoder=true", f"model.encoder={other}",
                  records=TINY_RECORDS[:-1]), quiet)
    assert sum(computed) == len(TINY_RECORDS) - 1


def test_token_ids_are_cached_by_tokenizer_max_length_and_text(tmp_path, tiny_encoder):
    from transformers import AutoTokenizer

    from mlcls.training.cache import cached_token_ids

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    texts = [r["text"] for r in TINY_RECORDS]
    ids, hit = cached_token_ids(tokenizer, texts, 8, tmp_path)
    assert not hit and ids == tokenizer(texts, truncation=True, max_length=8)["input_ids"]
    assert cached_token_ids(tokenizer, texts, 8, tmp_path) == (ids, True)
    assert cached_token_ids(tokenizer, texts, 16, tmp_path)[1] is False
    assert cached_token_ids(tokenizer, [*texts[:-1], "cocoa"], 8, tmp_path)[1] is False


def test_top_layers_train_only_the_top_of_the_encoder(tmp_path, tiny_encoder):
    result = train(_config(tmp_path, tiny_encoder, "top", "train.train_top_layers=1", "train.epochs=2"), quiet)
    start = load_file(str(tiny_encoder / "model.safetensors"))
    saved = load_file(str(result.run_dir / "encoder" / "model.safetensors"))
    changed = {k for k in saved if not torch.equal(saved[k], start[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed), sorted(changed)
    with pytest.raises(ConfigError, match="has 2 layers"):
        train(_config(tmp_path, tiny_encoder, "top3", "train.train_top_layers=3"), quiet)


def test_precision_auto_picks_bf16_only_where_supported(monkeypatch):
    choose = devices.choose_precision
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    assert choose("auto", "auto") == (False, "fp32")
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: True)
    assert choose("auto", "auto") == (False, "bf16")
    assert choose("auto", "fp32") == (False, "fp32")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        choose("cpu", "fp16")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        choose("cuda", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100 or T4
    assert choose("auto", "auto") == (True, "fp16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose("auto", "auto") == (True, "bf16")
    assert choose("cpu", "auto") == (False, "bf16")  # cpu_has_fast_bf16 is still patched to True


def test_process_share_gives_every_process_the_same_number_of_batches():
    batches = [[i] for i in range(7)]
    shares = [process_share(batches, 2, rank) for rank in range(2)]
    assert [len(s) for s in shares] == [4, 4]
    assert sorted(b[0] for s in shares for b in s) == [0, 0, 1, 2, 3, 4, 5, 6]  # one repeat pads the odd one out
    assert process_share(batches, 1, 0) == batches


@pytest.mark.slow
def test_two_cpu_processes_train_one_run(tmp_path, tiny_encoder):
    """Data-parallel through torchrun (what `accelerate launch --multi_gpu` runs), 2 processes on gloo."""
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)
    config = tiny_config(tmp_path, tiny_encoder, data)
    common = ["-c", str(config), "--set", "train.epochs=20"]
    single = subprocess.run([sys.executable, "-m", "mlcls", "train", *common, "--name", "one",
                             "--batch-size", "4"], capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    double = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "mlcls", "train", *common, "--name", "two", "--batch-size", "2"],  # 2 x 2 = the same 4 per step
        capture_output=True, text=True, timeout=300, env=env)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "x 2 processes" in double.stderr
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["latest", "one", "two"]  # written once, nothing left over
    one, two = (json.loads((runs / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert two["processes"] == 2
    assert (runs / "one" / "labels.json").read_text() == (runs / "two" / "labels.json").read_text()
    # Same data, same steps, same effective batch, other batch composition: the tiny set is learnt both ways.
    assert one["validation"]["micro_f1"] >= 0.9 and two["validation"]["micro_f1"] >= 0.9
    assert abs(one["validation"]["micro_f1"] - two["validation"]["micro_f1"]) <= 0.1
    ev = runner.invoke(app, ["eval", str(runs / "two"), "--data", str(data)])
    assert ev.exit_code == 0, ev.output


def test_first_ctrl_c_sets_the_flag_and_a_second_one_interrupts(terminal_ctrl_c):
    import signal

    stop = StopSignal()
    with stop.on_signals():
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.should_stop(1) and stop.exit_code == 130
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the previous handler is back
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_is_a_stop_request_a_repeated_one_changes_nothing_and_ctrl_c_then_interrupts(terminal_ctrl_c):
    import signal

    stop = StopSignal()
    with stop.on_signals():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # taken while the block runs
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM and stop.exit_code == 143
        # `accelerate launch`: a worker gets the scheduler's SIGTERM and the launcher's forwarded copy
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_nested_block_takes_the_signals_over_and_gives_them_back(terminal_ctrl_c):
    import signal

    outer, inner = StopSignal(), StopSignal()
    with outer.on_signals():
        outers = signal.getsignal(signal.SIGTERM)
        with inner.on_signals():
            os.kill(os.getpid(), signal.SIGTERM)
        assert inner.requested and not outer.requested
        assert signal.getsignal(signal.SIGTERM) is outers
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("theirs", ["ignored", "a handler"])
def test_a_sigterm_disposition_of_the_host_program_is_left_alone(theirs):
    """A parent that ignores SIGTERM, or a program embedding mlcls.api with its own handler, keeps it."""
    import signal

    heard = []
    own = signal.SIG_IGN if theirs == "ignored" else (lambda signum, frame: heard.append(signum))
    previous = signal.signal(signal.SIGTERM, own)
    try:
        stop = StopSignal()
        with stop.on_signals():
            assert signal.getsignal(signal.SIGTERM) is own
            os.kill(os.getpid(), signal.SIGTERM)
            assert not stop.requested
        assert signal.getsignal(signal.SIGTERM) is own
        assert heard == ([] if theirs == "ignored" else [signal.SIGTERM])
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_checkpoints_exits_143_and_the_run_resumes(tmp_path, tiny_encoder, monkeypatch):
    import signal

    import mlcls.training.entry as entry

    _config(tmp_path, tiny_encoder, "term")  # writes tiny.yaml
    sets = ["train.epochs=2", "train.batch_size=2", "train.grad_accum=2", f"train.cache_dir={tmp_path / 'cache'}"]
    monkeypatch.setattr(entry, "StopSignal", sigterm_at_step)  # what `mlcls train` builds for itself
    stopped = runner.invoke(app, ["train", "-c", str(tmp_path / "tiny.yaml"), "--name", "term",
                                  *[a for kv in sets for a in ("--set", kv)]])
    assert stopped.exit_code == 143, stopped.output
    assert "stopped by SIGTERM in epoch 1, after step 2/6" in stopped.output  # sent at the end of step 2
    assert "continue with: mlcls train --resume" in stopped.output
    staging = tmp_path / "runs" / ".term.incomplete"
    assert load_checkpoint(find_checkpoint(staging)).state["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while training runs

    monkeypatch.setattr(entry, "StopSignal", StopSignal)
    done = runner.invoke(app, ["train", "--resume", str(tmp_path / "runs" / "term")])
    assert done.exit_code == 0, done.output
    assert "step 2" in done.output  # continued from the step SIGTERM stopped at, not from the start
    assert json.loads((tmp_path / "runs" / "term" / "metrics.json").read_text())["epochs_trained"] == 2


@pytest.mark.parametrize("first, second", [("fp32", "bf16"), ("bf16", "fp32")])
def test_two_trainings_with_other_precisions_in_one_process(tmp_path, tiny_encoder, first, second):
    """Accelerate's process-wide state used to refuse the second precision (the suite failed on CPUs whose
    `auto` is bf16). Both precisions are forced here, so the test does not depend on the host."""
    for name, precision in (("first", first), ("second", second)):
        result = train(_config(tmp_path, tiny_encoder, name, "train.epochs=1", f"train.precision={precision}"),
                       quiet)
        assert result.metrics["precision"] == precision


def test_a_run_name_is_claimed_by_one_training_at_a_time(tmp_path):
    from mlcls.run.lifecycle import RunNameTaken, begin_named_run, begin_run, finish_run, release_run

    runs = tmp_path / "runs"
    staging = begin_run(runs, "mix")
    # Another process (a lock is per open file: a second process sees it held) cannot take the name.
    code = ("import sys\nfrom pathlib import Path\nfrom mlcls.run.lifecycle import begin_run, RunNameTaken\n"
            "try:\n    begin_run(Path(sys.argv[1]), 'mix')\nexcept RunNameTaken as e:\n    print(e)\n    sys.exit(3)\n")
    other = subprocess.run([sys.executable, "-c", code, str(runs)], capture_output=True, text=True)
    assert other.returncode == 3 and "another training is writing" in other.stdout
    assert staging.is_dir()  # untouched by the refused one
    # Default names: two trainings started in the same second get two names.
    assert begin_named_run(runs, "20260101-000000-bce") == "20260101-000000-bce"
    assert begin_named_run(runs, "20260101-000000-bce") == "20260101-000000-bce-2"
    (staging / "head.safetensors").write_text("x")
    finish_run(staging)
    with pytest.raises(RunNameTaken, match="exists already"):
        begin_run(runs, "mix")
    # A training killed before its first checkpoint leaves an unlocked staging folder: the name is free again.
    killed = begin_run(runs, "killed")
    release_run(killed)
    assert begin_run(runs, "killed") == killed


@pytest.mark.parametrize("records", [TINY_RECORDS, TINY_RECORDS[:1]], ids=["val_fraction-0", "one-record"])
def test_training_without_validation_data_keeps_the_untuned_rule(tmp_path, tiny_encoder, records):
    config = _config(tmp_path, tiny_encoder, "noval", "train.epochs=2", "data.validation=null",
                     "data.val_fraction=0", records=records)
    result = train(config, quiet)
    assert result.metrics["validation_records"] == 0 and result.metrics["best_epoch"] == 2
    rule = json.loads((result.run_dir / "thresholds.json").read_text())
    assert rule["rule"] == "fixed" and rule["threshold"] == 0.5 and rule["tuned_on"] is None
    assert not list((tmp_path / "runs").glob(".*incomplete"))
