"""Task registry: `build_task(name, **options)` returns a configured task; `tasks_from_config` all of a run's.

The five built-in tasks register themselves on import; a task defined elsewhere registers with
`@TASKS.register("name")` on a `Task` subclass (see `tasks/base.py`) before its config is loaded.
"""

from __future__ import annotations

import importlib

from ..config import ConfigError
from ..registry import Registry

TASKS: Registry = Registry("task")
TASK_NAMES = ("lam", "expression", "gesture", "relation", "gaze")  # the built-in tasks, in the paper's order


def load_all() -> Registry:
    for name in TASK_NAMES:
        importlib.import_module(f"{__name__}.{name}")
    return TASKS


def build_task(name: str, **options):
    load_all()
    return TASKS.get(name)(**options)


def tasks_from_config(config) -> dict:
    """The built-in tasks and every configured one, each with its options: what the model config decides for it
    (`Task.options_from_model`), then the data config's `task_options` (checked, `check_tasks`)."""
    configured = check_tasks(config)
    names = list(TASK_NAMES) + [name for name in configured if name not in TASK_NAMES]
    return {name: configured.get(name) or _build(name, config.model, {}) for name in names}


def check_tasks(config) -> dict:
    """Each configured task exists, takes its `task_options` and the label space of its adapter options, and has a
    dataset: a ConfigError naming the entry otherwise; returns the configured tasks, built. `config.validate`
    leaves these to the tasks (it imports neither them nor torch); every run builds its tasks through
    `tasks_from_config` before it reads any data."""
    load_all()
    tasks = {}
    for i, td in enumerate(config.data.tasks):
        where = f"data.tasks[{i}]"
        try:
            task = _build(td.task, config.model, td.task_options)
            adapter_options(td, task)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {err}") from err
        if (td.dataset or task.default_dataset) is None:
            raise ConfigError(f"{where}: task {td.task!r} has no default dataset; set `dataset` (e.g. jsonl)")
        tasks[td.task] = task
    return tasks


def default_tasks(model_cfg) -> dict:
    """The built-in tasks with their default options (a model built without a data config)."""
    load_all()
    return {name: _build(name, model_cfg, {}) for name in TASK_NAMES}


def _build(name: str, model_cfg, options: dict):
    cls = TASKS.get(name)
    return cls(**{**cls.options_from_model(model_cfg), **options})


def adapter_options(td, task) -> dict:
    """The options the adapter of a task's data config reads: the configured ones, with the label space set by
    the task (`Task.adapter_label_options`). A configured label space that differs from the task's is refused:
    it would load one label set under another's class names."""
    dataset = td.dataset or task.default_dataset
    implied = task.adapter_label_options(dataset)
    for key, want in implied.items():
        if key in td.adapter_options and td.adapter_options[key] != want:
            raise ValueError(
                f"adapter_options.{key}={td.adapter_options[key]!r} reads another label space than task {task.name!r} "
                f"predicts ({key}={want!r} for its task_options {td.task_options or {}}); set the label space once, in "
                f"task_options, and the adapter follows"
            )
    return {**td.adapter_options, **implied}
