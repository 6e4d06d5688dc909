"""Standard output and input that fail: the user's shell redirected them, so the error is one line naming them,
never an internal error (`mlcls predict big.jsonl > /mnt/full/out.jsonl`, `mlcls predict - <&-`)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import _cli, needs_dev_full


def _mlcls(*args: str, stdout) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlcls", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=300)


@needs_dev_full
def test_a_full_disk_behind_standard_output_is_one_line(trained):
    folder, data, _ = trained
    with open("/dev/full", "w") as full:
        for args in (["config"], ["predict", str(data), "--model", str(folder / "runs" / "tiny")]):
            done = _mlcls(*args, stdout=full)
            assert done.returncode == 1, done.stderr
            assert done.stderr.strip().splitlines()[-1] == ("error: cannot write to standard output (no space left "
                                                            "on device)")
            assert "internal error" not in done.stderr and "Exception ignored" not in done.stderr


def test_a_closed_standard_input_is_one_line(trained):
    folder, _, _ = trained
    done = subprocess.run(["bash", "-c", f'"{sys.executable}" -m mlcls predict - --model "{folder}/runs/tiny" <&-'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: -: standard input is closed: pipe the records in, or name a file"


def test_a_plots_folder_that_cannot_be_made_is_one_line(trained, tmp_path):
    folder, _, _ = trained
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _cli("eval", str(folder / "runs" / "tiny"), "--plots", str(blocker / "plots"))
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines()[-1] == (f"error: {blocker / 'plots'}: cannot create the plots folder "
                                                      "(not a directory)")


def test_an_error_under_a_command_writing_to_stdout_is_not_blamed_on_stdout(trained, monkeypatch):
    """predict's writer holds stdout while the scoring under it runs: a fault there (too many open files) is
    an internal error, not 'cannot write to standard output'."""
    import errno

    import mlcls.inference.predict as predict_module

    def failing(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")
        yield  # a generator, as score_records is

    monkeypatch.setattr(predict_module, "score_records", failing)
    folder, data, _ = trained
    result = _cli("predict", str(data), "--model", str(folder / "runs" / "tiny"))
    assert result.exit_code == 1
    assert result.stderr.startswith("internal error: OSError: [Errno 24] Too many open files"), result.stderr


def test_a_closed_standard_output_is_said_where_the_result_would_go_there(trained, tmp_path):
    """`mlcls eval >&-` exited 0 with its report dropped without a word; a command writing to a file goes on."""
    folder, data, _ = trained
    run = folder / "runs" / "tiny"

    def closed(args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'"{sys.executable}" -m mlcls {args} >&-'], capture_output=True,
                              text=True, timeout=300)

    for args, what in ((f'eval "{run}"', "the report"), ("config", "the config"),
                       (f'predict "{data}" --model "{run}"', "the predictions (no --output)")):
        done = closed(args)
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip() == (f"error: standard output is closed, and {what} goes there: leave it open, "
                                        "or redirect it to a file (> FILE)")
    written = closed(f'predict "{data}" --model "{run}" -o "{tmp_path / "p.jsonl"}"')
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "p.jsonl").read_text().count("\n") == 12


def test_standard_output_redirected_into_the_input_is_refused_before_anything_is_read(trained, tmp_path):
    """`mlcls predict data.jsonl >> data.jsonl` would append predictions to the data being read (and `>` has
    emptied it before mlcls starts), eval and data stats their tables: one line, and the file as it was. Another
    file, or a pipe, is fine."""
    folder, data, _ = trained
    copy = tmp_path / "data.jsonl"
    copy.write_bytes(data.read_bytes())
    before = copy.read_bytes()
    with open(copy, "a") as same:
        done = _mlcls("predict", str(copy), "--model", str(folder / "runs" / "tiny"), stdout=same)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (f"error: {copy}: standard output is redirected into the input file, which would "
                                   "mix this command's output into that data (a > redirection has already emptied "
                                   "it); redirect to another file, or give --output")
    assert copy.read_bytes() == before
    with open(copy, "rb") as source, open(copy, "a") as same:  # `predict - < data.jsonl >> data.jsonl`
        done = subprocess.run([sys.executable, "-m", "mlcls", "predict", "-", "--model", str(folder / "runs" / "tiny")],
                              stdin=source, stdout=same, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1 and done.stderr.startswith("error: standard input: standard output is redirected "
                                                           "into the input file"), done.stderr
    assert copy.read_bytes() == before
    with open(copy, "a") as same:  # eval's report, appended to the file it scores
        done = _mlcls("eval", str(folder / "runs" / "tiny"), "--data", str(copy), stdout=same)
    assert done.returncode == 1 and done.stderr.strip() == (
        f"error: {copy}: standard output is redirected into --data, which would mix this command's output into "
        "that data (a > redirection has already emptied it); redirect to another file"), done.stderr
    assert copy.read_bytes() == before
    with open(copy, "a") as same:  # data stats' tables, appended to the file it reads
        done = _mlcls("data", "stats", str(copy), stdout=same)
    assert done.returncode == 1 and "standard output is redirected into FILE" in done.stderr, done.stderr
    assert copy.read_bytes() == before
    with open(tmp_path / "out.jsonl", "w") as other:
        done = _mlcls("predict", str(copy), "--model", str(folder / "runs" / "tiny"), stdout=other)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(before.splitlines())
