"""fp16's loss scale is part of the training: a checkpoint keeps it and a resume restores it. (fp16 trains on CUDA
only; torch's GradScaler for the CPU has the same state, so the round trip is tested here on any host.)"""

from __future__ import annotations

from dataclasses import asdict

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
