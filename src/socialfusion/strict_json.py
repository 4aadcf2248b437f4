"""Strict JSON for everything we write: NaN and infinities become null (json.dumps would write `NaN`, which no
JSON parser accepts), numpy and torch scalars become Python numbers, paths become strings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def jsonable(obj: Any) -> Any:
    """Plain JSON data: NaN/inf become null (strict JSON), numpy scalars and arrays become Python values."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # torch scalars
        return jsonable(obj.item())
    return str(obj)


def dumps(obj: Any, **kwargs) -> str:
    return json.dumps(jsonable(obj), allow_nan=False, **kwargs)
