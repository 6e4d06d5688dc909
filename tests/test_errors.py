from __future__ import annotations

from mlcls.errors import first_line


def test_first_line_of_a_message_or_the_exception_type():
    assert first_line(ValueError("  \nbad value\nmore detail")) == "bad value"
    assert first_line(OSError()) == "OSError"
    assert first_line(KeyError("")) == "''"  # a KeyError shows its key quoted, as str() does


def test_the_resume_command_of_a_run_of_several_processes_launches_as_many():
    """A checkpoint of N processes is resumed by N (the resume checks it): the hint says how."""
    from pathlib import Path

    from mlcls.errors import resume_command

    assert resume_command(Path("runs/mon café")) == "mlcls train --resume 'runs/mon café'"
    assert resume_command(Path("runs/x"), 2) == "accelerate launch --num_processes 2 -m mlcls train --resume runs/x"
