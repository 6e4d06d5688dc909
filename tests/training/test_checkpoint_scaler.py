"""fp16's loss scale is part of the training: a checkpoint keeps it and a resume restores it. (fp16 trains on CUDA
only; torch's GradScaler for the CPU has the same state, so the round trip is tested here on any host.)"""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from mlcls.run.checkpoint import save_checkpoint
from mlcls.training.resume import TrainingState, restore, trainer_state


def _parts():
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def _learnt_scaler() -> torch.amp.GradScaler:
    """A scaler whose state is no longer its initial one: its scale backed off once, its growth count advanced."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=4)
    model, optimizer, _ = _parts()
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()
    scaler.step(optimizer)
    scaler.update(new_scale=512.0)
    for _ in range(2):
        optimizer.zero_grad()
        scaler.scale(model(torch.ones(1, 3)).sum()).backward()
        scaler.step(optimizer)
        scaler.update()
    return scaler


def test_a_checkpoint_keeps_the_loss_scale_and_a_resume_restores_it(tmp_path):
    scaler = _learnt_scaler()
    assert scaler.get_scale() == 512.0 and scaler.state_dict()["_growth_tracker"] == 2
    model, optimizer, scheduler = _parts()
    state = TrainingState(step=3, data_fingerprint="data")
    save_checkpoint(tmp_path, asdict(state), model.state_dict(), None, trainer_state(optimizer, scheduler, scaler))

    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=4)
    restored, _ = restore(tmp_path, *_parts(), "data", scaler=fresh)
    assert restored.step == 3
    assert fresh.state_dict() == scaler.state_dict()  # the scale and how far it is from growing again


def test_bf16_and_fp32_checkpoints_carry_no_scaler_and_resume_without_one(tmp_path):
    model, optimizer, scheduler = _parts()
    saved = trainer_state(optimizer, scheduler)
    assert "grad_scaler" not in saved
    save_checkpoint(tmp_path, asdict(TrainingState(data_fingerprint="data")), model.state_dict(), None, saved)
    fresh = torch.amp.GradScaler("cpu", init_scale=8.0)  # a checkpoint written before the scale was kept
    restore(tmp_path, *_parts(), "data", scaler=fresh)
    assert fresh.state_dict() == torch.amp.GradScaler("cpu", init_scale=8.0).state_dict()


def test_a_loss_scaled_training_resumes_with_the_scale_it_had_learnt(tmp_path, tiny_encoder, monkeypatch):
    """Training through Accelerate's loss scaler (what fp16 on CUDA gets), here with the CPU's GradScaler given to
    the Accelerator before it prepares the optimizer: interrupted and resumed, the scaler ends where the
    uninterrupted run's does. (fp32 gradients never overflow, so the scale grows every 2 steps: a resume that
    started again from the initial scale would end below.)"""
    from rich.console import Console

    from mlcls.config import load_config
    from mlcls.training import recipe
    from mlcls.training.data import TrainingInterrupted
    from mlcls.training.entry import train
    from mlcls.training.interrupt import StopAfterStep
    from tests.conftest import TINY_RECORDS, tiny_config, write_jsonl

    scalers = []
    make_accelerator = recipe.make_accelerator

    def with_a_scaler(device, precision):
        accelerator = make_accelerator(device, precision)
        accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=4.0, growth_interval=2)
        scalers.append(accelerator.scaler)
        return accelerator

    monkeypatch.setattr(recipe, "make_accelerator", with_a_scaler)
    data = write_jsonl(tmp_path / "tiny.jsonl", TINY_RECORDS)

    def config(name):
        return load_config(tiny_config(tmp_path, tiny_encoder, data),
                           ["train.epochs=2", "train.batch_size=2", f"train.cache_dir={tmp_path / 'cache'}"],
                           {"output.name": name})

    quiet = Console(stderr=True, quiet=True)
    train(config("whole"), quiet)
    with pytest.raises(TrainingInterrupted):
        train(config("cut"), quiet, stop=StopAfterStep(3))
    interrupted_at = scalers[-1].get_scale()
    train(load_config(tmp_path / "runs" / ".cut.incomplete" / "config.yaml"), quiet,
          resume=tmp_path / "runs" / "cut")
    whole, resumed = scalers[0], scalers[-1]
    assert interrupted_at > 4.0  # the scale had grown before the interruption
    assert resumed.get_scale() == whole.get_scale() > interrupted_at
