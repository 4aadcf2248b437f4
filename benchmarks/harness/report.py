"""Parent side: the markdown tables of a run (results/<mode>.md and its section of RESULTS.md)."""

from __future__ import annotations

from .common import BATCH, HERE
from .workers import ClassifyWorker


def _fmt_s(r: dict) -> str:
    return f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"


def render(report: dict) -> str:
    g_by = {g["name"]: g for g in report["groups"]}
    a = report["analysis"]
    m = report["machine"]
    L = []
    L.append(
        f"Run: `{report['command']}` ({report['mode']}), "
        f"{report['started']} -> {report['finished']}, {report['wall_s'] / 60:.1f} min wall."
    )
    L.append("")
    if report["mode"] == "smoke":
        L.append(
            "**Smoke run**: it checks that the harness runs (every worker kind, the tiny preset, one round, all "
            "workers in one process); its times are not measurements and its targets mean nothing."
        )
        L.append("")
    L.append(
        f"Machine: {m.get('Model name')} ({m.get('CPU(s)')} CPUs, {m.get('Hypervisor vendor', 'bare metal')} guest), "
        f"SIMD flags {', '.join(m.get('simd_flags', []))}; torch {m['torch']} ({m['torch_cpu_capability']}, "
        f"{m['torch_threads']} threads, mkldnn bf16 supported: {m['mkldnn_bf16_supported']}, precision auto -> "
        f"{m.get('precision', {}).get('cpu_auto_precision', '?')}), transformers {m['transformers']}, "
        f"peft {m['peft']}; "
        f"git {m.get('git_revision')}{' + uncommitted src changes' if m.get('src_uncommitted_changes') else ''}."
    )
    L.append("")
    L.append(
        "Times are medians over the measured rounds with [min-max]; every ratio is a ratio of medians from the same "
        "interleaved run. `busy` is the fraction of the machine's CPU time that was busy during the measured "
        "rounds (ours + others); `cpu/wall` is the worker's process CPU time per wall second (2.0 = both cores)."
    )
    L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| target | measured | needed | met |")
    L.append("|---|---|---|---|")
    for t in a["targets"]:
        is_mfu = t["target"].split(": ")[1].startswith("MFU") and "reference" not in t["target"]
        val = f"{t['value']:.1%}" if is_mfu else f"{t['value']:.2f}x"
        thr = f"{t['threshold']:.0%}" if is_mfu else f"{t['threshold']:.1f}x"
        met = "yes" if t["met"] else "**no**"
        if not t["applicable"]:
            met += " (n/a on this CPU)"
        L.append(f"| {t['target']} | {val} | {t['op']} {thr} | {met} |")
    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        g = g_by.get(gname)
        if not g:
            continue
        preset = gname.removeprefix("train-")
        tr = a["train"][preset]
        L.append("")
        L.append(f"### Training step, `{preset}` (preset `{g.get('preset', preset)}`, batch {BATCH})")
        L.append("")
        info = g["worker_setup"]
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}; "
            f"{g['results'][next(iter(g['results']))]['n']} measured "
            f"rounds after warm-up; group wall {g['wall_s']:.0f}s."
        )
        L.append("")
        L.append(
            "| configuration | step s, median [min-max] | samples/s | vs LLaVA fp32 | "
            "GFLOP/step | GFLOP/s | MFU | cpu/wall | peak RSS MB (delta) | visual + text tokens |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for w, row in tr["rows"].items():
            res = g["results"][f"{w}:None"]
            mem = g["memory"][w]
            wi = info[w]["info"]
            tokens = f"{wi['visual_tokens']} + {wi['prompt_text_tokens']}+{wi['answer_tokens_fed']}"
            fl = f"{row['flops_per_step'] / 1e9:.1f}" if "flops_per_step" in row else "-"
            gf = f"{row['achieved_gflops']:.1f}" if "achieved_gflops" in row else "-"
            mfu = f"{row['mfu']:.1%}" if "mfu" in row else "-"
            L.append(
                f"| {w} | {_fmt_s(res)} | {row['samples_per_s']:.2f} | "
                f"{row.get('speedup_vs_llava_fp32', float('nan')):.2f}x | {fl} | {gf} | {mfu} | "
                f"{res['cpu_per_wall_median']:.2f} | {mem['peak_rss_during_measurement_mb']:.0f} "
                f"(+{mem['peak_minus_setup_mb']:.0f}) | {tokens} |"
            )
        for d, v in tr["peak_gflops"].items():
            res = g["results"][f"matmul:{d}"]
            op = "torch.matmul fp32" if d == "fp32" else "F.linear bf16 (nn.Linear's kernel)"
            L.append(
                f"| peak: 2048x2048 {op} | {_fmt_s(res)} | | | 17.2 | "
                f"{v:.1f} | 100% | {res['cpu_per_wall_median']:.2f} | | |"
            )
        probe = info.get("matmul", {}).get("info", {}).get("bf16_torch_matmul_512_gflops")
        if probe:
            L.append("")
            L.append(
                f"torch.matmul in bf16 on this CPU: {probe:.2f} GFLOP/s at 512x512 "
                "(a slow non-BLAS fallback), so the bf16 peak is F.linear's."
            )
        fcm = [
            (w, r["flops_linear_conv"], r["flops_attention"], r["flop_counter_mode"])
            for w, r in tr["rows"].items()
            if "flop_counter_mode" in r
        ]
        if fcm:
            L.append("")
            L.append(
                "FLOPs per step, analytic = linear/conv + attention; check: the linear/conv part against "
                "torch.utils.flop_counter.FlopCounterMode on the same "
                "step (which does not see the CPU SDPA kernel), GFLOP: "
                + "; ".join(f"{w} {x / 1e9:.2f} + {a / 1e9:.2f} (FlopCounterMode {y / 1e9:.2f})" for w, x, a, y in fcm)
                + "."
            )
    g = g_by.get("classify")
    if g:
        c = a["classify"]
        L.append("")
        L.append(
            "### Classification inference: verbalizer scoring vs generate + parse "
            f"(preset `{g.get('preset', 'default')}`, batch {BATCH}, features given)"
        )
        L.append("")
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}."
        )
        L.append("")
        L.append(
            "| task (scoring path, classes) | score_classes s | generate+parse s "
            "(max_new_tokens) | speedup | peak RSS MB score / generate (delta) |"
        )
        L.append("|---|---|---|---|---|")
        si = g["worker_setup"]["score"]["info"]
        ms, mg = g["memory"]["score"], g["memory"]["generate"]
        for task in ClassifyWorker.TASKS:
            L.append(
                f"| {task} ({c[task]['path']}, {si['classes'][task]}) | {_fmt_s(g['results'][f'score:{task}'])} | "
                f"{_fmt_s(g['results'][f'generate:{task}'])} ({si['max_new_tokens'][task]}) | "
                f"{c[task]['speedup']:.2f}x | {ms['peak_rss_during_measurement_mb']:.0f} "
                f"(+{ms['peak_minus_setup_mb']:.0f}) / "
                f"{mg['peak_rss_during_measurement_mb']:.0f} (+{mg['peak_minus_setup_mb']:.0f}) |"
            )
        L.append("")
        L.append(
            "Both start from the batch's cached encoder features; the encoder pass they would share from pixels takes "
            f"{_fmt_s(g['results']['score:encode'])} s for these 8 images. Generated tokens per call: "
            + ", ".join(
                f"{t} {g['results'][f'generate:{t}']['extra_last']['generated_tokens']}" for t in ClassifyWorker.TASKS
            )
            + "; rows parsed to a class (untrained adapters, so the text is rarely a class name): "
            + ", ".join(f"{t} {g['results'][f'generate:{t}']['extra_last']['parsed']}/8" for t in ClassifyWorker.TASKS)
            + "."
        )
    g = g_by.get("predict")
    if g:
        p = a["predict"]
        L.append("")
        L.append(f"### Five tasks on one image (preset `{g.get('preset', 'default')}`, 640x480 image, two boxes)")
        L.append("")
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}."
        )
        L.append("")
        L.append("| call | latency s, median [min-max] | vs mean single-task call |")
        L.append("|---|---|---|")
        L.append(
            f'| predict(tasks="all") | {_fmt_s(g["results"]["all:all"])} | {p["all_s"] / p["mean_single_s"]:.2f}x |'
        )
        for t, v in p["single_s"].items():
            L.append(
                f'| predict(tasks=["{t}"]) | {_fmt_s(g["results"][f"single:{t}"])} | {v / p["mean_single_s"]:.2f}x |'
            )
        L.append(
            f"| five single-task calls (sum of medians) | {p['sum_single_s']:.3f} "
            f"| {p['sum_single_s'] / p['mean_single_s']:.2f}x |"
        )
        mem = g["memory"]
        L.append("")
        L.append(
            f"Peak RSS: all-tasks worker {mem['all']['peak_rss_during_measurement_mb']:.0f} MB "
            f"(+{mem['all']['peak_minus_setup_mb']:.0f} over setup), "
            f"single-task worker {mem['single']['peak_rss_during_measurement_mb']:.0f} MB "
            f"(+{mem['single']['peak_minus_setup_mb']:.0f}). One call for five "
            f"tasks is {p['sum_single_s'] / p['all_s']:.2f}x faster than five calls."
        )
    L.append("")
    L.append("### Memory (RSS high-water mark per worker process)")
    L.append("")
    L.append(
        "| group | worker | RSS after setup MB | peak during measurement "
        "MB | delta MB | lifetime peak (incl. model loading) MB |"
    )
    L.append("|---|---|---|---|---|---|")
    for g in report["groups"]:
        for w, mem in g["memory"].items():
            L.append(
                f"| {g['name']} | {w} | {mem['rss_after_setup_mb']:.0f} | {mem['peak_rss_during_measurement_mb']:.0f} "
                f"| {mem['peak_minus_setup_mb']:.0f} | {mem['peak_rss_process_lifetime_mb']:.0f} |"
            )
    return "\n".join(L)


def write_results_md(text: str, mode: str) -> None:
    """Replace this mode's generated section of RESULTS.md (or append one); hand-written text is kept."""
    begin, end = f"<!-- BEGIN GENERATED {mode} (benchmarks/run.py) -->", f"<!-- END GENERATED {mode} -->"
    path = HERE / "RESULTS.md"
    body = f"{begin}\n{text}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + body + tail)
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + body + "\n")
