"""Parent side: ratios of medians and the targets of the issue."""

from __future__ import annotations

import statistics

from .common import BATCH
from .workers import ClassifyWorker


def _med(group: dict, key: str) -> float:
    return group["results"][key]["median"]


def analyse(groups: list[dict]) -> dict:
    """Ratios from medians and the targets of the issue."""
    out = {"train": {}, "classify": {}, "predict": {}, "targets": []}
    by = {g["name"]: g for g in groups}

    def target(name, value, op, threshold, applicable=True, note=""):
        met = (value >= threshold) if op == ">=" else (value <= threshold)
        out["targets"].append(
            {
                "target": name,
                "value": value,
                "op": op,
                "threshold": threshold,
                "met": bool(met),
                "applicable": applicable,
                "note": note,
            }
        )

    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        g = by.get(gname)
        if not g:
            continue
        preset = gname.removeprefix("train-")
        bf16_group = gname.endswith("-bf16")
        res = g["results"]
        peak = {d: 2 * 2048**3 / _med(g, f"matmul:{d}") for d in ("fp32", "bf16") if f"matmul:{d}" in res}
        rows = {}
        for key in res:
            w, _ = key.split(":", 1)
            if w == "matmul":
                continue
            prec = w.rsplit("-", 1)[1]
            t = _med(g, key)
            fl = g.get("extra", {}).get(f"{w}:flops:None") or g.get("extra", {}).get(f"{w}:flops:check")
            row = {
                "step_s": t,
                "samples_per_s": BATCH / t,
                "min_s": res[key]["min"],
                "max_s": res[key]["max"],
                "n": res[key]["n"],
            }
            if fl:
                row["flops_per_step"] = fl["total"]
                if "flop_counter_mode_total" in fl:
                    row["flop_counter_mode"] = fl["flop_counter_mode_total"]
                row["flops_linear_conv"] = fl["linear_conv"]
                row["flops_attention"] = fl["attention"]
                row["achieved_gflops"] = fl["total"] / t / 1e9
                if prec in peak:
                    row["peak_gflops"] = peak[prec] / 1e9
                    row["mfu"] = fl["total"] / t / peak[prec]
            rows[w] = row
        out["train"][preset] = {"rows": rows, "peak_gflops": {d: v / 1e9 for d, v in peak.items()}}
        ref = rows.get("llava-fp32")
        if ref:
            for row in rows.values():
                row["speedup_vs_llava_fp32"] = ref["step_s"] / row["step_s"]
            if "llava-bf16" in rows:
                for w in ("sf-features-bf16", "sf-pixels-bf16"):
                    if w in rows:
                        rows[w]["speedup_vs_llava_bf16"] = rows["llava-bf16"]["step_s"] / rows[w]["step_s"]
            if not bf16_group:
                target(
                    f"{preset}: train fp32, SF with feature cache vs LLaVA+PEFT",
                    ref["step_s"] / rows["sf-features-fp32"]["step_s"],
                    ">=",
                    1.3,
                )
            if "sf-pixels-fp32" in rows:
                target(
                    f"{preset}: train fp32, SF without cache vs LLaVA+PEFT",
                    ref["step_s"] / rows["sf-pixels-fp32"]["step_s"],
                    ">=",
                    1.0,
                )
            for w in ("sf-features-bf16", "sf-pixels-bf16"):
                if w in rows:
                    target(
                        f"{preset}: train bf16 autocast "
                        f"({'cache' if 'features' in w else 'no cache'}) vs fp32 LLaVA+PEFT",
                        ref["step_s"] / rows[w]["step_s"],
                        ">=",
                        2.0,
                        applicable=False,
                        note="target is for a CPU with native bf16; "
                        "this one has none (no AVX-512/AMX, mkldnn bf16 unsupported)",
                    )
            for w, row in rows.items():
                if w.startswith("sf") and "mfu" in row:
                    prec = w.rsplit("-", 1)[1]
                    if bf16_group and prec == "fp32":
                        continue
                    target(f"{preset}: MFU {w} >= 50% of {prec} matmul peak", row["mfu"], ">=", 0.5)
                    refw = f"llava-{prec}"
                    if refw in rows and "mfu" in rows[refw]:
                        target(
                            f"{preset}: MFU {w} >= reference's MFU ({rows[refw]['mfu']:.1%})",
                            row["mfu"] / rows[refw]["mfu"],
                            ">=",
                            1.0,
                            note="value = SF MFU / reference MFU",
                        )
    g = by.get("classify")
    if g:
        for task in ClassifyWorker.TASKS:
            s, gen = _med(g, f"score:{task}"), _med(g, f"generate:{task}")
            path = g["worker_setup"]["score"]["info"]["paths"][task]
            out["classify"][task] = {"score_s": s, "generate_s": gen, "speedup": gen / s, "path": path}
            target(f"classify {task} ({path} path): generate+parse / score_classes", gen / s, ">=", 3.0)
        out["classify"]["encode_s"] = _med(g, "score:encode")
    g = by.get("predict")
    if g:
        singles = {k.split(":", 1)[1]: v["median"] for k, v in g["results"].items() if k.startswith("single:")}
        all5 = _med(g, "all:all")
        mean_one = statistics.mean(singles.values())
        out["predict"] = {
            "all_s": all5,
            "single_s": singles,
            "sum_single_s": sum(singles.values()),
            "mean_single_s": mean_one,
            "max_single_s": max(singles.values()),
        }
        target("predict: five tasks in one call / mean single-task call", all5 / mean_one, "<=", 2.0)
        target(
            "predict: five tasks in one call / slowest single-task call",
            all5 / max(singles.values()),
            "<=",
            2.0,
            note="stricter reading: vs the slowest one-task call",
        )
    return out
