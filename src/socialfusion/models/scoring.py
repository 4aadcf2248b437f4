"""Trie-constrained verbalizer scoring, shared by SocialFusion and the VLM baselines.

Each class's score is the sum, over its answer tokens, of the log-softmax restricted to the tokens that continue
some verbalizer sharing the prefix so far (a trie). Those scores sum to one over classes, so they are the class
probabilities the mAP metrics need. When all verbalizers start with different tokens the trie branches only at the
root, and the logits after the prompt alone give the exact same numbers (`fast`); `full` walks every verbalizer.

Only the LM-head rows of tokens that occur in some verbalizer are ever needed (the restricted softmax never looks
at any other token), so logits are computed over that small vocabulary instead of the whole one.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def subset_logits(head: nn.Module, hidden: torch.Tensor, vocab: list[int]) -> torch.Tensor:
    """LM-head logits for the tokens in `vocab` only: hidden (..., d) -> (..., len(vocab)), in float32."""
    rows = torch.as_tensor(vocab, device=hidden.device)
    weight = head.weight[rows]
    bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
    return F.linear(hidden.to(weight.dtype), weight, bias).float()


def constrained_class_scores(
    answers: list[list[int]],
    first_hidden: torch.Tensor,
    head: nn.Module,
    continuation_hidden: Callable[[list[list[int]]], list[torch.Tensor]],
    method: str = "auto",
    task: str = "",
) -> torch.Tensor:
    """Class log-probabilities (B, C).

    answers: the token ids of each class's verbalizer (ending with EOS, so none is a prefix of another).
    first_hidden: (B, d) final hidden state after the prompt; head: the LM head (a Linear over the vocabulary).
    continuation_hidden(seqs): for each seq, the (B, len(seq), d) hidden states after the prompt followed by
    seq[:1], seq[:2], ...; called once, on the full path only, with each verbalizer minus its last token.
    """
    if method not in ("auto", "fast", "full"):
        raise ValueError(f"unknown scoring method {method!r} (auto, fast, full)")
    firsts = [a[0] for a in answers]
    distinct = len(set(firsts)) == len(firsts)
    if method == "fast" or (method == "auto" and distinct):
        if not distinct:
            raise ValueError(f"task {task}: verbalizers share a first token; the fast path does not apply")
        return F.log_softmax(subset_logits(head, first_hidden, firsts), dim=-1)
    vocab = sorted({tok for a in answers for tok in a})
    index = {tok: i for i, tok in enumerate(vocab)}
    first = subset_logits(head, first_hidden, vocab)  # (B, V')
    hidden = continuation_hidden([a[:-1] for a in answers])
    scores = []
    for seq, h in zip(answers, hidden):
        steps = [first] + (list(subset_logits(head, h, vocab).unbind(1)) if len(seq) > 1 else [])
        total = torch.zeros(first.shape[0], device=first.device)
        for t, logits in enumerate(steps):
            allowed = sorted({index[a[t]] for a in answers if len(a) > t and a[:t] == seq[:t]})
            total += logits[:, index[seq[t]]] - torch.logsumexp(logits[:, allowed], dim=-1)
        scores.append(total)
    return torch.stack(scores, dim=1)
