"""The body of a training process forked by tests/reliability/test_training_faults.py (see `_Run` there).

Importing this module (the forkserver preloads it) imports everything a tiny training run needs, without running
any torch computation, so that each forked run starts in about a second instead of paying the imports again.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

for _name in (
    "socialfusion.commands",
    "socialfusion.train.loop",
    "socialfusion.features.cache",
    "socialfusion.core.metrics",
    "socialfusion.models.tiny_tokenizer",
    "transformers.models.auto.modeling_auto",
    "transformers.models.clip.modeling_clip",
    "transformers.models.llama.modeling_llama",
    "peft",
    "sklearn.metrics",
    "scipy.ndimage",
):
    try:
        importlib.import_module(_name)
    except ImportError:
        pass
try:
    from socialfusion.data.adapters import load_all as _adapters
    from socialfusion.tasks import load_all as _tasks

    _adapters()
    _tasks()
except ImportError:
    pass


def run_train(argv: list[str], output: str) -> None:
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    torch.set_num_threads(1)
    from socialfusion.commands import main_train

    rc = main_train(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    if rc:
        sys.exit(rc)
