"""Run directories that are not whole (validate_run): a file missing, truncated, unreadable, of another run, a
fold or a lexical model missing. `predict` and `eval` refuse each in one `error:` line naming the file, never an
internal error and never silently wrong scores."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mlcls.run.files import read_labels
from mlcls.run.lexical import save_lexical
from tests.conftest import _cli, one_line
from tests.run.conftest import _run_copy


def _predict_error(run: Path) -> str:
    """`mlcls predict` on `run`: it must fail with one `error:` line; that line."""
    result = _cli("predict", "-", "--model", str(run), input='{"text": "crude oil"}\n')
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(("removed", "named"), [
    ("config.yaml", "config.yaml"),
    ("labels.json", "labels.json"),
    ("thresholds.json", "thresholds.json"),
    ("head.safetensors", "head.safetensors"),
    ("encoder", "encoder"),
    ("encoder/config.json", "encoder/config.json"),
    ("encoder/model.safetensors", "encoder/model.safetensors"),
    ("encoder/tokenizer_config.json", "encoder/tokenizer_config.json"),
    ("encoder/tokenizer.json", "encoder"),  # fault 1: before, predict tagged nothing and exited 0
])
def test_a_run_missing_a_file_is_refused_naming_it(trained, tmp_path, removed, named):
    import shutil

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    target = run / removed
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(RunDirError) as info:
        validate_run(run)
    assert one_line(info.value).startswith(f"{run / named}: ")
    assert _predict_error(run).startswith(f"error: {run / named}: ")


def test_a_missing_tokenizer_is_named_not_scored(trained, tmp_path):
    run = _run_copy(trained, tmp_path)
    (run / "encoder" / "tokenizer.json").unlink()
    assert _predict_error(run) == (f"error: {run / 'encoder'}: the tokenizer's vocabulary is missing (none of "
                                   "tokenizer.json, vocab.txt, vocab.json, spiece.model, sentencepiece.bpe.model, "
                                   "tokenizer.model); without it every word would be an unknown token")
    result = _cli("eval", str(run))
    assert result.exit_code == 1 and "tokenizer's vocabulary is missing" in result.stderr


def test_a_tokenizer_of_another_model_is_refused(trained, tmp_path):
    # All files are there, but the tokenizer is not the encoder's: only loading it tells (check_tokenizer_fits).
    from transformers import BertTokenizer

    run = _run_copy(trained, tmp_path)
    (run / "encoder" / "tokenizer.json").unlink()
    BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "oil"])}) \
        .save_pretrained(run / "encoder")
    assert _predict_error(run) == (f"error: {run / 'encoder'}: the tokenizer has 6 tokens but the encoder's "
                                   "vocabulary has 33 (a tokenizer file is missing or belongs to another model)")


@pytest.mark.parametrize("file", ["encoder/model.safetensors", "head.safetensors"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_garbled_weights_file_is_one_line_naming_it(trained, tmp_path, file, damage):
    # Before: "internal error: SafetensorError: Error while deserializing header ..." for the encoder.
    run = _run_copy(trained, tmp_path)
    target = run / file
    if damage == "truncated":
        os.truncate(target, target.stat().st_size // 2)
    else:
        target.write_bytes(b"\x00" * 64)
    line = _predict_error(run)
    assert line.startswith(f"error: {target}: corrupt")
    if file == "head.safetensors":
        assert "corrupt or does not match labels.json" in line
    else:
        assert "corrupt or truncated, not a whole safetensors file" in line


def test_labels_head_and_thresholds_must_agree(trained, tmp_path):
    import json

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert labels == ["cocoa", "grain", "oil"]
    (run / "labels.json").write_text(json.dumps({"labels": [*labels, "wheat"]}))
    with pytest.raises(RunDirError, match=r"head\.safetensors: the head scores 3 labels but .*labels\.json has 4: "
                       "the files come from different runs$"):
        validate_run(run)

    run = _run_copy(trained, tmp_path, "thresholds")
    rule = json.loads((run / "thresholds.json").read_text())
    rule["per_label"]["wheat"] = 0.3  # a cut-off for a label the run does not have: silently unused before
    (run / "thresholds.json").write_text(json.dumps(rule))
    assert _predict_error(run) == (f"error: {run / 'thresholds.json'}: names 1 label(s) that labels.json lacks "
                                   "('wheat'): the files come from different runs")
    rule["per_label"].pop("wheat")
    rule["per_label"]["oil"] = 7
    (run / "thresholds.json").write_text(json.dumps(rule))
    assert "the cut-off of 'oil' is 7, not a number in [0, 1]" in _predict_error(run)


def test_weights_that_lack_tensors_their_config_asks_for_are_refused(trained, tmp_path):
    # transformers fills a missing tensor with random values and says so in a warning only (which mlcls
    # silences): the run scored at random, without an error.
    from safetensors.numpy import load_file, save_file

    run = _run_copy(trained, tmp_path)
    weights = run / "encoder" / "model.safetensors"
    tensors = load_file(str(weights))
    dropped = sorted(name for name in tensors if "attention" in name)[0]
    save_file({name: value for name, value in tensors.items() if name != dropped}, str(weights),
              metadata={"format": "pt"})
    assert _predict_error(run) == (f"error: {run / 'encoder'}: the weights file lacks 1 of the tensors that its "
                                   f"config.json asks for (first: {dropped}); it belongs to another model or is cut")


def test_an_encoder_config_value_of_the_wrong_type_is_one_line(trained, tmp_path):
    import json

    run = _run_copy(trained, tmp_path)
    config_file = run / "encoder" / "config.json"
    config = json.loads(config_file.read_text())
    config["hidden_size"] = str(config["hidden_size"])  # transformers 5 refuses it at load (not a ValueError)
    config_file.write_text(json.dumps(config))
    assert _predict_error(run).startswith(f"error: {run / 'encoder'}: cannot load (")


def test_a_run_file_that_is_not_a_regular_file_is_refused_not_opened(trained, tmp_path):
    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _run_copy(trained, tmp_path)
    (run / "labels.json").unlink()
    os.mkfifo(run / "labels.json")  # opening a FIFO for reading blocks until someone writes: it hung before
    with pytest.raises(RunDirError, match=r"labels\.json: not a regular file$"):
        validate_run(run)


def _cross_fitted_copy(trained, tmp_path: Path, folds: int) -> Path:
    """A copy of the tiny run as a cross-fitted one: its model copied into folds/fold-1..K, train.folds K."""
    import shutil

    import yaml

    run = _run_copy(trained, tmp_path)
    for k in range(1, folds + 1):
        fold = run / "folds" / f"fold-{k}"
        fold.mkdir(parents=True)
        shutil.copytree(run / "encoder", fold / "encoder")
        shutil.copy(run / "head.safetensors", fold / "head.safetensors")
    shutil.rmtree(run / "encoder")
    (run / "head.safetensors").unlink()
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["folds"] = folds
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_a_cross_fitted_run_needs_every_fold(trained, tmp_path):
    # A run that predicts with its K fold models; one fold gone. Before, the glob found the others and the run
    # predicted with K-1 models, as if nothing were wrong.
    import shutil

    from mlcls.errors import RunDirError
    from mlcls.run.validation import validate_run

    run = _cross_fitted_copy(trained, tmp_path, 3)
    validate_run(run)  # whole
    shutil.rmtree(run / "folds" / "fold-2")
    with pytest.raises(RunDirError, match=r"fold-2: missing from the run directory \(the run was trained with "
                       r"train\.folds=3, and predicts with every fold's model\)$"):
        validate_run(run)
    (run / "folds" / "fold-2").mkdir()
    (run / "folds" / "fold-2" / "head.safetensors").write_bytes(b"x")
    assert _predict_error(run).startswith(f"error: {run / 'folds' / 'fold-2' / 'encoder'}: missing")


def test_the_folds_of_a_run_must_share_a_tokenizer(trained, tmp_path):
    # The folds are scored with fold 1's token ids: a fold with another vocabulary (of the same size, so that it
    # fits its own encoder) scored garbage without a word.
    import json

    run = _cross_fitted_copy(trained, tmp_path, 2)
    tokenizer_file = run / "folds" / "fold-2" / "encoder" / "tokenizer.json"
    tokenizer = json.loads(tokenizer_file.read_text())
    vocab = tokenizer["model"]["vocab"]
    first, last = list(vocab)[-2:]
    vocab[first], vocab[last] = vocab[last], vocab[first]  # two words' ids swapped: another vocabulary
    tokenizer_file.write_text(json.dumps(tokenizer))
    assert _predict_error(run) == (f"error: {run / 'folds' / 'fold-2' / 'encoder'}: its tokenizer is not fold 1's "
                                   f"({run / 'folds' / 'fold-1' / 'encoder'}): the folds of a run share one "
                                   "tokenizer; this fold comes from another run")


def test_an_unreadable_run_file_is_an_error_not_an_internal_error(trained, tmp_path, monkeypatch):
    # Root reads everything, so the kernel's answer is injected: EACCES from stat(), as a folder without the
    # search permission gives. Before: "internal error: PermissionError: [Errno 13] ...".
    run = _run_copy(trained, tmp_path)
    real_stat = Path.stat

    def forbidden(self, *args, **kwargs):
        if self.name == "config.yaml" and self.parent == run:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", forbidden)
    assert _predict_error(run) == f"error: {run / 'config.yaml'}: cannot read (permission denied)"


def test_an_unreadable_run_file_for_real(trained, tmp_path):
    # No injection: the kernel itself refuses to open the file, root included (a chmod 0 file is read by root,
    # and the tests run as root). head.safetensors is a symbolic link to itself, so every open or stat of it
    # answers ELOOP: it is there, but cannot be read.
    run = _run_copy(trained, tmp_path)
    head = run / "head.safetensors"
    head.unlink()
    head.symlink_to(head.name)
    with pytest.raises(OSError) as kernel:
        head.read_bytes()
    assert kernel.value.errno == errno.ELOOP  # what mlcls meets: a real error of the kernel's, for every user
    assert _predict_error(run) == f"error: {head}: cannot read (too many levels of symbolic links)"


def test_validation_reads_no_weights(trained, tmp_path, monkeypatch):
    # validate_run looks at safetensors headers only (shapes): it must not load a tensor, nor import torch.
    import subprocess
    import sys

    import safetensors

    from mlcls.run.validation import validate_run

    opened = []
    real_open = safetensors.safe_open

    class HeadersOnly:
        def __init__(self, *args, **kwargs):
            self.handle = real_open(*args, **kwargs)
            opened.append(args[0])

        def __enter__(self):
            self.handle.__enter__()
            return self

        def __exit__(self, *exc):
            return self.handle.__exit__(*exc)

        def keys(self):
            return self.handle.keys()

        def get_slice(self, name):
            return self.handle.get_slice(name)

        def get_tensor(self, name):
            raise AssertionError(f"validate_run loaded the tensor {name}")

    monkeypatch.setattr(safetensors, "safe_open", HeadersOnly)
    run = _run_copy(trained, tmp_path)
    validate_run(run)
    assert any(str(path).endswith("model.safetensors") for path in opened)  # the weights' header was read

    check = ("import sys; from mlcls.run.validation import validate_run; validate_run(sys.argv[1]); "
             "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check, str(run)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_blended_lexical_model_must_be_whole_and_present(trained, tmp_path):
    # model.lexical: tfidf runs keep a TF-IDF model in lexical/; without it, scores would silently be the encoder's
    # alone (LexicalModel.load answers None for a missing folder), which the run's rule was not tuned on.
    import json
    import shutil

    from mlcls.data.records import read_records
    from mlcls.errors import RunDirError
    from mlcls.model.lexical import fit_lexical
    from mlcls.run.validation import validate_run

    folder, data, _ = trained
    run = _run_copy(trained, tmp_path)
    records = list(read_records(data, require_labels=True))
    encoded = read_labels(run).encode(records)
    model = fit_lexical([r.text for r in records], encoded.targets, encoded.mask)
    model.weight = 0.5
    save_lexical(run, model)
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "lexical_weight": 0.5}))
    validate_run(run)  # whole
    weights = run / "lexical" / "weights.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    assert _predict_error(run).startswith(f"error: {weights}: corrupt or truncated, not a whole safetensors file")
    weights.write_bytes(whole)
    from safetensors.numpy import save_file

    save_file({"idf": model.idf, "coef": model.coef[:2], "intercept": model.intercept[:2]}, str(weights))
    with pytest.raises(RunDirError, match=r"weights\.safetensors: the lexical model scores 2 labels but .*labels\.json "
                       "has 3: the files come from different runs$"):
        validate_run(run)
    shutil.rmtree(run / "lexical")
    assert _predict_error(run) == (f"error: {run / 'lexical'}: missing from the run directory ({run / 'metrics.json'} "
                                   "says the run blends this lexical model in at weight 0.5)")
