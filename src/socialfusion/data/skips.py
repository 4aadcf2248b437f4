"""Counted skips: bad records are either an error naming file and record, or a skip the run reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..core.schema import DataError

POLICIES = ("skip", "error")


@dataclass
class SkipReport:
    policy: str = "skip"
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 20

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {self.policy!r}")

    def skip(self, where: str, reason: str) -> None:
        """Record a skipped record (`where` names file and record); raises under policy 'error'."""
        if self.policy == "error":
            raise DataError(f"{where}: {reason}")
        self.counts[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < self.max_examples:
            self.examples[reason].append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipReport) -> None:
        self.counts.update(other.counts)
        for reason, where in other.examples.items():
            self.examples.setdefault(reason, [])
            self.examples[reason].extend(where[: self.max_examples - len(self.examples[reason])])

    def summary(self) -> str:
        if not self.total:
            return "skipped: 0"
        lines = [f"skipped: {self.total}"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {n:>6}  {reason}  (e.g. {self.examples[reason][0]})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "examples": self.examples}
