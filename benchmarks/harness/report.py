"""Parent side: the markdown tables of a run (results/<mode>.md and its section of RESULTS.md). `render` joins one
function per section; each renders its template (harness/templates/<section>.md.j2) with the cells it computes, a
section's text starting with the blank line before its heading."""

from __future__ import annotations

from pathlib import Path

import jinja2

from .common import BATCH, HERE
from .stats import row, summary_cell, table_head
from .workers import ClassifyWorker

# markdown, so nothing is escaped; a line holding only a tag leaves nothing behind
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def _section(name: str, **context) -> str:
    """A section's text: its template rendered, without the line break its last line may end in (`render` joins
    the sections with line breaks, as it once joined their lines)."""
    return TEMPLATES.get_template(f"{name}.md.j2").render(batch=BATCH, **context).removesuffix("\n")


def _table(columns: tuple, rows: list) -> str:
    """A markdown table: its header, its rule and one line per row (a row is its cells, or a line already made)."""
    return "\n".join([*table_head(*columns), *(r if isinstance(r, str) else row(*r) for r in rows)])


def _header(report: dict) -> str:
    return _section("header", report=report, m=report["machine"])


def _targets(a: dict) -> str:
    rows = []
    for t in a["targets"]:
        is_mfu = t["target"].split(": ")[1].startswith("MFU") and "reference" not in t["target"]
        val = f"{t['value']:.1%}" if is_mfu else f"{t['value']:.2f}x"
        thr = f"{t['threshold']:.0%}" if is_mfu else f"{t['threshold']:.1f}x"
        met = "yes" if t["met"] else "**no**"
        if not t["applicable"]:
            met += " (n/a on this CPU)"
        rows.append((t["target"], val, f"{t['op']} {thr}", met))
    return _section("targets", table=_table(("target", "measured", "needed", "met"), rows))


def _load(g: dict) -> str:
    return f"Load average start {g['load_start']}, end {g['load_end']}; busy {g['machine_busy_during_measurement']:.0%}"


def _mb(mem: dict) -> str:
    """Peak RSS during measurement and its delta over setup, MB."""
    return f"{mem['peak_rss_during_measurement_mb']:.0f} (+{mem['peak_minus_setup_mb']:.0f})"


TRAIN_COLUMNS = (
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
)


def _train(g: dict, preset: str, tr: dict) -> str:
    info = g["worker_setup"]
    rows = []
    for w, r in tr["rows"].items():
        res = g["results"][f"{w}:None"]
        wi = info[w]["info"]
        rows.append(
            (
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
        # the peak rows leave the columns that mean nothing for a matmul empty
        rows.append(
            f"| peak: 2048x2048 {op} | {summary_cell(res)} | | | 17.2 | "
            f"{v:.1f} | 100% | {res['cpu_per_wall_median']:.2f} | | |"
        )
    flops = "; ".join(
        f"{w} {r['flops_linear_conv'] / 1e9:.2f} + {r['flops_attention'] / 1e9:.2f} "
        f"(FlopCounterMode {r['flop_counter_mode'] / 1e9:.2f})"
        for w, r in tr["rows"].items()
        if "flop_counter_mode" in r
    )
    return _section(
        "train",
        g=g,
        preset=preset,
        load=_load(g),
        rounds=g["results"][next(iter(g["results"]))]["n"],
        table=_table(TRAIN_COLUMNS, rows),
        probe=info.get("matmul", {}).get("info", {}).get("bf16_torch_matmul_512_gflops"),
        flops=flops,
    )


CLASSIFY_COLUMNS = (
    "task (scoring path, classes)",
    "score_classes s",
    "generate+parse s (max_new_tokens)",
    "speedup",
    "peak RSS MB score / generate (delta)",
)


def _classify(g: dict, c: dict) -> str:
    res = g["results"]
    si = g["worker_setup"]["score"]["info"]
    ms, mg = g["memory"]["score"], g["memory"]["generate"]
    rows = []
    for task in ClassifyWorker.TASKS:
        rows.append(
            (
                f"{task} ({c[task]['path']}, {si['classes'][task]})",
                summary_cell(res[f"score:{task}"]),
                f"{summary_cell(res[f'generate:{task}'])} ({si['max_new_tokens'][task]})",
                f"{c[task]['speedup']:.2f}x",
                f"{_mb(ms)} / {_mb(mg)}",
            )
        )
    return _section(
        "classify",
        g=g,
        load=_load(g),
        table=_table(CLASSIFY_COLUMNS, rows),
        encode=summary_cell(res["score:encode"]),
        generated=", ".join(
            f"{t} {res[f'generate:{t}']['extra_last']['generated_tokens']}" for t in ClassifyWorker.TASKS
        ),
        parsed=", ".join(f"{t} {res[f'generate:{t}']['extra_last']['parsed']}/8" for t in ClassifyWorker.TASKS),
    )


def _predict(g: dict, p: dict) -> str:
    mean = p["mean_single_s"]
    rows = [('predict(tasks="all")', summary_cell(g["results"]["all:all"]), f"{p['all_s'] / mean:.2f}x")]
    for t, v in p["single_s"].items():
        rows.append((f'predict(tasks=["{t}"])', summary_cell(g["results"][f"single:{t}"]), f"{v / mean:.2f}x"))
    rows.append(
        ("five single-task calls (sum of medians)", f"{p['sum_single_s']:.3f}", f"{p['sum_single_s'] / mean:.2f}x")
    )
    columns = ("call", "latency s, median [min-max]", "vs mean single-task call")
    return _section("predict", g=g, p=p, mem=g["memory"], load=_load(g), table=_table(columns, rows))


MEMORY_COLUMNS = (
    "group",
    "worker",
    "RSS after setup MB",
    "peak during measurement MB",
    "delta MB",
    "lifetime peak (incl. model loading) MB",
)


def _memory(groups: list[dict]) -> str:
    rows = []
    for g in groups:
        for w, mem in g["memory"].items():
            rows.append(
                (
                    g["name"],
                    w,
                    f"{mem['rss_after_setup_mb']:.0f}",
                    f"{mem['peak_rss_during_measurement_mb']:.0f}",
                    f"{mem['peak_minus_setup_mb']:.0f}",
                    f"{mem['peak_rss_process_lifetime_mb']:.0f}",
                )
            )
    return _section("memory", table=_table(MEMORY_COLUMNS, rows))


def render(report: dict) -> str:
    g_by = {g["name"]: g for g in report["groups"]}
    a = report["analysis"]
    sections = [_header(report), _targets(a)]
    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        if gname in g_by:
            preset = gname.removeprefix("train-")
            sections.append(_train(g_by[gname], preset, a["train"][preset]))
    if "classify" in g_by:
        sections.append(_classify(g_by["classify"], a["classify"]))
    if "predict" in g_by:
        sections.append(_predict(g_by["predict"], a["predict"]))
    return "\n".join([*sections, _memory(report["groups"])])


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
