"""The analyses behind "social degradation": linear probing (decodability), gradient conflict between tasks
(compatibility) and single-task vs joint training (transfer). Each module has `main(argv)` and a `run_*` function.

Small helpers shared by the three live here (no heavy imports at package import time).
"""

from __future__ import annotations

import math
from typing import Any

from ..strict_json import jsonable  # noqa: F401  (re-exported for the analyses)


def fmt(value: Any, digits: int = 4) -> str:
    """A metric value for a markdown table ('-' when missing or NaN)."""
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v:.{digits}f}" if math.isfinite(v) else "-"
