"""The three analyses end to end through `main(argv)` on a small synthetic benchmark with the tiny preset,
plus the transfer protocol's pure helpers."""

import json
from pathlib import Path

import pytest
import torch

from socialfusion.analysis import jsonable
from socialfusion.analysis.transfer import budget_steps, normalise_baselines, parse_baseline, transfer_row
from socialfusion.config import apply_overrides

DIRS = {
    "lam": "ego4d_lam",
    "expression": "affectnet",
    "gesture": "hagrid",
    "relation": "pisc",
    "gaze": "gazefollow_extended",
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A small synthetic benchmark and the overrides that point the tiny preset at it (eval sets capped)."""
    from socialfusion.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root / "data", n=40, seed=0, image_size=128)
    overrides = [f"data.tasks.{i}.root={root / 'data' / d}" for i, d in enumerate(DIRS.values())]
    # eval sets capped for speed (LAM keeps its 16: mAP needs both classes)
    overrides += [f"data.tasks.{i}.max_eval_samples=8" for i in range(1, len(DIRS))]
    overrides += [f"train.cache_dir={root / 'cache'}", "train.eval_batch_size=8"]
    return root, overrides


@pytest.fixture()
def one_thread():
    """Tiny models and probes are far faster single-threaded (torch and BLAS), and then insensitive to other load."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _read(out, name):
    for ext in ("json", "md", "png"):
        assert (out / f"{name}.{ext}").stat().st_size > 0, f"{name}.{ext} missing or empty"
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((out / f"{name}.json").read_text()), (out / f"{name}.md").read_text()


def test_transfer_end_to_end_with_a_baseline_family(bench, tmp_path, one_thread):
    from socialfusion.analysis.transfer import main

    root, overrides = bench
    out = tmp_path / "transfer"
    argv = [
        "tiny",
        *overrides,
        "train.steps=2",
        "train.warmup_steps=1",
        "--out",
        str(out),
        "--tasks",
        "lam,gaze",
        "--budget",
        "equal-steps-per-task",
        "--baseline",
        "vlm_style=model.trainable.encoder=full,train.feature_cache=off",
        "--no-progress",
    ]
    assert main(argv) == 0
    result, md = _read(out, "transfer")
    assert set(result["families"]) == {"socialfusion", "vlm_style"}
    assert result["tasks"] == ["lam", "gaze"] and result["budget"] == "equal-steps-per-task"
    for name, fam in result["families"].items():
        assert fam["steps"] == {"single": 2, "joint": 4}
        assert set(fam["tasks"]) == {"lam", "gaze"}
        for task, row in fam["tasks"].items():
            assert set(row) >= {
                "metric",
                "single",
                "joint",
                "delta",
                "relative",
                "transfer",
                "delta_ci",
                "relative_ci",
                "single_ci",
                "joint_ci",
            }
            assert row["metric"] == {"lam": "map", "gaze": "auc"}[task]
            assert row["single"] is not None and row["joint"] is not None
            # the paired interval brackets the difference, and the call follows it
            lo, hi = row["delta_ci"]
            assert lo <= row["delta"] <= hi and row["n"] > 0
            assert row["transfer"] == ("positive" if lo > 0 else "negative" if hi < 0 else "within noise")
            assert row["single_ci"][0] <= row["single"] <= row["single_ci"][1]
        runs = result["runs"][name]
        assert set(runs) == {"single-lam", "single-gaze", "joint"}
        assert (tmp_path / "transfer" / name / "joint" / "checkpoints" / "last" / "COMPLETE").exists()
        assert runs["joint"]["steps"] == 4 and set(runs["joint"]["metrics"]) == {"lam", "gaze"}
        assert set(runs["joint"]["metrics"]["gaze"]["ci"]) == {"auc", "avg_l2", "min_l2"}
    assert result["families"]["vlm_style"]["overrides"] == ["model.trainable.encoder=full", "train.feature_cache=off"]
    assert "| vlm_style | gaze | auc |" in md and "| socialfusion | lam | map |" in md
    assert "within noise" in md and "✅" not in md and "❌" not in md


def test_transfer_over_seeds_reports_t_intervals(bench, tmp_path, one_thread):
    from socialfusion.analysis.transfer import main

    root, overrides = bench
    out = tmp_path / "transfer"
    argv = [
        "tiny",
        *overrides,
        "train.steps=1",
        "train.warmup_steps=1",
        "--out",
        str(out),
        "--tasks",
        "expression,gesture",
        "--seeds",
        "2",
        "--resamples",
        "200",
        "--no-progress",
        "train.eval_every=1",
        "train.early_stop_patience=1",
    ]
    assert main(argv) == 0
    result, md = _read(out, "transfer")
    fam = result["families"]["socialfusion"]
    assert fam["seeds"] == [0, 1] and result["seeds"] == 2
    for row in fam["tasks"].values():
        assert row["seeds"] == 2 and len(row["per_seed"]) == 2 and row["interval"] == "t over 2 seeds"
        deltas = [r["delta"] for r in row["per_seed"]]
        assert row["delta"] == pytest.approx(sum(deltas) / 2)
        assert row["delta_ci"][0] <= row["delta"] <= row["delta_ci"][1]
    assert (out / "socialfusion" / "seed-1" / "joint" / "checkpoints" / "last" / "COMPLETE").exists()
    assert set(result["runs_by_seed"]["socialfusion"]) == {"0", "1"}
    from socialfusion.config import ConfigError

    with pytest.raises(ConfigError, match="seeds must be >= 1"):
        main(["tiny", "--out", str(tmp_path / "x"), "--seeds", "0"])


def test_plateau_transfer_selects_on_one_split_and_reports_on_another(bench, tmp_path, one_thread):
    """--budget plateau (the default): each run early-stops on its selection split, is scored at its best step on
    the report split, and no reported sample belongs to the selection split."""
    from socialfusion.analysis.transfer import main
    from socialfusion.config import ConfigError, load_config, select_tasks
    from socialfusion.data.pipeline import load_split
    from socialfusion.data.skips import SkipReport
    from socialfusion.tasks import tasks_from_config

    root, overrides = bench
    out = tmp_path / "transfer"
    protocol = ["train.steps=4", "train.warmup_steps=1", "train.eval_every=1", "train.early_stop_patience=1"]
    assert (
        main(
            [
                "tiny",
                *overrides,
                *protocol,
                "--out",
                str(out),
                "--tasks",
                "lam,expression",
                "--resamples",
                "50",
                "--no-progress",
            ]
        )
        == 0
    )
    result, md = _read(out, "transfer")
    assert result["budget"] == "plateau" and result["split"] == "report"
    assert result["splits"]["lam"] == {"train": "train", "selection": "holdout", "report": "val"}
    assert result["families"]["socialfusion"]["steps"] == {"single": 4, "joint": 8}
    config = select_tasks(load_config("tiny", overrides), ["lam", "expression"])
    defs = tasks_from_config(config)
    for name, run in result["runs"]["socialfusion"].items():
        fit = run["fit"]
        assert fit["eval_every"] == (2 if name == "joint" else 1) and run["cap"] == (8 if name == "joint" else 4)
        assert fit["steps"] <= run["cap"] and fit["best_step"] in [s for s, _ in fit["curve"]]
        assert fit["stop_reason"].split(":")[0] in ("plateau", "cap")
        assert run["checkpoint"].endswith("checkpoints/best")
        results = json.loads((Path(run["dir"]) / "eval" / "results.json").read_text())
        assert results["split"] == "test"
        for task in run["metrics"]:
            td = next(t for t in config.data.tasks if t.task == task)
            selection = {s.id for s in load_split(td, defs[task], td.val_split, SkipReport())}
            reported = [json.loads(line)["id"] for line in Path(results["files"][task]).read_text().splitlines()]
            assert reported and not selection & set(reported), f"{name}/{task}: a selection sample was reported"
    assert "reported on `val`" in md and "| socialfusion | joint |" in md

    with pytest.raises(ConfigError, match="needs train.eval_every >= 1 and train.early_stop_patience >= 1"):
        main(["tiny", *overrides, "--out", str(tmp_path / "x"), "--tasks", "lam"])
    with pytest.raises(ConfigError, match="no report split"):
        main(
            [
                "tiny",
                *overrides,
                *protocol,
                "data.tasks.lam.test_split=null",
                "--out",
                str(tmp_path / "y"),
                "--tasks",
                "lam",
            ]
        )


def test_probe_end_to_end(bench, tmp_path, one_thread):
    from socialfusion.analysis.probe import main

    root, overrides = bench
    out = tmp_path / "probe"
    argv = [
        "tiny",
        *overrides,
        "--out",
        str(out),
        "--layers",
        "-1,-2",
        "--pool",
        "cls,box,pair",
        "--max-samples",
        "24",
        "--gaze-steps",
        "40",
        "--no-progress",
    ]
    assert main(argv) == 0
    result, md = _read(out, "probe")
    assert list(result["encoders"]) == ["tiny:random-init"]
    enc = result["encoders"]["tiny:random-init"]
    assert enc["layers"] == [-1, -2] and enc["grid"] == [4, 4]
    seen = {(r["task"], r["layer"], r["pool"]) for r in result["results"]}
    for layer in (-1, -2):
        assert {
            ("lam", layer, "cls"),
            ("lam", layer, "box"),
            ("relation", layer, "pair"),
            ("gaze", layer, "patch"),
        } <= seen
    assert ("lam", -1, "pair") not in seen  # pair pooling is for the two-person task only
    for r in result["results"]:
        assert set(r) >= {"encoder", "layer", "task", "pool", "metric", "value", "split", "metrics", "ci", "metric_ci"}
        assert r["value"] is None or 0.0 <= r["value"] <= 1.0
        if r["ci"] is not None:
            assert r["ci"][0] <= r["value"] <= r["ci"][1]
    assert sum(r["ci"] is not None for r in result["results"]) >= len(result["results"]) - 2
    assert (
        set(result["chance"]) == {"lam", "expression", "gesture", "relation", "gaze"}
        and result["chance"]["gaze"] == 0.5
    )
    assert "probe" in result["captions"]
    gaze = [r for r in result["results"] if r["task"] == "gaze"]
    assert gaze[0]["split"] == "test" and gaze[0]["metric"] == "auc" and "min_l2" in gaze[0]["metrics"]
    # C is chosen on the selection split (PISC val) and the probe reported on the report split (PISC test)
    assert "## relation (map, test split)" in md and "Best probe" in md
    relation = [r for r in result["results"] if r["task"] == "relation" and r["C"] is not None]
    assert relation and all(r["split"] == "test" for r in relation)


def test_gradconf_end_to_end_from_config_and_checkpoint(bench, tmp_path, one_thread):
    from socialfusion.analysis.gradconf import main
    from socialfusion.config import load_config
    from socialfusion.models.checkpoint import save_checkpoint
    from socialfusion.models.socialfusion import SocialFusionModel
    from socialfusion.tasks import tasks_from_config

    root, overrides = bench
    out = tmp_path / "gc"
    assert main(["tiny", *overrides, "--out", str(out), "--batches", "2", "--no-progress"]) == 0
    result, md = _read(out, "gradconf")
    tasks = ["lam", "expression", "gesture", "relation", "gaze"]
    assert result["tasks"] == tasks and result["batches"] == 2
    assert set(result["components"]) == {"connector", "box_embed", "llm.lora"}
    assert set(result["per_component"]) == {"connector", "box_embed", "llm.lora"}
    for scope in [result["overall"], *result["per_component"].values()]:
        for key in ("cosine", "mean_batch_cosine", "conflict_frequency", "magnitude_similarity"):
            assert len(scope[key]) == 5 and all(len(row) == 5 for row in scope[key])
    cos = result["overall"]["cosine"]
    assert all(abs(cos[i][i] - 1) < 1e-6 for i in range(5))
    assert all(-1 <= v <= 1 for row in cos for v in row)
    assert all(v in (0.0, 0.5, 1.0) for row in result["overall"]["conflict_frequency"] for v in row)  # 2 batches
    assert len(result["pairs"]) == 10 and "| lam / gaze |" in md
    for pair in result["pairs"]:
        lo, hi = pair["ci"]["cosine"]
        assert -1 <= lo <= pair["cosine"] + 1e-6 and pair["cosine"] - 1e-6 <= hi <= 1  # float32 sums vs float64 Gram
    assert result["intervals"]["method"] == "percentile bootstrap over batches" and "gradconf" in result["captions"]

    # --ckpt: the checkpoint's config, with overrides on top
    config = load_config("tiny", overrides)
    model = SocialFusionModel(config.model, tasks=tasks_from_config(config))
    ckpt = save_checkpoint(model, config, tmp_path / "ckpt")
    out2 = tmp_path / "gc2"
    assert main(["--ckpt", str(ckpt), "train.batch_size=2", "--out", str(out2), "--batches", "1", "--no-progress"]) == 0
    result2, _ = _read(out2, "gradconf")
    assert result2["batch_size"] == 2 and result2["batches"] == 1


# ---------------------------------------------------------------------------------------- protocol helpers
def test_baseline_parsing_keeps_list_values_and_rejects_bad_input():
    assert parse_baseline("vlm_style=model.trainable.encoder=full,train.feature_cache=off") == (
        "vlm_style",
        ["model.trainable.encoder=full", "train.feature_cache=off"],
    )
    name, ov = parse_baseline("lora_all=model.llm.lora.target_modules=[q_proj,v_proj],train.lr=0.001")
    assert ov == ["model.llm.lora.target_modules=[q_proj,v_proj]", "train.lr=0.001"]
    for bad in ("noequals", "x=", "bad name=a.b=1"):
        with pytest.raises(ValueError):
            parse_baseline(bad)
    assert normalise_baselines({"b": "train.lr=1"}) == {"b": ["train.lr=1"]}
    with pytest.raises(ValueError):
        normalise_baselines(["socialfusion=train.lr=1"])


def test_budgets_and_transfer_rows():
    assert budget_steps(10, 5, "equal-total-steps") == {"single": 10, "joint": 10}
    assert budget_steps(10, 5, "equal-steps-per-task") == {"single": 10, "joint": 50}
    assert budget_steps(10, 5, "plateau") == {"single": 10, "joint": 50}  # caps: the joint one is the sum
    with pytest.raises(ValueError):
        budget_steps(10, 5, "whatever")
    up = transfer_row("map", {"map": 0.5}, {"map": 0.6}, {"delta": [0.05, 0.15], "relative": [0.1, 0.3]})
    assert up["transfer"] == "positive" and up["delta"] == pytest.approx(0.1) and up["relative"] == pytest.approx(0.2)
    down = transfer_row("auc", {"auc": 0.8}, {"auc": 0.6}, {"delta": [-0.3, -0.1], "relative": [-0.4, -0.1]})
    assert down["transfer"] == "negative" and down["relative"] == pytest.approx(-0.25)
    # without an interval nothing is shown to differ
    assert transfer_row("auc", {"auc": 0.8}, {"auc": 0.6})["transfer"] == "within noise"
    missing = transfer_row("map", None, {"map": 0.6})
    assert missing["transfer"] is None and missing["relative"] is None
    assert transfer_row("map", {"map": float("nan")}, {"map": 0.6})["delta"] is None


def test_overrides_keep_yaml_boolean_words_as_strings_where_a_string_is_expected(tiny_config):
    cfg = apply_overrides(
        tiny_config, ["model.trainable.encoder=full", "train.feature_cache=off", "model.gaze.inout=off"]
    )
    assert cfg.train.feature_cache == "off" and cfg.model.trainable.encoder == "full"
    assert cfg.model.gaze.inout is False  # a real boolean stays a boolean
    assert (
        json.dumps(jsonable({"a": float("nan"), "b": [1.5, float("inf")]}), allow_nan=False)
        == '{"a": null, "b": [1.5, null]}'
    )


def test_transfer_resume_reuses_runs_given_relative_paths(bench, tmp_path, monkeypatch, one_thread):
    """A run saves its config with absolute paths; `--resume` from a relative --out and relative data roots (as
    `make demo` gives them) must still recognise the finished runs instead of training them again."""
    import shutil

    from socialfusion.analysis.transfer import main

    root, overrides = bench
    shutil.copytree(root / "data" / "ego4d_lam", tmp_path / "data" / "ego4d_lam")
    monkeypatch.chdir(tmp_path)
    relative = [o for o in overrides if not o.startswith("data.tasks.0.root=")] + ["data.tasks.0.root=data/ego4d_lam"]
    argv = [
        "tiny",
        *relative,
        "train.steps=1",
        "train.warmup_steps=1",
        "--out",
        "out",
        "--tasks",
        "lam",
        "--resume",
        "--no-progress",
        "--budget",
        "equal-steps-per-task",
        "--resamples",
        "20",
    ]
    assert main(argv) == 0
    weights = Path("out/socialfusion/joint/checkpoints/last/trainable.safetensors")
    mtime = weights.stat().st_mtime_ns
    assert main(argv) == 0
    assert weights.stat().st_mtime_ns == mtime, "the finished joint run was trained again"
