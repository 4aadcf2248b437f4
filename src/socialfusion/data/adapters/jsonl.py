"""Your own data in the canonical record format (`Sample.to_dict`, one JSON object per line).

`root` is the folder holding `<split>.jsonl` (or the .jsonl file itself). Image paths are relative to the record's
`root`; a record without one uses the folder of the file, a relative one resolves against that folder, exactly
as `schema.read_jsonl` does. A bad line is a counted skip naming `file:line` (an error under policy 'error').
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ...core.schema import DataError, Sample, read_jsonl
from ...tasks import TASKS, load_all
from ..skips import SkipReport
from . import DATASETS


@DATASETS.register("jsonl")
def read(root: Path, split: str, report: SkipReport, file=None) -> list[Sample]:
    """Options: `file` names the JSONL file under root (default `<split>.jsonl`)."""
    path = root if root.is_file() else root / (str(file) if file else f"{split}.jsonl")
    if not path.is_file():
        raise DataError(f"JSONL records not found: expected {path}")
    try:  # the common case, every line good: read_jsonl is the one reader of the format
        samples = list(read_jsonl(path))
    except (DataError, OverflowError, UnicodeDecodeError):  # read_jsonl stops at the first bad line (OverflowError:
        samples = read_lines(path, report)  # an infinite label or role): go line by line to count each bad one
    load_all()
    out = []
    for s in samples:
        if s.task not in TASKS:  # built-in or registered by the user
            report.skip(f"{path.name}:{s.id}", "unknown task")
            continue
        problem = _problem(s)
        if problem:
            report.skip(f"{path.name}:{s.id}", problem)
            continue
        out.append(s)
    return out


def _problem(s: Sample) -> str | None:
    """What from_dict lets through but no loader can use: names the OS refuses, non-finite or unnormalised points."""
    for name in (s.image, s.root):
        if "\0" in name:
            return "image path contains a NUL byte"
        try:
            os.fsencode(name)
        except UnicodeError:
            return "image path is not a valid file name"
    if s.points is not None and not all(math.isfinite(v) and 0.0 <= v <= 1.0 for p in s.points for v in p):
        return "gaze point is not a finite normalised (x, y) in [0, 1]"
    if s.inout not in (None, 0, 1):
        return "inout is not 1, 0 or null"
    return None


def read_lines(path: Path, report: SkipReport) -> list[Sample]:
    """read_jsonl's per-line logic, but a bad line is a counted skip instead of the end of the file."""
    base = path.parent
    out = []
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:  # a non-UTF-8 line is one bad line
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{line_no}"
            try:
                line.encode("utf-8")
            except UnicodeError:
                report.skip(where, "not UTF-8 text")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                report.skip(where, "not valid JSON")
                continue
            if not isinstance(record, dict):
                report.skip(where, "not a JSON object")
                continue
            try:
                sample = Sample.from_dict(record, root=str(base))
            except (DataError, OverflowError) as err:
                report.skip(f"{where} ({err})", "malformed record")
                continue
            if sample.root and not Path(sample.root).is_absolute():
                sample.root = str((base / sample.root).resolve())
            out.append(sample)
    return out
