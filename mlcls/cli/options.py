"""The options that several commands take, declared once as typed aliases: a command's signature names them,
so an option's spelling, default, bounds and help cannot drift from one command to the next.

An option that sets a config key takes its help from the key's field in config.py (`option(key, ...)`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from mlcls.config import config_help


def option(key: str, *names: str, **kwargs: Any) -> Any:
    """A typer.Option whose help is the config field's (declared once, in config.py)."""
    return typer.Option(*names, help=config_help(key), **kwargs)


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum: how Typer spells an option that takes one of a few words."""
    return Enum(name, {value: value for value in values}, type=str)


def value_of(choice: Enum | None) -> str | None:
    """The word a choice option was given, or None where it was left out (the config decides)."""
    return None if choice is None else choice.value


OnErrorPolicy = choices("OnErrorPolicy", ("fail", "skip"))
InferencePrecision = choices("InferencePrecision", ("auto", "fp32", "bf16"))

# The config: train and config.
ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value.")]

# Bad records: train, eval and predict.
OnError = Annotated[
    OnErrorPolicy | None,
    typer.Option("--on-error", help="A bad record: stop (fail), or skip and count it (skip). Default: the config's "
                 "data.on_error (predict: fail)."),
]
Rejects = Annotated[Path | None, typer.Option("--rejects", help="With --on-error skip: copy skipped lines here.")]

# The run a command reads: serve and export (eval takes several, predict names it with --model).
RunArg = Annotated[Path | None, typer.Argument(help="Run directory (default: runs/latest).", show_default=False)]

# The decision rule, overriding the run's: eval and predict.
Threshold = Annotated[
    float | None, typer.Option("--threshold", min=0.0, max=1.0, help="One fixed cut-off instead of the run's rule.")
]
TopK = Annotated[int | None, typer.Option("--top-k", min=1, help="The K best labels per article instead.")]
MinLabels = Annotated[
    int | None, typer.Option("--min-labels", min=0, max=1, help="1: an article left empty gets its best label.")
]

# Inference: eval, predict and serve.
BatchSize = Annotated[int | None, typer.Option("--batch-size", min=1, help="Records per inference batch "
                                               "(default: 16 on a CPU, 64 on a GPU).", show_default=False)]
Int8 = Annotated[bool, typer.Option("--int8", help="CPU: run the encoder's linear layers in int8 (faster; "
                                    "check the accuracy cost with `mlcls eval --int8`).")]
PrecisionOpt = Annotated[  # None: the run's model.inference_precision (auto unless set)
    InferencePrecision | None, option("model.inference_precision", "--precision", show_default=False)
]

# Loading a run that carries code of its own: eval, predict, serve and export. Never the run's own choice.
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow the run to run code it carries "
                                               "(an auto_map and modules beside its weights): only for runs from a "
                                               "source you trust.")]

# A report as JSON: eval and data stats.
JsonOut = Annotated[Path | None, typer.Option("--json", help="Write every number to this JSON file.")]
