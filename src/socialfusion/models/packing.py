"""Tree attention: several continuations of one prefix packed into one decoder pass.

A packed sequence is a forest given by parent indices: each token attends to itself and its ancestors only, and
its position id is its depth, so every token computes exactly what it would at the end of its own root-to-token
path fed alone. This is how one pass scores a whole verbalizer trie (`scoring.py`) or runs several tasks'
prompts on one shared [text + image] prefix (`SocialFusionModel.infer_tasks`), without copying a KV cache.

transformers (`masking_utils._preprocess_mask_arguments`) hands a user's 4D mask to the attention function
unchanged, so it must already be in the attention implementation's own format: booleans (True = attend) for
sdpa, an additive float mask for eager.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=64)
def _ancestry(parents: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(parents)
    allowed = np.zeros((n, n), dtype=bool)
    depth = np.zeros(n, dtype=np.int64)
    for j, p in enumerate(parents):
        if p >= 0:
            if p >= j:
                raise ValueError(f"token {j}'s parent {p} does not come before it")
            allowed[j] = allowed[p]
            depth[j] = depth[p] + 1
        allowed[j, j] = True
    return torch.from_numpy(allowed), torch.from_numpy(depth)


def ancestry(parents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """allowed (N, N) bool: [i, j] when token j is token i or one of its ancestors; depth (N,): 0 for a root.

    `parents[j]` is the index of token j's parent (< j), or -1 for a root. The results are cached per layout
    (one per task prompt and trie); treat them as read-only.
    """
    return _ancestry(tuple(parents))


def is_chain(parents: list[int]) -> bool:
    """True for a plain sequence (each token's parent is the one before it): the ordinary causal mask."""
    return all(p == j - 1 for j, p in enumerate(parents))


def attention_mask(allowed: torch.Tensor, config, dtype: torch.dtype) -> torch.Tensor:
    """A 4D mask (B or 1, 1, queries, keys) from a boolean one, in the format `config`'s attention takes."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl == "sdpa":
        return allowed
    if impl == "eager":
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )
    raise NotImplementedError(f"tree attention needs the sdpa or eager attention implementation, not {impl!r}")
