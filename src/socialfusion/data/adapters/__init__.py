"""Dataset adapters: one module per official dataset, each registered in DATASETS.

An adapter is a function `read(root: Path, split: str, report: SkipReport, **options) -> list[Sample]` that reads
the official layout under `root` and returns canonical samples (image paths relative to `root`, `Sample.root`
set to `str(root)`), recording every dropped record in `report`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...registry import Registry
from ..skips import SkipReport

DATASETS: Registry = Registry("dataset")

_MODULES = ("ego4d_lam", "affectnet", "hagrid_v2", "pisc", "gazefollow", "jsonl")


def load_all() -> Registry:
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return DATASETS


def read_dataset(name: str, root: str | Path, split: str, report=None, **options):
    load_all()
    report = report if report is not None else SkipReport()
    return DATASETS.get(name)(Path(root), split, report, **options), report
