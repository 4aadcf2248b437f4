"""Worker for the two-process tests: train on the tiny preset, save this rank's (gathered) weights, evaluate sharded.

usage: dist_worker.py SYNTH_ROOT CACHE_DIR OUT BATCH_SIZE [--tasks a,b] [--resume-check] [OVERRIDE...]
(run directly or under torchrun). --resume-check also trains OUT/resumed for half the steps, resumes it to the
end, and saves its weights as OUT/resumed/weights_rank{rank}.pt.
"""

import os
import sys
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from socialfusion.config import load_config, select_tasks  # noqa: E402
from socialfusion.eval.evaluate import evaluate_model  # noqa: E402
from socialfusion.train import distributed  # noqa: E402
from socialfusion.train.loop import train  # noqa: E402
from tests.conftest import synth_overrides  # noqa: E402

root, cache, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
rest = sys.argv[5:]
tasks = ["lam"]
if "--tasks" in rest:
    i = rest.index("--tasks")
    tasks = rest[i + 1].split(",")
    del rest[i : i + 2]
resume_check = "--resume-check" in rest
overrides = [a for a in rest if a != "--resume-check"]
torch.set_num_threads(1)
# lam answers ("no"/"yes" + EOS) have equal token counts, so per-rank mean losses average to the global mean
config = select_tasks(
    load_config(
        "tiny",
        [
            *synth_overrides(root, cache),
            "train.steps=4",
            f"train.batch_size={batch}",
            "train.grad_clip=0.0",
            *overrides,
        ],
    ),
    tasks,
)
rank = int(os.environ.get("RANK", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))


def full_weights(model) -> dict:
    """Every trainable parameter in full (FSDP shards gathered: every rank takes part), on every rank."""
    return {
        n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


model = train(config, out, progress=False, return_model=True)["model"]  # this rank's own weights, in memory
torch.save(full_weights(model), out / f"weights_rank{rank}.pt")
with distributed.unsharded(model):
    evaluate_model(model, config, out / "eval", split="val", rank=rank, world=world, progress=False)
if resume_check:
    train(config, out / "resumed", progress=False, stop_after=config.train.steps // 2)
    resumed = train(config, out / "resumed", resume=True, progress=False, return_model=True)["model"]
    torch.save(full_weights(resumed), out / "resumed" / f"weights_rank{rank}.pt")
distributed.finish_process(0)  # the clean end of a multi-process run (not a plain exit: docs/RELIABILITY.md)
