from __future__ import annotations

from mlcls.errors import first_line


def test_first_line_of_a_message_or_the_exception_type():
    assert first_line(ValueError("  \nbad value\nmore detail")) == "bad value"
    assert first_line(OSError()) == "OSError"
    assert first_line(KeyError("")) == "''"  # a KeyError shows its key quoted, as str() does
