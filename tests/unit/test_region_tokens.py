"""Region tokens (`model.connector.box_tokens`): RoIAlign on the patch grid, per-role union boxes, model wiring."""

import pytest
import torch

from socialfusion.config import ConfigError, apply_overrides as apply_overrides_to_config
from socialfusion.models.box_mask import role_union_boxes
from socialfusion.models.connector import roi_align
from tests.conftest import make_batch


def _ramp(h: int, w: int) -> torch.Tensor:
    """A (1, 2, h, w) grid whose channels are the x and y of each cell centre in [0, 1] coordinates."""
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([xs, ys])[None]


def test_roi_align_bins_of_a_linear_field_read_their_bin_centres():
    # bilinear sampling reproduces a linear field exactly, and the mean of a linear function over a bin is its
    # value at the bin centre: the box [0.25, 0.75]^2 in 2 x 2 bins has bin centres 0.375 and 0.625
    out = roi_align(_ramp(6, 8), torch.tensor([[[0.25, 0.25, 0.75, 0.75]]]), k=2)
    want = torch.tensor([[[0.375, 0.375], [0.625, 0.375], [0.375, 0.625], [0.625, 0.625]]])
    assert torch.allclose(out, want, atol=1e-6)


def test_roi_align_orders_tokens_box_by_box_and_clamps_at_the_border():
    boxes = torch.tensor([[[0.25, 0.25, 0.75, 0.75], [0.0, 0.0, 1.0, 1.0]]])
    out = roi_align(_ramp(4, 4), boxes, k=1)
    assert out.shape == (1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([0.5, 0.5]), atol=1e-6)
    # the whole image: samples beyond the outer cell centres read the border cells ("border" padding), so the
    # mean stays 0.5 instead of being pulled toward zero as zero padding would
    assert torch.allclose(out[0, 1], torch.tensor([0.5, 0.5]), atol=1e-6)


def test_role_union_boxes_enclose_each_roles_boxes_and_flag_absent_roles():
    boxes = torch.tensor(
        [
            [[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.6, 0.25], [0.0, 0.0, 0.0, 0.0]],
            [[0.2, 0.2, 0.4, 0.4], [0.6, 0.6, 0.9, 0.9], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    roles = torch.tensor([[0, 0, -1], [0, 1, -1]])
    union, present = role_union_boxes(boxes, roles, 2)
    assert torch.allclose(union[0, 0], torch.tensor([0.1, 0.0, 0.6, 0.4]))
    assert present.tolist() == [[True, False], [True, True]]
    assert torch.equal(union[0, 1], torch.zeros(4))
    assert torch.allclose(union[1, 1], torch.tensor([0.6, 0.6, 0.9, 0.9]))


@pytest.fixture()
def region_model(tiny_config):
    from socialfusion.models.socialfusion import SocialFusionModel

    cfg = apply_overrides_to_config(tiny_config, ["model.connector.box_tokens=2"])
    torch.manual_seed(0)
    model = SocialFusionModel(cfg.model)
    with torch.no_grad():  # the role embeddings start at zero; make them visible to the test
        model.box_embed.embedding.normal_()
    return model


def test_region_tokens_follow_the_grid_for_each_role_of_the_task(region_model):
    grid = region_model.num_visual_tokens
    two = make_batch("relation", b=2)
    assert region_model.visual_tokens(two).shape[1] == grid + 2 * 4
    one = make_batch("lam", b=2)  # a second (role 1) box does not change what a one-role task sees
    assert region_model.visual_tokens(one).shape[1] == grid + 4
    one["box_roles"] = torch.tensor([[0, -1], [0, -1]])
    assert region_model.visual_tokens(one).shape[1] == grid + 4
    none = make_batch("lam", b=2)
    none["box_roles"] = torch.full((2, 2), -1)
    assert region_model.visual_tokens(none).shape[1] == grid  # no box: nothing added, as for the mask


def test_a_row_without_a_role_gets_zero_region_tokens_and_the_others_are_unchanged(region_model):
    batch = make_batch("relation", b=2)
    full = region_model.visual_tokens(batch)
    batch["box_roles"] = torch.tensor([[0, 1], [0, -1]])
    mixed = region_model.visual_tokens(batch)
    grid = region_model.num_visual_tokens
    assert torch.equal(mixed[1, grid + 4 :], torch.zeros_like(mixed[1, grid + 4 :]))
    assert torch.allclose(mixed[0], full[0])
    assert torch.allclose(mixed[1, grid : grid + 4], full[1, grid : grid + 4])


def test_region_tokens_see_only_their_box(region_model):
    batch = make_batch("lam", b=1)
    batch["boxes"] = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    batch["box_roles"] = torch.tensor([[0, -1]])
    feats = region_model.encode(batch["pixel_values"])
    batch["features"] = feats
    base = region_model.visual_tokens(batch)
    h, w = region_model.encoder.grid
    changed = feats.clone().view(1, h, w, -1)
    changed[:, h // 2 + 1 :, w // 2 + 1 :] += 5.0  # far from the box (beyond bilinear reach of its samples)
    batch["features"] = changed.view_as(feats)
    after = region_model.visual_tokens(batch)
    grid = region_model.num_visual_tokens
    assert torch.allclose(after[:, grid:], base[:, grid:])
    assert not torch.allclose(after[:, :grid], base[:, :grid])


@pytest.mark.parametrize("task", ["lam", "relation", "gaze", "gesture"])
def test_training_and_inference_run_with_region_tokens(region_model, task):
    batch = make_batch(task, b=2)
    out = region_model(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert region_model.connector.proj[0].weight.grad is not None
    region_model.eval()
    if task == "gaze":
        pred = region_model.predict_heatmap(batch)
        assert pred["heatmap"].shape[0] == 2
    else:
        scores = region_model.score_classes(batch)
        assert torch.allclose(scores.exp().sum(1), torch.ones(2), atol=1e-5)


def test_negative_box_tokens_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="box_tokens"):
        apply_overrides_to_config(tiny_config, ["model.connector.box_tokens=-1"])
