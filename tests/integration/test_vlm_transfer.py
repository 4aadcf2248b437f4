"""`transfer` with two model families on the synthetic benchmark: SocialFusion (tiny) and a tiny random-init LLaVA
baseline given as config overrides, a few steps each, one table with both."""

import json

import torch

from socialfusion.config import apply_overrides, load_config, select_tasks
from tests.conftest import synth_overrides

VLM_BASELINE = [
    "model.type=vlm",
    "model.arch=arch/tiny-llava.json",
    "model.processor=tiny",
    "model.lora.r=4",
    "model.lora.alpha=8",
    "model.lora.dropout=0.0",
    "train.feature_cache=off",
]


def test_transfer_table_with_socialfusion_and_a_vlm_baseline(synth_root, tmp_path):
    from socialfusion.analysis.transfer import run_transfer
    from socialfusion.models.checkpoint import load_model

    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest and does not fight other processes
    try:
        overrides = [
            *synth_overrides(synth_root, tmp_path / "cache"),
            "train.steps=2",
            "train.warmup_steps=1",
            "train.eval_batch_size=8",
            "train.eval_every=1",
            "train.early_stop_patience=1",
        ]  # the plateau protocol at the tiny scale
        config = select_tasks(load_config("tiny", overrides), ["lam", "relation", "gaze"])
        assert apply_overrides(config, VLM_BASELINE).model.type == "vlm"
        result = run_transfer(config, tmp_path / "out", baselines={"llava_tiny": VLM_BASELINE}, progress=False)
    finally:
        torch.set_num_threads(n)
    assert set(result.families) == {"socialfusion", "llava_tiny"}
    for name, fam in result.families.items():
        assert set(fam.tasks) == {"lam", "relation", "gaze"}
        for task, row in fam.tasks.items():
            assert row.single is not None and row.joint is not None, (name, task)
            assert row.transfer in ("positive", "negative", "within noise")
            lo, hi = row.delta_ci  # a paired interval of joint - single: the call follows it
            assert lo <= hi and (row.transfer == "within noise") == (lo <= 0 <= hi)
    md = (tmp_path / "out" / "transfer.md").read_text()
    for name in ("socialfusion", "llava_tiny"):
        for task, metric in (("lam", "map"), ("relation", "map"), ("gaze", "auc")):
            assert f"| {name} | {task} | {metric} |" in md
    # the baseline's runs are VLM runs end to end: config, checkpoint, no feature cache
    joint = tmp_path / "out" / "llava_tiny" / "joint"
    saved = json.loads((joint / "checkpoints" / "last" / "config.json").read_text())
    assert saved["config"]["model"]["type"] == "vlm"
    model, _ = load_model(joint / "checkpoints" / "last")
    assert type(model).__name__ == "VLMBaseline" and model.family == "llava"
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1  # SocialFusion's encoder only
    sf = load_model(tmp_path / "out" / "socialfusion" / "joint" / "checkpoints" / "last")[0]
    assert type(sf).__name__ == "SocialFusionModel"
