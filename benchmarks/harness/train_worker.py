"""Worker side: one training step (SocialFusion with cache or from pixels, or the LLaVA + PEFT reference)."""

from __future__ import annotations

from .common import BATCH, TRAIN_TASK
from .llava import build_llava_reference
from .workers_common import FlopCount, make_batch, preset_config, text_tokens


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
