"""The base config as one of the study's trials: the searched keys at the base config's own values, queued
(Optuna's `enqueue_trial`) ahead of the sampled trials, so that "does any trial beat what I have?" is answered
by a run of the same study, trained by the same code on the same hold-out, not by a figure from another day.

The base trial holds one of the --trials slots. It is queued once per study: when a slot is free and no trial
of the study is marked as the base (a retry of it carries the mark). A base value that the space does not
allow (a learning rate outside the range) is not forced on the sampler: the base is then not a trial, and a
note says why.
"""

from __future__ import annotations

import math
from typing import Any

from mlcls.tune.ledger import (
    BASE,
    SURPLUS,
    duplicate_retries,
    is_base,
    retried,
    root_number,
    slots_taken,
    takes_a_slot,
)
from mlcls.tune.schema import base_value
from mlcls.tune.space import Param, SearchSpace


def base_params(space: SearchSpace, base: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The base config's values of the keys a trial of it would draw (a loss parameter only with a loss that
    takes it), and "" ; or None and why the space does not allow them."""
    chosen: dict[str, Any] = {}
    for param in space.params:
        if not space.active(param, chosen, base):
            continue
        value = base_value(base, param.key)
        if not allows(param, value):
            return None, f"{param.key} = {value!r} in the base config, {_allowed(param)} in the space"
        chosen[param.key] = _as_drawn(param, value)
    return chosen, ""


def _same_choice(value: Any, choice: Any) -> bool:
    # 0 and 0.0 are one value (the config reads a float key's 0 as 0.0), True and 1 are not
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


def _as_drawn(param: Param, value: Any) -> Any:
    """The value as a trial draws it: a choice as the space writes it (Optuna matches choices by index)."""
    if param.kind == "choice":
        return next(choice for choice in param.choices if _same_choice(value, choice))
    return value


def allows(param: Param, value: Any) -> bool:
    """Whether a trial of `param` can take `value`."""
    if param.kind == "choice":
        return any(_same_choice(value, choice) for choice in param.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if param.kind == "int" and not isinstance(value, int):
        return False
    if not param.low <= value <= param.high:
        return False
    if param.step is None:
        return True
    steps = (value - param.low) / param.step
    return math.isclose(steps, round(steps), abs_tol=1e-9)


def _allowed(param: Param) -> str:
    if param.kind == "choice":
        return "choices " + ", ".join(repr(c) for c in param.choices)
    return f"{param.low} to {param.high}" + (f" in steps of {param.step}" if param.step else "")


def duplicate_base(trials, trial) -> bool:
    """Whether `trial` is a second base trial (not a retry of the first): two processes on an RDB server, which
    share no claim lock, both queued one. The later one gives its slot up, as a duplicate retry does."""
    if not is_base(trial) or root_number(trial) != trial.number:
        return False
    return any(is_base(t) and root_number(t) == t.number and t.number < trial.number and not t.user_attrs.get(SURPLUS)
               for t in trials)


def the_base_trial(trials) -> Any | None:
    """The study's base trial as the summary compares with it: its latest try that holds a slot."""
    again, duplicates = retried(trials), duplicate_retries(trials)
    held = [t for t in trials if is_base(t) and takes_a_slot(t, again, duplicates) and not duplicate_base(trials, t)]
    return max(held, key=lambda t: t.number, default=None)


def enqueue_base(study, params: dict[str, Any], total: int) -> bool:
    """Queue the base trial when the study has none and a slot is free; whether it was queued."""
    trials = study.get_trials(deepcopy=False)
    if any(is_base(t) and not t.user_attrs.get(SURPLUS) for t in trials) or slots_taken(trials) >= total:
        return False
    study.enqueue_trial(params, user_attrs={BASE: True})
    return True
