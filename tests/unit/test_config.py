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
        ("data.tasks.0.task=dancing", r"data.tasks\[0\].*unknown task 'dancing'"),
        ("data.tasks.1.task_options={n_classes: 5}", "7 or 8"),
        ("model.connector.input_norm=true", "model.connector.input_norm: .* is not one of"),
        ("model.llm.layers=[]", "model.llm.layers: give a non-empty list"),
    ],
)
def test_bad_configs_fail_with_the_key_path(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


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
