"""Worker side: classification, prediction and matmul workers, profiles, and the worker process's main loop."""

from __future__ import annotations

import json
import statistics
import time

from .train_worker import TrainWorker
from .workers_common import _proto_streams, _reset_peak, _rss_kb, make_batch, preset_config


class ClassifyWorker:
    """method: score (model.score_classes) | generate (llm.generate on the same prefix + parse)."""

    TASKS = ("gesture", "expression")

    def __init__(self, spec: dict):
        import torch

        from socialfusion.models.factory import build_model
        from socialfusion.tasks import tasks_from_config

        self.spec = spec
        cfg = preset_config(spec["preset"])
        self.model = build_model(cfg.model, tasks=tasks_from_config(cfg)).eval()
        self.tok = self.model.tokenizer
        self.batches = {}
        for name in self.TASKS:
            b = make_batch(self.model.tasks[name], self.model.encoder.image_size, seed=1)
            with torch.no_grad():
                b["features"] = self.model.encode(b["pixel_values"]).contiguous()
            self.batches[name] = b
        self.paths = {}
        for name in self.TASKS:
            answers = self.model.answers(name)
            firsts = [a[0] for a in answers]
            self.paths[name] = "fast" if len(set(firsts)) == len(firsts) else "full"
        self.info = {
            "paths": self.paths,
            "classes": {n: self.model.tasks[n].num_classes for n in self.TASKS},
            "max_new_tokens": {n: self._max_new(n) for n in self.TASKS},
        }

    def _max_new(self, name: str) -> int:
        """The longest verbalizer, in tokens, without the EOS the scorer appends."""
        return max(len(a) - 1 for a in self.model.answers(name))

    def parse(self, name: str, texts: list[str]) -> list[int]:
        verbs = [v.lower() for v in self.model.tasks[name].verbalizers]
        out = []
        for t in texts:
            t = t.strip().lower().rstrip(".")
            if t in verbs:
                out.append(verbs.index(t))
                continue
            hits = [i for i, v in enumerate(verbs) if t.startswith(v) or (t and v.startswith(t))]
            out.append(max(hits, key=lambda i: len(verbs[i])) if hits else -1)
        return out

    def run(self, arg: str) -> dict:
        import torch

        method, name = self.spec["method"], arg
        if name == "encode":
            with torch.no_grad():
                self.model.encode(self.batches["expression"]["pixel_values"])
            return {}
        batch = self.batches[name]
        if method == "score":
            scores = self.model.score_classes(batch)
            return {"pred": scores.argmax(-1).tolist()}
        with torch.no_grad():
            visual = self.model.visual_tokens(batch)
            prefix, _ = self.model._prefix(name, visual)
            gen = self.model.llm.generate(
                inputs_embeds=prefix,
                attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
                max_new_tokens=self._max_new(name),
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        texts = self.tok.batch_decode(gen, skip_special_tokens=True)
        pred = self.parse(name, texts)
        return {
            "pred": pred,
            "generated_tokens": int(gen.shape[1]),
            "parsed": sum(p >= 0 for p in pred),
            "sample_text": texts[0],
        }


class PredictWorker:
    """api.predict on one image: arg 'all' or one task name."""

    def __init__(self, spec: dict):
        import numpy as np
        from PIL import Image

        from socialfusion.api import SocialFusion

        self.sf = SocialFusion.from_pretrained(spec["preset"], device="cpu")
        rng = np.random.default_rng(0)
        self.image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        # a box of every kind (face, hand and head share the first person's box), so that every task runs
        self.boxes = [{"xyxy": [100, 80, 300, 400], "kind": k} for k in ("face", "hand", "head", "person")] + [
            {"xyxy": [320, 60, 560, 420], "kind": "person"}
        ]
        [r] = self.sf.predict(self.image, self.boxes, tasks="all")
        skipped = [k for k, v in r["tasks"].items() if "skipped" in v]
        assert not skipped, skipped
        self.info = {"tasks": self.sf.task_names, "image": "640x480 RGB", "boxes": self.boxes}

    def run(self, arg: str) -> dict:
        [r] = self.sf.predict(self.image, self.boxes, tasks="all" if arg == "all" else [arg])
        return {"tasks": len(r["tasks"])}


class MatmulWorker:
    """arg fp32: torch.matmul of two 2048 x 2048 fp32 matrices. arg bf16: F.linear(a, b) of 2048 x 2048 bf16
    matrices (torch.matmul in bf16 takes a slow fallback on this CPU, see `info`), i.e. the nn.Linear kernel."""

    N = 2048

    def __init__(self, spec: dict):
        import torch
        import torch.nn.functional as F

        g = torch.Generator().manual_seed(0)
        self.a32 = torch.randn(self.N, self.N, generator=g)
        self.b32 = torch.randn(self.N, self.N, generator=g)
        self.a16, self.b16 = self.a32.bfloat16(), self.b32.bfloat16()
        self.info = {"n": self.N}
        if spec.get("bf16_matmul_probe"):
            n = 512
            a, b = self.a16[:n, :n].contiguous(), self.b16[:n, :n].contiguous()
            torch.matmul(a, b)
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                torch.matmul(a, b)
                ts.append(time.perf_counter() - t)
            self.info["bf16_torch_matmul_512_gflops"] = 2 * n**3 / statistics.median(ts) / 1e9
        self.F = F

    def run(self, arg: str) -> dict:
        import torch

        if arg == "fp32":
            torch.matmul(self.a32, self.b32)
        else:
            self.F.linear(self.a16, self.b16)
        return {"flops": 2 * self.N**3}


WORKERS = {"train": TrainWorker, "classify": ClassifyWorker, "predict": PredictWorker, "matmul": MatmulWorker}


def profile_unit(worker, arg, rows: int = 18) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        worker.run(arg)
    ka = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ka)
    top = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {
        "total_self_cpu_ms": total / 1000,
        "top": [
            {
                "op": e.key,
                "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
                "share": round(e.self_cpu_time_total / max(total, 1), 4),
                "calls": e.count,
            }
            for e in top
        ],
        "table": ka.table(sort_by="self_cpu_time_total", row_limit=rows),
    }


def worker_main(msg: dict) -> None:
    """A worker process: {"workers": {key: spec}, "threads": n}. Measured runs hold one worker per process; --smoke
    holds all of them in one (the imports, not the work, are what a tiny run's time goes to)."""
    import gc
    import resource
    import traceback

    import torch

    stdin, proto = _proto_streams()
    if msg.get("threads"):
        torch.set_num_threads(int(msg["threads"]))
    workers, setup = {}, {}
    for key, spec in msg["workers"].items():
        t0 = time.perf_counter()
        try:
            workers[key] = WORKERS[spec["kind"]](spec)
        except Exception as err:  # report, then die
            traceback.print_exc()
            proto.write(json.dumps({"error": f"{key}: {type(err).__name__}: {err}"}) + "\n")
            return
        gc.collect()
        setup[key] = {"setup_s": time.perf_counter() - t0, "info": getattr(workers[key], "info", {})}
    rss_ready = _rss_kb()
    peak_reset = _reset_peak()
    proto.write(json.dumps({"ready": True, "workers": setup, "threads": torch.get_num_threads()}) + "\n")
    for line in stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        worker = workers.get(msg.get("worker"))
        try:
            if cmd == "run":
                c0, w0 = time.process_time(), time.perf_counter()
                extra = worker.run(msg.get("arg"))
                wall = time.perf_counter() - w0
                reply = {"t": wall, "cpu": time.process_time() - c0, "extra": extra}
            elif cmd == "flops":
                reply = worker.flops(check=msg.get("arg") == "check")
            elif cmd == "profile":
                reply = profile_unit(worker, msg.get("arg"))
            elif cmd == "stats":
                rss = _rss_kb()
                reply = {
                    "rss_after_setup_mb": rss_ready["VmRSS"] / 1024,
                    "peak_rss_during_measurement_mb": rss["VmHWM"] / 1024 if peak_reset else None,
                    "peak_rss_process_lifetime_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "rss_now_mb": rss["VmRSS"] / 1024,
                }
                if reply["peak_rss_during_measurement_mb"] is not None:
                    reply["peak_minus_setup_mb"] = reply["peak_rss_during_measurement_mb"] - reply["rss_after_setup_mb"]
            elif cmd == "exit":
                proto.write(json.dumps({"bye": True}) + "\n")
                return
            else:
                reply = {"error": f"unknown command {cmd}"}
        except Exception as err:
            traceback.print_exc()
            reply = {"error": f"{type(err).__name__}: {err}"}
        proto.write(json.dumps(reply) + "\n")
