"""VLM baselines: a Hugging Face image-text-to-text model fine-tuned on the same tasks, prompts and verbalizers as
SocialFusion, behind the same model interface (`models/base.py`, `TaskModel`).

Families (from the config's `model_type`) and how each is given the boxes (`model.boxes: text`):
  llava (LLaVA-1.5): "<image>" expanded to one token per patch (CLS dropped: 576 at 336 px). Boxes as
      normalised [x1, y1, x2, y2] with 2 decimals, e.g. "Marked box: [0.12, 0.30, 0.45, 0.80]" (the
      RefCOCO format LLaVA-1.5 was trained on).
  qwen2vl (Qwen2-VL, Qwen2.5-VL): "<|vision_start|><|image_pad|><|vision_end|>" with one <|image_pad|> per
      merged 2x2 patch block ((448 / 28)^2 = 256 at 448 px). Boxes in Qwen's grounding format on a 0-1000 grid:
      "Marked box: <|box_start|>(120,300),(450,800)<|box_end|>".
  onevision (LLaVA-OneVision): "<image>" expanded by the anyres rule (base 27x27 grid, the high-res crops with
      a newline token per row). Boxes as for LLaVA-1.5.
Several boxes (relation) are listed in role order: "Marked boxes: [..], [..]". The box line follows the image
(the task prompt starts with "<image>\\n"); the prompt is rendered with the processor's chat template, or as
"User: ...\\nAssistant:" for the tiny processor, exactly like SocialFusion. With `boxes: draw` there is no box
text: each box is painted on the image (red = role 0, blue = role 1, ...). Every image is first resized to a
square (no crop, no padding), so that normalised coordinates mean the same on the image the model sees.

Gaze: the GazeHead reads the final hidden states at the image-token positions (found from the image token id in
input_ids): the patch grid for LLaVA, the merged grid for Qwen2-VL, the base-image grid (the first 27x27 image
tokens) for OneVision. Trainability per component: vision frozen|lora|full, projector frozen|full, llm
lora|full|frozen; the gaze head always learns. `llm` holds the whole (PEFT-wrapped) HF model, so that checkpoints,
`merge-lora` and the optimiser's `llm.lora` group work unchanged; `parameter_table()` splits it per component.
The VLM always runs from pixels (no feature cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VLMBaselineConfig
from ..tasks import default_tasks
from ..tasks.base import IMAGE_PLACEHOLDER, Task
from .base import TaskModel
from .heads import GazeHead, heatmap_prediction
from .loading import load_arch, peft_model, resolve_pretrained
from .packing import ancestry, attention_mask
from .scoring import class_scores, plan_scoring
from .tiny_tokenizer import build_tiny_tokenizer

FAMILIES = {"llava": "llava", "qwen2_vl": "qwen2vl", "qwen2_5_vl": "qwen2vl", "llava_onevision": "onevision"}
IMAGE_MARK = {"llava": "<image>", "onevision": "<image>", "qwen2vl": "<|vision_start|><|image_pad|><|vision_end|>"}
TINY_SPECIAL = {
    "llava": ["<image>"],
    "onevision": ["<image>", "<video>"],
    "qwen2vl": ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>", "<|box_start|>", "<|box_end|>"],
}
ROLE_COLOURS = [(255, 0, 0), (0, 0, 255), (0, 200, 0), (255, 200, 0)]
BOX_SLOT = "<<boxes>>"
VISION_LINEAR = "q_proj|k_proj|v_proj|out_proj|fc1|fc2|qkv|proj|gate_proj|up_proj|down_proj"


def family_of(hf_config) -> str:
    if hf_config.model_type not in FAMILIES:
        raise ValueError(f"unsupported VLM model_type {hf_config.model_type!r}; supported: {sorted(FAMILIES)}")
    return FAMILIES[hf_config.model_type]


def box_text(family: str, boxes) -> str:
    """The prompt line for a list of normalised xyxy boxes (already in role order)."""
    if family == "qwen2vl":

        def one(b):
            x1, y1, x2, y2 = (min(1000, max(0, round(float(v) * 1000))) for v in b)
            return f"<|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>"
    else:

        def one(b):
            return "[" + ", ".join(f"{min(1.0, max(0.0, float(v))):.2f}" for v in b) + "]"

    return ("Marked box: " if len(boxes) == 1 else "Marked boxes: ") + ", ".join(one(b) for b in boxes)


def draw_boxes(image, boxes):
    """Paint (xyxy, role) boxes on a copy of a PIL image, one colour per role."""
    from PIL import ImageDraw

    image = image.copy()
    draw = ImageDraw.Draw(image)
    w, h = image.size
    width = max(1, round(min(w, h) / 112))
    for xyxy, role in boxes:
        x1, y1, x2, y2 = xyxy
        draw.rectangle(
            [x1 * (w - 1), y1 * (h - 1), x2 * (w - 1), y2 * (h - 1)],
            outline=ROLE_COLOURS[role % len(ROLE_COLOURS)],
            width=width,
        )
    return image


def vlm_component(name: str) -> str:
    """vision | projector | llm | gaze_head (+ '.lora' for adapter weights) of a VLMBaseline parameter name."""
    if name.startswith("gaze_head."):
        return "gaze_head"
    n = name.removeprefix("llm.").removeprefix("base_model.model.")
    if n.startswith(("model.multi_modal_projector", "model.visual.merger", "model.image_newline")):
        comp = "projector"
    elif n.startswith(("model.vision_tower", "model.visual")):
        comp = "vision"
    else:
        comp = "llm"
    return f"{comp}.lora" if "lora_" in n else comp


# ---------------------------------------------------------------------------------------------- processors


def _tiny_tokenizer(extra: list[str]):
    """A copy of the tiny tokenizer (never the cached one SocialFusion uses) with the model's special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    base = build_tiny_tokenizer()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(base.backend_tokenizer.to_str()),
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )
    tok.add_special_tokens({"additional_special_tokens": extra})
    return tok


def _image_only(cls, image_token: str, video_token: str):
    """A processor class without the video processor (which needs torchvision); images and text only."""
    from transformers.processing_utils import ProcessorMixin

    class ImageOnly(cls):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **attrs):
            for key, value in attrs.items():
                setattr(self, key, value)
            self.image_token, self.video_token = image_token, video_token
            self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    ImageOnly.__name__ = f"ImageOnly{cls.__name__}"
    return ImageOnly


def tiny_processor(family: str, hf_config, size: int):
    """A processor built in-process around the tiny tokenizer, with the architecture's image settings."""
    tok = _tiny_tokenizer(TINY_SPECIAL[family])
    vc = hf_config.vision_config
    if family == "llava":
        from transformers import LlavaProcessor
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        ip = CLIPImageProcessorPil(size={"height": size, "width": size}, do_center_crop=False)
        cls_token = 1 if vc.model_type == "clip_vision_model" else 0
        return LlavaProcessor(
            image_processor=ip,
            tokenizer=tok,
            patch_size=vc.patch_size,
            num_additional_image_tokens=cls_token,
            vision_feature_select_strategy=hf_config.vision_feature_select_strategy,
        )
    if family == "qwen2vl":
        from transformers import Qwen2VLProcessor
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        ip = Qwen2VLImageProcessorPil(
            size={"shortest_edge": size * size, "longest_edge": size * size},
            patch_size=vc.patch_size,
            merge_size=vc.spatial_merge_size,
            temporal_patch_size=vc.temporal_patch_size,
        )
        return _image_only(Qwen2VLProcessor, "<|image_pad|>", "<|video_pad|>")(ip, tok)
    from transformers import LlavaOnevisionProcessor
    from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil

    ip = LlavaOnevisionImageProcessorPil(
        size={"height": size, "width": size},
        image_grid_pinpoints=hf_config.image_grid_pinpoints,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    cls = _image_only(LlavaOnevisionProcessor, "<image>", "<video>")
    return cls(
        ip,
        tok,
        num_image_tokens=(size // vc.patch_size) ** 2,
        vision_aspect_ratio=hf_config.vision_aspect_ratio,
        vision_feature_select_strategy=hf_config.vision_feature_select_strategy,
    )


def hf_vlm_config(vcfg):
    from transformers import AutoConfig

    return (
        load_arch(vcfg.arch)
        if vcfg.pretrained is None
        else AutoConfig.from_pretrained(resolve_pretrained(vcfg.pretrained))
    )


class VLMImageInput:
    """What the data pipeline calls as `encoder`: PIL images (and, to draw them, their boxes) -> pixel tensors,
    one per image: (3, S, S) LLaVA, (patches, 3*2*14*14) Qwen2-VL, (crops, 3, S, S) OneVision."""

    def __init__(self, processor, family: str, size: int, draw: bool, identity: dict):
        self.processor, self.family, self.image_size, self.wants_boxes = processor, family, size, draw
        self._identity = identity

    def identity(self) -> dict:
        return dict(self._identity)

    def preprocess(self, images, boxes=None) -> torch.Tensor:
        from PIL import Image

        if self.wants_boxes and boxes is None:
            raise ValueError("model.boxes is 'draw': preprocess needs each image's boxes")
        prepared = []
        for i, image in enumerate(images):
            image = image.convert("RGB").resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
            if self.wants_boxes:
                image = draw_boxes(image, [(tuple(b.xyxy), b.role) if hasattr(b, "xyxy") else b for b in boxes[i]])
            prepared.append(image)
        with torch.device("cpu"):
            pixels = self.processor.image_processor(prepared, return_tensors="pt")["pixel_values"]
        return pixels.view(len(images), -1, pixels.shape[-1]) if self.family == "qwen2vl" else pixels


def _image_geometry(family: str, vc, image_size: int | None) -> tuple[int, tuple[int, int]]:
    """(image side, gaze grid); checked here because a mismatched size would only fail deep in the vision tower."""
    size = image_size or (448 if family == "qwen2vl" else vc.image_size)
    if family == "qwen2vl":
        unit = vc.patch_size * vc.spatial_merge_size
        if size % unit:
            raise ValueError(f"model.image_size {size} must be a multiple of {unit} for Qwen2-VL")
        return size, (size // unit,) * 2
    if size != vc.image_size:
        raise ValueError(f"model.image_size {size} must equal the vision tower's {vc.image_size}")
    return size, (size // vc.patch_size,) * 2


def _adopt_tiny_vocabulary(hf, processor, tok) -> None:
    """A randomly initialised model must agree with the tiny tokenizer on vocabulary size and special tokens."""
    tc = hf.text_config
    tc.vocab_size, tc.pad_token_id, tc.bos_token_id, tc.eos_token_id = (
        len(tok),
        tok.pad_token_id,
        tok.bos_token_id,
        tok.eos_token_id,
    )
    special = {
        "image_token_id": processor.image_token,
        "video_token_id": getattr(processor, "video_token", None),
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    for key, token in special.items():
        if hasattr(hf, key) and token:
            setattr(hf, key, tok.convert_tokens_to_ids(token))


def _hf_model(v, hf):
    from transformers import AutoModelForImageTextToText

    auto = AutoModelForImageTextToText
    if v.pretrained is None:
        return auto.from_config(hf)
    return auto.from_pretrained(resolve_pretrained(v.pretrained), config=hf, dtype=torch.float32)


def _with_lora(model, v):
    """The HF model wrapped with LoRA on the components the config trains with it (unchanged if none)."""
    targets = []
    if v.trainable.llm == "lora":
        targets.append(rf"model\.language_model\..*\.(?:{'|'.join(v.lora.target_modules)})")
    if v.trainable.vision == "lora":
        targets.append(rf"model\.(?:vision_tower|visual)\..*(?:layers|blocks)\.\d+\..*\.(?:{VISION_LINEAR})")
    if not targets:
        return model
    from peft import LoraConfig  # peft is imported only when LoRA is asked for

    lora = LoraConfig(
        r=v.lora.r,
        lora_alpha=v.lora.alpha,
        lora_dropout=v.lora.dropout,
        bias="none",
        target_modules="|".join(f"(?:{t})" for t in targets),
    )
    return peft_model(model, lora)


# ---------------------------------------------------------------------------------------------- the model


class VLMBaseline(TaskModel):
    def __init__(self, cfg: VLMBaselineConfig, tasks: dict[str, Task] | None = None, processor=None):
        super().__init__()
        self.cfg = cfg
        self.tasks = tasks or default_tasks(cfg)
        # seeded before anything is built, so that a random init (model, gaze head, LoRA) is reproducible
        torch.manual_seed(cfg.seed)
        hf = hf_vlm_config(cfg)
        self.family = family_of(hf)
        self.image_size, self.grid = _image_geometry(self.family, hf.vision_config, cfg.image_size)
        self.processor = processor = self._resolve_processor(processor, hf)
        self.tokenizer = processor.tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if cfg.processor == "tiny" and cfg.pretrained is None:  # random init: the vocabulary is the tiny tokenizer's
            _adopt_tiny_vocabulary(hf, processor, self.tokenizer)
        model = _hf_model(cfg, hf)
        self.image_token_id = model.config.image_token_id
        # LLaVA with strategy "full" keeps CLIP's CLS first; the gaze head reads the patch grid after it
        self._grid_offset = int(
            self.family == "llava"
            and hf.vision_feature_select_strategy == "full"
            and hf.vision_config.model_type == "clip_vision_model"
        )
        self.gaze_head = GazeHead(hf.text_config.hidden_size, self.grid, inout=cfg.gaze.inout)
        self.llm = _with_lora(model, cfg)
        if cfg.gradient_checkpointing:
            self._enable_gradient_checkpointing()
        self._set_trainable(cfg.trainable)
        identity = {
            "vlm": cfg.pretrained or cfg.arch,
            "family": self.family,
            "image_size": self.image_size,
            "boxes": cfg.boxes,
        }
        self.encoder = VLMImageInput(processor, self.family, self.image_size, cfg.boxes == "draw", identity)
        self._templates: dict[str, str] = {}
        self._n_image_tokens: int | None = None

    def _resolve_processor(self, processor, hf):
        # `processor`: an object, or a source overriding the config's ("tiny" builds one; plan uses it, keeping
        # the architecture's vocabulary, which is replaced by the tiny tokenizer's only when the config says tiny)
        if processor is not None and not isinstance(processor, str):
            return processor
        source = processor or self.cfg.processor or self.cfg.pretrained
        if source == "tiny":
            return tiny_processor(self.family, hf, self.image_size)
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(resolve_pretrained(source))

    def _enable_gradient_checkpointing(self) -> None:
        # activation_checkpointing_enable is the transformers >= 5 name
        enable = (
            getattr(self.hf_model, "activation_checkpointing_enable", None)
            or self.hf_model.gradient_checkpointing_enable
        )
        enable({"use_reentrant": False})

    def _set_trainable(self, trainable) -> None:
        # LoRA adapters were only added where the config asked for them, so every one of them learns
        want = {
            "vision": trainable.vision == "full",
            "projector": trainable.projector == "full",
            "llm": trainable.llm == "full",
            "gaze_head": True,
        }
        for name, p in self.named_parameters():
            component = vlm_component(name)
            p.requires_grad_(component.endswith(".lora") or want[component])

    # ------------------------------------------------------------------ small helpers

    @property
    def hf_model(self) -> nn.Module:
        return self.llm.get_base_model() if hasattr(self.llm, "get_base_model") else self.llm

    @property
    def device(self) -> torch.device:
        return next(self.gaze_head.parameters()).device

    @property
    def num_visual_tokens(self) -> int:
        """Image tokens per image in the LLM's input (where the processor puts them)."""
        if self._n_image_tokens is None:
            from PIL import Image

            with torch.device("cpu"):
                out = self.processor(text=[IMAGE_MARK[self.family]], images=[Image.new("RGB", (self.image_size,) * 2)])
            image_token = self.tokenizer.convert_tokens_to_ids(self.processor.image_token)  # the processor's own
            self._n_image_tokens = sum(int(t == image_token) for t in out["input_ids"][0])
        return self._n_image_tokens

    # ------------------------------------------------------------------ the model interface (`models/base.py`)

    @property
    def image_input(self) -> VLMImageInput:
        return self.encoder

    def component(self, name: str) -> str:
        return vlm_component(name)

    def infer_tasks(self, batch: dict, tasks: list[str], method: str = "auto") -> dict:
        """Each task on its own prompt (the box text and the task's question precede the image's end in a VLM's
        sequence for some families, so no prefix is shared across tasks)."""
        out = {}
        for name in tasks:
            one = {**batch, "task": name}
            out[name] = self._heatmap(one) if self.tasks[name].readout == "heatmap" else self._class_scores(one, method)
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        if self.cfg.trainable.vision == "frozen":  # a frozen tower never runs dropout
            inner = self.hf_model.model
            (getattr(inner, "vision_tower", None) or inner.visual).eval()
        return self

    def template(self, task: str) -> str:
        """The rendered user turn of a task, with the model's image mark and BOX_SLOT for the box text."""
        if task not in self._templates:
            instruction = self.tasks[task].instruction()
            if self.cfg.boxes == "text":
                instruction = instruction.replace(IMAGE_PLACEHOLDER, f"{IMAGE_PLACEHOLDER}\n{BOX_SLOT}", 1)
            before, after = instruction.split(IMAGE_PLACEHOLDER, 1)
            if getattr(self.processor, "chat_template", None):
                content = [{"type": "text", "text": before}] if before.strip() else []
                content += [{"type": "image"}, {"type": "text", "text": after.lstrip("\n")}]
                text = self.processor.apply_chat_template(
                    [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
                )
            else:
                text = f"User: {before}{IMAGE_MARK[self.family]}{after}\nAssistant:"
            self._templates[task] = text
        return self._templates[task]

    def prompt_texts(self, batch: dict) -> list[str]:
        template = self.template(batch["task"])
        texts = []
        for boxes, roles in zip(batch["boxes"].tolist(), batch["box_roles"].tolist()):
            kept = [b for _, b in sorted((r, b) for b, r in zip(boxes, roles) if r >= 0)]
            texts.append(template.replace(BOX_SLOT, box_text(self.family, kept)))
        return texts

    def prompt_ids(self, batch: dict) -> list[list[int]]:
        """Token ids of each row's prompt, the image mark expanded to `num_visual_tokens` image tokens."""
        n = self.num_visual_tokens
        out = []
        for ids in self.tokenizer(self.prompt_texts(batch)).input_ids:
            at = [i for i, t in enumerate(ids) if t == self.image_token_id]
            if len(at) != 1:
                raise ValueError(f"expected one image token in the rendered prompt, found {len(at)}")
            out.append(ids[: at[0]] + [self.image_token_id] * n + ids[at[0] + 1 :])
        return out

    def model_inputs(self, batch: dict, continuations: list[list[int]] | None = None) -> dict:
        """Left-padded input_ids, attention_mask, explicit position_ids and the pixel inputs of a batch."""
        seqs = self.prompt_ids(batch)
        if continuations is not None:
            seqs = [s + c for s, c in zip(seqs, continuations)]
        width, pad, dev = max(len(s) for s in seqs), self.tokenizer.pad_token_id, self.device
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=dev)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=dev)
        pixels, b = batch["pixel_values"].to(dev), len(seqs)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.family == "qwen2vl":
            side = self.grid[0] * self.hf_model.config.vision_config.spatial_merge_size
            thw = torch.tensor([[1, side, side]] * b, device=dev)
            inputs.update(pixel_values=pixels.flatten(0, 1), image_grid_thw=thw)
            inputs["position_ids"], _ = self.hf_model.model.get_rope_index(
                input_ids=ids,
                mm_token_type_ids=(ids == self.image_token_id).int(),
                image_grid_thw=thw,
                attention_mask=mask,
            )
        else:
            inputs.update(pixel_values=pixels, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
            if self.family == "onevision":
                inputs.update(
                    image_sizes=torch.tensor([[self.image_size] * 2] * b, device=dev),
                    batch_num_images=torch.ones(b, dtype=torch.long, device=dev),
                )
        return inputs

    def image_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, h*w) indices of the image tokens the gaze head reads, found from the image token id."""
        is_image = input_ids == self.image_token_id
        n = int(is_image[0].sum())
        if not (is_image.sum(1) == n).all():
            raise ValueError("rows hold different numbers of image tokens")
        pos = is_image.nonzero()[:, 1].view(input_ids.shape[0], n)
        return pos[:, self._grid_offset : self._grid_offset + self.grid[0] * self.grid[1]]

    def gaze_from_hidden(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        idx = self.image_positions(input_ids)
        image_hidden = hidden.gather(1, idx[..., None].expand(-1, -1, hidden.shape[-1]))
        return self.gaze_head(image_hidden, hidden[:, -1])

    def _hidden(self, inputs: dict, **kwargs):
        return self.hf_model.model(**inputs, **kwargs)

    # ------------------------------------------------------------------ training

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        task = self.tasks[batch["task"]]
        readout = self._heatmap_readout if task.readout == "heatmap" else self._answer_readout
        return task.loss(readout(batch), batch)

    def _heatmap_readout(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = self.model_inputs(batch)
        hidden = self._hidden(inputs, use_cache=False).last_hidden_state
        return self.gaze_from_hidden(hidden, inputs["input_ids"])

    def _answer_readout(self, batch: dict) -> dict[str, torch.Tensor]:
        """Token-level cross-entropy of each row's verbalizer after its prompt (the VLM recipes' LM loss)."""
        answers = self.answers(batch["task"])
        seqs = [answers[c] for c in batch["labels"].tolist()]
        inputs = self.model_inputs(batch, [s[:-1] for s in seqs])
        hidden = self._hidden(inputs, use_cache=False).last_hidden_state
        width = inputs["input_ids"].shape[1]
        # the answer of row i fills its last len(s) - 1 positions; position t predicts token t + 1
        rows = torch.tensor([i for i, s in enumerate(seqs) for _ in s], device=self.device)
        cols = torch.tensor([width - len(s) + t for s in seqs for t in range(len(s))], device=self.device)
        targets = torch.tensor([tok for s in seqs for tok in s], device=self.device)
        logits = self.hf_model.get_output_embeddings()(hidden[rows, cols]).float()
        return {"answer_nll": F.cross_entropy(logits, targets), "n_supervised": torch.tensor(len(targets))}

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def _heatmap(self, batch: dict) -> dict[str, torch.Tensor]:
        inputs = self.model_inputs(batch)
        out = self.gaze_from_hidden(self._hidden(inputs, use_cache=False).last_hidden_state, inputs["input_ids"])
        return heatmap_prediction(out)

    @torch.no_grad()
    def _class_scores(self, batch: dict, method: str = "auto") -> torch.Tensor:
        """Class log-probabilities (B, C), trie-constrained exactly as SocialFusionModel.infer_tasks: the
        prompt pass (keeping its KV cache only when the verbalizer trie needs a continuation), then the trie's
        branching nodes and their ancestors in one pass on that cache, with tree attention (`packing.py`)."""
        task = batch["task"]
        plan = plan_scoring(self.answers(task), method, task)
        inputs = self.model_inputs(batch)
        out = self._hidden(inputs, use_cache=bool(plan.nodes))
        head = self.hf_model.get_output_embeddings()
        tree_hidden = None
        if plan.nodes:
            mask, pos = inputs["attention_mask"], inputs["position_ids"]
            b, n = mask.shape[0], len(plan.nodes)
            allowed, depth = ancestry(plan.parents)
            # a node sees the row's prompt (minus its left padding) and its own trie ancestors
            full = torch.cat(
                [
                    mask.bool()[:, None, None, :].expand(b, 1, n, -1),
                    allowed.to(self.device)[None, None].expand(b, 1, n, n),
                ],
                dim=-1,
            )
            cont = {
                "input_ids": torch.tensor(plan.tokens, device=self.device).expand(b, -1),
                "attention_mask": attention_mask(
                    full, self.hf_model.config.get_text_config(), out.last_hidden_state.dtype
                ),
                "position_ids": pos[..., -1:]
                + 1
                + depth.to(self.device),  # left padding: the last column is every row's last token
            }
            tree_hidden = self._hidden(cont, cache=out.cache, use_cache=True).last_hidden_state
        return class_scores(plan, head, out.last_hidden_state[:, -1], tree_hidden)
