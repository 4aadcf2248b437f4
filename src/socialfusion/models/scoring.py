"""Trie-constrained verbalizer scoring, shared by SocialFusion and the VLM baselines.

Each class's score is the sum, over its answer tokens, of the log-softmax restricted to the tokens that continue
some verbalizer sharing the prefix so far (a trie). Those scores sum to one over classes, so they are the class
probabilities the mAP metrics need.

At a trie node with a single child the restricted softmax is exactly log 1 = 0, so only *branching* nodes (>= 2
children) contribute, and only their hidden states are needed. The root is the prompt's last position; the other
branching nodes, with their ancestors, form a small token tree that the models feed in one decoder pass (tree
attention: a node sees the prompt and its own ancestors only, see `packing.py`). When all verbalizers start with
different tokens only the root branches and the tree is empty: the logits after the prompt alone give the scores.

Only the LM-head rows of tokens that occur in some verbalizer are ever needed (the restricted softmax never looks
at any other token), so logits are computed over that small vocabulary instead of the whole one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def subset_logits(head: nn.Module, hidden: torch.Tensor, vocab: list[int]) -> torch.Tensor:
    """LM-head logits for the tokens in `vocab` only: hidden (..., d) -> (..., len(vocab)), in float32."""
    rows = torch.as_tensor(vocab, device=hidden.device)
    weight = head.weight[rows]
    bias = head.bias[rows] if getattr(head, "bias", None) is not None else None
    return F.linear(hidden.to(weight.dtype), weight, bias).float()


@dataclass(frozen=True)
class ScoringPlan:
    """What scoring one task's verbalizers needs; build it with `plan_scoring`.

    The token tree to feed after the prompt: node i is the prefix `nodes[i]`, fed as its last token `tokens[i]`
    under `parents[i]` (-1: directly after the prompt). Branching node k is `branch_rows[k]` (0 = the prompt's
    last position, i + 1 = tree node i) with the allowed next tokens `branch_mask[k]` over `vocab`. Edge e is
    (branch `edge_branch[e]`, token `edge_token[e]` over `vocab`); class c takes the edges `class_edges[c]`
    (padded with -1, which reads a constant 0); edge e leaves its branch at answer position `edge_position[e]`
    (the number of answer tokens before it).
    """

    vocab: list[int]
    nodes: list[tuple[int, ...]]
    tokens: list[int]
    parents: list[int]
    branch_rows: torch.Tensor
    branch_mask: torch.Tensor
    edge_branch: torch.Tensor
    edge_token: torch.Tensor
    class_edges: torch.Tensor
    edge_position: torch.Tensor


@lru_cache(maxsize=64)
def _plan(answers: tuple[tuple[int, ...], ...]) -> ScoringPlan:
    children: dict[tuple[int, ...], list[int]] = {}
    for a in answers:
        for t in range(len(a)):
            kids = children.setdefault(a[:t], [])
            if a[t] not in kids:
                kids.append(a[t])
    branching = sorted((p for p, kids in children.items() if len(kids) >= 2), key=lambda p: (len(p), p))
    # the tree: every non-root branching node with all its ancestors, shortest first (so parents come first)
    nodes = sorted({p[:k] for p in branching for k in range(1, len(p) + 1)}, key=lambda p: (len(p), p))
    node_index = {p: i for i, p in enumerate(nodes)}
    vocab = sorted({tok for a in answers for tok in a})
    col = {tok: i for i, tok in enumerate(vocab)}
    branch_index = {p: k for k, p in enumerate(branching)}
    edges = [(k, tok) for k, p in enumerate(branching) for tok in sorted(children[p])]
    edge_index = {e: i for i, e in enumerate(edges)}
    per_class = [
        [edge_index[branch_index[a[:t]], a[t]] for t in range(len(a)) if a[:t] in branch_index] for a in answers
    ]
    width = max(1, max(len(e) for e in per_class))
    mask = torch.zeros(len(branching), len(vocab), dtype=torch.bool)
    for k, p in enumerate(branching):
        mask[k, [col[tok] for tok in children[p]]] = True
    return ScoringPlan(
        vocab=vocab,
        nodes=nodes,
        tokens=[p[-1] for p in nodes],
        parents=[node_index[p[:-1]] if len(p) > 1 else -1 for p in nodes],
        branch_rows=torch.tensor([0 if not p else node_index[p] + 1 for p in branching], dtype=torch.long),
        branch_mask=mask,
        edge_branch=torch.tensor([k for k, _ in edges], dtype=torch.long),
        edge_token=torch.tensor([col[tok] for _, tok in edges], dtype=torch.long),
        class_edges=torch.tensor([e + [-1] * (width - len(e)) for e in per_class], dtype=torch.long),
        edge_position=torch.tensor([len(branching[k]) for k, _ in edges], dtype=torch.long),
    )


def plan_scoring(answers: list[list[int]], method: str = "auto", task: str = "") -> ScoringPlan:
    """The plan for the verbalizers `answers` (token ids each ending with EOS, so none is a prefix of another).

    method: `auto` or `full` (the same computation; `full` is kept as a name for callers and tests), or `fast`,
    which insists that the verbalizers start with different tokens, i.e. that the tree is empty.
    """
    if method not in ("auto", "fast", "full"):
        raise ValueError(f"unknown scoring method {method!r} (auto, fast, full)")
    firsts = [a[0] for a in answers]
    if method == "fast" and len(set(firsts)) != len(firsts):
        raise ValueError(f"task {task}: verbalizers share a first token; the fast path does not apply")
    return _plan(tuple(tuple(a) for a in answers))


def class_scores(
    plan: ScoringPlan, head: nn.Module, first_hidden: torch.Tensor, tree_hidden: torch.Tensor | None
) -> torch.Tensor:
    """Class log-probabilities (B, C) from the hidden state after the prompt (B, d) and after each tree node
    (B, len(plan.nodes), d; None when the tree is empty)."""
    hidden = first_hidden[:, None]
    if plan.nodes:
        hidden = torch.cat([hidden, tree_hidden.to(hidden.dtype)], dim=1)
    dev = hidden.device
    logits = subset_logits(head, hidden[:, plan.branch_rows.to(dev)], plan.vocab)  # (B, K, V')
    lse = logits.masked_fill(~plan.branch_mask.to(dev), float("-inf")).logsumexp(-1)  # over each node's children
    branch, token = plan.edge_branch.to(dev), plan.edge_token.to(dev)
    edge_logp = logits[:, branch, token] - lse[:, branch]  # (B, E): the restricted log-softmax of every edge
    # column 0 is a constant 0 for the padding of shorter edge lists: adding it changes no sum
    edge_logp = torch.cat([torch.zeros_like(edge_logp[:, :1]), edge_logp], dim=1)
    return edge_logp[:, plan.class_edges.to(dev) + 1].sum(-1)


def verbalizer_nll(
    plan: ScoringPlan, head: nn.Module, answer_hidden: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean over rows of -log P(label) under the scores of `class_scores`, from teacher-forced hidden states:
    answer_hidden (B, W, d) holds at [:, t] the hidden state that predicts answer token t of the row's own label.

    This is the `verbalizer` answer loss: the softmax at each branching node is restricted to the tokens that
    continue some verbalizer (PET's verbalizer cross-entropy, Schick & Schuetze 2021), so training optimises the
    very decision the scorer reads, instead of first pushing down the rest of the vocabulary (the `lm` loss).
    """
    dev = answer_hidden.device
    edges = plan.class_edges.to(dev)[labels.to(dev)]  # (B, E), -1 = padding
    on_path = edges >= 0
    edges = edges.clamp(min=0)
    branch, token = plan.edge_branch.to(dev)[edges], plan.edge_token.to(dev)[edges]  # (B, E)
    position = plan.edge_position.to(dev)[edges].clamp(max=answer_hidden.shape[1] - 1)
    hidden = answer_hidden.gather(1, position[..., None].expand(-1, -1, answer_hidden.shape[-1]))  # (B, E, d)
    logits = subset_logits(head, hidden, plan.vocab).masked_fill(~plan.branch_mask.to(dev)[branch], float("-inf"))
    logp = logits.log_softmax(-1).gather(-1, token[..., None]).squeeze(-1)  # (B, E)
    return -(logp * on_path).sum() / labels.shape[0]
