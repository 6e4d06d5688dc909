"""The `mlcls` command line: parse options, resolve the config, call one function, render the result.

One module per command group: train.py (train), predict.py (eval, predict), serve.py (serve, export), data.py
(data reuters, data stats, config, losses), tune.py (tune); options that several commands take are declared once,
in options.py, and what every command shares besides them (the two consoles, notes, files written atomically)
in output.py.
This module holds the app, its own options, the error wrapper every command runs in, and the command table.

torch and transformers are imported inside the commands, never at module level: `mlcls --help` and
usage errors answer at once.

Exit codes: 0 success, 1 runtime or data error (one line on stderr), 2 usage error, 130 interrupted,
143 stopped by SIGTERM (train and tune: a checkpoint kept; predict -o: the partial output kept; export: nothing
left).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from importlib.metadata import version as package_version
from typing import Annotated, Any

import typer

from mlcls.atomic import describe_os_error
from mlcls.cli import data, predict, serve, train, tune
from mlcls.cli.output import err, out
from mlcls.errors import Interrupted, MlclsError, Terminated

app = typer.Typer(
    name="mlcls",
    help="Train, evaluate and apply multi-label text classifiers (zero, one or many topics per article).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# --debug is an option of the app (mlcls --debug train ...) or the environment (MLCLS_DEBUG=1).
_debug = {"on": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"mlcls {package_version('mlcls')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _app_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Train, evaluate and apply multi-label text classifiers (zero, one or many topics per article)."""
    _debug["on"] = debug or os.environ.get("MLCLS_DEBUG", "") not in ("", "0")


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """A command body whose user-fixable errors become one line on stderr and exit code 1 (a bug of ours:
    one line too, with the traceback under --debug); Ctrl-C with the work kept exits 130."""

    @functools.wraps(command)  # Typer reads the options from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> Any:
        debug = _debug["on"]
        try:
            result = command(*args, **kwargs)
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit: a full disk behind `> file` is this command's error
            return result
        except MlclsError as exc:
            if debug:
                raise
            # one line, whatever a file name holds (`new\nline.jsonl`): a script reads the error as one line
            message = str(exc).replace("\r", "\\r").replace("\n", "\\n")
            err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Interrupted as exc:  # Ctrl-C (SIGTERM) with the work so far kept: the message says how to go on
            err.print(str(exc), markup=False)
            raise typer.Exit(exc.exit_code) from None
        except Terminated:
            err.print("stopped by SIGTERM", markup=False)
            raise typer.Exit(Terminated.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # `mlcls predict big.jsonl | head`: the reader left. Not an error; silence the flush at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):  # a usage error: Typer prints it, exit 2
            raise
        except OSError as exc:
            if debug or not (_from_stdout(exc) or _stdout_failed()):
                return _internal_error(exc, debug)
            # `mlcls predict big.jsonl > /mnt/full/out.jsonl`: the shell's file, not one of ours
            err.print(f"error: cannot write to standard output ({describe_os_error(exc)})", markup=False,
                      highlight=False, soft_wrap=True)
            with contextlib.suppress(OSError, ValueError):  # a stdout without a descriptor (a test's, replaced)
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug of ours: still one line, the traceback on request
            return _internal_error(exc, debug)

    return run


def _internal_error(exc: Exception, debug: bool) -> None:
    if debug:
        raise exc
    err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with mlcls --debug for the traceback)",
              markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1) from None


def _from_stdout(exc: BaseException) -> bool:
    """Whether the error was raised writing to standard output: the innermost frame of its traceback (the one that
    called the failing write) holds the stream, directly or as an attribute of one of its objects (predict's
    writers' `self.out`), as a bound method (rich's `write = self.file.write`), or through a rich Console printing
    to it. Only that frame: predict's writer loop holds stdout while everything under it (scoring, reading) runs.
    Our own files' faults are WriteErrors already."""
    from rich.console import Console

    streams = {id(stream) for stream in (sys.stdout, sys.__stdout__, getattr(sys.stdout, "buffer", None),
                                         getattr(sys.__stdout__, "buffer", None)) if stream is not None}
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    held = []
    for value in (tb.tb_frame.f_locals.values() if tb is not None else ()):
        attributes = getattr(value, "__dict__", None)
        held += [value, getattr(value, "__self__", None), *(attributes.values() if isinstance(attributes, dict)
                                                            else ())]
        if isinstance(value, Console):
            held.append(value.file)
    return any(id(item) in streams for item in held if item is not None)


def _stdout_failed() -> bool:
    """Whether standard output cannot take what is buffered for it (a full disk or a device error behind it)."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError:
        return True
    return False


# The commands are registered here, not by decorators in their modules: those modules then import nothing
# from this one (no import cycle), and this table's order is the order `mlcls --help` lists them in.
COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("train", train.train),
    ("eval", predict.eval_),
    ("predict", predict.predict),
    ("losses", data.losses),
    ("serve", serve.serve),
    ("config", data.config_),
    ("export", serve.export),
    ("tune", tune.tune),
)
DATA_COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("reuters", data.data_reuters),
    ("stats", data.data_stats),
)


def _register(group: typer.Typer, commands: tuple[tuple[str, Callable[..., Any]], ...]) -> typer.Typer:
    for name, command in commands:
        group.command(name)(guarded(command))
    return group


_register(app, COMMANDS)
data_app = _register(typer.Typer(help="Datasets: convert Reuters-21578; describe a labelled file.",
                                 no_args_is_help=True), DATA_COMMANDS)
app.add_typer(data_app, name="data")


def main() -> None:
    app()
