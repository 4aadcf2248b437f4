"""The SocialFusion model on the tiny preset: gradients, box masks, token placement, scoring, checkpoints."""

import copy

import pytest
import torch

from socialfusion.models.box_mask import box_cell_mask
from socialfusion.models.checkpoint import CheckpointError, load_model, save_checkpoint
from socialfusion.numerics import tolerance
from tests.conftest import computing_in, make_batch

TASKS = ["lam", "expression", "gesture", "relation", "gaze"]


def test_trainable_parameters_get_finite_gradients_and_frozen_ones_none(tiny_model):
    touched = set()
    for task in TASKS:
        tiny_model.zero_grad(set_to_none=True)
        tiny_model(make_batch(task))["loss"].backward()
        for name, p in tiny_model.named_parameters():
            if not p.requires_grad:
                assert p.grad is None, f"frozen {name} got a gradient"
            elif p.grad is not None:
                assert torch.isfinite(p.grad).all(), name
                if p.grad.abs().sum() > 0:
                    touched.add(name)
    trainable = {n for n, p in tiny_model.named_parameters() if p.requires_grad}
    # LoRA B starts at zero, so A gets zero gradient at step 0; everything else must be reached by some task
    missing = {n for n in trainable - touched if "lora_A" not in n}
    assert not missing, f"never received a gradient: {sorted(missing)}"
    assert any("lora_B" in n for n in touched)
    assert not any(p.requires_grad for p in tiny_model.encoder.parameters())


def test_gaze_patch_keys_add_a_term_on_the_full_patch_grid(tiny_config):
    """model.gaze.patch_keys: on a pooled grid the heatmap also reads every patch (a query from the prompt's last
    hidden state against a key per patch): the head's query and keys learn, and moving one patch's feature moves
    the heatmap most in that patch's cell, which the pooled tokens alone cannot resolve."""
    from socialfusion.models.socialfusion import SocialFusionModel

    cfg = copy.deepcopy(tiny_config.model)
    cfg.connector.pool, cfg.gaze.patch_keys = 2, 8
    model = SocialFusionModel(cfg)
    assert model.grid != model.encoder.grid  # pooled: the image positions are coarser than the patches
    batch = make_batch("gaze")
    model(batch)["loss"].backward()
    for name in ("gaze_head.query.weight", "gaze_head.key.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        feats = model.encode(batch["pixel_values"])
        head = model.gaze_head
        image = torch.zeros(3, model.num_visual_tokens, model.llm.config.hidden_size)
        last = torch.randn(3, model.llm.config.hidden_size)
        base = head(image, last, feats)["heatmap_logits"]
        moved = feats.clone()
        moved[:, 0] += 10 * head.key.weight.T @ head.query(last)[0] / head.query(last)[0].norm()  # patch (0, 0) only
        change = (head(image, last, moved)["heatmap_logits"] - base).abs()[0]
    h, w = model.encoder.grid
    corner = change[: 64 // h, : 64 // w].mean()
    assert corner > 5 * change[64 // 2 :, 64 // 2 :].mean()


def test_gaze_patch_keys_are_checked():
    from socialfusion.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="patch_keys"):
        load_config("tiny", ["model.gaze.patch_keys=-1"])


@pytest.mark.parametrize(
    "box, cells",
    [
        ([0.0, 0.0, 0.5, 0.5], {(0, 0), (0, 1), (1, 0), (1, 1)}),  # exactly on cell borders: no spill
        ([0.30, 0.30, 0.31, 0.31], {(1, 1)}),  # smaller than a cell: the one cell it lies in
        ([0.6, 0.6, 0.6, 0.6], {(2, 2)}),  # zero size
        ([0.9, 0.0, 1.4, 0.2], {(0, 3)}),  # runs out of the image: clipped
        ([0.999, 0.999, 1.0, 1.0], {(3, 3)}),  # the last corner
        ([0.24, 0.1, 0.26, 0.2], {(0, 0), (0, 1)}),  # straddles a border
    ],
)
def test_box_mask_marks_exactly_the_touched_cells(box, cells):
    mask = box_cell_mask(torch.tensor(box), (4, 4))
    assert {tuple(ij) for ij in mask.nonzero().tolist()} == cells


def test_box_embedding_roles_and_padding(tiny_model):
    be = tiny_model.box_embed
    with torch.no_grad():
        be.embedding.copy_(torch.tensor([[1.0] * be.embedding.shape[1], [10.0] * be.embedding.shape[1]]))
    tokens = torch.zeros(1, 16, be.embedding.shape[1])
    boxes = torch.tensor([[[0.0, 0.0, 0.25, 0.25], [0.75, 0.75, 1.0, 1.0], [0.5, 0.0, 0.75, 0.25]]])
    roles = torch.tensor([[0, 1, -1]])  # the third box is padding: adds nothing
    out = be(tokens, boxes, roles)[0, :, 0]
    expected = torch.zeros(16)
    expected[0], expected[15] = 1.0, 10.0
    assert torch.equal(out, expected)
    # no box at all: the tokens are unchanged
    assert torch.equal(be(tokens, boxes[:, :0], roles[:, :0]), tokens)


def test_image_tokens_land_exactly_at_the_placeholder(tiny_model):
    batch = make_batch("lam", b=2)
    visual = tiny_model.visual_tokens(batch)
    prefix, start = tiny_model._prefix("lam", visual)
    pieces = tiny_model.prompt("lam")
    assert start == len(pieces.pre)
    assert prefix.shape[1] == len(pieces.pre) + tiny_model.num_visual_tokens + len(pieces.post)
    assert torch.equal(prefix[:, start : start + visual.shape[1]], visual)
    embed = tiny_model.llm.get_input_embeddings()
    assert torch.equal(prefix[0, :start], embed(torch.tensor(pieces.pre)))
    assert torch.equal(prefix[0, start + visual.shape[1] :], embed(torch.tensor(pieces.post)))
    text = tiny_model.tokenizer.decode(pieces.pre) + "<image>" + tiny_model.tokenizer.decode(pieces.post)
    assert "<image>\nLook at the face" in text


def test_fast_path_equals_full_scoring_and_scores_are_distributions(tiny_model, precision):
    answers = tiny_model.answers("lam")
    assert len({a[0] for a in answers}) == len(answers), "lam verbalizers should differ at the first token"
    batch = make_batch("lam")
    with computing_in(precision):
        fast = tiny_model.score_classes(batch, method="fast")
        full = tiny_model.score_classes(batch, method="full")
    torch.testing.assert_close(fast, full, rtol=0, atol=tolerance(precision).log_prob)
    # the tiny tokenizer splits 'sadness' and 'surprise' after a shared first token: no fast path there
    with pytest.raises(ValueError, match="share a first token"):
        tiny_model.score_classes(make_batch("expression"), method="fast")
    gesture = make_batch("gesture")
    with computing_in(precision):
        full = tiny_model.score_classes(gesture, method="full")
    # normalised in fp32 whatever the precision of the logits: distributions to fp32 rounding in both
    torch.testing.assert_close(full.exp().sum(1), torch.ones(3), rtol=1e-5, atol=1e-5)


def _randomise(model, prefixes: tuple[str, ...] = ()) -> None:
    """Non-zero LoRA B matrices (zero at init, so the adapters would not take part) and any parameters whose names
    start with `prefixes`, drawn from a fixed seed."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith(prefixes):
                p.normal_(0, 0.2)


def _brute_force_scores(model, batch):
    """The definition, computed the slow way: each class's whole verbalizer fed after the prompt in a plain
    forward pass (no cache, no tree), summing the restricted log-softmax over *every* answer token."""
    from socialfusion.models.llm import decoder_and_head

    task, b = batch["task"], batch["boxes"].shape[0]
    answers = model.answers(task)
    decoder, head = decoder_and_head(model.llm)
    scores = torch.zeros(b, len(answers))
    with torch.no_grad():
        prefix, _ = model._prefix(task, model.visual_tokens(batch))
        for c, seq in enumerate(answers):
            ids = torch.tensor(seq[:-1]).expand(b, -1)
            hidden = decoder(inputs_embeds=torch.cat([prefix, model._embed(ids)], 1)).last_hidden_state
            logits = head(hidden[:, prefix.shape[1] - 1 :]).float()
            for t in range(len(seq)):
                allowed = sorted({a[t] for a in answers if len(a) > t and a[:t] == seq[:t]})
                scores[:, c] += logits[:, t, seq[t]] - torch.logsumexp(logits[:, t, allowed], -1)
    return scores


@pytest.mark.parametrize("task", ["relation", "expression", "gesture"])
@pytest.mark.parametrize("box_tokens_at", [None, "answer"])
def test_packed_trie_scoring_equals_scoring_each_verbalizer_from_scratch(tiny_model, task, box_tokens_at, precision):
    """One pass over the prompt plus the trie's branching nodes (tree attention) equals feeding every class's
    whole verbalizer after the prompt on its own; gesture's verbalizers share prefixes several tokens deep.
    Also with region tokens after the prompt's text (`box_tokens_at: answer`)."""
    if box_tokens_at:
        from socialfusion.models.socialfusion import SocialFusionModel

        cfg = copy.deepcopy(tiny_model.cfg)
        cfg.connector.box_tokens, cfg.connector.box_tokens_at = 2, box_tokens_at
        tiny_model = SocialFusionModel(cfg)
    _randomise(tiny_model)
    tiny_model.eval()
    batch = make_batch(task, b=2)
    with computing_in(precision):
        scores = tiny_model.score_classes(batch, method="full")
        brute = _brute_force_scores(tiny_model, batch)
    torch.testing.assert_close(scores, brute, rtol=0, atol=tolerance(precision).log_prob)
    torch.testing.assert_close(scores.exp().sum(1), torch.ones(2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["lam", "expression", "gesture"])
@pytest.mark.parametrize("box_tokens_at", ["image", "answer"])
def test_verbalizer_loss_is_minus_the_scorers_log_probability_of_the_label(tiny_config, task, box_tokens_at):
    """The `verbalizer` answer loss, from one teacher-forced pass, is the mean of -log P(label) that the packed
    trie scorer gives (gesture's verbalizers branch several tokens deep); the `lm` loss is a different number.
    With region tokens in either place, so training and inference lay out the sequence the same way."""
    from socialfusion.models.socialfusion import SocialFusionModel

    config = copy.deepcopy(tiny_config.model)
    config.answer_loss = "verbalizer"
    config.connector.box_tokens, config.connector.box_tokens_at = 2, box_tokens_at
    model = SocialFusionModel(config)
    _randomise(model)
    model.eval()
    batch = make_batch(task, b=4, seed=2)
    loss = model(batch)["loss"]
    scores = model.score_classes(batch, method="full")
    expected = -scores[torch.arange(4), batch["labels"]].mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    loss.backward()  # and it trains the connector
    assert model.connector.proj[0].weight.grad.abs().sum() > 0
    model.cfg.answer_loss = "lm"
    assert abs(model(batch)["loss"].item() - expected.item()) > 1e-3


@pytest.mark.parametrize(
    "box_tokens, box_tokens_at, patch_keys", [(0, "image", 0), (2, "image", 0), (2, "answer", 0), (2, "answer", 8)]
)
def test_tasks_run_together_equal_each_task_alone(tiny_config, box_tokens, box_tokens_at, patch_keys, precision):
    """infer_tasks packs the tasks that share the [text + image] prefix into one decoder call; with region tokens
    (one set per role the task uses) relation's visual tokens differ, so it gets its own call. With `patch_keys`
    (on a pooled grid) the gaze head reads the patch features too."""
    from socialfusion.models.llm import decoder_and_head
    from socialfusion.models.socialfusion import SocialFusionModel

    cfg = copy.deepcopy(tiny_config.model)
    cfg.connector.box_tokens, cfg.connector.box_tokens_at = box_tokens, box_tokens_at
    if patch_keys:
        cfg.connector.pool, cfg.gaze.patch_keys = 2, patch_keys
    model = SocialFusionModel(cfg).eval()
    _randomise(model, ("box_embed",))  # so that adapters and boxes take part
    batch = make_batch("gaze", b=2)  # rows with a role-0 and a role-1 box
    decoder, _ = decoder_and_head(model.llm)
    calls = []
    handle = decoder.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(1), with_kwargs=True)
    try:
        with computing_in(precision):
            together = model.infer_tasks(batch, TASKS)
    finally:
        handle.remove()
    assert len(calls) == (2 if box_tokens else 1)
    tol = tolerance(precision)
    for task in TASKS:
        one = dict(batch, task=task)
        with computing_in(precision):
            alone = model.predict_heatmap(one) if task == "gaze" else model.score_classes(one)
        if task == "gaze":
            for key in alone:  # the heatmap's cells, and the in/out probability
                atol = tol.heatmap if key == "heatmap" else tol.probability
                torch.testing.assert_close(together[task][key].float(), alone[key].float(), rtol=0, atol=atol, msg=key)
        else:
            torch.testing.assert_close(together[task], alone, rtol=0, atol=tol.log_prob, msg=task)


def test_trie_plan_keeps_only_branching_steps():
    from socialfusion.models.scoring import plan_scoring

    answers = [[5, 6, 2], [5, 7, 2], [5, 7, 8, 2], [9, 3, 4, 2]]
    plan = plan_scoring(answers)
    # branching: the root (5 | 9), [5] (6 | 7) and [5, 7] (2 | 8); [9], [9, 3], [5, 6]... have one child each
    assert plan.nodes == [(5,), (5, 7)]
    assert plan.tokens == [5, 7] and plan.parents == [-1, 0]
    assert plan.branch_rows.tolist() == [0, 1, 2]
    steps = [[e for e in row if e >= 0] for row in plan.class_edges.tolist()]
    assert [len(s) for s in steps] == [2, 3, 3, 1]  # class 3 ([9, ...]) is decided at the root
    # distinct first tokens: nothing but the root, whatever the lengths
    assert plan_scoring([[5, 6, 2], [9, 2]]).nodes == []
    with pytest.raises(ValueError, match="share a first token"):
        plan_scoring(answers, method="fast")


def test_scoring_is_one_decoder_pass_without_a_kv_cache(tiny_model):
    """The full path packs the trie after the prompt in the same pass, and nothing asks for a cache."""
    from socialfusion.models.llm import decoder_and_head

    decoder, _ = decoder_and_head(tiny_model.llm)
    calls = []
    handle = decoder.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(kwargs.get("use_cache")), with_kwargs=True
    )
    try:
        for task in ("lam", "gesture"):
            calls.clear()
            tiny_model.score_classes(make_batch(task))
            assert calls == [False], (task, calls)
    finally:
        handle.remove()


def test_a_batch_without_supervised_tokens_is_an_error(tiny_model):
    batch = make_batch("gaze")
    batch["inout"] = torch.tensor([-1, -1, -1])
    out = tiny_model(batch)  # gaze with no known in/out: nothing supervised, but no crash either
    assert out["n_supervised"] == 0


def test_training_reads_answers_from_a_per_task_table_and_asks_for_no_cache(tiny_model):
    from socialfusion.models.llm import decoder_and_head

    table, lengths = tiny_model.answer_table("gesture")
    pad = tiny_model.tokenizer.pad_token_id
    for c, a in enumerate(tiny_model.answers("gesture")):
        assert lengths[c] == len(a)
        assert table[c, 0].tolist() == a + [pad] * (table.shape[2] - len(a))
        assert table[c, 1].tolist() == [1] * len(a) + [0] * (table.shape[2] - len(a))
    assert tiny_model.answer_table("gesture")[0] is table  # built once
    decoder, _ = decoder_and_head(tiny_model.llm)
    calls = []
    handle = decoder.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(kwargs.get("use_cache")), with_kwargs=True
    )
    try:
        batch = make_batch("gesture", b=4)
        out = tiny_model(batch)
        tiny_model(make_batch("gaze"))
    finally:
        handle.remove()
    assert calls == [False, False]
    assert out["n_supervised"] == sum(lengths[c] for c in batch["labels"].tolist())


def test_optimisation_steps_reduce_the_loss(tiny_model):
    opt = torch.optim.AdamW([p for p in tiny_model.parameters() if p.requires_grad], lr=2e-2)
    for task in ("expression", "gaze"):
        batch = make_batch(task, b=4, seed=1)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = tiny_model(batch)["loss"]
            loss.backward()
            opt.step()
            losses.append(loss.item())
        # the tiny LLM is random and frozen but for LoRA, so answer tokens are learnt slowly; a 10% drop in
        # 20 steps on one batch is far outside noise (the loss is deterministic here)
        assert losses[-1] < 0.9 * losses[0], (task, losses)


def test_the_optimizer_is_foreach_adamw_and_equals_the_per_tensor_loop(tiny_model, tiny_config):
    from socialfusion.train.optim import build_optimizer

    opt = build_optimizer(tiny_model, tiny_config.train)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["foreach"] is True
    params = [p for g in opt.param_groups for p in g["params"]]
    start = [p.detach().clone() for p in params]
    # the same groups (lr, weight decay) without their foreach flag, on copies of the parameters
    groups = [{k: v for k, v in g.items() if k not in ("params", "foreach")} for g in opt.param_groups]
    for g, src in zip(groups, opt.param_groups):
        g["params"] = [p.detach().clone().requires_grad_() for p in src["params"]]
    loop = torch.optim.AdamW(groups, foreach=False)
    assert all(g["foreach"] is False for g in loop.param_groups)
    twins = [p for g in loop.param_groups for p in g["params"]]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(params, twins):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        opt.step()
        loop.step()
    for p, q, s in zip(params, twins, start):
        assert not torch.equal(p, s)
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_checkpoint_round_trip_gives_identical_outputs(tiny_model, tiny_config, tmp_path):
    opt = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=0.5)
    batch = make_batch("relation")
    tiny_model(batch)["loss"].backward()
    opt.step()  # make the LoRA B matrices non-zero so the adapter matters
    tiny_model.eval()
    ckpt = save_checkpoint(tiny_model, tiny_config, tmp_path / "ckpt")
    assert not (ckpt / "adapter").exists()  # the LoRA weights live in trainable.safetensors only
    loaded, _ = load_model(ckpt)
    loaded.eval()
    torch.testing.assert_close(loaded.score_classes(batch), tiny_model.score_classes(batch), rtol=0, atol=0)
    g = make_batch("gaze")
    torch.testing.assert_close(
        loaded.predict_heatmap(g)["heatmap"], tiny_model.predict_heatmap(g)["heatmap"], rtol=0, atol=0
    )


def test_llm_layer_selection_keeps_the_chosen_pretrained_layers_in_order(tmp_path):
    """`llm.layers` (e.g. the first layers and the last ones) loads those layers' weights, in that order, with
    the KV-cache index of each set to its new place; `num_layers` is the same as a prefix."""
    from transformers import AutoModelForCausalLM

    from socialfusion.config import LLMConfig
    from socialfusion.models.llm import build_causal_lm, kept_layers
    from socialfusion.models.loading import load_arch

    assert kept_layers(LLMConfig(num_layers=3), 30) == [0, 1, 2]
    assert kept_layers(LLMConfig(layers=[0, 1, -2, -1]), 30) == [0, 1, 28, 29]
    assert kept_layers(LLMConfig(), 30) is None
    for bad in ([0, 30], [1, -29]):
        with pytest.raises(ValueError, match="each must name a different one"):
            kept_layers(LLMConfig(layers=bad), 30)
    config = load_arch("arch/tiny-llama.json")
    config.num_hidden_layers = 4
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "lm")
    full = AutoModelForCausalLM.from_pretrained(tmp_path / "lm")
    cut = build_causal_lm(LLMConfig(pretrained=str(tmp_path / "lm"), layers=[0, -1]))
    assert cut.config.num_hidden_layers == 2 and len(cut.get_decoder().layers) == 2
    for new, old in ((0, 0), (1, 3)):
        layer = cut.get_decoder().layers[new]
        assert layer.self_attn.layer_idx == new
        torch.testing.assert_close(
            layer.mlp.up_proj.weight, full.get_decoder().layers[old].mlp.up_proj.weight, rtol=0, atol=0
        )
    ids = torch.tensor([[1, 5, 7, 9]])
    # the same as running those two layers of the full model by hand
    full.get_decoder().layers = torch.nn.ModuleList([full.get_decoder().layers[0], full.get_decoder().layers[3]])
    full.config.num_hidden_layers = 2
    torch.testing.assert_close(cut(ids).logits, full(ids, use_cache=False).logits, rtol=1e-5, atol=1e-5)


def test_standardize_measures_per_channel_statistics_and_is_the_identity_before():
    from socialfusion.models.connector import Standardize

    norm = Standardize(3)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(norm(x), x)
    g = torch.Generator().manual_seed(0)
    chunks = [
        torch.randn(4, 6, 3, generator=g) * torch.tensor([0.3, 8.0, 1.0]) + torch.tensor([17.0, -2.0, 0.0])
        for _ in range(3)
    ]
    assert norm.fit(iter(chunks)) == 3 * 4 * 6
    flat = torch.cat([c.reshape(-1, 3) for c in chunks]).double()
    torch.testing.assert_close(norm.feature_mean, flat.mean(0).float())
    torch.testing.assert_close(norm.feature_std, flat.std(0, unbiased=False).float())
    out = torch.cat([norm(c).reshape(-1, 3) for c in chunks])
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no features"):
        norm.fit(iter([]))


def test_checkpoints_keep_the_measured_input_statistics(tiny_config, tmp_path):
    from safetensors.torch import load_file, save_file

    from socialfusion.models.socialfusion import SocialFusionModel

    config = copy.deepcopy(tiny_config)
    config.model.connector.input_norm = "standardize"
    model = SocialFusionModel(config.model).eval()
    batch = make_batch("expression")
    feats = model.encode(batch["pixel_values"])
    model.connector.norm.fit([feats * 3 + 1])
    before = model.score_classes(batch)
    ckpt = save_checkpoint(model, config, tmp_path / "ckpt")
    loaded, _ = load_model(ckpt)
    loaded.eval()
    torch.testing.assert_close(loaded.connector.norm.feature_std, model.connector.norm.feature_std, rtol=0, atol=0)
    torch.testing.assert_close(loaded.score_classes(batch), before, rtol=0, atol=0)
    # a checkpoint without them (e.g. written before they existed) is refused, not silently un-normalised
    weights = ckpt / "trainable.safetensors"
    state = load_file(str(weights))
    del state["connector.norm.feature_mean"]
    save_file(state, str(weights), metadata={"format": "pt"})
    (ckpt / "checksums.json").unlink()  # as in a checkpoint written before checksums existed
    with pytest.raises(CheckpointError, match="feature_mean"):
        load_model(ckpt)


def test_incomplete_or_corrupt_checkpoints_are_refused(tiny_model, tiny_config, tmp_path):
    ckpt = save_checkpoint(tiny_model, tiny_config, tmp_path / "ckpt")
    weights = ckpt / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="trainable.safetensors"):
        load_model(ckpt)
    (ckpt / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_model(ckpt)


def test_merged_lora_gives_the_same_outputs(tiny_model):
    from socialfusion.models.merge import merged_llm

    opt = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=0.5)
    tiny_model(make_batch("lam"))["loss"].backward()
    opt.step()
    tiny_model.eval()
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    merged = merged_llm(tiny_model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, tiny_model.llm(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )


def test_trainability_plan(tiny_config):
    from socialfusion.models.socialfusion import SocialFusionModel
    from socialfusion.models.trainability import parameter_table

    cfg = copy.deepcopy(tiny_config.model)
    cfg.trainable.encoder = "full"
    cfg.trainable.llm = "frozen"
    rows = {r["component"]: r for r in parameter_table(SocialFusionModel(cfg))}
    assert rows["encoder"]["frozen"] == 0 and rows["encoder"]["trainable"] > 0
    assert rows["llm"]["trainable"] == 0 and "llm.lora" not in rows


@pytest.mark.parametrize("enabled", [True, False])
def test_box_enabled_false_is_the_ablation_without_the_box_mask(enabled, tmp_path):
    """model.box.enabled=false: the visual tokens are the connector's output whatever the boxes (no parameter,
    nothing in the checkpoint), all five tasks still train; enabled, different boxes give different tokens."""
    from socialfusion.config import ConfigError, load_config
    from socialfusion.models.checkpoint import trained_tensors
    from socialfusion.models.socialfusion import SocialFusionModel

    config = load_config("tiny", [f"model.box.enabled={str(enabled).lower()}"])
    model = SocialFusionModel(config.model)
    if enabled:
        with torch.no_grad():
            model.box_embed.embedding.normal_()  # zero at init: make the boxes matter
    else:
        assert not list(model.box_embed.parameters())
        assert not any(n.startswith("box_embed") for n in trained_tensors(model))
    batch = make_batch("relation")
    other = dict(batch, boxes=torch.tensor([[[0.0, 0.0, 0.3, 0.3], [0.6, 0.1, 1.0, 0.4]]] * 3))
    model.eval()
    with torch.no_grad():
        tokens, tokens_other = model.visual_tokens(batch), model.visual_tokens(other)
        if enabled:
            assert not torch.equal(tokens, tokens_other)
        else:
            assert torch.equal(tokens, tokens_other)
            assert torch.equal(tokens, model.connector(model.encode(batch["pixel_values"])))
    model.train()
    loss = model(batch)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    if not enabled:
        model.eval()
        loaded, _ = load_model(save_checkpoint(model, config, tmp_path / "ckpt"))
        loaded.eval()
        torch.testing.assert_close(loaded.score_classes(other), model.score_classes(batch), rtol=0, atol=0)
        with pytest.raises(ConfigError, match="box_tokens needs the boxes"):
            load_config("tiny", ["model.box.enabled=false", "model.connector.box_tokens=2"])
        with pytest.raises(ConfigError, match=r"unknown key\(s\) model\.box;"):  # not a VLM baseline's option
            load_config("vlm-tiny-llava", ["model.box.enabled=false"])


def test_encoder_lora_takes_its_settings_from_the_config():
    from socialfusion.config import EncoderConfig, LoraConfig, load_config
    from socialfusion.models.socialfusion import SocialFusionModel

    default = EncoderConfig().lora
    assert isinstance(default, LoraConfig)
    assert (default.r, default.alpha, default.dropout, default.target_modules) == (8, 16, 0.0, ["all-linear"])
    config = load_config("tiny", ["model.trainable.encoder=lora", "train.feature_cache=off", "model.encoder.lora.r=3"])
    assert config.model.encoder.lora.target_modules == ["all-linear"]  # a partial override keeps the encoder's defaults
    model = SocialFusionModel(config.model)
    lora_a = {n: p for n, p in model.encoder.named_parameters() if "lora_A" in n}
    assert lora_a and all(p.shape[0] == 3 and p.requires_grad for p in lora_a.values())
    # "all-linear": every linear layer of the encoder gets an adapter
    n_linear = sum(1 for m in model.encoder.modules() if type(m) is torch.nn.Linear)  # the wrapped ones' base layers
    assert len(lora_a) == n_linear - len(lora_a) * 2  # each adapter adds its own lora_A and lora_B Linear
    assert not any(p.requires_grad for n, p in model.encoder.named_parameters() if "lora_" not in n)


def test_merge_lora_command_from_a_checkpoint_without_an_adapter_directory(tiny_model, tiny_config, tmp_path):
    """`socialfusion merge-lora` works from what load_model rebuilds: a standalone HF model, same logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from socialfusion.commands import main_merge_lora

    opt = torch.optim.SGD([p for p in tiny_model.parameters() if p.requires_grad], lr=0.5)
    tiny_model(make_batch("lam"))["loss"].backward()
    opt.step()  # non-zero LoRA B: the merge matters
    tiny_model.eval()
    ckpt = save_checkpoint(tiny_model, tiny_config, tmp_path / "ckpt")
    assert not (ckpt / "adapter").exists()
    assert main_merge_lora(["--ckpt", str(ckpt), "--out", str(tmp_path / "merged")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    ids = torch.tensor([tok("a person looking at the camera")["input_ids"]])
    assert ids.shape[1] > 1 and int(ids.max()) < merged.config.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(
            merged(input_ids=ids).logits, tiny_model.llm(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )
