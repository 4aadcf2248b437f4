"""VLM baselines on tiny random-init LLaVA and Qwen2-VL built from shipped configs (no download): image tokens
where the processor puts them, per-family box text, a train step, trie scoring, the gaze head's positions,
trainability, checkpoints, config checks, and `plan` on the meta device for the three paper-scale presets."""

import copy

import numpy as np
import pytest
import torch

from socialfusion.config import ConfigError, load_config
from tests.conftest import make_batch

PRESETS = {"llava": "vlm-tiny-llava", "qwen2vl": "vlm-tiny-qwen2vl"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster single-threaded, and then do not fight other processes for the 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module", params=list(PRESETS))
def vlm(request):
    from socialfusion.models.factory import build_model

    model = build_model(load_config(PRESETS[request.param]).model)
    assert model.family == request.param
    return model


def _images(n, seed=0):
    from PIL import Image

    rng = np.random.RandomState(seed)
    return [Image.fromarray(rng.randint(0, 255, (40 + 7 * i, 50, 3), dtype=np.uint8)) for i in range(n)]


def vlm_batch(model, task, seed=0):
    """make_batch (3 rows) with the model's own pixel inputs and boxes that differ per row (one row has a single
    box, one lists role 1 first), so that prompts differ in length and the batch is padded."""
    batch = make_batch(task, b=3, seed=seed)
    batch["pixel_values"] = model.encoder.preprocess(_images(3, seed))
    batch["boxes"] = torch.tensor(
        [
            [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]],
            [[0.123, 0.45, 0.999, 1.0], [0, 0, 0, 0]],
            [[0.0, 0.0, 1.0, 1.0], [0.25, 0.3, 0.7, 0.61]],
        ]
    )
    batch["box_roles"] = torch.tensor([[0, 1], [0, -1], [1, 0]])
    return batch


def _rows(batch, i):
    return {k: (v[i : i + 1] if torch.is_tensor(v) else v) for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------- inputs


def test_image_tokens_sit_where_the_processor_puts_them(vlm):
    batch = vlm_batch(vlm, "relation")
    ids = vlm.prompt_ids(batch)
    texts = vlm.prompt_texts(batch)
    assert len({len(r) for r in ids}) > 1  # the padded path is exercised
    for i, text in enumerate(texts):
        image = _images(3)[i].convert("RGB").resize((vlm.image_size,) * 2)
        ref = vlm.processor(text=[text], images=[image], return_tensors="pt")
        assert ref["input_ids"][0].tolist() == ids[i]
        torch.testing.assert_close(
            ref["pixel_values"].reshape(-1), batch["pixel_values"][i].reshape(-1), rtol=0, atol=1e-6
        )
    assert vlm.num_visual_tokens == vlm.grid[0] * vlm.grid[1] == 16
    inputs = vlm.model_inputs(batch)
    pos = vlm.image_positions(inputs["input_ids"])
    assert pos.shape == (3, 16)
    assert (inputs["input_ids"].gather(1, pos) == vlm.image_token_id).all()
    assert ((pos[:, 1:] - pos[:, :-1]) == 1).all()  # one contiguous run per row
    assert int((inputs["input_ids"] == vlm.image_token_id).sum()) == 3 * 16
    # left padding: every row ends with the same prompt tail and is masked only on its pad
    assert (inputs["attention_mask"][:, -1] == 1).all()
    assert (inputs["attention_mask"].sum(1) == torch.tensor([len(r) for r in ids])).all()
    mark = {"llava": "<image>", "qwen2vl": "<|vision_start|><|image_pad|><|vision_end|>"}[vlm.family]
    assert texts[0].startswith(f"User: {mark}\nMarked boxes: ") and texts[0].endswith(
        "Answer with one relationship.\nAssistant:"
    )


def test_box_text_per_family_and_role_order(vlm):
    texts = vlm.prompt_texts(vlm_batch(vlm, "relation"))
    if vlm.family == "llava":
        assert "Marked boxes: [0.10, 0.10, 0.50, 0.50], [0.50, 0.50, 0.90, 0.90]\n" in texts[0]
        assert "Marked box: [0.12, 0.45, 1.00, 1.00]\n" in texts[1]
        assert "Marked boxes: [0.25, 0.30, 0.70, 0.61], [0.00, 0.00, 1.00, 1.00]\n" in texts[2]  # role 0 first
    else:
        assert (
            "Marked boxes: <|box_start|>(100,100),(500,500)<|box_end|>, <|box_start|>(500,500),(900,900)<|box_end|>\n"
            in texts[0]
        )
        assert "Marked box: <|box_start|>(123,450),(999,1000)<|box_end|>\n" in texts[1]
        assert texts[2].index("(250,300),(700,610)") < texts[2].index("(0,0),(1000,1000)")
        box_start = vlm.tokenizer.convert_tokens_to_ids("<|box_start|>")
        assert vlm.prompt_ids(vlm_batch(vlm, "relation"))[0].count(box_start) == 2  # special tokens, not text


def test_draw_mode_paints_the_boxes_and_drops_the_box_text():
    from socialfusion.core.schema import Box
    from socialfusion.models.factory import build_model

    cfg = load_config("vlm-tiny-llava", ["model.boxes=draw"])
    model = build_model(cfg.model)
    assert model.encoder.wants_boxes
    assert "Marked" not in model.prompt_texts(make_batch("lam"))[0]
    from PIL import Image

    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    plain = model.encoder.preprocess([grey], boxes=[[]])[0]
    drawn = model.encoder.preprocess([grey], boxes=[[Box((0.25, 0.25, 0.75, 0.75), 0), Box((0.0, 0.0, 0.5, 0.5), 1)]])[
        0
    ]
    changed = (plain != drawn).any(0)
    assert changed[20, 23] and changed[10, 0] and not changed[16, 16] and not changed[28, 28]  # outlines only
    assert drawn[0, 20, 23] > plain[0, 20, 23] and drawn[2, 20, 23] < plain[2, 20, 23]  # role 0: red
    assert drawn[2, 10, 0] > plain[2, 10, 0] and drawn[0, 10, 0] < plain[0, 10, 0]  # role 1: blue
    with pytest.raises(ValueError, match="boxes"):
        model.encoder.preprocess([grey])


# ---------------------------------------------------------------------------------------------- training


def test_a_few_steps_on_a_fixed_batch_reduce_the_loss_and_only_trainable_parts_learn(vlm):
    model = copy.deepcopy(vlm).train()
    batches = [vlm_batch(model, "relation"), vlm_batch(model, "gaze")]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    first, last = [], []
    for step in range(6):
        opt.zero_grad(set_to_none=True)
        losses = [model(b)["loss"] for b in batches]
        sum(losses).backward()
        if step == 0:
            first = [loss.item() for loss in losses]
            for name, p in model.named_parameters():
                assert (p.grad is not None) == p.requires_grad or "lora_A" in name, name
        opt.step()
        last = [loss.item() for loss in losses]
    assert all(b < a for a, b in zip(first, last)), (first, last)
    table = {r["component"]: r for r in model.parameter_table()}
    assert set(table) == {"vision", "projector", "llm", "llm.lora", "gaze_head"}
    assert table["vision"]["trainable"] == 0 and table["llm"]["trainable"] == 0
    assert table["projector"]["frozen"] == 0 and table["llm.lora"]["frozen"] == 0 and table["gaze_head"]["frozen"] == 0
    out = model(vlm_batch(model, "relation"))
    assert int(out["n_supervised"]) == sum(
        len(model.answers("relation")[c]) for c in make_batch("relation")["labels"].tolist()
    )


@pytest.mark.parametrize(
    "vision, llm, expect",
    [("lora", "full", {"vision.lora", "llm", "projector"}), ("full", "frozen", {"vision", "projector"})],
)
def test_trainability_per_component(vision, llm, expect):
    from socialfusion.models.factory import build_model

    over = [f"model.trainable.vision={vision}", f"model.trainable.llm={llm}", "train.feature_cache='off'"]
    model = build_model(load_config("vlm-tiny-qwen2vl", over).model)
    trainable = {r["component"] for r in model.parameter_table() if r["trainable"]} - {"gaze_head"}
    assert trainable == expect
    names = [n for n, p in model.named_parameters() if "lora_" in n]
    assert all(".visual.blocks." in n for n in names) == (llm != "lora") and ".merger." not in "".join(names)


def test_config_checks():
    with pytest.raises(ConfigError, match="feature_cache"):
        load_config("vlm-tiny-llava", ["model.trainable.vision=full", "train.feature_cache=auto"])
    with pytest.raises(ConfigError, match="a VLM baseline needs `pretrained` or `arch`"):
        load_config("vlm-tiny-llava", ["model.arch=null"])
    with pytest.raises(ConfigError, match="processor: tiny"):
        load_config("vlm-tiny-llava", ["model.processor=null"])
    with pytest.raises(ConfigError, match="model.type"):
        load_config("vlm-tiny-llava", ["model.type=gpt"])
    assert load_config("tiny").model.type == "socialfusion"


# ---------------------------------------------------------------------------------------------- inference


def test_scoring_fast_equals_full_sums_to_one_and_ignores_padding(vlm):
    vlm.eval()
    lam = vlm_batch(vlm, "lam")
    firsts = [a[0] for a in vlm.answers("lam")]
    assert len(set(firsts)) == len(firsts)
    torch.testing.assert_close(vlm.score_classes(lam, "fast"), vlm.score_classes(lam, "full"), rtol=0, atol=1e-5)
    gesture = vlm_batch(vlm, "gesture")
    answers = vlm.answers("gesture")
    assert len({a[0] for a in answers}) < len(answers)  # shared first tokens: the full path is needed
    with pytest.raises(ValueError, match="first token"):
        vlm.score_classes(gesture, "fast")
    full = vlm.score_classes(gesture)  # auto -> full
    torch.testing.assert_close(full.exp().sum(1), torch.ones(3), rtol=0, atol=1e-5)
    for i in range(3):  # a row scores the same alone (unpadded) as in the padded batch
        torch.testing.assert_close(vlm.score_classes(_rows(gesture, i)), full[i : i + 1], rtol=0, atol=1e-5)


def test_packed_trie_scoring_equals_scoring_each_verbalizer_from_scratch(vlm):
    """The trie pass on the prompt's cache (tree attention, left-padded rows) equals feeding every class's whole
    verbalizer after the prompt in a plain forward pass, summing the restricted log-softmax over every token."""
    vlm.eval()
    batch = vlm_batch(vlm, "gesture")
    answers = vlm.answers("gesture")
    head = vlm.hf_model.get_output_embeddings()
    expected = torch.zeros(3, len(answers))
    with torch.no_grad():
        for c, seq in enumerate(answers):
            inputs = vlm.model_inputs(batch, [seq[:-1]] * 3)
            logits = head(vlm._hidden(inputs, use_cache=False).last_hidden_state[:, -len(seq) :]).float()
            for t in range(len(seq)):
                allowed = sorted({a[t] for a in answers if len(a) > t and a[:t] == seq[:t]})
                expected[:, c] += logits[:, t, seq[t]] - torch.logsumexp(logits[:, t, allowed], -1)
    torch.testing.assert_close(vlm.score_classes(batch), expected, rtol=1e-5, atol=1e-5)


def test_gaze_head_reads_exactly_the_image_token_positions(vlm):
    vlm.eval()
    batch = vlm_batch(vlm, "gaze")
    inputs = vlm.model_inputs(batch)
    with torch.no_grad():
        hidden = vlm.hf_model.model(**inputs, use_cache=False).last_hidden_state
        heat = torch.softmax(vlm.gaze_from_hidden(hidden, inputs["input_ids"])["heatmap_logits"].flatten(1), -1)
        torch.testing.assert_close(vlm.predict_heatmap(batch)["heatmap"].flatten(1), heat, rtol=0, atol=1e-6)
        pos = vlm.image_positions(inputs["input_ids"])
        other = torch.ones(hidden.shape[:2], dtype=torch.bool)
        other.scatter_(1, pos, False)
        other[:, -1] = False  # the last position feeds the in/out head
        noisy = hidden + 10 * torch.randn_like(hidden) * other[..., None]
        again = vlm.gaze_from_hidden(noisy, inputs["input_ids"])
        torch.testing.assert_close(torch.softmax(again["heatmap_logits"].flatten(1), -1), heat, rtol=0, atol=0)
        one = hidden.clone()
        one[0, pos[0, 5]] += 10 * torch.randn(hidden.shape[-1])
        changed = torch.softmax(vlm.gaze_from_hidden(one, inputs["input_ids"])["heatmap_logits"].flatten(1), -1)
        assert not torch.allclose(changed[0], heat[0]) and torch.equal(changed[1:], heat[1:])
    out = vlm.predict_heatmap(batch)
    assert out["heatmap"].shape == (3, 64, 64) and out["inout"].shape == (3,)


def test_checkpoint_round_trip_through_the_factory(vlm, tmp_path):
    from socialfusion.models.checkpoint import load_model, save_checkpoint

    config = load_config(PRESETS[vlm.family])
    model = copy.deepcopy(vlm)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(model, config, tmp_path / "ckpt")
    loaded, _ = load_model(tmp_path / "ckpt")
    assert (
        type(loaded).__name__ == "VLMBaseline" and not (tmp_path / "ckpt" / "adapter").exists()
    )  # one copy: trainable.safetensors
    batch = vlm_batch(model, "expression")
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded.score_classes(batch), model.score_classes(batch), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- plan


@pytest.mark.parametrize(
    "preset, family, tokens, grid, total",
    [
        ("vlm-llava-1.5-7b", "llava", 576, [24, 24], 7_063_427_072),
        ("vlm-qwen2-vl-7b", "qwen2vl", 256, [16, 16], 8_291_375_616),
        ("vlm-llava-onevision-7b", "onevision", 1485, [27, 27], 8.03e9),
    ],
)
def test_plan_paper_presets_on_the_meta_device(preset, family, tokens, grid, total):
    from socialfusion.plan import estimate, format_plan

    plan = estimate(load_config(preset))
    rows = {r["component"]: r for r in plan["parameters"]}
    assert set(rows) == {"vision", "projector", "llm", "llm.lora", "gaze_head"}
    base = sum(r["trainable"] + r["frozen"] for c, r in rows.items() if c in ("vision", "projector", "llm"))
    assert base == pytest.approx(total, rel=0.01)  # the published parameter counts of these checkpoints
    assert rows["vision"]["trainable"] == 0 and rows["llm"]["trainable"] == 0 and rows["projector"]["frozen"] == 0
    assert 1e8 < plan["trainable_parameters"] < 3e8  # LoRA r=64 on all LLM projections + projector
    assert plan["family"] == family and plan["visual_tokens_per_image"] == tokens and plan["patch_grid"] == grid
    assert (
        plan["sequence_length"] > tokens
        and plan["training_gflops_per_sample"] > plan["forward_gflops_per_sample"] > 1000
    )
    text = format_plan(plan)
    assert "llm.lora" in text and "approximate" in text
