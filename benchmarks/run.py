#!/usr/bin/env python
"""SocialFusion benchmarks: one command, interleaved measurements, one process per configuration.

    make benchmark                      # full run (~6-7 min on a lightly shared 2-core CPU, ~10 min under heavy load)
    make benchmark ARGS=--quick         # ~2.5 min: tiny + default fp32 training, classification, predict
    make benchmark ARGS=--only=train-default-bf16   # bf16 autocast training (~3-5 min; slow on CPUs without bf16)
    .venv/bin/python benchmarks/run.py --only train-default,classify
    make benchmark-smoke                # ~30 s: does the harness still run? (every worker kind once, tiny preset;
                                        # writes to --out or a temporary directory; tests/integration runs it)

What is measured (see README.md for the definitions and RESULTS.md for the numbers):
  train-tiny / train-default / train-issue9
      one optimiser step (forward, backward, grad-norm clip, AdamW, zero_grad; for SocialFusion the library's own
      `socialfusion.train.step.train_step`) of SocialFusion with the feature cache (the batch carries `features`),
      SocialFusion from pixels (frozen encoder each step) and a reference built from transformers'
      LlavaForConditionalGeneration + PEFT LoRA with the same encoder, LLM, visual token count, LoRA config, prompt
      tokens and batch; fp32 (and bf16 autocast on `default`); plus a
      2048 x 2048 matmul (the machine's peak) interleaved with the steps, for MFU.
  classify
      model.score_classes (trie-constrained verbalizer scoring) against llm.generate(inputs_embeds=<same prefix>)
      + decoding + parsing, on gesture (verbalizers share first tokens: full path) and expression (fast path).
  predict
      SocialFusion.predict(image, boxes, tasks="all") against one predict call per task.

Every configuration runs in its own worker process (clean RSS high-water marks, no shared allocator state);
the parent asks the workers for one measured unit at a time, in rounds (A, B, C, A, B, C, ... with the order
rotated every round), so that load from other processes on the machine hits every configuration alike. Only one
worker computes at any moment. Results: benchmarks/results/<mode>.json, and the generated tables of
benchmarks/RESULTS.md (the text outside the GENERATED markers is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
TRAIN_TASK = "expression"
BATCH = 8
# libgomp's default spin-waiting makes 2-thread torch up to 10x slower while another process keeps one of the
# two cores busy (measured: score_classes 3.45 s with 2 threads vs 0.35 s with 1; 0.43 s with PASSIVE); every
# worker gets this policy (--omp-wait-policy default leaves the environment alone)
OMP_WAIT_POLICY = "PASSIVE"
THREADS = None
ALL_LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# ================================================================================================ worker side


def _proto_streams():
    """Protocol on the original stdout; anything libraries print goes to stderr (the worker's log)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin, out


def _rss_kb() -> dict:
    info = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                info[key] = int(value.split()[0])
    return info


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the RSS high-water mark) of this process, Linux >= 4.0
        return True
    except OSError:
        return False


def preset_config(preset: str):
    """The socialfusion Config of a preset; `issue9` is the configuration of the earlier reference figure."""
    from socialfusion.config import LoraConfig, load_config

    if preset in ("tiny", "default"):
        cfg = load_config(preset)
        # the reference has no region tokens: compare at the same visual token count, i.e. the paper's model
        # (the `predict` group measures the shipped default, region tokens included)
        cfg.model.connector.box_tokens = 0
        return cfg
    if preset == "issue9":
        cfg = load_config("default")
        cfg.model.connector.box_tokens = 0
        cfg.model.encoder.image_size = 224  # 16 x 16 patches of 14 px
        cfg.model.connector.pool = 1  # 256 visual tokens
        cfg.model.llm.num_layers = None  # all 30 SmolLM2-135M layers
        cfg.model.llm.layers = None
        cfg.model.llm.lora = LoraConfig(r=16, alpha=32, dropout=0.0, target_modules=list(ALL_LORA))
        return cfg
    raise ValueError(preset)


def text_tokens(preset: str, tokenizer, task) -> tuple[list[int], list[int], list[list[int]]]:
    """(prompt ids before the image, after the image, answer ids per class) shared by SocialFusion and the
    reference. For issue9 the prompt is padded so that the reference sees 32 text tokens (prompt + answer)."""
    from socialfusion.models.llm import answer_ids, prompt_pieces

    cfg = preset_config(preset)
    pieces = prompt_pieces(tokenizer, task.instruction(), cfg.model.llm.use_chat_template)
    answers = [answer_ids(tokenizer, v) for v in task.verbalizers]
    pre, post = list(pieces.pre), list(pieces.post)
    if preset == "issue9":
        labels = [i % len(answers) for i in range(BATCH)]
        width = max(len(answers[c]) for c in labels)
        filler = tokenizer(" Please", add_special_tokens=False).input_ids
        need = 32 - width - len(pre) - len(post)
        post = (filler * need)[:need] + post if need > 0 else post
    return pre, post, answers


def make_batch(task, image_size: int, seed: int = 0) -> dict:
    """A batch of BATCH samples of `task` (labels 0, 1, 2, ... cycling over the classes, one role-0 box each, random
    pixels) built by the library's own `collate`, i.e. the batch the trainer feeds to `train_step`."""
    import torch

    from socialfusion.data.pipeline import collate
    from socialfusion.data.schema import Box, Sample

    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(BATCH):
        x, y = (torch.rand(2, generator=g) * 0.5).tolist()
        w, h = (0.2 + torch.rand(2, generator=g) * 0.3).tolist()
        sample = Sample(
            id=str(i),
            task=task.name,
            image=f"{i}.jpg",
            boxes=[Box((x, y, x + w, y + h), 0)],
            label=i % task.num_classes,
        )
        items.append({"sample": sample, "pixel_values": torch.randn(3, image_size, image_size, generator=g)})
    return collate(items, task)


class FlopCount:
    """Analytic FLOPs of one training step from the shapes the modules actually see (forward hooks).

    nn.Linear over N tokens: forward 2*N*in*out; backward 2*N*in*out for the input gradient if the input
    requires grad, plus 2*N*in*out for the weight gradient if the weight requires grad. Conv2d (patch
    embedding): 2 * output elements * in_channels * k*k, same backward rule. Attention (per attention module,
    from its input (B, S, d) and the query width h*d_head): forward 4*B*S^2*h*d_head (QK^T and PV; causal masks
    not discounted), backward twice that when its input requires grad. Norms, activations, softmax, RoPE,
    embedding lookups, the loss and the optimiser are not counted."""

    def __init__(self, model):
        from torch import nn

        self.rows = []
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                self.handles.append(mod.register_forward_hook(self._linear_hook(name)))
            elif type(mod).__name__.endswith("Attention") and not any(
                type(c).__name__.endswith("Attention") for c in mod.children()
            ):
                self.handles.append(mod.register_forward_hook(self._attn_hook(name, mod), with_kwargs=True))

    def _linear_hook(self, name):
        def hook(mod, inp, out):
            import torch.nn as nn

            x = inp[0]
            if isinstance(mod, nn.Linear):
                fwd = 2 * (x.numel() // mod.in_features) * mod.in_features * mod.out_features
            else:
                k = mod.kernel_size[0] * mod.kernel_size[1]
                fwd = 2 * out.numel() * (mod.in_channels // mod.groups) * k
            self.rows.append((name, fwd, bool(x.requires_grad), bool(mod.weight.requires_grad)))

        return hook

    def _attn_hook(self, name, mod):
        q = None
        for child_name in ("q_proj", "query"):
            q = getattr(mod, child_name, None)
            if q is not None:
                break
        if q is not None and not hasattr(q, "out_features"):  # a PEFT LoRA wrapper
            q = q.base_layer

        def hook(m, args, kwargs, out):
            x = args[0] if args else kwargs.get("hidden_states")
            if x is None or q is None:
                return
            b, s = x.shape[0], x.shape[1]
            self.rows.append((name + ":sdpa", 4 * b * s * s * q.out_features, bool(x.requires_grad), False))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def totals(self) -> dict:
        fwd = sum(r[1] for r in self.rows)
        dx = sum(r[1] * (2 if r[0].endswith(":sdpa") else 1) for r in self.rows if r[2])
        dw = sum(r[1] for r in self.rows if r[3])
        attn = sum(r[1] * (3 if r[2] else 1) for r in self.rows if r[0].endswith(":sdpa"))
        return {
            "forward": fwd,
            "backward_input": dx,
            "backward_weight": dw,
            "total": fwd + dx + dw,
            "attention": attn,
            "linear_conv": fwd + dx + dw - attn,
        }


class TrainWorker:
    """impl: sf | llava; input: features | pixels (sf only); precision fp32 | bf16.

    SocialFusion's step is the library's own `socialfusion.train.step.train_step` (what `socialfusion train` runs:
    zero_grad, forward under autocast, finite-loss check, backward, gradient all-reduce (a no-op in one process),
    clip, AdamW step, schedule step) on a batch built by `socialfusion.data.pipeline.collate`; the reference's step
    is written out here (zero_grad, forward, backward, clip, AdamW step)."""

    def __init__(self, spec: dict):
        import torch

        from socialfusion.models.llm import build_tokenizer
        from socialfusion.tasks import tasks_from_config

        self.spec = spec
        self.preset = spec["preset"]
        cfg = preset_config(self.preset)
        self.cfg = cfg
        self.precision = spec["precision"]
        tasks = tasks_from_config(cfg)
        task = tasks[TRAIN_TASK]
        torch.manual_seed(0)
        self.device = torch.device("cpu")
        if spec["impl"] == "sf":
            from socialfusion.models.factory import build_model
            from socialfusion.models.llm import PromptPieces
            from socialfusion.train.optim import build_optimizer, build_scheduler

            self.model = build_model(cfg.model, tasks=tasks)
            tok = self.model.tokenizer
            pre, post, answers = text_tokens(self.preset, tok, task)
            if (self.model.prompt(TRAIN_TASK).pre, self.model.prompt(TRAIN_TASK).post) != (pre, post):
                self.model._prompts[TRAIN_TASK] = PromptPieces(pre=pre, post=post)  # issue9: the padded prompt
            # the reference is built from the same token ids: make sure the model really uses them
            assert self.model.prompt(TRAIN_TASK) == PromptPieces(pre=pre, post=post), (
                "the model ignores the benchmark's prompt"
            )
            assert self.model.answers(TRAIN_TASK) == answers, "the model's verbalizer ids differ from the reference's"
            batch = make_batch(task, self.model.encoder.image_size)
            if spec["input"] == "features":
                # what the feature cache serves (the cache's disk read is not timed)
                batch = self.model.prepare_inputs(batch)
                assert "features" in batch and "pixel_values" not in batch, sorted(batch)
                batch["features"] = batch["features"].contiguous()
            self.batch = batch
            self.optimizer = build_optimizer(self.model, cfg.train)
            self.scheduler = build_scheduler(self.optimizer, cfg.train)
            self.n_visual = self.model.num_visual_tokens
            self.seq_info = {
                "visual_tokens": self.n_visual,
                "prompt_text_tokens": len(pre) + len(post),
                "answer_tokens_fed": max(len(answers[c]) for c in batch["labels"].tolist()) - 1,
                "lm_head_positions_per_sample": "answer tokens only",
            }
        else:
            tok = build_tokenizer(cfg.model.llm)
            pre, post, answers = text_tokens(self.preset, tok, task)
            self.model, self.n_visual, image_size = build_llava_reference(cfg, tok)
            labels = [i % len(answers) for i in range(BATCH)]
            width = max(len(answers[c]) for c in labels)
            image_id = self.model.config.image_token_id
            ids, lab, att = [], [], []
            for c in labels:
                a = answers[c]
                prompt = pre + [image_id] * self.n_visual + post
                pad = width - len(a)
                ids.append(prompt + a + [tok.pad_token_id] * pad)
                lab.append([-100] * len(prompt) + a + [-100] * pad)
                att.append([1] * (len(prompt) + len(a)) + [0] * pad)
            g = torch.Generator().manual_seed(0)
            self.batch = {
                "input_ids": torch.tensor(ids),
                "labels": torch.tensor(lab),
                "attention_mask": torch.tensor(att),
                "pixel_values": torch.randn(BATCH, 3, image_size, image_size, generator=g),
            }
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            self.optimizer = torch.optim.AdamW(
                trainable, lr=cfg.train.lr, betas=(0.9, 0.999), weight_decay=cfg.train.weight_decay
            )
            self.seq_info = {
                "visual_tokens": self.n_visual,
                "prompt_text_tokens": len(pre) + len(post),
                "answer_tokens_fed": width,
                "lm_head_positions_per_sample": "all",
            }
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.analytic = None
        self.model.train()
        self.info = {
            "trainable_parameters": sum(p.numel() for p in self.params),
            "total_parameters": sum(p.numel() for p in self.model.parameters()),
            **self.seq_info,
        }

    def _step(self) -> float:
        """One optimiser step; returns the loss."""
        import torch

        if self.spec["impl"] == "sf":
            from socialfusion.train.step import train_step

            result = train_step(
                self.model,
                [self.batch],
                self.optimizer,
                self.scheduler,
                {TRAIN_TASK: 1.0},
                self.device,
                self.precision,
                self.cfg.train.grad_clip,
                accumulation=1,
            )
            return result.loss
        from socialfusion.runtime import autocast

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.precision):
            loss = self.model(**self.batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.train.grad_clip)
        self.optimizer.step()
        return float(loss)

    def _backward(self) -> None:
        """Forward + backward only (the FlopCounterMode cross-check)."""
        if self.spec["impl"] == "sf":
            from socialfusion.train.step import task_backward

            task_backward(self.model, self.batch, 1.0, self.device, self.precision)
            return
        from socialfusion.runtime import autocast

        with autocast(self.device, self.precision):
            loss = self.model(**self.batch).loss
        loss.backward()

    def run(self, arg=None) -> dict:
        """`steps_per_unit` optimiser steps (the parent divides the time by it)."""
        for _ in range(int(self.spec.get("steps_per_unit", 1))):
            # the first step ever (a warm-up step) also counts the FLOPs analytically (forward hooks, no cost)
            fc = FlopCount(self.model) if self.analytic is None else None
            try:
                loss = self._step()
            finally:
                if fc is not None:
                    fc.remove()
            if fc is not None:
                self.analytic = fc.totals()
        return {"loss": float(loss)}

    def flops(self, check: bool = False) -> dict:
        """The analytic count of the first step; with `check`, torch's FlopCounterMode on one more forward +
        backward (no optimiser step) as a cross-check."""
        from torch.utils.flop_counter import FlopCounterMode

        out = dict(self.analytic)
        if check:
            counter = FlopCounterMode(display=False)
            self.optimizer.zero_grad(set_to_none=True)
            with counter:
                self._backward()
            self.optimizer.zero_grad(set_to_none=True)
            out["flop_counter_mode_total"] = int(counter.get_total_flops())
        return out


def build_llava_reference(cfg, tokenizer):
    """LlavaForConditionalGeneration + PEFT LoRA with SocialFusion's encoder config, LLM config (same layers),
    visual token count (the projector is preceded by the same k x k average pooling SocialFusion's connector
    uses), LoRA r/alpha/targets on the language model only, frozen vision tower, trainable projector."""
    import math

    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration

    from socialfusion.models.llm import kept_layers
    from socialfusion.models.loading import load_arch, resolve_pretrained

    m = cfg.model
    vc = (
        AutoConfig.from_pretrained(resolve_pretrained(m.encoder.pretrained))
        if m.encoder.pretrained
        else load_arch(m.encoder.arch)
    )
    vc = getattr(vc, "vision_config", None) or vc
    tc = AutoConfig.from_pretrained(resolve_pretrained(m.llm.pretrained)) if m.llm.pretrained else load_arch(m.llm.arch)
    if m.llm.tokenizer == "tiny":
        tc.vocab_size = len(tokenizer)
    keep = kept_layers(m.llm, tc.num_hidden_layers)  # llm.num_layers / llm.layers, as SocialFusion's LLM
    if keep is not None:
        # random init: only the number of layers matters (and, for a model with per-layer attention types, which)
        if getattr(tc, "layer_types", None):
            tc.layer_types = [tc.layer_types[i] for i in keep]
        tc.num_hidden_layers = len(keep)
    image_size = int(m.encoder.image_size or vc.image_size)
    grid = image_size // vc.patch_size
    out_grid = math.ceil(grid / m.connector.pool)
    image_token_id = tc.vocab_size - 1  # an existing id that no prompt or answer of ours uses
    lcfg = LlavaConfig(
        vision_config=vc.to_dict(),
        text_config=tc.to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=m.encoder.layer,
        vision_feature_select_strategy="default",  # drop CLS, like SocialFusion's encoder wrapper
        projector_hidden_act="gelu",
        tie_word_embeddings=bool(getattr(tc, "tie_word_embeddings", False)),
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(lcfg)

    class PooledProjector(nn.Module):
        """k x k average pooling of the patch grid, then LLaVA's own 2-layer GELU MLP projector."""

        def __init__(self, proj):
            super().__init__()
            self.proj = proj

        def forward(self, x):
            if out_grid != grid:
                b, n, d = x.shape
                g = x.transpose(1, 2).reshape(b, d, grid, grid)
                x = F.adaptive_avg_pool2d(g, (out_grid, out_grid)).flatten(2).transpose(1, 2)
            return self.proj(x)

    model.model.multi_modal_projector = PooledProjector(model.model.multi_modal_projector)
    targets = "|".join(m.llm.lora.target_modules)
    lora = LoraConfig(
        r=m.llm.lora.r,
        lora_alpha=m.llm.lora.alpha,
        lora_dropout=m.llm.lora.dropout,
        target_modules=rf".*language_model.*\.({targets})",
        bias="none",
    )
    model = get_peft_model(model, lora)
    for p in model.base_model.model.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    for p in model.base_model.model.model.vision_tower.parameters():
        assert not p.requires_grad
    return model, out_grid * out_grid, image_size


class ClassifyWorker:
    """method: score (model.score_classes) | generate (llm.generate on the same prefix + parse)."""

    TASKS = ("gesture", "expression")

    def __init__(self, spec: dict):
        import torch

        from socialfusion.models.factory import build_model
        from socialfusion.tasks import tasks_from_config

        self.spec = spec
        cfg = preset_config(spec["preset"])
        self.model = build_model(cfg.model, tasks=tasks_from_config(cfg)).eval()
        self.tok = self.model.tokenizer
        self.batches = {}
        for name in self.TASKS:
            b = make_batch(self.model.tasks[name], self.model.encoder.image_size, seed=1)
            with torch.no_grad():
                b["features"] = self.model.encode(b["pixel_values"]).contiguous()
            self.batches[name] = b
        self.paths = {}
        for name in self.TASKS:
            answers = self.model.answers(name)
            firsts = [a[0] for a in answers]
            self.paths[name] = "fast" if len(set(firsts)) == len(firsts) else "full"
        self.info = {
            "paths": self.paths,
            "classes": {n: self.model.tasks[n].num_classes for n in self.TASKS},
            "max_new_tokens": {n: self._max_new(n) for n in self.TASKS},
        }

    def _max_new(self, name: str) -> int:
        """The longest verbalizer, in tokens, without the EOS the scorer appends."""
        return max(len(a) - 1 for a in self.model.answers(name))

    def parse(self, name: str, texts: list[str]) -> list[int]:
        verbs = [v.lower() for v in self.model.tasks[name].verbalizers]
        out = []
        for t in texts:
            t = t.strip().lower().rstrip(".")
            if t in verbs:
                out.append(verbs.index(t))
                continue
            hits = [i for i, v in enumerate(verbs) if t.startswith(v) or (t and v.startswith(t))]
            out.append(max(hits, key=lambda i: len(verbs[i])) if hits else -1)
        return out

    def run(self, arg: str) -> dict:
        import torch

        method, name = self.spec["method"], arg
        if name == "encode":
            with torch.no_grad():
                self.model.encode(self.batches["expression"]["pixel_values"])
            return {}
        batch = self.batches[name]
        if method == "score":
            scores = self.model.score_classes(batch)
            return {"pred": scores.argmax(-1).tolist()}
        with torch.no_grad():
            visual = self.model.visual_tokens(batch)
            prefix, _ = self.model._prefix(name, visual)
            gen = self.model.llm.generate(
                inputs_embeds=prefix,
                attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
                max_new_tokens=self._max_new(name),
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        texts = self.tok.batch_decode(gen, skip_special_tokens=True)
        pred = self.parse(name, texts)
        return {
            "pred": pred,
            "generated_tokens": int(gen.shape[1]),
            "parsed": sum(p >= 0 for p in pred),
            "sample_text": texts[0],
        }


class PredictWorker:
    """api.predict on one image: arg 'all' or one task name."""

    def __init__(self, spec: dict):
        import numpy as np
        from PIL import Image

        from socialfusion.api import SocialFusion

        self.sf = SocialFusion.from_pretrained(spec["preset"], device="cpu")
        rng = np.random.default_rng(0)
        self.image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        # a box of every kind (face, hand and head share the first person's box), so that every task runs
        self.boxes = [{"xyxy": [100, 80, 300, 400], "kind": k} for k in ("face", "hand", "head", "person")] + [
            {"xyxy": [320, 60, 560, 420], "kind": "person"}
        ]
        [r] = self.sf.predict(self.image, self.boxes, tasks="all")
        skipped = [k for k, v in r["tasks"].items() if "skipped" in v]
        assert not skipped, skipped
        self.info = {"tasks": self.sf.task_names, "image": "640x480 RGB", "boxes": self.boxes}

    def run(self, arg: str) -> dict:
        [r] = self.sf.predict(self.image, self.boxes, tasks="all" if arg == "all" else [arg])
        return {"tasks": len(r["tasks"])}


class MatmulWorker:
    """arg fp32: torch.matmul of two 2048 x 2048 fp32 matrices. arg bf16: F.linear(a, b) of 2048 x 2048 bf16
    matrices (torch.matmul in bf16 takes a slow fallback on this CPU, see `info`), i.e. the nn.Linear kernel."""

    N = 2048

    def __init__(self, spec: dict):
        import torch
        import torch.nn.functional as F

        g = torch.Generator().manual_seed(0)
        self.a32 = torch.randn(self.N, self.N, generator=g)
        self.b32 = torch.randn(self.N, self.N, generator=g)
        self.a16, self.b16 = self.a32.bfloat16(), self.b32.bfloat16()
        self.info = {"n": self.N}
        if spec.get("bf16_matmul_probe"):
            n = 512
            a, b = self.a16[:n, :n].contiguous(), self.b16[:n, :n].contiguous()
            torch.matmul(a, b)
            ts = []
            for _ in range(3):
                t = time.perf_counter()
                torch.matmul(a, b)
                ts.append(time.perf_counter() - t)
            self.info["bf16_torch_matmul_512_gflops"] = 2 * n**3 / statistics.median(ts) / 1e9
        self.F = F

    def run(self, arg: str) -> dict:
        import torch

        if arg == "fp32":
            torch.matmul(self.a32, self.b32)
        else:
            self.F.linear(self.a16, self.b16)
        return {"flops": 2 * self.N**3}


WORKERS = {"train": TrainWorker, "classify": ClassifyWorker, "predict": PredictWorker, "matmul": MatmulWorker}


def profile_unit(worker, arg, rows: int = 18) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        worker.run(arg)
    ka = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ka)
    top = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {
        "total_self_cpu_ms": total / 1000,
        "top": [
            {
                "op": e.key,
                "self_cpu_ms": round(e.self_cpu_time_total / 1000, 2),
                "share": round(e.self_cpu_time_total / max(total, 1), 4),
                "calls": e.count,
            }
            for e in top
        ],
        "table": ka.table(sort_by="self_cpu_time_total", row_limit=rows),
    }


def worker_main(msg: dict) -> None:
    """A worker process: {"workers": {key: spec}, "threads": n}. Measured runs hold one worker per process; --smoke
    holds all of them in one (the imports, not the work, are what a tiny run's time goes to)."""
    import gc
    import resource
    import traceback

    import torch

    stdin, proto = _proto_streams()
    if msg.get("threads"):
        torch.set_num_threads(int(msg["threads"]))
    workers, setup = {}, {}
    for key, spec in msg["workers"].items():
        t0 = time.perf_counter()
        try:
            workers[key] = WORKERS[spec["kind"]](spec)
        except Exception as err:  # report, then die
            traceback.print_exc()
            proto.write(json.dumps({"error": f"{key}: {type(err).__name__}: {err}"}) + "\n")
            return
        gc.collect()
        setup[key] = {"setup_s": time.perf_counter() - t0, "info": getattr(workers[key], "info", {})}
    rss_ready = _rss_kb()
    peak_reset = _reset_peak()
    proto.write(json.dumps({"ready": True, "workers": setup, "threads": torch.get_num_threads()}) + "\n")
    for line in stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        worker = workers.get(msg.get("worker"))
        try:
            if cmd == "run":
                c0, w0 = time.process_time(), time.perf_counter()
                extra = worker.run(msg.get("arg"))
                wall = time.perf_counter() - w0
                reply = {"t": wall, "cpu": time.process_time() - c0, "extra": extra}
            elif cmd == "flops":
                reply = worker.flops(check=msg.get("arg") == "check")
            elif cmd == "profile":
                reply = profile_unit(worker, msg.get("arg"))
            elif cmd == "stats":
                rss = _rss_kb()
                reply = {
                    "rss_after_setup_mb": rss_ready["VmRSS"] / 1024,
                    "peak_rss_during_measurement_mb": rss["VmHWM"] / 1024 if peak_reset else None,
                    "peak_rss_process_lifetime_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "rss_now_mb": rss["VmRSS"] / 1024,
                }
                if reply["peak_rss_during_measurement_mb"] is not None:
                    reply["peak_minus_setup_mb"] = reply["peak_rss_during_measurement_mb"] - reply["rss_after_setup_mb"]
            elif cmd == "exit":
                proto.write(json.dumps({"bye": True}) + "\n")
                return
            else:
                reply = {"error": f"unknown command {cmd}"}
        except Exception as err:
            traceback.print_exc()
            reply = {"error": f"{type(err).__name__}: {err}"}
        proto.write(json.dumps(reply) + "\n")


# ================================================================================================ parent side


class Host:
    """A worker process holding the workers `specs` ({key: spec}): one in a measured run, all of them in --smoke."""

    def __init__(self, name: str, specs: dict[str, dict], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TRANSFORMERS_VERBOSITY="error",
            TQDM_DISABLE="1",
            PYTHONWARNINGS="ignore",
        )
        if OMP_WAIT_POLICY:
            env["OMP_WAIT_POLICY"] = OMP_WAIT_POLICY
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                json.dumps({"workers": specs, "threads": THREADS}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
            cwd=str(ROOT),
            env=env,
        )
        self.ready = self._read()
        if "error" in self.ready:
            self.close()
            raise RuntimeError(f"worker {name} failed to start: {self.ready['error']} (log: {self.log_path})")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            tail = self.log_path.read_text()[-3000:]
            raise RuntimeError(f"worker {self.name} died (rc={self.proc.poll()}); log tail:\n{tail}")
        return json.loads(line)

    def ask(self, worker: str | None, cmd: str, arg=None) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, "arg": arg, "worker": worker}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"worker {worker or self.name}: {cmd} {arg}: {reply['error']} (log: {self.log_path})")
        return reply

    def close(self):
        try:
            self.ask(None, "exit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Worker:
    """One configuration: its own process (`Host`), or its place in a shared one (`host`, --smoke)."""

    def __init__(self, name: str, spec: dict, log_dir: Path, host: Host | None = None):
        self.name, self.spec = name, spec
        self.own = host is None
        self.host = Host(name, {name: spec}, log_dir) if host is None else host
        setup = self.host.ready["workers"][name]
        self.ready = {"setup_s": setup["setup_s"], "info": setup["info"], "threads": self.host.ready["threads"]}

    def ask(self, cmd: str, arg=None) -> dict:
        return self.host.ask(self.name, cmd, arg)

    def close(self):
        if self.own:
            self.host.close()


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def summarize(ts: list[float]) -> dict:
    s = sorted(ts)
    n = len(s)
    q = statistics.quantiles(s, n=4, method="inclusive") if n >= 2 else [s[0], s[0], s[0]]
    return {"n": n, "median": statistics.median(s), "min": s[0], "max": s[-1], "q1": q[0], "q3": q[2], "all": ts}


def run_group(
    name: str,
    workers: dict[str, dict],
    units: list[tuple[str, object]],
    warmup: int,
    repeats: int,
    log_dir: Path,
    extra_cmds: list[tuple[str, str, object]] = (),
    preset: str | None = None,
    host: Host | None = None,
) -> dict:
    """Start the workers one by one, each in its own process (or find them in `host`, a process that already holds
    them: --smoke), then `warmup` + `repeats` rounds over `units` (worker, arg), rotating the order every round;
    each unit's wall time is recorded. Then extra commands (flops, profile) and memory."""
    print(
        f"\n== {name}: {len(workers)} workers, {len(units)} units x ({warmup} warm-up + {repeats}) rounds", flush=True
    )
    group = {"name": name, "load_start": loadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if preset:
        group["preset"] = preset
    busy0, total0 = cpu_jiffies()
    t_start = time.perf_counter()
    live: dict[str, Worker] = {}
    try:
        for wname, spec in workers.items():
            live[wname] = Worker(f"{name}.{wname}", spec, log_dir, host)
            print(
                f"   {'started' if host is None else 'found'} {wname} (setup {live[wname].ready['setup_s']:.1f}s)",
                flush=True,
            )
        group["worker_specs"] = {w: live[w].spec for w in live}
        times: dict[str, list[float]] = {f"{w}:{a}": [] for w, a in units}
        cpus: dict[str, list[float]] = {k: [] for k in times}
        extras: dict[str, list] = {k: [] for k in times}
        busy_m0, total_m0 = cpu_jiffies()
        for r in range(warmup + repeats):
            k = r % len(units)
            order = units[k:] + units[:k]
            for w, a in order:
                reply = live[w].ask("run", a)
                key = f"{w}:{a}"
                if r >= warmup:
                    steps = int(live[w].spec.get("steps_per_unit", 1))
                    times[key].append(reply["t"] / steps)
                    cpus[key].append(reply["cpu"] / steps)
                    extras[key].append(reply["extra"])
            tag = "warm-up" if r < warmup else f"round {r - warmup + 1}/{repeats}"
            print(
                f"   {tag}: "
                + ", ".join(f"{w}:{a}={times[f'{w}:{a}'][-1]:.3f}s" if r >= warmup else f"{w}:{a}" for w, a in units),
                flush=True,
            )
        busy_m1, total_m1 = cpu_jiffies()
        group["results"] = {
            k: {
                **summarize(v),
                "cpu_per_wall_median": statistics.median(c / t for c, t in zip(cpus[k], v)),
                "extra_last": extras[k][-1],
            }
            for k, v in times.items()
        }
        group["machine_busy_during_measurement"] = (busy_m1 - busy_m0) / max(1, total_m1 - total_m0)
        group["worker_setup"] = {
            w: {"setup_s": live[w].ready["setup_s"], "info": live[w].ready["info"], "threads": live[w].ready["threads"]}
            for w in live
        }
        group["extra"] = {}
        for w, cmd, arg in extra_cmds:
            print(f"   {cmd} {w} {arg or ''}", flush=True)
            group["extra"][f"{w}:{cmd}:{arg}"] = live[w].ask(cmd, arg)
        group["memory"] = {w: live[w].ask("stats") for w in live}
    finally:
        for w in live.values():
            w.close()
    busy1, total1 = cpu_jiffies()
    group["wall_s"] = time.perf_counter() - t_start
    group["load_end"] = loadavg()
    group["machine_busy_whole_group"] = (busy1 - busy0) / max(1, total1 - total0)
    return group


def machine_info() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in (
                "Model name",
                "CPU(s)",
                "Thread(s) per core",
                "Core(s) per socket",
                "Socket(s)",
                "L2 cache",
                "L3 cache",
                "Hypervisor vendor",
            ):
                info[key.strip()] = value.strip()
            if key.strip() == "Flags":
                flags = value.split()
                info["simd_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except (OSError, subprocess.SubprocessError):
        pass
    info["mem_total_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["mkldnn_bf16_supported"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    from socialfusion.numerics import precision_facts

    info["precision"] = precision_facts()  # the same facts `socialfusion --version` prints
    import importlib.metadata as md

    for pkg in ("transformers", "peft", "numpy"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "absent"
    try:
        info["git_revision"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        info["src_uncommitted_changes"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            info[var] = os.environ[var]
    return info


# ------------------------------------------------------------------------------------------------ plans


def train_group(
    preset: str,
    variants: list[tuple[str, str, str]],
    warmup: int,
    repeats: int,
    matmul: list[str],
    flop_check: bool,
    profile: list[str],
    steps_per_unit: int = 1,
    name: str | None = None,
) -> dict:
    workers = {}
    for impl, inp, prec in variants:
        wname = f"{impl}-{inp}-{prec}" if impl == "sf" else f"llava-{prec}"
        workers[wname] = {
            "kind": "train",
            "impl": impl,
            "input": inp,
            "precision": prec,
            "preset": preset,
            "steps_per_unit": steps_per_unit,
        }
    units = [(w, None) for w in workers]
    if matmul:
        workers["matmul"] = {"kind": "matmul", "bf16_matmul_probe": "bf16" in matmul}
        units += [("matmul", d) for d in matmul]
    extra = []
    extra += [(w, "flops", "check" if flop_check else None) for w in workers if w != "matmul"]
    extra += [(w, "profile", None) for w in profile]
    return {
        "name": name or f"train-{preset}",
        "workers": workers,
        "units": units,
        "warmup": warmup,
        "repeats": repeats,
        "extra_cmds": extra,
        "preset": preset,
    }


def classify_group(preset: str, warmup: int, repeats: int, profile: bool) -> dict:
    workers = {
        "score": {"kind": "classify", "method": "score", "preset": preset},
        "generate": {"kind": "classify", "method": "generate", "preset": preset},
    }
    units = [
        ("score", "gesture"),
        ("generate", "gesture"),
        ("score", "expression"),
        ("generate", "expression"),
        ("score", "encode"),
    ]
    extra = (
        [
            ("score", "profile", "gesture"),
            ("generate", "profile", "gesture"),
            ("score", "profile", "expression"),
            ("generate", "profile", "expression"),
        ]
        if profile
        else []
    )
    return {
        "name": "classify",
        "workers": workers,
        "units": units,
        "warmup": warmup,
        "repeats": repeats,
        "extra_cmds": extra,
        "preset": preset,
    }


def predict_group(preset: str, warmup: int, repeats: int, profile: bool) -> dict:
    workers = {"all": {"kind": "predict", "preset": preset}, "single": {"kind": "predict", "preset": preset}}
    units = [("all", "all")] + [("single", t) for t in ("lam", "expression", "gesture", "relation", "gaze")]
    extra = [("all", "profile", "all"), ("single", "profile", "expression")] if profile else []
    return {
        "name": "predict",
        "workers": workers,
        "units": units,
        "warmup": warmup,
        "repeats": repeats,
        "extra_cmds": extra,
        "preset": preset,
    }


def plan(quick: bool, extended: bool, only: set[str] | None) -> list[dict]:
    """The groups (run_group's arguments), in order. Full: train-tiny, train-default (fp32), classify, predict,
    train-issue9 (reference and SF with cache). --extended adds train-default-bf16 and SF without cache to
    train-issue9 (about +6 min on this CPU, whose bf16 backward matmuls run at ~1 GFLOP/s)."""
    groups = []

    def want(name):
        return (only is None and (extended or name != "train-default-bf16")) or (only is not None and name in only)

    fp32 = [("sf", "features", "fp32"), ("sf", "pixels", "fp32"), ("llava", "pixels", "fp32")]
    if want("train-tiny"):
        prof = [] if quick else ["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        groups.append(
            train_group(
                "tiny",
                fp32,
                1 if quick else 2,
                4 if quick else 15,
                ["fp32"],
                flop_check=True,
                profile=prof,
                steps_per_unit=5,
            )
        )
    if want("train-default"):
        prof = [] if quick else ["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        groups.append(train_group("default", fp32, 1, 2 if quick else 6, ["fp32"], flop_check=True, profile=prof))
    if want("train-default-bf16"):
        v = [
            ("sf", "features", "fp32"),
            ("llava", "pixels", "fp32"),
            ("sf", "features", "bf16"),
            ("llava", "pixels", "bf16"),
        ]
        groups.append(
            train_group(
                "default",
                v,
                1,
                2,
                ["fp32", "bf16"],
                flop_check=False,
                profile=["sf-features-bf16"],
                name="train-default-bf16",
            )
        )
    if want("classify"):
        groups.append(classify_group("default", 1 if quick else 2, 3 if quick else 10, profile=not quick))
    if want("predict"):
        groups.append(predict_group("default", 1, 2 if quick else 8, profile=not quick))
    if want("train-issue9") and not (quick and only is None):
        v = [("llava", "pixels", "fp32"), ("sf", "features", "fp32")] + ([("sf", "pixels", "fp32")] if extended else [])
        groups.append(train_group("issue9", v, 1, 2 if quick else 3, ["fp32"], flop_check=False, profile=[]))
    return groups


def smoke_plan() -> list[dict]:
    """--smoke: every worker kind of the full run (`worker_kind`), each at the `tiny` preset (random init, no
    download), one measured round and no warm-up, with the FLOP cross-check and a profile of every worker but
    the matmul, workers started concurrently. It checks that the harness runs, not how fast anything is."""
    fp32 = [("sf", "features", "fp32"), ("sf", "pixels", "fp32"), ("llava", "pixels", "fp32")]
    return [
        train_group(
            "tiny", fp32, 0, 1, ["fp32"], flop_check=True, profile=["sf-features-fp32", "sf-pixels-fp32", "llava-fp32"]
        ),
        classify_group("tiny", 0, 1, profile=True),
        predict_group("tiny", 0, 1, profile=True),
    ]


def worker_kind(spec: dict) -> str:
    """What a worker measures, independent of preset, precision and size: train:sf-features, train:sf-pixels,
    train:llava, matmul, classify:score, classify:generate, predict."""
    if spec["kind"] == "train":
        return "train:" + (f"sf-{spec['input']}" if spec["impl"] == "sf" else spec["impl"])
    if spec["kind"] == "classify":
        return f"classify:{spec['method']}"
    return spec["kind"]


def plan_kinds(groups: list[dict]) -> list[str]:
    return sorted({worker_kind(spec) for g in groups for spec in g["workers"].values()})


def kinds_measured(groups: list[dict]) -> dict:
    """{kind: {"<group>.<worker>:<arg>": median seconds}} over the groups that ran."""
    out: dict[str, dict] = {}
    for g in groups:
        for key, res in g["results"].items():
            w = key.split(":", 1)[0]
            out.setdefault(worker_kind(g["worker_specs"][w]), {})[f"{g['name']}.{key}"] = res["median"]
    return dict(sorted(out.items()))


def run_plan(groups: list[dict], log_dir: Path, one_process: bool = False) -> list[dict]:
    """Run the groups in order; `one_process` (--smoke): every worker of every group in one process, started once."""
    if not one_process:
        return [run_group(log_dir=log_dir, **g) for g in groups]
    specs = {f"{g['name']}.{w}": spec for g in groups for w, spec in g["workers"].items()}
    print(f"starting one worker process for {len(specs)} workers", flush=True)
    host = Host("all-workers", specs, log_dir)
    try:
        return [run_group(log_dir=log_dir, host=host, **g) for g in groups]
    finally:
        host.close()


# ------------------------------------------------------------------------------------------------ analysis


def _med(group: dict, key: str) -> float:
    return group["results"][key]["median"]


def analyse(groups: list[dict]) -> dict:
    """Ratios from medians and the targets of the issue."""
    out = {"train": {}, "classify": {}, "predict": {}, "targets": []}
    by = {g["name"]: g for g in groups}

    def target(name, value, op, threshold, applicable=True, note=""):
        met = (value >= threshold) if op == ">=" else (value <= threshold)
        out["targets"].append(
            {
                "target": name,
                "value": value,
                "op": op,
                "threshold": threshold,
                "met": bool(met),
                "applicable": applicable,
                "note": note,
            }
        )

    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        g = by.get(gname)
        if not g:
            continue
        preset = gname.removeprefix("train-")
        bf16_group = gname.endswith("-bf16")
        res = g["results"]
        peak = {d: 2 * 2048**3 / _med(g, f"matmul:{d}") for d in ("fp32", "bf16") if f"matmul:{d}" in res}
        rows = {}
        for key in res:
            w, _ = key.split(":", 1)
            if w == "matmul":
                continue
            prec = w.rsplit("-", 1)[1]
            t = _med(g, key)
            fl = g.get("extra", {}).get(f"{w}:flops:None") or g.get("extra", {}).get(f"{w}:flops:check")
            row = {
                "step_s": t,
                "samples_per_s": BATCH / t,
                "min_s": res[key]["min"],
                "max_s": res[key]["max"],
                "n": res[key]["n"],
            }
            if fl:
                row["flops_per_step"] = fl["total"]
                if "flop_counter_mode_total" in fl:
                    row["flop_counter_mode"] = fl["flop_counter_mode_total"]
                row["flops_linear_conv"] = fl["linear_conv"]
                row["flops_attention"] = fl["attention"]
                row["achieved_gflops"] = fl["total"] / t / 1e9
                if prec in peak:
                    row["peak_gflops"] = peak[prec] / 1e9
                    row["mfu"] = fl["total"] / t / peak[prec]
            rows[w] = row
        out["train"][preset] = {"rows": rows, "peak_gflops": {d: v / 1e9 for d, v in peak.items()}}
        ref = rows.get("llava-fp32")
        if ref:
            for row in rows.values():
                row["speedup_vs_llava_fp32"] = ref["step_s"] / row["step_s"]
            if "llava-bf16" in rows:
                for w in ("sf-features-bf16", "sf-pixels-bf16"):
                    if w in rows:
                        rows[w]["speedup_vs_llava_bf16"] = rows["llava-bf16"]["step_s"] / rows[w]["step_s"]
            if not bf16_group:
                target(
                    f"{preset}: train fp32, SF with feature cache vs LLaVA+PEFT",
                    ref["step_s"] / rows["sf-features-fp32"]["step_s"],
                    ">=",
                    1.3,
                )
            if "sf-pixels-fp32" in rows:
                target(
                    f"{preset}: train fp32, SF without cache vs LLaVA+PEFT",
                    ref["step_s"] / rows["sf-pixels-fp32"]["step_s"],
                    ">=",
                    1.0,
                )
            for w in ("sf-features-bf16", "sf-pixels-bf16"):
                if w in rows:
                    target(
                        f"{preset}: train bf16 autocast "
                        f"({'cache' if 'features' in w else 'no cache'}) vs fp32 LLaVA+PEFT",
                        ref["step_s"] / rows[w]["step_s"],
                        ">=",
                        2.0,
                        applicable=False,
                        note="target is for a CPU with native bf16; "
                        "this one has none (no AVX-512/AMX, mkldnn bf16 unsupported)",
                    )
            for w, row in rows.items():
                if w.startswith("sf") and "mfu" in row:
                    prec = w.rsplit("-", 1)[1]
                    if bf16_group and prec == "fp32":
                        continue
                    target(f"{preset}: MFU {w} >= 50% of {prec} matmul peak", row["mfu"], ">=", 0.5)
                    refw = f"llava-{prec}"
                    if refw in rows and "mfu" in rows[refw]:
                        target(
                            f"{preset}: MFU {w} >= reference's MFU ({rows[refw]['mfu']:.1%})",
                            row["mfu"] / rows[refw]["mfu"],
                            ">=",
                            1.0,
                            note="value = SF MFU / reference MFU",
                        )
    g = by.get("classify")
    if g:
        for task in ClassifyWorker.TASKS:
            s, gen = _med(g, f"score:{task}"), _med(g, f"generate:{task}")
            path = g["worker_setup"]["score"]["info"]["paths"][task]
            out["classify"][task] = {"score_s": s, "generate_s": gen, "speedup": gen / s, "path": path}
            target(f"classify {task} ({path} path): generate+parse / score_classes", gen / s, ">=", 3.0)
        out["classify"]["encode_s"] = _med(g, "score:encode")
    g = by.get("predict")
    if g:
        singles = {k.split(":", 1)[1]: v["median"] for k, v in g["results"].items() if k.startswith("single:")}
        all5 = _med(g, "all:all")
        mean_one = statistics.mean(singles.values())
        out["predict"] = {
            "all_s": all5,
            "single_s": singles,
            "sum_single_s": sum(singles.values()),
            "mean_single_s": mean_one,
            "max_single_s": max(singles.values()),
        }
        target("predict: five tasks in one call / mean single-task call", all5 / mean_one, "<=", 2.0)
        target(
            "predict: five tasks in one call / slowest single-task call",
            all5 / max(singles.values()),
            "<=",
            2.0,
            note="stricter reading: vs the slowest one-task call",
        )
    return out


# ------------------------------------------------------------------------------------------------ report


def _fmt_s(r: dict) -> str:
    return f"{r['median']:.3f} [{r['min']:.3f}-{r['max']:.3f}]"


def render(report: dict) -> str:
    g_by = {g["name"]: g for g in report["groups"]}
    a = report["analysis"]
    m = report["machine"]
    L = []
    L.append(
        f"Run: `{report['command']}` ({report['mode']}), "
        f"{report['started']} -> {report['finished']}, {report['wall_s'] / 60:.1f} min wall."
    )
    L.append("")
    if report["mode"] == "smoke":
        L.append(
            "**Smoke run**: it checks that the harness runs (every worker kind, the tiny preset, one round, all "
            "workers in one process); its times are not measurements and its targets mean nothing."
        )
        L.append("")
    L.append(
        f"Machine: {m.get('Model name')} ({m.get('CPU(s)')} CPUs, {m.get('Hypervisor vendor', 'bare metal')} guest), "
        f"SIMD flags {', '.join(m.get('simd_flags', []))}; torch {m['torch']} ({m['torch_cpu_capability']}, "
        f"{m['torch_threads']} threads, mkldnn bf16 supported: {m['mkldnn_bf16_supported']}, precision auto -> "
        f"{m.get('precision', {}).get('cpu_auto_precision', '?')}), transformers {m['transformers']}, "
        f"peft {m['peft']}; "
        f"git {m.get('git_revision')}{' + uncommitted src changes' if m.get('src_uncommitted_changes') else ''}."
    )
    L.append("")
    L.append(
        "Times are medians over the measured rounds with [min-max]; every ratio is a ratio of medians from the same "
        "interleaved run. `busy` is the fraction of the machine's CPU time that was busy during the measured "
        "rounds (ours + others); `cpu/wall` is the worker's process CPU time per wall second (2.0 = both cores)."
    )
    L.append("")
    L.append("### Targets")
    L.append("")
    L.append("| target | measured | needed | met |")
    L.append("|---|---|---|---|")
    for t in a["targets"]:
        is_mfu = t["target"].split(": ")[1].startswith("MFU") and "reference" not in t["target"]
        val = f"{t['value']:.1%}" if is_mfu else f"{t['value']:.2f}x"
        thr = f"{t['threshold']:.0%}" if is_mfu else f"{t['threshold']:.1f}x"
        met = "yes" if t["met"] else "**no**"
        if not t["applicable"]:
            met += " (n/a on this CPU)"
        L.append(f"| {t['target']} | {val} | {t['op']} {thr} | {met} |")
    for gname in ("train-tiny", "train-default", "train-default-bf16", "train-issue9"):
        g = g_by.get(gname)
        if not g:
            continue
        preset = gname.removeprefix("train-")
        tr = a["train"][preset]
        L.append("")
        L.append(f"### Training step, `{preset}` (preset `{g.get('preset', preset)}`, batch {BATCH})")
        L.append("")
        info = g["worker_setup"]
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}; "
            f"{g['results'][next(iter(g['results']))]['n']} measured "
            f"rounds after warm-up; group wall {g['wall_s']:.0f}s."
        )
        L.append("")
        L.append(
            "| configuration | step s, median [min-max] | samples/s | vs LLaVA fp32 | "
            "GFLOP/step | GFLOP/s | MFU | cpu/wall | peak RSS MB (delta) | visual + text tokens |"
        )
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for w, row in tr["rows"].items():
            res = g["results"][f"{w}:None"]
            mem = g["memory"][w]
            wi = info[w]["info"]
            tokens = f"{wi['visual_tokens']} + {wi['prompt_text_tokens']}+{wi['answer_tokens_fed']}"
            fl = f"{row['flops_per_step'] / 1e9:.1f}" if "flops_per_step" in row else "-"
            gf = f"{row['achieved_gflops']:.1f}" if "achieved_gflops" in row else "-"
            mfu = f"{row['mfu']:.1%}" if "mfu" in row else "-"
            L.append(
                f"| {w} | {_fmt_s(res)} | {row['samples_per_s']:.2f} | "
                f"{row.get('speedup_vs_llava_fp32', float('nan')):.2f}x | {fl} | {gf} | {mfu} | "
                f"{res['cpu_per_wall_median']:.2f} | {mem['peak_rss_during_measurement_mb']:.0f} "
                f"(+{mem['peak_minus_setup_mb']:.0f}) | {tokens} |"
            )
        for d, v in tr["peak_gflops"].items():
            res = g["results"][f"matmul:{d}"]
            op = "torch.matmul fp32" if d == "fp32" else "F.linear bf16 (nn.Linear's kernel)"
            L.append(
                f"| peak: 2048x2048 {op} | {_fmt_s(res)} | | | 17.2 | "
                f"{v:.1f} | 100% | {res['cpu_per_wall_median']:.2f} | | |"
            )
        probe = info.get("matmul", {}).get("info", {}).get("bf16_torch_matmul_512_gflops")
        if probe:
            L.append("")
            L.append(
                f"torch.matmul in bf16 on this CPU: {probe:.2f} GFLOP/s at 512x512 "
                "(a slow non-BLAS fallback), so the bf16 peak is F.linear's."
            )
        fcm = [
            (w, r["flops_linear_conv"], r["flops_attention"], r["flop_counter_mode"])
            for w, r in tr["rows"].items()
            if "flop_counter_mode" in r
        ]
        if fcm:
            L.append("")
            L.append(
                "FLOPs per step, analytic = linear/conv + attention; check: the linear/conv part against "
                "torch.utils.flop_counter.FlopCounterMode on the same "
                "step (which does not see the CPU SDPA kernel), GFLOP: "
                + "; ".join(f"{w} {x / 1e9:.2f} + {a / 1e9:.2f} (FlopCounterMode {y / 1e9:.2f})" for w, x, a, y in fcm)
                + "."
            )
    g = g_by.get("classify")
    if g:
        c = a["classify"]
        L.append("")
        L.append(
            "### Classification inference: verbalizer scoring vs generate + parse "
            f"(preset `{g.get('preset', 'default')}`, batch {BATCH}, features given)"
        )
        L.append("")
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}."
        )
        L.append("")
        L.append(
            "| task (scoring path, classes) | score_classes s | generate+parse s "
            "(max_new_tokens) | speedup | peak RSS MB score / generate (delta) |"
        )
        L.append("|---|---|---|---|---|")
        si = g["worker_setup"]["score"]["info"]
        ms, mg = g["memory"]["score"], g["memory"]["generate"]
        for task in ClassifyWorker.TASKS:
            L.append(
                f"| {task} ({c[task]['path']}, {si['classes'][task]}) | {_fmt_s(g['results'][f'score:{task}'])} | "
                f"{_fmt_s(g['results'][f'generate:{task}'])} ({si['max_new_tokens'][task]}) | "
                f"{c[task]['speedup']:.2f}x | {ms['peak_rss_during_measurement_mb']:.0f} "
                f"(+{ms['peak_minus_setup_mb']:.0f}) / "
                f"{mg['peak_rss_during_measurement_mb']:.0f} (+{mg['peak_minus_setup_mb']:.0f}) |"
            )
        L.append("")
        L.append(
            "Both start from the batch's cached encoder features; the encoder pass they would share from pixels takes "
            f"{_fmt_s(g['results']['score:encode'])} s for these 8 images. Generated tokens per call: "
            + ", ".join(
                f"{t} {g['results'][f'generate:{t}']['extra_last']['generated_tokens']}" for t in ClassifyWorker.TASKS
            )
            + "; rows parsed to a class (untrained adapters, so the text is rarely a class name): "
            + ", ".join(f"{t} {g['results'][f'generate:{t}']['extra_last']['parsed']}/8" for t in ClassifyWorker.TASKS)
            + "."
        )
    g = g_by.get("predict")
    if g:
        p = a["predict"]
        L.append("")
        L.append(f"### Five tasks on one image (preset `{g.get('preset', 'default')}`, 640x480 image, two boxes)")
        L.append("")
        L.append(
            f"Load average start {g['load_start']}, end {g['load_end']}; "
            f"busy {g['machine_busy_during_measurement']:.0%}."
        )
        L.append("")
        L.append("| call | latency s, median [min-max] | vs mean single-task call |")
        L.append("|---|---|---|")
        L.append(
            f'| predict(tasks="all") | {_fmt_s(g["results"]["all:all"])} | {p["all_s"] / p["mean_single_s"]:.2f}x |'
        )
        for t, v in p["single_s"].items():
            L.append(
                f'| predict(tasks=["{t}"]) | {_fmt_s(g["results"][f"single:{t}"])} | {v / p["mean_single_s"]:.2f}x |'
            )
        L.append(
            f"| five single-task calls (sum of medians) | {p['sum_single_s']:.3f} "
            f"| {p['sum_single_s'] / p['mean_single_s']:.2f}x |"
        )
        mem = g["memory"]
        L.append("")
        L.append(
            f"Peak RSS: all-tasks worker {mem['all']['peak_rss_during_measurement_mb']:.0f} MB "
            f"(+{mem['all']['peak_minus_setup_mb']:.0f} over setup), "
            f"single-task worker {mem['single']['peak_rss_during_measurement_mb']:.0f} MB "
            f"(+{mem['single']['peak_minus_setup_mb']:.0f}). One call for five "
            f"tasks is {p['sum_single_s'] / p['all_s']:.2f}x faster than five calls."
        )
    L.append("")
    L.append("### Memory (RSS high-water mark per worker process)")
    L.append("")
    L.append(
        "| group | worker | RSS after setup MB | peak during measurement "
        "MB | delta MB | lifetime peak (incl. model loading) MB |"
    )
    L.append("|---|---|---|---|---|---|")
    for g in report["groups"]:
        for w, mem in g["memory"].items():
            L.append(
                f"| {g['name']} | {w} | {mem['rss_after_setup_mb']:.0f} | {mem['peak_rss_during_measurement_mb']:.0f} "
                f"| {mem['peak_minus_setup_mb']:.0f} | {mem['peak_rss_process_lifetime_mb']:.0f} |"
            )
    return "\n".join(L)


def write_results_md(text: str, mode: str) -> None:
    """Replace this mode's generated section of RESULTS.md (or append one); hand-written text is kept."""
    begin, end = f"<!-- BEGIN GENERATED {mode} (benchmarks/run.py) -->", f"<!-- END GENERATED {mode} -->"
    path = HERE / "RESULTS.md"
    body = f"{begin}\n{text}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(head + body + tail)
    else:
        path.write_text(old.rstrip("\n") + "\n\n" + body + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="~2 minutes: fewer rounds, no bf16, no issue9 row, no profiles"
    )
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated groups: train-tiny,train-default,train-default-bf16,classify,predict,train-issue9",
    )
    ap.add_argument(
        "--extended",
        action="store_true",
        help="also bf16 autocast training (train-default-bf16) and SF without cache at the issue9 size (~+6 min)",
    )
    ap.add_argument("--no-results-md", action="store_true", help="do not rewrite the generated part of RESULTS.md")
    ap.add_argument(
        "--omp-wait-policy",
        default="passive",
        choices=["passive", "active", "default"],
        help="OMP_WAIT_POLICY of the workers (default: passive, see README)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: torch's default, the core count)"
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="check that the harness runs (~30-40 s): every worker kind once at the tiny preset; "
        "writes to --out or a new temporary directory, never to results/ or RESULTS.md",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="directory for <mode>.json/.md/-profiles.txt and the worker logs (default: benchmarks/results/)",
    )
    ap.add_argument(
        "--cache-read",
        action="store_true",
        help="feature-cache read throughput (benchmarks/cache_read.py; ~1 min, with --smoke ~5 s); "
        "writes cache-read.json/.md to --out (default results/) and its RESULTS.md section",
    )
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="input pipeline: training `default` from JPEG files through DataLoader workers vs from "
        "pre-decoded tensors in memory (benchmarks/pipeline.py; ~10 min, with --smoke ~30 s); writes pipeline.json/.md "
        "to --out (default results/) and its RESULTS.md section",
    )
    ap.add_argument("--repeats", type=int, default=3, help="--pipeline: measured rounds (default 3)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pipeline:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the other benchmarks' workers; before torch loads
        import pipeline

        out_dir = (
            Path(args.out).resolve()
            if args.out
            else (Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-")) if args.smoke else RESULTS_DIR)
        )
        command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        report = pipeline.run(command.strip(), args.smoke, out_dir, machine_info(), repeats=args.repeats)
        text = pipeline.render(report)
        if not args.smoke and not args.no_results_md and out_dir == RESULTS_DIR:
            write_results_md(text, report["mode"])
        print(text)
        print(f"\nwrote {out_dir / (report['mode'] + '.json')}")
        return 0
    if args.cache_read:
        import cache_read

        out_dir = (
            Path(args.out).resolve()
            if args.out
            else (Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-")) if args.smoke else RESULTS_DIR)
        )
        command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        report = cache_read.run(command.strip(), args.smoke, out_dir, machine_info())
        text = cache_read.render(report)
        if not args.smoke and not args.no_results_md and out_dir == RESULTS_DIR:
            write_results_md(text, report["mode"])
        print(text)
        return 0
    if args.worker:
        worker_main(json.loads(args.worker))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the interpreter's teardown of torch and transformers (~2 s per worker, nothing to save)
    if args.smoke and (args.quick or args.only or args.extended):
        ap.error("--smoke runs its own plan: not with --quick, --only or --extended")
    global OMP_WAIT_POLICY, THREADS
    OMP_WAIT_POLICY = None if args.omp_wait_policy == "default" else args.omp_wait_policy.upper()
    THREADS = args.threads
    mode = "smoke" if args.smoke else "quick" if args.quick else ("extended" if args.extended else "full")
    from socialfusion.config import split_list

    only = set(split_list(args.only) or []) or None
    if only:
        mode += "-" + "+".join(sorted(only))
    if args.out:
        results_dir = Path(args.out).resolve()
    elif args.smoke:
        results_dir = Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-"))
    else:
        results_dir = RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = (
        results_dir / "logs"
        if results_dir != RESULTS_DIR
        else Path(os.environ.get("TMPDIR", "/tmp")) / "socialfusion-bench-logs"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "command": command.strip(),
        "mode": mode,
        "omp_wait_policy": OMP_WAIT_POLICY or "(environment)",
        "threads_requested": THREADS,
        "started": started,
        "load_start": loadavg(),
        "machine": machine_info(),
    }
    print(
        f"socialfusion benchmarks ({mode}); load average {report['load_start']}; worker logs in {log_dir}", flush=True
    )
    groups = smoke_plan() if args.smoke else plan(args.quick, args.extended, only)
    report["groups"] = run_plan(groups, log_dir, one_process=args.smoke)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["wall_s"] = time.perf_counter() - t0
    report["load_end"] = loadavg()
    report["analysis"] = analyse(report["groups"])
    # the median seconds per worker kind; the smoke run must measure every kind that any other run has
    report["kinds"] = kinds_measured(report["groups"])
    report["kinds_of_every_run"] = plan_kinds(plan(quick=False, extended=True, only=None))
    unmeasured = [
        k
        for k in report["kinds_of_every_run"]
        if not report["kinds"].get(k) or not all(math.isfinite(v) and v > 0 for v in report["kinds"][k].values())
    ]
    profiles = {}
    for g in report["groups"]:
        for key, val in list(g.get("extra", {}).items()):
            if ":profile:" in key:
                profiles[f"{g['name']}.{key}"] = val.pop("table")
    out = results_dir / f"{mode}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    if profiles:
        (results_dir / f"{mode}-profiles.txt").write_text("\n\n".join(f"=== {k}\n{v}" for k, v in profiles.items()))
    text = render(report)
    (results_dir / f"{mode}.md").write_text(text + "\n")
    if not args.quick and not args.smoke and not args.no_results_md and results_dir == RESULTS_DIR:
        write_results_md(text, mode)
    print("\n" + text)
    print(f"\nwrote {out} ({report['wall_s'] / 60:.1f} min)")
    if args.smoke and unmeasured:
        print(f"smoke: no finite time for worker kind(s) {', '.join(unmeasured)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
