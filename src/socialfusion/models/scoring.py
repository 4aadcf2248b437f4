"""Trie-constrained verbalizer scoring, shared by SocialFusion and the VLM baselines.

Each class's score is the sum, over its answer tokens, of the log-softmax restricted to the tokens that continue
some verbalizer sharing the prefix so far (a trie). Those scores sum to one over classes, so they are the class
probabilities the mAP metrics need. When all verbalizers start with different tokens the trie branches only at the
root, and the logits after the prompt alone give the exact same numbers (`fast`); `full` walks every verbalizer.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def constrained_class_scores(
    answers: list[list[int]],
    first_logits: torch.Tensor,
    continuation_logits: Callable[[list[int]], list[torch.Tensor]],
    method: str = "auto",
    task: str = "",
) -> torch.Tensor:
    """Class log-probabilities (B, C).

    answers: the token ids of each class's verbalizer (ending with EOS, so none is a prefix of another).
    first_logits: (B, V) next-token logits after the prompt.
    continuation_logits(ids): the (B, V) next-token logits after the prompt followed by ids[:1], ids[:2], ...
    (one tensor per id); only called on the full path, with ids = a verbalizer without its last token.
    """
    if method not in ("auto", "fast", "full"):
        raise ValueError(f"unknown scoring method {method!r} (auto, fast, full)")
    firsts = [a[0] for a in answers]
    distinct = len(set(firsts)) == len(firsts)
    if method == "fast" or (method == "auto" and distinct):
        if not distinct:
            raise ValueError(f"task {task}: verbalizers share a first token; the fast path does not apply")
        return F.log_softmax(first_logits.float()[:, firsts], dim=-1)
    scores = []
    for seq in answers:
        logits = [first_logits.float()]
        if len(seq) > 1:
            logits.extend(step.float() for step in continuation_logits(seq[:-1]))
        total = torch.zeros(first_logits.shape[0], device=first_logits.device)
        for t, step_logits in enumerate(logits):
            allowed = sorted({a[t] for a in answers if len(a) > t and a[:t] == seq[:t]})
            total += step_logits[:, seq[t]] - torch.logsumexp(step_logits[:, allowed], dim=-1)
        scores.append(total)
    return torch.stack(scores, dim=1)
