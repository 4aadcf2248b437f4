"""Where a run's numbers go: log.jsonl always (the record the code reads back), TensorBoard event files beside it
unless `train.report_to: none` (what researchers look at while a run goes).

One record per line of log.jsonl; the same record becomes TensorBoard scalars: `loss/<task>` for a step of one
task (`loss/joint` when a step mixed tasks through accumulation), `lr`, `samples_per_s`, and every scalar of an
evaluation as `val/<task>/<metric>` (intervals as `val/<task>/<metric>_lo` and `_hi`), `val/mean_primary`.
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import strict_json

REPORT_TO = ("tensorboard", "none")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def scalars(record: dict) -> dict[str, float]:
    """The TensorBoard scalars of one log record (empty for records without a step)."""
    out: dict[str, float] = {}
    if "loss" in record:
        tasks = record.get("tasks") or []
        out[f"loss/{tasks[0] if len(set(tasks)) == 1 else 'joint'}"] = record["loss"]
    for key in ("lr", "samples_per_s"):
        if key in record:
            out[key] = record[key]
    for task, metrics in (record.get("eval") or {}).items():
        for name, value in (metrics or {}).items():
            if _finite(value):
                out[f"val/{task}/{name}"] = value
        for name, (lo, hi) in ((metrics or {}).get("ci") or {}).items():
            if _finite(lo) and _finite(hi):
                out[f"val/{task}/{name}_lo"], out[f"val/{task}/{name}_hi"] = lo, hi
    if _finite(record.get("mean_primary")):
        out["val/mean_primary"] = record["mean_primary"]
    return {k: float(v) for k, v in out.items() if _finite(v)}


class RunLog:
    """Appends records to `out_dir/log.jsonl` (strict JSON: NaN/inf become null) and, with TensorBoard, writes
    their scalars to `out_dir/tensorboard/`."""

    def __init__(self, out_dir: Path, report_to: str = "tensorboard"):
        if report_to not in REPORT_TO:
            raise ValueError(f"report_to must be one of {REPORT_TO}, got {report_to!r}")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / "log.jsonl", "a")
        self.writer = None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # imports the tensorboard package: only when used

            self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def write(self, record: dict) -> None:
        self.file.write(strict_json.dumps(record) + "\n")
        self.file.flush()
        if self.writer is not None and "step" in record:
            for tag, value in scalars(record).items():
                self.writer.add_scalar(tag, value, global_step=int(record["step"]))

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
