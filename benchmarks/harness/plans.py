"""Parent side: the groups each run measures (full, quick, extended, --only, --smoke) and the worker kinds."""

from __future__ import annotations

from pathlib import Path

from .host import Host, run_group


def _group(name: str, workers: dict, units: list, warmup: int, repeats: int, extra: list, preset: str) -> dict:
    """One group: run_group's arguments."""
    return {
        "name": name,
        "workers": workers,
        "units": units,
        "warmup": warmup,
        "repeats": repeats,
        "extra_cmds": extra,
        "preset": preset,
    }


def train_group(
    preset: str,
    variants: list[tuple[str, str, str]],
    warmup: int,
    repeats: int,
    matmul: list[str],
    flop_check: bool,
    profile: list[str],
    steps_per_unit: int = 1,
    name: str | None = None,
) -> dict:
    workers = {}
    for impl, inp, prec in variants:
        wname = f"{impl}-{inp}-{prec}" if impl == "sf" else f"llava-{prec}"
        workers[wname] = {
            "kind": "train",
            "impl": impl,
            "input": inp,
            "precision": prec,
            "preset": preset,
            "steps_per_unit": steps_per_unit,
        }
    units = [(w, None) for w in workers]
    if matmul:
        workers["matmul"] = {"kind": "matmul", "bf16_matmul_probe": "bf16" in matmul}
        units += [("matmul", d) for d in matmul]
    extra = []
    extra += [(w, "flops", "check" if flop_check else None) for w in workers if w != "matmul"]
    extra += [(w, "profile", None) for w in profile]
    return _group(name or f"train-{preset}", workers, units, warmup, repeats, extra, preset)


def classify_group(preset: str, warmup: int, repeats: int, profile: bool) -> dict:
    workers = {
        "score": {"kind": "classify", "method": "score", "preset": preset},
        "generate": {"kind": "classify", "method": "generate", "preset": preset},
    }
    units = [
        ("score", "gesture"),
        ("generate", "gesture"),
        ("score", "expression"),
        ("generate", "expression"),
        ("score", "encode"),
    ]
    extra = (
        [
            ("score", "profile", "gesture"),
            ("generate", "profile", "gesture"),
            ("score", "profile", "expression"),
            ("generate", "profile", "expression"),
        ]
        if profile
        else []
    )
    return _group("classify", workers, units, warmup, repeats, extra, preset)


def predict_group(preset: str, warmup: int, repeats: int, profile: bool) -> dict:
    workers = {"all": {"kind": "predict", "preset": preset}, "single": {"kind": "predict", "preset": preset}}
    units = [("all", "all")] + [("single", t) for t in ("lam", "expression", "gesture", "relation", "gaze")]
    extra = [("all", "profile", "all"), ("single", "profile", "expression")] if profile else []
    return _group("predict", workers, units, warmup, repeats, extra, preset)


def plan(quick: bool, extended: bool, only: set[str] | None) -> list[dict]:
    """The groups (run_group's arguments), in order. Full: train-tiny, train-default (fp32), classify, predict,
    train-issue9 (reference and SF with cache). --extended adds train-default-bf16 and SF without cache to
    train-issue9 (about +6 min on this CPU, whose bf16 backward matmuls run at ~1 GFLOP/s)."""
    groups = []

    def want(name):
        return (only is None and (extended or name != "train-default-bf16")) or (only is not None and name in only)

    fp32 = [("sf", "features", "fp32"), ("sf", "pixels", "fp32"), ("llava", "pixels", "fp32")]
    if want("train-tiny"):
        prof = [] if quick else ["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        groups.append(
            train_group(
                "tiny",
                fp32,
                1 if quick else 2,
                4 if quick else 15,
                ["fp32"],
                flop_check=True,
                profile=prof,
                steps_per_unit=5,
            )
        )
    if want("train-default"):
        prof = [] if quick else ["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        groups.append(train_group("default", fp32, 1, 2 if quick else 6, ["fp32"], flop_check=True, profile=prof))
    if want("train-default-bf16"):
        v = [
            ("sf", "features", "fp32"),
            ("llava", "pixels", "fp32"),
            ("sf", "features", "bf16"),
            ("llava", "pixels", "bf16"),
        ]
        groups.append(
            train_group(
                "default",
                v,
                1,
                2,
                ["fp32", "bf16"],
                flop_check=False,
                profile=["sf-features-bf16"],
                name="train-default-bf16",
            )
        )
    if want("classify"):
        groups.append(classify_group("default", 1 if quick else 2, 3 if quick else 10, profile=not quick))
    if want("predict"):
        groups.append(predict_group("default", 1, 2 if quick else 8, profile=not quick))
    if want("train-issue9") and not (quick and only is None):
        v = [("llava", "pixels", "fp32"), ("sf", "features", "fp32")] + ([("sf", "pixels", "fp32")] if extended else [])
        groups.append(train_group("issue9", v, 1, 2 if quick else 3, ["fp32"], flop_check=False, profile=[]))
    return groups


def smoke_plan() -> list[dict]:
    """--smoke: every worker kind of the full run (`worker_kind`), each at the `tiny` preset (random init, no
    download), one measured round and no warm-up, with the FLOP cross-check and a profile of every worker but
    the matmul, workers started concurrently. It checks that the harness runs, not how fast anything is."""
    fp32 = [("sf", "features", "fp32"), ("sf", "pixels", "fp32"), ("llava", "pixels", "fp32")]
    return [
        train_group(
            "tiny", fp32, 0, 1, ["fp32"], flop_check=True, profile=["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        ),
        classify_group("tiny", 0, 1, profile=True),
        predict_group("tiny", 0, 1, profile=True),
    ]


def worker_kind(spec: dict) -> str:
    """What a worker measures, independent of preset, precision and size: train:sf-features, train:sf-pixels,
    train:llava, matmul, classify:score, classify:generate, predict."""
    if spec["kind"] == "train":
        return "train:" + (f"sf-{spec['input']}" if spec["impl"] == "sf" else spec["impl"])
    if spec["kind"] == "classify":
        return f"classify:{spec['method']}"
    return spec["kind"]


def plan_kinds(groups: list[dict]) -> list[str]:
    return sorted({worker_kind(spec) for g in groups for spec in g["workers"].values()})


def kinds_measured(groups: list[dict]) -> dict:
    """{kind: {"<group>.<worker>:<arg>": median seconds}} over the groups that ran."""
    out: dict[str, dict] = {}
    for g in groups:
        for key, res in g["results"].items():
            w = key.split(":", 1)[0]
            out.setdefault(worker_kind(g["worker_specs"][w]), {})[f"{g['name']}.{key}"] = res["median"]
    return dict(sorted(out.items()))


def run_plan(groups: list[dict], log_dir: Path, one_process: bool = False) -> list[dict]:
    """Run the groups in order; `one_process` (--smoke): every worker of every group in one process, started once."""
    if not one_process:
        return [run_group(log_dir=log_dir, **g) for g in groups]
    specs = {f"{g['name']}.{w}": spec for g in groups for w, spec in g["workers"].items()}
    print(f"starting one worker process for {len(specs)} workers", flush=True)
    host = Host("all-workers", specs, log_dir)
    try:
        return [run_group(log_dir=log_dir, host=host, **g) for g in groups]
    finally:
        host.close()
