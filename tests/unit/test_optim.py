"""The trained encoder gets its own, smaller learning rate (`train.lr_encoder`)."""

import pytest

from socialfusion.config import apply_overrides
from socialfusion.models.socialfusion import SocialFusionModel
from socialfusion.train.optim import ENCODER_LR_FRACTION, build_optimizer, encoder_lr


def _groups(config):
    model = SocialFusionModel(config.model)
    opt = build_optimizer(model, config.train)
    encoder_params = {id(p) for n, p in model.named_parameters() if n.startswith("encoder.") and p.requires_grad}
    return opt, encoder_params


def _encoder_groups(opt, encoder_params):
    groups = [g for g in opt.param_groups if any(id(p) in encoder_params for p in g["params"])]
    # an encoder parameter never shares a group with another component's
    for g in groups:
        assert all(id(p) in encoder_params for p in g["params"]), g["name"]
    return groups


def test_a_fully_trained_encoder_gets_lr_encoder(tiny_config):
    cfg = apply_overrides(
        tiny_config, ["model.trainable.encoder=full", "train.feature_cache=off", "train.lr_encoder=3e-6"]
    )
    opt, enc = _groups(cfg)
    groups = _encoder_groups(opt, enc)
    assert groups and {g["lr"] for g in groups} == {3e-6}
    assert sum(len(g["params"]) for g in groups) == len(enc)
    connector = [g for g in opt.param_groups if g["name"].startswith("connector")]
    assert connector and all(g["lr"] == cfg.train.lr for g in connector)


def test_the_default_encoder_lr_is_a_fiftieth_of_the_connectors(tiny_config):
    cfg = apply_overrides(
        tiny_config, ["model.trainable.encoder=full", "train.feature_cache=off", "train.lr_connector=5e-4"]
    )
    assert cfg.train.lr_encoder is None
    opt, enc = _groups(cfg)
    lrs = [g["lr"] for g in _encoder_groups(opt, enc)]
    assert lrs and lrs == pytest.approx([5e-4 * ENCODER_LR_FRACTION] * len(lrs))
    assert encoder_lr(cfg.train) == pytest.approx(1e-5)
    no_connector_lr = apply_overrides(tiny_config, ["train.lr=2e-3"])
    assert encoder_lr(no_connector_lr.train) == pytest.approx(2e-3 / 50)


def test_a_frozen_encoder_has_no_group(tiny_config):
    opt, enc = _groups(apply_overrides(tiny_config, ["train.lr_encoder=3e-6"]))
    assert not enc and all(g["lr"] != 3e-6 for g in opt.param_groups)
