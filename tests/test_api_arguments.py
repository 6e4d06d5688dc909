"""The Python API's functions refuse plausible wrong arguments with an MlclsError (one line), as the CLI's options
do, instead of torch's errors, a bare ValueError, or scores that are silently wrong."""

from __future__ import annotations

import pytest

from mlcls.api import MlclsError, evaluate_runs, inference_batch_size, load_run, score_records


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0"])
def test_load_run_refuses_a_device_it_does_not_know(trained, device):
    folder, _, _ = trained
    with pytest.raises(MlclsError, match=r"the choice is auto, cpu, cuda or cuda:N"):
        load_run(folder / "runs" / "tiny", device=device)


def test_load_run_on_cuda_without_a_gpu_is_one_line(trained):
    import torch

    assert not torch.cuda.is_available()  # tests/conftest.py hides a GPU host's GPUs from the suite
    folder, _, _ = trained
    with pytest.raises(MlclsError, match="no GPU is available here"):
        load_run(folder / "runs" / "tiny", device="cuda")


@pytest.mark.parametrize("size", [0, -1, 2.5, True])
def test_batch_and_chunk_sizes_below_one_are_refused(trained, size):
    """-1 left every score at 0.5 (no batch filled the zeroed result); a chunk of 0 scored no record at all."""
    folder, data, _ = trained
    with pytest.raises(MlclsError, match="batch_size must be an integer of at least 1"):
        inference_batch_size("cpu", size)
    run = load_run(folder / "runs" / "tiny", device="cpu")
    with pytest.raises(MlclsError, match="chunk_records must be an integer of at least 1"):
        next(score_records(run, [], None, chunk_records=size))


def test_evaluate_runs_takes_one_run_as_itself_and_refuses_an_unknown_policy(trained):
    folder, _, _ = trained
    run = str(folder / "runs" / "tiny")
    scored = evaluate_runs(run, None, None)  # its letters were taken for runs: "t: run directory not found"
    assert scored.names == ["tiny"]
    with pytest.raises(MlclsError, match="on_error 'ignore': the choice is fail or skip"):
        evaluate_runs([run], None, None, on_error="ignore")
