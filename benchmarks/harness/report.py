"""Parent side: the markdown tables of a run (results/<mode>.md and its section of RESULTS.md). `render` joins one
function per section; each returns its lines, a section's lines starting with the blank line before its heading."""

from __future__ import annotations

from .common import BATCH, HERE
from .stats import row, summary_cell, table_head
from .workers import ClassifyWorker


def _header(report: dict) -> list[str]:
    m = report["machine"]
    L = [
        f"Run: `{report['command']}` ({report['mode']}), "
        f"{report['started']} -> {report['finished']}, {report['wall_s'] / 60:.1f} min wall.",
        "",
    ]
    if report["mode"] == "smoke":
        L += [
            "**Smoke run**: it checks that the harness runs (every worker kind, the tiny preset, one round, all "
            "workers in one process); its times are not measurements and its targets mean nothing.",
            "",
        ]
    uncommitted = " + uncommitted src changes" if m.get("src_uncommitted_changes") else ""
    return L + [
        f"Machine: {m.get('Model name')} ({m.get('CPU(s)')} CPUs, {m.get('Hypervisor vendor', 'bare metal')} guest), "
        f"SIMD flags {', '.join(m.get('simd_flags', []))}; torch {m['torch']} ({m['torch_cpu_capability']}, "
        f"{m['torch_threads']} threads, mkldnn bf16 supported: {m['mkldnn_bf16_supported']}, precision auto -> "
        f"{m.get('precision', {}).get('cpu_auto_precision', '?')}), transformers {m['transformers']}, "
        f"peft {m['peft']}; git {m.get('git_revision')}{uncommitted}.",
        "",
        "Times are medians over the measured rounds with [min-max]; every ratio is a ratio of medians from the same "
        "interleaved run. `busy` is the fraction of the machine's CPU time that was busy during the measured "
        "rounds (ours + others); `cpu/wall` is the worker's process CPU time per wall second (2.0 = both cores).",
    ]


def _targets(a: dict) -> list[str]:
    L = ["", "### Targets", "", *table_head("target", "measured", "needed", "met")]
    for t in a["targets"]:
        is_mfu = t["target"].split(": ")[1].startswith("MFU") and "reference" not in t["target"]
        val = f"{t['value']:.1%}" if is_mfu else f"{t['value']:.2f}x"
        thr = f"{t['threshold']:.0%}" if is_mfu else f"{t['threshold']:.1f}x"
        met = "yes" if t["met"] else "**no**"
        if not t["applicable"]:
            met += " (n/a on this CPU)"
        L.append(row(t["target"], val, f"{t['op']} {thr}", met))
    return L


def _load(g: dict) -> str:
    return f"Load average start {g['load_start']}, end {g['load_end']}; busy {g['machine_busy_during_measurement']:.0%}"


def _mb(mem: dict) -> str:
    """Peak RSS during measurement and its delta over setup, MB."""
    return f"{mem['peak_rss_during_measurement_mb']:.0f} (+{mem['peak_minus_setup_mb']:.0f})"


def _train(g: dict, preset: str, tr: dict) -> list[str]:
    info = g["worker_setup"]
    L = [
        "",
        f"### Training step, `{preset}` (preset `{g.get('preset', preset)}`, batch {BATCH})",
        "",
        f"{_load(g)}; {g['results'][next(iter(g['results']))]['n']} measured "
        f"rounds after warm-up; group wall {g['wall_s']:.0f}s.",
        "",
        *table_head(
            "configuration",
            "step s, median [min-max]",
            "samples/s",
            "vs LLaVA fp32",
            "GFLOP/step",
            "GFLOP/s",
            "MFU",
            "cpu/wall",
            "peak RSS MB (delta)",
            "visual + text tokens",
        ),
    ]
    for w, r in tr["rows"].items():
        res = g["results"][f"{w}:None"]
        wi = info[w]["info"]
        L.append(
            row(
                w,
                summary_cell(res),
                f"{r['samples_per_s']:.2f}",
                f"{r.get('speedup_vs_llava_fp32', float('nan')):.2f}x",
                f"{r['flops_per_step'] / 1e9:.1f}" if "flops_per_step" in r else "-",
                f"{r['achieved_gflops']:.1f}" if "achieved_gflops" in r else "-",
                f"{r['mfu']:.1%}" if "mfu" in r else "-",
                f"{res['cpu_per_wall_median']:.2f}",
                _mb(g["memory"][w]),
                f"{wi['visual_tokens']} + {wi['prompt_text_tokens']}+{wi['answer_tokens_fed']}",
            )
        )
    for d, v in tr["peak_gflops"].items():
        res = g["results"][f"matmul:{d}"]
        op = "torch.matmul fp32" if d == "fp32" else "F.linear bf16 (nn.Linear's kernel)"
        L.append(
            f"| peak: 2048x2048 {op} | {summary_cell(res)} | | | 17.2 | "
            f"{v:.1f} | 100% | {res['cpu_per_wall_median']:.2f} | | |"
        )
    probe = info.get("matmul", {}).get("info", {}).get("bf16_torch_matmul_512_gflops")
    if probe:
        L += [
            "",
            f"torch.matmul in bf16 on this CPU: {probe:.2f} GFLOP/s at 512x512 "
            "(a slow non-BLAS fallback), so the bf16 peak is F.linear's.",
        ]
    fcm = [
        (w, r["flops_linear_conv"], r["flops_attention"], r["flop_counter_mode"])
        for w, r in tr["rows"].items()
        if "flop_counter_mode" in r
    ]
    if fcm:
        L += [
            "",
            "FLOPs per step, analytic = linear/conv + attention; check: the linear/conv part against "
            "torch.utils.flop_counter.FlopCounterMode on the same "
            "step (which does not see the CPU SDPA kernel), GFLOP: "
            + "; ".join(f"{w} {x / 1e9:.2f} + {a / 1e9:.2f} (FlopCounterMode {y / 1e9:.2f})" for w, x, a, y in fcm)
            + ".",
        ]
    return L


def _classify(g: dict, c: dict) -> list[str]:
    res = g["results"]
    L = [
        "",
        "### Classification inference: verbalizer scoring vs generate + parse "
        f"(preset `{g.get('preset', 'default')}`, batch {BATCH}, features given)",
        "",
        f"{_load(g)}.",
        "",
        *table_head(
            "task (scoring path, classes)",
            "score_classes s",
            "generate+parse s (max_new_tokens)",
            "speedup",
            "peak RSS MB score / generate (delta)",
        ),
    ]
    si = g["worker_setup"]["score"]["info"]
    ms, mg = g["memory"]["score"], g["memory"]["generate"]
    for task in ClassifyWorker.TASKS:
        L.append(
            row(
                f"{task} ({c[task]['path']}, {si['classes'][task]})",
                summary_cell(res[f"score:{task}"]),
                f"{summary_cell(res[f'generate:{task}'])} ({si['max_new_tokens'][task]})",
                f"{c[task]['speedup']:.2f}x",
                f"{_mb(ms)} / {_mb(mg)}",
            )
        )
    generated = ", ".join(f"{t} {res[f'generate:{t}']['extra_last']['generated_tokens']}" for t in ClassifyWorker.TASKS)
    parsed = ", ".join(f"{t} {res[f'generate:{t}']['extra_last']['parsed']}/8" for t in ClassifyWorker.TASKS)
    return L + [
        "",
        "Both start from the batch's cached encoder features; the encoder pass they would share from pixels takes "
        f"{summary_cell(res['score:encode'])} s for these 8 images. Generated tokens per call: {generated}"
        f"; rows parsed to a class (untrained adapters, so the text is rarely a class name): {parsed}.",
    ]


def _predict(g: dict, p: dict) -> list[str]:
    mean = p["mean_single_s"]
    L = [
        "",
        f"### Five tasks on one image (preset `{g.get('preset', 'default')}`, 640x480 image, two boxes)",
        "",
        f"{_load(g)}.",
        "",
        *table_head("call", "latency s, median [min-max]", "vs mean single-task call"),
        row('predict(tasks="all")', summary_cell(g["results"]["all:all"]), f"{p['all_s'] / mean:.2f}x"),
    ]
    for t, v in p["single_s"].items():
        L.append(row(f'predict(tasks=["{t}"])', summary_cell(g["results"][f"single:{t}"]), f"{v / mean:.2f}x"))
    L.append(
        row("five single-task calls (sum of medians)", f"{p['sum_single_s']:.3f}", f"{p['sum_single_s'] / mean:.2f}x")
    )
    mem = g["memory"]
    return L + [
        "",
        f"Peak RSS: all-tasks worker {mem['all']['peak_rss_during_measurement_mb']:.0f} MB "
        f"(+{mem['all']['peak_minus_setup_mb']:.0f} over setup), "
        f"single-task worker {mem['single']['peak_rss_during_measurement_mb']:.0f} MB "
        f"(+{mem['single']['peak_minus_setup_mb']:.0f}). One call for five "
        f"tasks is {p['sum_single_s'] / p['all_s']:.2f}x faster than five calls.",
    ]


def _memory(groups: list[dict]) -> list[str]:
    L = [
        "",
        "### Memory (RSS high-water mark per worker process)",
        "",
        *table_head(
            "group",
            "worker",
            "RSS after setup MB",
            "peak during measurement MB",
            "delta MB",
            "lifetime peak (incl. model loading) MB",
        ),
    ]
    for g in groups:
        for w, mem in g["memory"].items():
            L.append(
                row(
                    g["name"],
                    w,
                    f"{mem['rss_after_setup_mb']:.0f}",
                    f"{mem['peak_rss_during_measurement_mb']:.0f}",
                    f"{mem['peak_minus_setup_mb']:.0f}",
                    f"{mem['peak_rss_process_lifetime_mb']:.0f}",
                )
            )
    return L


def render(report: dict) -> str:
    g_by = {g["name"]: g for g in report["groups"]}
    a = report["analysis"]
    L = _header(report) + _targets(a)
    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        if gname in g_by:
            preset = gname.removeprefix("train-")
            L += _train(g_by[gname], preset, a["train"][preset])
    if "classify" in g_by:
        L += _classify(g_by["classify"], a["classify"])
    if "predict" in g_by:
        L += _predict(g_by["predict"], a["predict"])
    return "\n".join(L + _memory(report["groups"]))


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
