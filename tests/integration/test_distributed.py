"""The distributed engine (train/distributed.py, train/step.py): DDP and FSDP on 2 CPU (gloo) processes against
one process with the same global batch, on a toy two-task model (fast) and on the tiny preset (slow: FSDP
training, in-loop evaluation, the rank-0 checkpoint loaded into one process, resume); the shipped Accelerate
configs load; the strategy choice and a cross-strategy resume are refused clearly.

Tolerances (`socialfusion.numerics`, weight_step): the processes compute the same sums as one process, in
another order (each rank's mean over its half of the batch, then the average of the two, vs one mean over the
whole batch), so the gradients agree to the precision's rounding: ~1e-7 relative in fp32, 2^-8 in bf16 (each
matmul's output is rounded to bf16). AdamW divides by sqrt(second moment), which keeps that relative size per
step, so a weight differs by about that fraction of lr per step: bounded by weight_step x lr x steps (fp32 1e-3,
bf16 3e-2 of the distance AdamW can move a weight; measured on the toy: 3e-8 and 9.7e-5 absolute over 3 steps of
lr 1e-2, on the tiny preset under FSDP 9e-8). That still catches a missing or double average (a factor of 2 in
a gradient moves the first Adam steps by up to lr); ranks that diverge at all fail the exact comparison."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from socialfusion.config import Config, VLMBaselineConfig
from socialfusion.numerics import tolerance
from socialfusion.train import distributed
from socialfusion.train.step import train_step

REPO = Path(__file__).resolve().parents[2]
STEPS, ACCUM, PER_RANK, LR = 3, 2, 2, 1e-2
DROPPED = (1, 0, 1)  # (step, micro-batch, rank): every sample of it skipped, so every rank must drop it


class Toy(nn.Module):
    """Two tasks that share an embedding and two blocks and each have their own head: a step's micro-batches leave
    the other task's head without gradient, as the real tasks do."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Linear(4, 8)
        self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(2))
        self.heads = nn.ModuleDict({"a": nn.Linear(8, 1), "b": nn.Linear(8, 1), "unused": nn.Linear(8, 1)})

    def forward(self, batch):
        h = self.embed(batch["x"])
        for layer in self.layers:
            h = torch.tanh(layer(h))
        y = self.heads[batch["task"]](h).squeeze(-1)
        return {"loss": ((y - batch["y"]) ** 2).mean(), "n_supervised": torch.tensor(len(y))}


def _micro_batch(step: int, micro: int, rows: slice) -> dict:
    g = torch.Generator().manual_seed(100 * step + micro)
    x, y = torch.randn(2 * PER_RANK, 4, generator=g), torch.randn(2 * PER_RANK, generator=g)
    return {"task": "ab"[(step + micro) % 2], "x": x[rows], "y": y[rows], "ids": list(range(2 * PER_RANK))[rows]}


# the runs of one pair of processes (strategy, gradient surgery, precision): starting them is most of the test's
# time. DDP with PCGrad goes last: its hand-made all-reduces of tensors Python holds are what a late gloo thread
# trips over at exit (`late_gil`)
KINDS = {
    "ddp-bf16": ("ddp", "none", "bf16"),
    "fsdp-bf16": ("fsdp", "none", "bf16"),
    "ddp": ("ddp", "none", "fp32"),
    "fsdp": ("fsdp", "none", "fp32"),
    "ddp-pcgrad": ("ddp", "pcgrad", "fp32"),
}


def _train_toy(model, module, rank: int | None, surgery: str = "none", precision: str = "fp32") -> dict:
    """STEPS steps of ACCUM micro-batches; `rank` None: one process with both ranks' rows."""
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.1, foreach=True
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    rows = slice(None) if rank is None else slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    for step in range(STEPS):
        micro = []
        for m in range(ACCUM):
            if (step, m) == DROPPED[:2] and rank in (None, DROPPED[2]):
                micro.append(None)  # one process: the whole micro-batch gone, as the two ranks agree it is
            else:
                micro.append(_micro_batch(step, m, rows))
        order = torch.Generator().manual_seed(step)
        train_step(
            module,
            micro,
            optimizer,
            scheduler,
            {"a": 1.0, "b": 0.5},
            torch.device("cpu"),
            precision,
            0.5,
            ACCUM,
            surgery,
            order,
        )
    return {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone() for n, p in model.named_parameters()}


def _toy_worker(rank: int, world: int, port: int, out: str) -> None:
    # every rank a client of the parent's store (TORCHELASTIC_USE_AGENT_STORE, as torchrun's agent does): the port
    # stays bound from the moment it is chosen, so no other process can take it before rank 0 listens on it
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        TORCHELASTIC_USE_AGENT_STORE="True",
    )
    torch.set_num_threads(1)
    distributed.init()
    for kind, (strategy, surgery, precision) in KINDS.items():
        config = Config()
        config.train.distributed = strategy
        model = Toy()
        module, plain = distributed.wrap(model, config, torch.device("cpu"))
        assert plain is model
        assert isinstance(module, nn.parallel.DistributedDataParallel) == (strategy == "ddp")
        assert isinstance(model, FSDPModule) == (strategy == "fsdp")
        torch.save(_train_toy(model, module, rank, surgery, precision), Path(out) / f"{kind}_rank{rank}.pt")
    # the abort's trigger made likely (`late_gil`): a last collective whose handle is dropped at once, so that the
    # gloo thread usually holds the last reference to its work and releases its tensor (taking the GIL) only once
    # the interpreter ends, or after 2 s. Ended by destroy_process_group alone, this test aborted (SIGABRT) in most
    # runs (docs/RELIABILITY.md has the counts); finish_process's barrier waits for that release
    _arm_late_gil(2000)
    torch.distributed.barrier()  # both ranks issue it together, so it completes while both are still running
    torch.distributed.all_reduce(torch.ones(8), async_op=True)
    distributed.finish_process(0)


def _arm_late_gil(ms: int) -> None:
    """With late_gil.so preloaded, every later GIL acquisition by a thread other than the main one waits until the
    interpreter finalizes, `ms` at most."""
    import ctypes

    try:
        ctypes.CDLL(None).late_gil_arm(ctypes.c_long(ms))
    except AttributeError:  # not preloaded: no C compiler on this machine
        pass


@pytest.fixture(scope="module")
def late_gil(tmp_path_factory) -> str | None:
    """late_gil.c built for LD_PRELOAD (None without a C compiler: the test then runs without it). Armed, it delays
    the GIL for every thread but the main one, which turns the race behind the two-process abort from rare into
    certain, so a worker that ends its process unsafely fails every time instead of once in a while."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    lib = tmp_path_factory.mktemp("late_gil") / "late_gil.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(lib), str(Path(__file__).with_name("late_gil.c")), "-ldl"],
        check=True,
    )
    return str(lib)


@pytest.mark.precision  # fp32 and bf16 runs within the test (one pair of processes for all)
def test_two_processes_match_one_process_on_a_two_task_model(tmp_path, late_gil, monkeypatch):
    """DDP, FSDP and DDP with PCGrad: gradient accumulation over two tasks (each micro-batch leaves one head unused,
    one head is never used), clipping, weight decay, and a micro-batch one rank lost to skips: both ranks end with
    the weights of one process that saw both ranks' rows, without that micro-batch; DDP and FSDP again in bf16
    (within the bf16 weight tolerance of one bf16 process). The processes run with late gloo threads (`late_gil`) and
    must still exit cleanly."""
    if late_gil:
        # the spawned processes start with it; this process is already running, so it is unaffected
        monkeypatch.setenv("LD_PRELOAD", ":".join(filter(None, [late_gil, os.environ.get("LD_PRELOAD")])))
    store = torch.distributed.TCPStore("127.0.0.1", 0, world_size=2, is_master=True, wait_for_workers=False)
    try:
        torch.multiprocessing.spawn(_toy_worker, args=(2, store.port, str(tmp_path)), nprocs=2, join=True)
    finally:
        del store
    model = Toy()
    single = _train_toy(model, model, None)
    assert torch.equal(single["heads.unused.weight"], Toy().heads.unused.weight), "a never-used head must not move"
    # gradient surgery: each task's gradient averaged across ranks by hand, then PCGrad, as in one process
    model = Toy()
    surgery = _train_toy(model, model, None, "pcgrad")
    assert any(not torch.equal(surgery[n], single[n]) for n in single), "PCGrad changed nothing on conflicting tasks"
    model = Toy()
    single_bf16 = _train_toy(model, model, None, "none", "bf16")
    references = {
        "ddp": single,
        "fsdp": single,
        "ddp-pcgrad": surgery,
        "ddp-bf16": single_bf16,
        "fsdp-bf16": single_bf16,
    }
    for kind, reference in references.items():
        ranks = [torch.load(tmp_path / f"{kind}_rank{r}.pt", weights_only=True) for r in range(2)]
        atol = tolerance(KINDS[kind][2]).weight_step * LR * STEPS
        for name in reference:
            assert torch.equal(ranks[0][name], ranks[1][name]), f"{kind}: ranks diverged on {name}"
            torch.testing.assert_close(ranks[0][name], reference[name], rtol=0, atol=atol, msg=f"{kind}: {name}")


def test_the_strategy_follows_the_trained_components():
    config = Config()
    assert distributed.strategy(config) == "ddp"  # LoRA on the LLM, frozen encoder
    config.model.trainable.llm = "full"
    assert distributed.strategy(config) == "fsdp"
    config.model.trainable.llm, config.model.trainable.encoder = "lora", "full"
    assert distributed.strategy(config) == "fsdp"
    config.train.distributed = "ddp"
    assert distributed.strategy(config) == "ddp"
    vlm = Config(model=VLMBaselineConfig())
    vlm.model.trainable.llm = "full"
    assert distributed.strategy(vlm) == "fsdp"


def test_one_process_is_left_unwrapped_and_resumes_only_its_own_optimizer_state():
    config = Config()
    config.train.distributed = "fsdp"
    model = Toy()
    module, plain = distributed.wrap(model, config, torch.device("cpu"))
    assert module is model and plain is model and not isinstance(model, FSDPModule)
    with distributed.unsharded(model):
        pass
    optimizer = torch.optim.AdamW(model.parameters())
    fsdp_written = {"state": {}, "param_groups": [{"params": ["embed.weight"], "lr": 1e-3}]}
    with pytest.raises(
        distributed.DistributedError, match=r"ckpt/training_state\.pt: optimizer state written by a fsdp run"
    ):
        distributed.load_optimizer_state(model, optimizer, fsdp_written, "ckpt/training_state.pt")
    distributed.load_optimizer_state(model, optimizer, optimizer.state_dict(), "ckpt/training_state.pt")


# the tiny preset's lr 1e-3 over dist_worker.py's 4 steps, in fp32 (the preset's precision)
TINY_WEIGHT_ATOL = tolerance("fp32").weight_step * 1e-3 * 4
ACCELERATE = sorted((REPO / "configs" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE, ids=[p.name for p in ACCELERATE])
def test_accelerate_configs_load_with_accelerates_own_loader(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == "MULTI_GPU" and config.num_processes >= 8 and config.mixed_precision == "no"
    assert config.num_processes % config.num_machines == 0
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= set(vars(config)), f"{path.name}: keys accelerate does not know: {set(raw) - set(vars(config))}"


def test_the_accelerate_configs_are_the_ones_the_docs_show():
    assert [p.name for p in ACCELERATE] == ["1node-8gpu.yaml", "multinode.yaml"]
    training = (REPO / "docs" / "TRAINING.md").read_text()  # the multi-GPU section moved there from the README
    for p in ACCELERATE:
        assert f"configs/accelerate/{p.name}" in training


@pytest.mark.slow
def test_fsdp_full_fine_tuning_on_two_processes(synth_root, tmp_path):
    """`llm: full` picks FSDP: 2 ranks x batch 2 end with the weights of 1 process x batch 4 (the in-loop
    evaluation and both checkpoints run sharded); rank 0's checkpoint holds full tensors that `load_model` reads
    in one process; a run stopped after 2 steps and resumed ends with the uninterrupted run's weights."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    worker = Path(__file__).parent / "dist_worker.py"
    common = [str(synth_root), str(tmp_path / "cache")]
    extra = ["model.trainable.llm=full", "train.eval_every=2"]
    # --standalone: torchrun's agent binds the store's port itself and keeps it (no free-port-then-bind race)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(worker),
            *common,
            str(tmp_path / "two"),
            "2",
            "--resume-check",
            *extra,
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    subprocess.run(
        [sys.executable, str(worker), *common, str(tmp_path / "one"), "4", *extra],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    two = torch.load(tmp_path / "two" / "weights_rank0.pt", weights_only=True)
    single = torch.load(tmp_path / "one" / "weights_rank0.pt", weights_only=True)
    resumed = torch.load(tmp_path / "two" / "resumed" / "weights_rank0.pt", weights_only=True)
    assert any("layers.0.mlp" in n and "lora" not in n for n in two), "llm: full trains the decoder's own weights"
    from socialfusion.models.checkpoint import load_model, trained_tensors

    loaded, _ = load_model(tmp_path / "two" / "checkpoints" / "last")
    from_checkpoint = trained_tensors(loaded)
    for name in single:
        torch.testing.assert_close(two[name], single[name], rtol=0, atol=TINY_WEIGHT_ATOL, msg=name)
        torch.testing.assert_close(resumed[name], two[name], rtol=1e-5, atol=1e-6, msg=name)
        assert torch.equal(from_checkpoint[name], two[name]), f"checkpoint differs from the trained weights on {name}"
    assert (tmp_path / "two" / "checkpoints" / "best" / "COMPLETE").exists()
    evals = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in evals if "eval" in r] == [2, 4]
    two_eval = json.loads((tmp_path / "two" / "eval" / "results.json").read_text())
    one_eval = json.loads((tmp_path / "one" / "eval" / "results.json").read_text())
    assert two_eval["metrics"]["lam"]["n"] == one_eval["metrics"]["lam"]["n"] == two_eval["manifest"]["lam"]["n"]
    assert two_eval["metrics"]["lam"]["map"] == pytest.approx(one_eval["metrics"]["lam"]["map"], abs=1e-6)
