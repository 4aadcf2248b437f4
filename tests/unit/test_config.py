import subprocess
import sys

import pytest

from socialfusion.config import PRESET_DIR, ConfigError, load_config


@pytest.mark.parametrize("path", sorted(PRESET_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.data.tasks


def test_yaml_1_1_boolean_words_stay_strings_on_the_command_line():
    config = load_config("tiny", ["model.trainable.encoder=full", "train.feature_cache=off"])
    assert config.train.feature_cache == "off"
    assert load_config("tiny", ["model.box.enabled=true"]).model.box.enabled is True
    assert load_config("tiny", ["train.lr=2e-3"]).train.lr == 2e-3


def test_overrides_are_typed():
    config = load_config("tiny", ["train.steps=7", "model.connector.pool=2", "data.tasks.0.loss_weight=0.5"])
    assert config.train.steps == 7 and config.model.connector.pool == 2 and config.data.tasks[0].loss_weight == 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.stpes=3", "unknown key.*train.stpes"),
        ("train.steps=many", "train.steps: expected an integer"),
        ("model.connector.type=conv", "model.connector.type: 'conv' is not one of"),
        ("model.encoder.lora.r=0", "model.encoder.lora: needs r >= 1"),
        ("model.trainable.encoder=full", "feature_cache must be 'off'"),
        ("model.connector.input_norm=true", "model.connector.input_norm: .* is not one of"),
        ("model.llm.layers=[]", "model.llm.layers: give a non-empty list"),
        ("model.llm.layers=[1, a]", r"model.llm.layers\[1\]: expected an integer"),  # an optional list's item
    ],
)
def test_bad_configs_fail_with_the_key_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.tasks.0.task=dancing", r"data.tasks\[0\].*unknown task 'dancing'"),
        ("data.tasks.1.task_options={n_classes: 5}", r"data.tasks\[1\]: .*7 or 8"),
        ("data.tasks.2.task_options={colour: red}", r"data.tasks\[2\]: .*colour"),
    ],
)
def test_a_task_checks_its_own_options_when_the_run_builds_it(override, message):
    """`load_config` stays torch-free (it never imports the tasks); the tasks check their entries, named by path,
    as every run builds them, before any data is read."""
    from socialfusion.tasks import tasks_from_config

    config = load_config("tiny", [override])
    with pytest.raises(ConfigError, match=message):
        tasks_from_config(config)


def test_loading_a_config_imports_neither_the_tasks_nor_torch():
    code = (
        "import sys; from socialfusion.config import load_config; load_config('default'); load_config('paper'); "
        "load_config('vlm-tiny-llava'); assert 'torch' not in sys.modules and 'socialfusion.tasks' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_vlm_baselines_refuse_the_verbalizer_loss_instead_of_ignoring_it():
    with pytest.raises(ConfigError, match="model.answer_loss"):
        load_config("vlm-tiny-llava", ["model.answer_loss=verbalizer"])


def test_plan_builds_the_paper_preset_without_weights():
    from socialfusion.plan import estimate

    plan = estimate(load_config("paper"))
    rows = {r["component"]: r for r in plan["parameters"]}
    assert plan["visual_tokens_per_image"] == 576
    assert 300e6 < rows["encoder"]["frozen"] < 310e6  # CLIP ViT-L/14 vision tower
    assert 7.0e9 < rows["llm"]["frozen"] < 7.7e9  # a 7B-class LLM
    assert rows["llm.lora"]["trainable"] > 0 and rows["encoder"]["trainable"] == 0


def test_the_label_space_is_set_once_by_the_task():
    """PISC's coarse domains loaded into the fine task would be friends/family/couple: refused at config time;
    the task's option alone makes the adapter read the matching labels (and AffectNet's 7-class task drops
    Contempt in the adapter)."""
    from socialfusion.tasks import adapter_options, build_task, tasks_from_config

    with pytest.raises(ConfigError, match=r"data.tasks\[3\]: adapter_options.level='coarse' reads another label space"):
        tasks_from_config(load_config("tiny", ["data.tasks.3.adapter_options={level: coarse}"]))
    config = load_config(
        "tiny", ["data.tasks.3.task_options={level: coarse}", "data.tasks.1.task_options={n_classes: 7}"]
    )
    relation, expression = config.data.tasks[3], config.data.tasks[1]
    assert adapter_options(relation, build_task("relation", **relation.task_options)) == {"level": "coarse"}
    assert adapter_options(expression, build_task("expression", **expression.task_options)) == {"classes": 7}
    # both saying the same is fine; a dataset without that option (your own JSONL) gets nothing added
    load_config("tiny", ["data.tasks.3.task_options={level: coarse}", "data.tasks.3.adapter_options={level: coarse}"])
    jsonl = load_config("tiny", ["data.tasks.3.dataset=jsonl"]).data.tasks[3]
    assert adapter_options(jsonl, build_task("relation")) == {}


def test_the_pipeline_reads_the_label_space_the_task_predicts(tmp_path):
    from socialfusion.data.pipeline import load_split
    from socialfusion.data.skips import SkipReport
    from socialfusion.data.synth import generate
    from socialfusion.tasks import tasks_from_config

    generate(tmp_path, n=8, seed=0)
    config = load_config(
        "tiny", [f"data.tasks.3.root={tmp_path / 'pisc'}", "data.tasks.3.task_options={level: coarse}"]
    )
    td = config.data.tasks[3]
    task = tasks_from_config(config)["relation"]
    samples = load_split(td, task, "train", SkipReport())
    assert task.classes == ["intimate", "non-intimate", "no_relation"]
    assert samples and all(s.meta["level"] == "coarse" and 0 <= s.label < 3 for s in samples)


def test_each_model_family_takes_only_its_own_options():
    """`model` is a tagged union on `type`: an option of the other family is an unknown key, not a silent no-op."""
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.connector"):
        load_config("vlm-tiny-llava", ["model.connector.pool=2"])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.processor"):
        load_config("tiny", ["model.processor=tiny"])
    vlm = load_config("vlm-tiny-llava")
    assert type(vlm.model).__name__ == "VLMBaselineConfig" and vlm.model.arch == "arch/tiny-llava.json"
    assert not hasattr(vlm.model, "encoder") and vlm.model.lora.r == 4


def test_the_old_vlm_layout_is_refused_with_the_new_name():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) model.vlm") as err:
        load_config("vlm-tiny-llava", ["model.vlm.boxes=draw"])
    assert "model.boxes" in err.value.hint


def test_a_type_override_switches_the_family_and_keeps_the_shared_options():
    config = load_config(
        "tiny", ["model.seed=7", "model.type=vlm", "model.arch=arch/tiny-llava.json", "model.processor=tiny"]
    )
    assert config.model.type == "vlm" and config.model.seed == 7 and config.model.processor == "tiny"
    assert load_config("vlm-tiny-llava", ["model.type=vlm"]).model.lora.r == 4  # the same family: nothing reset


def test_a_config_saved_by_an_older_version_loads_in_todays_layout():
    """socialfusion <= 0.2 saved both families' fields under `model` and a VLM's own under `model.vlm`: checkpoints
    written then still load."""
    from socialfusion.config import config_from_dict

    old_vlm = load_config("tiny").to_dict()
    old_vlm["model"].update(type="vlm", vlm={"arch": "arch/tiny-llava.json", "processor": "tiny", "boxes": "draw"})
    config = config_from_dict(old_vlm)
    assert config.model.type == "vlm" and config.model.boxes == "draw" and config.model.arch == "arch/tiny-llava.json"
    old_sf = load_config("tiny").to_dict()
    old_sf["model"]["vlm"] = {"arch": None, "boxes": "text"}
    assert config_from_dict(old_sf).model == load_config("tiny").model
