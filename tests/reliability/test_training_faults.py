"""Faults during training: real SIGKILLs (during a step, during evaluation, during a checkpoint write) followed by
--resume end with the uninterrupted run's weights; a half-written checkpoint is never taken for a complete one;
a full disk during a checkpoint write fails the run and leaves the previous checkpoint intact."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from socialfusion.models.checkpoint import CheckpointError, read_checkpoint_config, save_checkpoint
from tests.conftest import synth_overrides

STEPS, EVAL_EVERY = 8, 4
SEED = 20251201  # the kill points below are drawn from this seed


def _overrides(
    synth_root: Path, cache: Path, steps: int = STEPS, eval_every: int = EVAL_EVERY, workers: int = 0
) -> list[str]:
    caps = [f"data.tasks.{i}.max_eval_samples=4" for i in range(5)]  # evaluation stays short but real
    return [
        *synth_overrides(synth_root, cache),
        *caps,
        f"train.steps={steps}",
        "train.save_every=1",
        "train.log_every=1",
        f"train.eval_every={eval_every}",
        f"train.num_workers={workers}",
    ]


class _Run:
    """A training process (`socialfusion train ...` through main_train) forked from a forkserver that has already
    imported torch, transformers and socialfusion: a real process that a real SIGKILL ends, without paying the
    imports (about 8 s on 2 cores) at every restart."""

    _context = None
    started: list = []  # every process started, for `_reap`

    def __init__(self, argv: list[str], output: Path):
        if _Run._context is None:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(
                ["socialfusion.commands", "socialfusion.train.loop", "tests.reliability._train_child"]
            )
            _Run._context = ctx
        from tests.reliability._train_child import run_train

        # not a daemon: a daemonic process may not start the DataLoader's worker processes; `_reap` ends leftovers
        self.process = _Run._context.Process(target=run_train, args=(argv, str(output)), daemon=False)
        self.process.start()
        _Run.started.append(self.process)

    def poll(self):
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            pytest.fail(f"training process still running after {timeout} s")
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.process.kill()

    @property
    def returncode(self):
        return self.process.exitcode


@pytest.fixture(autouse=True)
def _reap():
    """A run the test did not wait for (it failed first) is killed, not waited for at interpreter exit."""
    yield
    while _Run.started:
        process = _Run.started.pop()
        if process.is_alive():
            process.kill()
            process.join()


def _launch(synth_root, cache, out: Path, resume: bool, tag: str, workers: int = 1) -> _Run:
    """A training run; the runs of the SIGKILL test decode in a DataLoader worker (test_training.py's resume test
    covers both 0 and 1 workers)."""
    argv = [
        "tiny",
        *_overrides(synth_root, cache, workers=workers),
        "train.feature_cache=off",
        "--out",
        str(out),
        "--no-progress",
        *(["--resume"] if resume else []),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    return _Run(argv, out.parent / f"{out.name}-{tag}.out")


def _rows(run: Path) -> list[dict]:
    """log.jsonl rows written so far (a half-written last line is ignored)."""
    try:
        text = (run / "log.jsonl").read_text()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        rows.append(json.loads(line))
    return rows


def _tmp_dirs(run: Path, name: str = "last") -> set[str]:
    try:
        return {n for n in os.listdir(run / "checkpoints") if n.startswith(f".{name}.tmp-")}
    except FileNotFoundError:
        return set()


def _wait(proc: _Run, cond, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}")
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def _kill(proc: _Run) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _state_step(ckpt: Path) -> int:
    return int(torch.load(ckpt / "training_state.pt", weights_only=True)["step"])


def _loss_rows(rows: list[dict], start: int = 0) -> list[int]:
    return [r["step"] for r in rows[start:] if "loss" in r]


@pytest.mark.slow
def test_sigkill_during_step_eval_and_checkpoint_write_then_resume_matches_uninterrupted(synth_root, tmp_path):
    rng = random.Random(SEED)
    cache = tmp_path / "cache"
    reference = _launch(synth_root, cache, tmp_path / "full", resume=False, tag="0")  # runs alongside the kills
    run = tmp_path / "killed"
    kills = []

    # 1. during a step: right after checkpoint k1 is complete, i.e. while step k1 + 1 computes
    k1 = rng.choice([1, 2])
    delay = rng.uniform(0.0, 0.01)
    proc = _launch(synth_root, cache, run, resume=False, tag="1")
    _wait(proc, lambda: k1 in _loss_rows(_rows(run)), f"step {k1}")
    _wait(proc, lambda: not _tmp_dirs(run) and (run / "checkpoints" / "last" / "COMPLETE").exists(), f"checkpoint {k1}")
    time.sleep(delay)
    _kill(proc)
    saved = _state_step(run / "checkpoints" / "last")
    phase = "checkpoint write" if _tmp_dirs(run) else "step"
    kills.append({"phase": phase, "after_step": saved, "delay_s": round(delay, 4)})
    assert 0 < saved < STEPS

    # 2. during the evaluation of step EVAL_EVERY: its loss row is logged, its eval row is not
    start = len(_rows(run))
    delay = rng.uniform(0.0, 0.02)  # the loss row is flushed right before the evaluation starts
    proc = _launch(synth_root, cache, run, resume=True, tag="2")
    _wait(proc, lambda: EVAL_EVERY in _loss_rows(_rows(run), start), f"step {EVAL_EVERY}")
    time.sleep(delay)
    _kill(proc)
    rows = _rows(run)[start:]
    assert not [r for r in rows if "eval" in r], "the kill meant for the evaluation came after it"
    assert _state_step(run / "checkpoints" / "last") == EVAL_EVERY - 1
    kills.append({"phase": "evaluation", "after_step": EVAL_EVERY - 1, "delay_s": round(delay, 4)})

    # 3. during a checkpoint write: killed as soon as a new temporary checkpoint directory appears
    start = len(_rows(run))
    k3 = rng.choice([5, 6, 7])
    proc = _launch(synth_root, cache, run, resume=True, tag="3")
    _wait(proc, lambda: k3 in _loss_rows(_rows(run), start), f"step {k3}")
    known = _tmp_dirs(run)
    _wait(proc, lambda: _tmp_dirs(run) - known, "a checkpoint write")
    _kill(proc)
    left = sorted(_tmp_dirs(run) - known)
    assert left, "the kill meant for a checkpoint write came after it"
    kills.append({"phase": "checkpoint write", "after_step": _state_step(run / "checkpoints" / "last")})
    for name in left:  # a half-written checkpoint is never taken for a complete one
        partial = run / "checkpoints" / name
        if not (partial / "COMPLETE").exists():
            with pytest.raises(CheckpointError, match="not a complete checkpoint"):
                read_checkpoint_config(partial)
    read_checkpoint_config(run / "checkpoints" / "last")  # the previous one is intact (checksums verified)
    assert k3 - 1 <= _state_step(run / "checkpoints" / "last") < STEPS

    # 4. resume to the end
    proc = _launch(synth_root, cache, run, resume=True, tag="4")
    assert proc.wait(timeout=300) == 0, (run.parent / "killed-4.out").read_text()[-3000:]
    assert "resumed from" in (run.parent / "killed-4.out").read_text()
    assert reference.wait(timeout=300) == 0, (tmp_path / "full-0.out").read_text()[-3000:]

    assert _state_step(run / "checkpoints" / "last") == STEPS
    full = load_file(str(tmp_path / "full" / "checkpoints" / "last" / "trainable.safetensors"))
    resumed = load_file(str(run / "checkpoints" / "last" / "trainable.safetensors"))
    assert full.keys() == resumed.keys() and full
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=1e-5, atol=1e-6, msg=name)
    # the last evaluation saw the same model: same metrics
    full_eval = [r for r in _rows(tmp_path / "full") if "eval" in r][-1]
    resumed_eval = [r for r in _rows(run) if "eval" in r][-1]
    assert resumed_eval["step"] == full_eval["step"] == STEPS
    assert resumed_eval["mean_primary"] == pytest.approx(full_eval["mean_primary"], abs=1e-6)
    assert {k["phase"] for k in kills} >= {"evaluation", "checkpoint write"}
    print("kills:", json.dumps(kills))


# ---- a half-written checkpoint, deterministically, at every file boundary --------------------------------


def test_checkpoint_cut_short_at_any_file_is_refused(tiny_model, tiny_config, tmp_path):
    full = save_checkpoint(tiny_model, tiny_config, tmp_path / "full", training_state={"step": torch.tensor(3)})
    files = sorted(p.relative_to(full) for p in full.rglob("*") if p.is_file() and p.name != "COMPLETE")
    assert {"config.json", "trainable.safetensors", "training_state.pt", "checksums.json"} <= {str(f) for f in files}
    for n in range(len(files) + 1):  # every prefix of the files, the last one cut in half: no COMPLETE marker
        partial = tmp_path / f"partial{n}"
        partial.mkdir()
        for k, rel in enumerate(files[:n]):
            data = (full / rel).read_bytes()
            (partial / rel).parent.mkdir(parents=True, exist_ok=True)
            (partial / rel).write_bytes(data[: len(data) // 2] if k == n - 1 else data)
        with pytest.raises(CheckpointError, match="not a complete checkpoint"):
            read_checkpoint_config(partial)


def test_failed_checkpoint_write_keeps_the_previous_one_and_leaves_no_temporary(
    tiny_model, tiny_config, tmp_path, monkeypatch
):
    import socialfusion.models.checkpoint as ckpt_mod

    out = save_checkpoint(tiny_model, tiny_config, tmp_path / "last", training_state={"step": torch.tensor(1)})
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with torch.no_grad():
        for p in tiny_model.parameters():
            if p.requires_grad:
                p.add_(1.0)

    def full_disk(obj, path, *a, **k):
        Path(path).write_bytes(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(ckpt_mod.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint .*No space left on device") as err:
        save_checkpoint(tiny_model, tiny_config, out, training_state={"step": torch.tensor(2)})
    assert str(out) in str(err.value) and err.value.__cause__.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"], "a temporary directory was left behind"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    read_checkpoint_config(out)


# ---- a full disk during a real run --------------------------------------------------------------------------


def _mount_tmpfs(path: Path, size_kb: int) -> bool:
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_full_disk_during_a_checkpoint_write_fails_the_run_and_keeps_the_previous_checkpoint(
    synth_root, tmp_path, monkeypatch
):
    """The run directory on a tmpfs that holds one checkpoint but not a second (ENOSPC from the kernel); where
    tmpfs cannot be mounted, the write is made to fail with ENOSPC instead."""
    from socialfusion.config import load_config
    from socialfusion.train.loop import train

    cache = tmp_path / "cache"
    config = load_config("tiny", _overrides(synth_root, cache, steps=4, eval_every=0))
    one = train(config, tmp_path / "one", progress=False, stop_after=1)  # step 1 on an ample disk: the reference
    assert one["step"] == 1
    expected = load_file(str(tmp_path / "one" / "checkpoints" / "last" / "trainable.safetensors"))

    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, 480)  # one checkpoint is about 300 kB in 4 kB pages, run files about 20 kB
    print("full disk:", "a 480 kB tmpfs (ENOSPC from the kernel)" if mounted else "simulated ENOSPC")
    if not mounted:
        import socialfusion.models.checkpoint as ckpt_mod

        real_save, calls = ckpt_mod.torch.save, []

        def save(obj, path, *a, **k):
            calls.append(path)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return real_save(obj, path, *a, **k)

        monkeypatch.setattr(ckpt_mod.torch, "save", save)
        disk.mkdir()
    try:
        run = disk / "run"
        with pytest.raises(CheckpointError, match="cannot write the checkpoint") as err:
            train(config, run, progress=False)
        assert str(run / "checkpoints" / "last") in str(err.value)  # names the checkpoint and the free space
        assert "bytes free there" in str(err.value)
        last = run / "checkpoints" / "last"
        assert _state_step(last) == 1
        read_checkpoint_config(last)  # complete, checksums match
        kept = load_file(str(last / "trainable.safetensors"))
        for name in expected:
            assert torch.equal(kept[name], expected[name]), name
        leftovers = [n for n in os.listdir(run / "checkpoints") if n.startswith(".")]
        assert not leftovers, f"temporary files left on the full disk: {leftovers}"
        del err
    finally:
        if mounted:
            import gc

            gc.collect()  # the failed run's log file handle lives in the traceback's frames
            subprocess.run(["umount", "-l", str(disk)], check=False)
