"""What the console tells a user: user errors (one line, and a hint saying what to do) and the two switches that
show more (`--debug`: tracebacks; `--verbose`: third-party load reports, progress bars and warnings).

A `UserError` is something the user can fix (a wrong path, a missing dataset, an unknown config key or task); the
CLI dispatcher (`socialfusion.cli`) prints it as `error: <message>` and, when there is one, `hint: <hint>` on the
next line, and exits with status 2. Any other exception is a bug and keeps its traceback. This module sits at the
bottom of the layers so that every library exception can derive from it.
"""

from __future__ import annotations

import argparse
import os
import re

DEBUG_ENV = "SOCIALFUSION_DEBUG"
VERBOSE_ENV = "SOCIALFUSION_VERBOSE"


class UserError(Exception):
    """Bad input the user can fix; `hint` (optional) says how, e.g. the command that creates a missing folder."""

    def __init__(self, *args, hint: str | None = None):
        super().__init__(*args)
        self.hint = hint


def one_line(text: object) -> str:
    """`text` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def format_user_error(err: BaseException) -> str:
    """`error: ...` and, when the error carries one, `hint: ...` on a second line."""
    lines = [f"error: {one_line(err) or type(err).__name__}"]
    hint = getattr(err, "hint", None)
    if hint:
        lines.append(f"hint: {one_line(hint)}")
    return "\n".join(lines)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def debug_requested() -> bool:
    """`--debug` on the command line (the dispatcher sets the variable) or SOCIALFUSION_DEBUG=1."""
    return _flag(DEBUG_ENV)


def verbose_requested() -> bool:
    """`--verbose` on the command line (the dispatcher sets the variable) or SOCIALFUSION_VERBOSE=1."""
    return _flag(VERBOSE_ENV)


_MARKDOWN = [
    (re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)"), r"\1 (\2)"),
    (re.compile(r"\*\*(.+?)\*\*", re.S), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]


def plain_text(text: str) -> str:
    """A docstring written in markdown (bold, code spans, links) as a terminal shows it: the marks removed, a
    link's address kept in brackets. Verb descriptions are module docstrings, which the docs render as markdown."""
    for pattern, repl in _MARKDOWN:
        text = pattern.sub(repl, text)
    return text


def add_console_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The two options every verb has. The dispatcher takes them from anywhere on the line before the verb's
    parser runs; declaring them here puts them in each verb's --help and lets `python -m <module>` accept them.
    The description is made plain text here too, so every verb's --help is free of markdown marks."""
    if parser.description:
        parser.description = plain_text(parser.description)
    group = parser.add_argument_group("console")
    group.add_argument(
        "--verbose", action="store_true", help="show third-party load reports, progress bars and warnings"
    )
    group.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (or set SOCIALFUSION_DEBUG=1)"
    )
    return parser
