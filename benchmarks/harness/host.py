"""Parent side: the worker processes, the interleaved rounds of a group, the machine description."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import HERE, ROOT
from .stats import summarize

# libgomp's default spin-waiting makes 2-thread torch up to 10x slower while another process keeps one of the
# two cores busy (measured: score_classes 3.45 s with 2 threads vs 0.35 s with 1; 0.43 s with PASSIVE); every
# worker gets this policy (--omp-wait-policy default leaves the environment alone)
OMP_WAIT_POLICY = "PASSIVE"
THREADS = None  # run.py sets both from its options


class Host:
    """A worker process holding the workers `specs` ({key: spec}): one in a measured run, all of them in --smoke."""

    def __init__(self, name: str, specs: dict[str, dict], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
            TQDM_DISABLE="1",
            PYTHONWARNINGS="ignore",
        )
        if OMP_WAIT_POLICY:
            env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "run.py"),
                "--worker",
                json.dumps({"workers": specs, "threads": THREADS}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            cwd=str(ROOT),
            env=env,
        )
        self.ready = self._read()
        if "error" in self.ready:
            self.close()
            raise RuntimeError(f"worker {name} failed to start: {self.ready['error']} (log: {self.log_path})")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"worker {self.name} died (rc={self.proc.poll()}); log tail:\n{tail}")
        return json.loads(line)

    def ask(self, worker: str | None, cmd: str, arg=None) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, "arg": arg, "worker": worker}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"worker {worker or self.name}: {cmd} {arg}: {reply['error']} (log: {self.log_path})")
        return reply

    def close(self):
        try:
            self.ask(None, "exit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Worker:
    """One configuration: its own process (`Host`), or its place in a shared one (`host`, --smoke)."""

    def __init__(self, name: str, spec: dict, log_dir: Path, host: Host | None = None):
        self.name, self.spec = name, spec
        self.own = host is None
        self.host = Host(name, {name: spec}, log_dir) if host is None else host
        setup = self.host.ready["workers"][name]
        self.ready = {"setup_s": setup["setup_s"], "info": setup["info"], "threads": self.host.ready["threads"]}

    def ask(self, cmd: str, arg=None) -> dict:
        return self.host.ask(self.name, cmd, arg)

    def close(self):
        if self.own:
            self.host.close()


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def run_group(
    name: str,
    workers: dict[str, dict],
    units: list[tuple[str, object]],
    warmup: int,
    repeats: int,
    log_dir: Path,
    extra_cmds: list[tuple[str, str, object]] = (),
    preset: str | None = None,
    host: Host | None = None,
) -> dict:
    """Start the workers one by one, each in its own process (or find them in `host`, a process that already holds
    them: --smoke), then `warmup` + `repeats` rounds over `units` (worker, arg), rotating the order every round;
    each unit's wall time is recorded. Then extra commands (flops, profile) and memory."""
    print(
        f"\n== {name}: {len(workers)} workers, {len(units)} units x ({warmup} warm-up + {repeats}) rounds", flush=True
    )
    group = {"name": name, "load_start": loadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if preset:
        group["preset"] = preset
    busy0, total0 = cpu_jiffies()
    t_start = time.perf_counter()
    live: dict[str, Worker] = {}
    try:
        for wname, spec in workers.items():
            live[wname] = Worker(f"{name}.{wname}", spec, log_dir, host)
            print(
                f"   {'started' if host is None else 'found'} {wname} (setup {live[wname].ready['setup_s']:.1f}s)",
                flush=True,
            )
        group["worker_specs"] = {w: live[w].spec for w in live}
        times: dict[str, list[float]] = {f"{w}:{a}": [] for w, a in units}
        cpus: dict[str, list[float]] = {k: [] for k in times}
        extras: dict[str, list] = {k: [] for k in times}
        busy_m0, total_m0 = cpu_jiffies()
        for r in range(warmup + repeats):
            k = r % len(units)
            order = units[k:] + units[:k]
            for w, a in order:
                reply = live[w].ask("run", a)
                key = f"{w}:{a}"
                if r >= warmup:
                    steps = int(live[w].spec.get("steps_per_unit", 1))
                    times[key].append(reply["t"] / steps)
                    cpus[key].append(reply["cpu"] / steps)
                    extras[key].append(reply["extra"])
            tag = "warm-up" if r < warmup else f"round {r - warmup + 1}/{repeats}"
            print(
                f"   {tag}: "
                + ", ".join(f"{w}:{a}={times[f'{w}:{a}'][-1]:.3f}s" if r >= warmup else f"{w}:{a}" for w, a in units),
                flush=True,
            )
        busy_m1, total_m1 = cpu_jiffies()
        group["results"] = {
            k: {
                **summarize(v),
                "cpu_per_wall_median": statistics.median(c / t for c, t in zip(cpus[k], v)),
                "extra_last": extras[k][-1],
            }
            for k, v in times.items()
        }
        group["machine_busy_during_measurement"] = (busy_m1 - busy_m0) / max(1, total_m1 - total_m0)
        group["worker_setup"] = {
            w: {"setup_s": live[w].ready["setup_s"], "info": live[w].ready["info"], "threads": live[w].ready["threads"]}
            for w in live
        }
        group["extra"] = {}
        for w, cmd, arg in extra_cmds:
            print(f"   {cmd} {w} {arg or ''}", flush=True)
            group["extra"][f"{w}:{cmd}:{arg}"] = live[w].ask(cmd, arg)
        group["memory"] = {w: live[w].ask("stats") for w in live}
    finally:
        for w in live.values():
            w.close()
    busy1, total1 = cpu_jiffies()
    group["wall_s"] = time.perf_counter() - t_start
    group["load_end"] = loadavg()
    group["machine_busy_whole_group"] = (busy1 - busy0) / max(1, total1 - total0)
    return group


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in (
                "Model name",
                "CPU(s)",
                "Thread(s) per core",
                "Core(s) per socket",
                "Socket(s)",
                "L2 cache",
                "L3 cache",
                "Hypervisor vendor",
            ):
                info[key.strip()] = value.strip()
            if key.strip() == "Flags":
                flags = value.split()
                info["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except (OSError, subprocess.SubprocessError):
        pass
    info["mem_total_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["mkldnn_bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    from socialfusion.numerics import precision_facts

    info["precision"] = precision_facts()  # the same facts `socialfusion --version` prints
    import importlib.metadata as md

    for pkg in ("transformers", "peft", "numpy"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "absent"
    try:
        info["git_revision"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        info["src_uncommitted_changes"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info
