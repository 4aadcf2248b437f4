"""Worker for the two-process test: train `lam` on the tiny preset, save each rank's weights, evaluate sharded.

usage: dist_worker.py SYNTH_ROOT CACHE_DIR OUT BATCH_SIZE (run directly or under torchrun)
"""

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from socialfusion.config import select_tasks  # noqa: E402
from socialfusion.config import load_config  # noqa: E402
from socialfusion.eval.evaluate import evaluate_model  # noqa: E402
from socialfusion.train.loop import train  # noqa: E402
from tests.conftest import synth_overrides  # noqa: E402

root, cache, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
# lam answers ("no"/"yes" + EOS) have equal token counts, so per-rank mean losses average to the global mean
config = select_tasks(load_config("tiny", [*synth_overrides(root, cache), "train.steps=4", f"train.batch_size={batch}", "train.grad_clip=0.0"]), ["lam"])
model = train(config, out, progress=False, return_model=True)["model"]  # this rank's own weights, in memory
rank = int(os.environ.get("RANK", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))
torch.save({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}, out / f"weights_rank{rank}.pt")
evaluate_model(model, config, out / "eval", split="val", rank=rank, world=world, progress=False)
