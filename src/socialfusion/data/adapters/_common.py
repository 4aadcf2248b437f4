"""Helpers shared by the adapters: annotation files, option values, strict scalars, cheap image existence."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ...core.images import ImageError, image_size
from ...core.schema import DataError
from ..skips import SkipReport

# ---- annotation files: a missing or unparsable file is an error, never a silent empty dataset ----------------


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: expected {path}")
    return path


def first_existing(candidates: list[Path], what: str) -> Path:
    for p in candidates:
        if p.is_file():
            return p
    raise DataError(f"{what} not found: expected one of {', '.join(str(p) for p in candidates)}")


def load_json(path: Path, what: str) -> Any:
    require_file(path, what)
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        # e.g. two arrays in one file, left by the LAM baseline's append-mode preprocessing run twice
        raise DataError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err


def check_split(dataset: str, split: str, allowed: tuple[str, ...], hint: str = "") -> None:
    if split not in allowed:
        raise DataError(f"{dataset}: unknown split {split!r}; expected one of {', '.join(allowed)}{hint}")


# ---- option values: YAML gives typed values, the command line gives strings --------------------------------


def int_option(name: str, value: Any, minimum: int | None = None) -> int:
    try:
        out = parse_int(value)
    except ValueError:
        raise DataError(f"option {name}={value!r}: expected an integer") from None
    if minimum is not None and out < minimum:
        raise DataError(f"option {name}={value!r}: must be >= {minimum}")
    return out


def float_option(name: str, value: Any, lo: float, hi: float) -> float:
    try:
        out = parse_float(value)
    except ValueError:
        raise DataError(f"option {name}={value!r}: expected a number") from None
    if not lo <= out <= hi:
        raise DataError(f"option {name}={value!r}: must be in [{lo}, {hi}]")
    return out


def bool_option(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise DataError(f"option {name}={value!r}: expected true or false")


def choice_option(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value)
    if text not in choices:
        raise DataError(f"option {name}={value!r}: expected one of {', '.join(choices)}")
    return text


# ---- strict scalars (ValueError on anything else; callers turn it into a counted skip) ----------------------


def parse_int(value: Any) -> int:
    """An integer from int, integral float or a numeric string ('7', '7.0', ' 7 '); never from bool or NaN."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an integer: {value!r}")
    if isinstance(value, int):
        return value
    f = parse_float(value)
    if f != int(f):
        raise ValueError(f"not an integer: {value!r}")
    return int(f)


def parse_float(value: Any) -> float:
    """A finite float from a number or a numeric string."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    try:
        f = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"not a finite number: {value!r}")
    return f


# ---- protocol filters ------------------------------------------------------------------------------------


def filtered(report: SkipReport, where: str, reason: str) -> None:
    """Count a record the official protocol leaves out (AffectNet None/Uncertain/No-Face, GazeFollow inout -1...).

    It is not bad data, so unlike `report.skip` it never raises under policy 'error' (the real files always hold
    such records); it is still counted, with a reason that starts with "protocol:".
    """
    one = SkipReport(policy="skip")
    one.skip(where, f"protocol: {reason}")
    report.merge(one)


# ---- images -----------------------------------------------------------------------------------------------


class DirectoryIndex:
    """Answers "does root/rel exist?" with one listdir per directory instead of one stat per file."""

    def __init__(self, root: Path):
        self.root = root
        self._listings: dict[str, frozenset[str]] = {}

    def exists(self, rel: str) -> bool:
        folder, _, name = rel.rpartition("/")
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(self.root / folder))
            except (OSError, ValueError):  # ValueError: a NUL byte or a lone surrogate in a name from a file
                self._listings[folder] = frozenset()
        return name in self._listings[folder]

    def names(self, folder: str) -> frozenset[str]:
        self.exists(folder + "/")
        return self._listings[folder]


def size_or_skip(root: Path, rel: str, report: SkipReport, where: str) -> tuple[int, int] | None:
    """The image's (W, H), or None after a counted skip when it is missing or unreadable."""
    try:
        return image_size(root / rel)
    except ImageError as err:
        report.skip(where, f"image: {err.reason}")
        return None
    except ValueError:  # os.stat refuses the name: a NUL byte or a lone surrogate read from an annotation file
        report.skip(where, "image: invalid file name")
        return None


def csv_error(path: Path, row_no: int, err: Exception) -> DataError:
    """A CSV file that cannot be read as UTF-8 text or that the csv module refuses (e.g. a cell over its size limit)."""
    if isinstance(err, UnicodeDecodeError):
        return DataError(f"{path}: not UTF-8 text after row {row_no} ({err.reason})")
    return DataError(f"{path}:{row_no + 1}: malformed CSV ({err})")
