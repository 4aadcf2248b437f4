"""The selection split carved from train (data/holdout.py) and the split roles' config checks."""

import pytest

from socialfusion.config import ConfigError, load_config
from socialfusion.core.schema import DataError, Sample
from socialfusion.data.holdout import HOLDOUT, carve, group_of, held_out_groups


def _samples(groups: dict[str, int]) -> list[Sample]:
    out = []
    for g, k in groups.items():
        out += [
            Sample(id=f"{g}-{i}", task="lam", image=f"{g}/{i}.jpg", label=0, meta={"group": f"clip:{g}"})
            for i in range(k)
        ]
    return out


def test_whole_groups_move_and_the_two_sides_partition_the_split():
    samples = _samples({f"c{i}": 3 + i % 4 for i in range(20)})
    held = carve(samples, samples, 0.15, HOLDOUT, "x")
    train = carve(samples, samples, 0.15, "train", "x")
    assert {s.id for s in held} | {s.id for s in train} == {s.id for s in samples}
    assert not {group_of(s) for s in held} & {group_of(s) for s in train}, "a clip on both sides"
    assert len({group_of(s) for s in held}) == 3  # round(0.15 x 20)


def test_the_draw_ignores_record_order_and_drops():
    samples = _samples({f"c{i}": 2 for i in range(10)})
    a = held_out_groups(samples, 0.3, "x")
    assert held_out_groups(list(reversed(samples)), 0.3, "x") == a
    # groups are drawn from every record read, so a side that drops records sees the same draw
    kept = [s for s in samples if not s.id.endswith("-1")]
    assert {group_of(s) for s in carve(samples, kept, 0.3, HOLDOUT, "x")} == a


def test_without_groups_each_image_is_one():
    samples = [Sample(id=f"s{i}", task="expression", image=f"img{i // 2}.jpg", label=0) for i in range(10)]
    held = carve(samples, samples, 0.2, HOLDOUT, "x")
    assert {s.image for s in held} and all(sum(s.image == h.image for s in held) == 2 for h in held)


def test_at_least_one_group_each_side_and_a_clear_error_below_two():
    assert len(held_out_groups(_samples({"a": 1, "b": 1}), 0.01, "x")) == 1
    assert len(held_out_groups(_samples({"a": 1, "b": 1}), 0.99, "x")) == 1
    with pytest.raises(DataError, match="at least 2 groups.*found 1"):
        held_out_groups(_samples({"a": 5}), 0.2, "ego4d_lam /data split 'train'")


def test_split_roles_are_checked():
    with pytest.raises(ConfigError, match="val_split .selection. and test_split .report. are both 'val'"):
        load_config("tiny", ["data.tasks.0.test_split=val", "data.tasks.0.val_split=val"])
    with pytest.raises(ConfigError, match="cannot be one"):
        load_config("tiny", ["data.tasks.0.train_split=holdout"])
    with pytest.raises(ConfigError, match="holdout_fraction"):
        load_config("tiny", ["data.tasks.0.holdout_fraction=1.0"])


def test_the_synthetic_lam_holdout_keeps_clips_apart(synth_root):
    from socialfusion.data.pipeline import load_split
    from socialfusion.data.skips import SkipReport
    from socialfusion.tasks import tasks_from_config
    from tests.conftest import synth_overrides

    config = load_config("tiny", synth_overrides(synth_root, synth_root / "cache"))
    td = config.data.tasks[0]
    task = tasks_from_config(config)["lam"]
    assert (td.val_split, td.test_split) == (HOLDOUT, "val")
    train = load_split(td, task, "train", SkipReport())
    held = load_split(td, task, HOLDOUT, SkipReport())
    assert train and held
    clips = lambda ss: {s.meta["clip_uid"] for s in ss}  # noqa: E731
    assert not clips(train) & clips(held)
    assert len(train) + len(held) == len(
        load_split(td.__class__(**{**td.__dict__, "val_split": "val", "test_split": None}), task, "train", SkipReport())
    )
