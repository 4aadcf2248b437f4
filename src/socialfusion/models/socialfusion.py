"""SocialFusion: frozen encoder -> connector (+ box embedding mask) -> LLM with LoRA -> class text or gaze heatmap.

Batches are dicts (`data/pipeline.py`, `collate`): every batch holds samples of one task, so they share one
prompt and the image tokens sit at the same positions for every row.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..tasks import default_tasks
from ..tasks.base import Task
from .base import TaskModel
from .box_mask import BoxEmbedding, role_union_boxes
from .connector import Connector, Standardize
from .encoder import VisionEncoder
from .heads import GazeHead, heatmap_prediction
from .llm import apply_lora, build_causal_lm, build_tokenizer, decoder_and_head, prompt_pieces
from .packing import ancestry, attention_mask, is_chain
from .scoring import class_scores, plan_scoring, verbalizer_nll
from .trainability import apply_trainability, component_of


class SocialFusionModel(TaskModel):
    def __init__(self, cfg: ModelConfig, tasks: dict[str, Task] | None = None, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tasks = tasks or default_tasks(cfg)
        torch.manual_seed(cfg.seed)
        self.encoder = VisionEncoder(cfg.encoder)
        self.tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfg.llm)
        lm = build_causal_lm(cfg.llm, vocab_size=len(self.tokenizer) if cfg.llm.tokenizer == "tiny" else None)
        d_llm = lm.config.hidden_size
        self.connector = Connector(cfg.connector, self.encoder.hidden_size, d_llm, self.encoder.grid)
        self.grid = self.connector.grid
        self.box_embed = BoxEmbedding(cfg.box.roles, d_llm, self.grid, enabled=cfg.box.enabled)
        self.gaze_head = GazeHead(
            d_llm,
            self.grid,
            inout=cfg.gaze.inout,
            patch_grid=self.encoder.grid,
            d_patch=self.encoder.hidden_size,
            patch_keys=cfg.gaze.patch_keys,
        )
        if cfg.trainable.llm == "lora":
            lm = apply_lora(lm, cfg.llm)
        if cfg.llm.gradient_checkpointing:
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.llm = lm
        apply_trainability(self, cfg.trainable)
        self._prompts: dict[str, object] = {}
        self._answer_tables: dict[tuple[str, torch.device], tuple[torch.Tensor, list[int]]] = {}

    # ------------------------------------------------------------------ small helpers

    @property
    def device(self) -> torch.device:
        return next(self.connector.parameters()).device

    # ------------------------------------------------------------------ the model interface (`models/base.py`)

    @property
    def image_input(self):
        return self.encoder

    def component(self, name: str) -> str:
        return component_of(name)

    @property
    def cacheable_encoder(self):
        return self.encoder if self.cfg.trainable.encoder == "frozen" else None

    def prepare_inputs(self, batch: dict) -> dict:
        if "features" in batch or self.cfg.trainable.encoder != "frozen":
            return batch
        rest = {k: v for k, v in batch.items() if k != "pixel_values"}
        return {**rest, "features": self.encode(batch["pixel_values"].to(self.device))}

    def fit_statistics(self, batches) -> int:
        norm = self.connector.norm
        if not isinstance(norm, Standardize):
            return 0

        def features():  # cached features, or the encoder's output on the pixels (a trained encoder: as it starts)
            for batch in batches:
                yield batch["features"] if "features" in batch else self.encode(batch["pixel_values"].to(self.device))

        with torch.no_grad():
            return norm.fit(features())

    @property
    def num_visual_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.trainable.encoder == "frozen":
            self.encoder.eval()  # a frozen encoder never runs dropout or updates norm statistics
        return self

    def prompt(self, task: str):
        if task not in self._prompts:
            self._prompts[task] = prompt_pieces(
                self.tokenizer, self.tasks[task].instruction(), self.cfg.llm.use_chat_template
            )
        return self._prompts[task]

    def answer_table(self, task: str) -> tuple[torch.Tensor, list[int]]:
        """The task's verbalizers as one tensor, built once per task and device, so that a training step indexes it
        by label instead of building Python lists and two tensors (2.6x less time for that, measured on CPU):
        (C, 2, W) with row 0 the ids padded with the pad token and row 1 the valid mask (1/0); and the lengths."""
        key = (task, self.device)
        if key not in self._answer_tables:
            answers = self.answers(task)
            width, pad = max(len(a) for a in answers), self.tokenizer.pad_token_id
            ids = [a + [pad] * (width - len(a)) for a in answers]
            valid = [[1] * len(a) + [0] * (width - len(a)) for a in answers]
            table = torch.tensor([list(pair) for pair in zip(ids, valid)], device=self.device)
            self._answer_tables[key] = (table, [len(a) for a in answers])
        return self._answer_tables[key]

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    # ------------------------------------------------------------------ visual tokens

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        frozen = self.cfg.trainable.encoder == "frozen"
        with torch.no_grad() if frozen else nullcontext():
            return self.encoder(pixel_values)

    def features(self, batch: dict) -> torch.Tensor:
        """The encoder's patch features of the batch's images (cached, or encoded now), on the connector's device
        and dtype."""
        feats = batch.get("features")
        if feats is None:
            feats = self.encode(batch["pixel_values"].to(self.device))
        return feats.to(self.device, self.connector_dtype)

    def visual_tokens(self, batch: dict, feats: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.features(batch) if feats is None else feats
        boxes, roles = batch["boxes"].to(self.device), batch["box_roles"].to(self.device)
        tokens = self.box_embed(self.connector(feats), boxes, roles)
        n_roles = self._region_roles(batch["task"])
        if not n_roles or not bool((roles >= 0).any()):
            return tokens
        # region tokens follow the grid; a row without some role gets zeros there
        k = self.cfg.connector.box_tokens
        union, present = role_union_boxes(boxes.to(feats.dtype), roles, n_roles)
        regions = self.connector.regions(feats, union, k).unflatten(1, (n_roles, k * k))
        regions = (regions + self.box_embed.embedding[:n_roles, None, :].to(regions.dtype)) * present[..., None, None]
        return torch.cat([tokens, regions.flatten(1, 2)], dim=1)

    @property
    def connector_dtype(self) -> torch.dtype:
        return next(self.connector.parameters()).dtype

    def _split_visual(self, visual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens at the image placeholder, tokens after the prompt's text): the region tokens go to the second
        part when `connector.box_tokens_at` is "answer", which is empty otherwise."""
        cut = self.num_visual_tokens if self.cfg.connector.box_tokens_at == "answer" else visual.shape[1]
        return visual[:, :cut], visual[:, cut:]

    def _prefix(self, task: str, visual: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Embeddings of [prompt before image, image tokens, prompt after image, tokens after the prompt (see
        `_split_visual`)]; returns them and where the image starts."""
        pieces = self.prompt(task)
        b = visual.shape[0]
        pre = self._embed(torch.tensor(pieces.pre, device=self.device)).expand(b, -1, -1)
        post = self._embed(torch.tensor(pieces.post, device=self.device)).expand(b, -1, -1)
        image, tail = self._split_visual(visual.to(pre.dtype))
        return torch.cat([pre, image, post, tail], dim=1), len(pieces.pre)

    # ------------------------------------------------------------------ training

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        task = self.tasks[batch["task"]]
        feats = self.features(batch)
        prefix, image_start = self._prefix(task.name, self.visual_tokens(batch, feats))
        readout = self._heatmap_readout if task.readout == "heatmap" else self._answer_readout
        return task.loss(readout(batch, prefix, image_start, feats), batch)

    def _patches(self, feats: torch.Tensor) -> torch.Tensor | None:
        """The gaze head's view of the full patch grid (standardised like the connector's input), when it has one."""
        return self.connector.norm(feats) if self.cfg.gaze.patch_keys else None

    def _heatmap_readout(
        self, batch: dict, prefix: torch.Tensor, image_start: int, feats: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The gaze head's logits over the image positions' final hidden states (and the patch grid)."""
        decoder, _ = decoder_and_head(self.llm)
        hidden = decoder(inputs_embeds=prefix, use_cache=False).last_hidden_state  # no cache: nothing reads one
        image = hidden[:, image_start : image_start + self.num_visual_tokens]
        return self.gaze_head(image, hidden[:, -1], self._patches(feats))

    def _answer_readout(
        self, batch: dict, prefix: torch.Tensor, image_start: int, feats: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The negative log-likelihood of each row's class verbalizer after the prompt (`model.answer_loss`)."""
        task = batch["task"]
        decoder, head = decoder_and_head(self.llm)
        table, lengths = self.answer_table(task)
        labels = batch["labels"]
        # padded to the batch's longest answer, not the task's: the same shapes (and numbers) as before
        width = max(lengths[c] for c in labels.tolist())
        rows = table.index_select(0, labels.to(self.device))
        ids, valid = rows[:, 0, :width], rows[:, 1, :width]
        # feed all answer tokens but the last; position t of the answer is predicted from position t-1
        inputs = torch.cat([prefix, self._embed(ids[:, :-1])], dim=1)
        attention = torch.cat(
            [torch.ones(prefix.shape[:2], dtype=valid.dtype, device=self.device), valid[:, :-1]], dim=1
        )
        hidden = decoder(inputs_embeds=inputs, attention_mask=attention, use_cache=False).last_hidden_state
        n_prefix = prefix.shape[1]
        pred_hidden = hidden[:, n_prefix - 1 : n_prefix - 1 + width]
        mask = valid.bool()
        n_supervised = mask.sum()
        if n_supervised == 0:
            raise ValueError(f"batch of task {task!r} has no supervised answer token")
        if self.cfg.answer_loss == "verbalizer":
            loss = verbalizer_nll(plan_scoring(self.answers(task)), head, pred_hidden, labels)
        else:
            loss = F.cross_entropy(head(pred_hidden[mask]).float(), ids[mask])
        return {"answer_nll": loss, "n_supervised": n_supervised}

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def infer_tasks(self, batch: dict, tasks: list[str], method: str = "auto") -> dict:
        """Several tasks on the same rows and boxes (the batch's "task" is replaced by each task's name):
        {task: class log-probs (B, C) for a classification task, `heatmap_prediction` for gaze}, each what the
        task's own call gives.

        Each prompt is [text before the image, image, text after it], and the text before the image comes from
        the chat turn's opening, which is the same for every task whose instruction starts with the image (all
        of ours; `prompt_pieces`). Tasks with the same opening and the same visual tokens therefore share the
        whole [text + image] prefix: one decoder call holds it once, then each task's post-image text after it
        (followed by the region tokens when `connector.box_tokens_at` is "answer") and, for a classification
        task, its verbalizer trie's branching nodes and their ancestors after that (`scoring.py`; nothing when the
        verbalizers start with different tokens). Tree attention (`packing.py`) keeps every task's tokens from
        seeing another task's, so nothing but float rounding differs from running the tasks one by one.
        """
        groups: dict[tuple, list[str]] = {}
        for name in tasks:
            groups.setdefault((tuple(self.prompt(name).pre), self._region_roles(name)), []).append(name)
        out, feats = {}, self.features(batch)
        for (pre, _), names in groups.items():
            visual = self.visual_tokens({**batch, "task": names[0]}, feats)  # once per group
            out.update(self._infer_shared_prefix(list(pre), visual, names, method, self._patches(feats)))
        return {name: out[name] for name in tasks}

    def _region_roles(self, task: str) -> int:
        """How many box roles get region tokens for this task (0 without region tokens): one set per role the task
        uses, so a task sees the same number of tokens in training and at inference, whatever boxes a user adds.
        It is all `visual_tokens` takes from the task, so tasks with the same value share their visual tokens."""
        return min(self.tasks[task].num_roles, self.box_embed.roles) if self.cfg.connector.box_tokens else 0

    def _infer_shared_prefix(
        self, pre: list[int], visual: torch.Tensor, names: list[str], method: str, patches: torch.Tensor | None
    ) -> dict:
        b = visual.shape[0]
        pieces = [self._embed(torch.tensor(pre, device=self.device)).expand(b, -1, -1)]
        image, tail = self._split_visual(visual.to(pieces[0].dtype))
        pieces.append(image)
        parents = list(range(-1, len(pre) + image.shape[1] - 1))

        def append(embeds: torch.Tensor, tree: list[int], anchor: int) -> int:
            """Feed `embeds` (B, n, d) as a forest (`tree`: parent offsets, -1 = hangs off position `anchor`);
            returns where they start."""
            start = len(parents)
            if embeds.shape[1]:
                pieces.append(embeds)
                parents.extend(anchor if p < 0 else start + p for p in tree)
            return start

        def extend(embeds: torch.Tensor, anchor: int) -> int:
            """Feed `embeds` as a sequence after position `anchor`; returns its last position (`anchor` if empty)."""
            start = append(embeds, list(range(-1, embeds.shape[1] - 1)), anchor)
            return start + embeds.shape[1] - 1 if embeds.shape[1] else anchor

        def embed(tokens: list[int]) -> torch.Tensor:
            return self._embed(torch.tensor(tokens, dtype=torch.long, device=self.device)).expand(b, -1, -1)

        shared_end = len(parents) - 1
        reads = {}
        for name in names:
            last = extend(tail, extend(embed(self.prompt(name).post), shared_end))  # the prompt's last position
            plan = tree_start = None
            if self.tasks[name].readout == "answer":
                plan = plan_scoring(self.answers(name), method, name)
                tree_start = append(embed(plan.tokens), plan.parents, last)
            reads[name] = (last, plan, tree_start)
        hidden = self._decode(torch.cat(pieces, dim=1), parents)
        _, head = decoder_and_head(self.llm)
        image = hidden[:, len(pre) : len(pre) + self.num_visual_tokens]
        out = {}
        for name, (last, plan, tree_start) in reads.items():
            if plan is None:
                out[name] = heatmap_prediction(self.gaze_head(image, hidden[:, last], patches))
            else:
                tree = hidden[:, tree_start : tree_start + len(plan.nodes)] if plan.nodes else None
                out[name] = class_scores(plan, head, hidden[:, last], tree)
        return out

    def _decode(self, embeds: torch.Tensor, parents: list[int]) -> torch.Tensor:
        """Final hidden states (B, N, d) of a packed forest of N tokens (`packing.py`); a plain sequence runs as the
        ordinary causal pass. No KV cache: nothing reads one afterwards."""
        decoder, _ = decoder_and_head(self.llm)
        if is_chain(parents):
            return decoder(inputs_embeds=embeds, use_cache=False).last_hidden_state
        allowed, depth = ancestry(parents)
        mask = attention_mask(allowed.to(embeds.device)[None, None], decoder.config, embeds.dtype)
        return decoder(
            inputs_embeds=embeds, attention_mask=mask, position_ids=depth.to(embeds.device)[None], use_cache=False
        ).last_hidden_state
