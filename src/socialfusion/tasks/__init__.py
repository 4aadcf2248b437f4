"""Task registry: `build_task(name, **options)` returns a configured task."""

from __future__ import annotations

import importlib

from ..registry import Registry

TASKS: Registry = Registry("task")
TASK_NAMES = ("lam", "expression", "gesture", "relation", "gaze")


def load_all() -> Registry:
    for name in TASK_NAMES:
        importlib.import_module(f"{__name__}.{name}")
    return TASKS


def build_task(name: str, **options):
    load_all()
    return TASKS.get(name)(**options)
