"""Statistics and formatting every benchmark shares: the summary of repeated timings (median, quartiles, range),
the "median [min-max]" cell of a table, markdown table lines, and the CPU's name for a result."""

from __future__ import annotations

import statistics


def summarize(ts: list[float]) -> dict:
    """n, median, min, max, quartiles (inclusive method) and every sample."""
    s = sorted(ts)
    n = len(s)
    q = statistics.quantiles(s, n=4, method="inclusive") if n >= 2 else [s[0], s[0], s[0]]
    return {"n": n, "median": statistics.median(s), "min": s[0], "max": s[-1], "q1": q[0], "q3": q[2], "all": ts}


def median_min_max(values) -> dict:
    """median, min, max and every value (the JSON form of a `spread` cell)."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def spread(values, fmt=".3f", scale: float = 1.0, brackets: str = "[]", sep: str = "-") -> str:
    """ "median [min-max]" of `values` times `scale`; `fmt` a format spec or a function of one number."""
    f = fmt if callable(fmt) else (lambda v: format(v, fmt))
    values = list(values)
    lo, hi = min(values) * scale, max(values) * scale
    return f"{f(statistics.median(values) * scale)} {brackets[0]}{f(lo)}{sep}{f(hi)}{brackets[1]}"


def summary_cell(r: dict) -> str:
    """ "median [min-max]" (3 decimals) of a `summarize` result."""
    return f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"


def row(*cells) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_head(*columns) -> list[str]:
    """A markdown table's header and its rule."""
    return [row(*columns), "|" + "---|" * len(columns)]


def cpu_model() -> str:
    """The CPU's name, as every result records it (`socialfusion.numerics.cpu_name`)."""
    from socialfusion.numerics import cpu_name

    return cpu_name()
