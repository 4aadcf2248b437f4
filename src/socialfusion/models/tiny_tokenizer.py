"""A small byte-level BPE tokenizer trained in-process on the task prompts, for tests: no download.

Class names are deliberately left to split into several tokens, so that multi-token verbalizers (and the
full scoring path) are exercised by the tiny preset.
"""

from __future__ import annotations

from functools import lru_cache

from ..tasks import TASK_NAMES, TASKS, load_all


def _corpus() -> list[str]:
    """The built-in tasks' prompts only: a task registered later must not change the tokenizer (and with it the
    tiny model and every stored figure)."""
    load_all()
    lines = ["User:", "Assistant:", "yes", "no"]
    for name in sorted(TASK_NAMES):
        task = TASKS.get(name)()
        lines.extend(task.prompt_templates.values())
    return lines


@lru_cache(maxsize=1)
def build_tiny_tokenizer(vocab_size: int = 320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
