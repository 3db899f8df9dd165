"""The one place attention masks are built: token groups -> boolean [S, S] mask (True = may attend).

    sequence = concat of groups in `groups_for(variant)` order; each group is a run of tokens
      first   clean first-frame video tokens (the shared context; video expert)
      future  noisy future-frame video tokens (video expert; L_vid)
      cond    idm only: ground-truth future video, noise-augmented (video expert; conditions actions)
      action  noisy action tokens (action expert; L_act)

    query group -> key groups it may see (video never sees actions in any variant)
      fastwam  first->first; future->first,future; action->first,action
      joint    first->first; future->first,future; action->first,future,action
      idm      first->first; future->first,future; cond->first,cond; action->first,cond,action
      novideo  first->first; action->first,action                          (no future tokens at all)

Fast-WAM (`mot.py` + `fastwam*.py::_build_mot_attention_mask`, video mode "first_frame_causal"):
  fastwam.py        video->video first-frame-causal; action->action; action->first frame only
  fastwam_joint.py  same, but action->ALL video tokens; video rows never get action columns
  fastwam_idm.py    [noisy video | cond video | action]: each video copy first-frame-causal within itself,
                    action->action and action->the whole cond copy (its own first frame included), nothing else.
                    Its two first frames are the same clean latents at t = 0 seeing only themselves, so
                    their K/V are identical; we keep ONE shared `first` group that both futures and the
                    actions see. Every query sees exactly the keys it sees in Fast-WAM (one copy of the first
                    frame), so the attention output is the same, with one first frame less to compute.
"""

from __future__ import annotations

import torch

from fastwam_train.config import VARIANTS

GROUPS_BY_VARIANT: dict[str, tuple[str, ...]] = {
    "fastwam": ("first", "future", "action"),
    "joint": ("first", "future", "action"),
    "idm": ("first", "future", "cond", "action"),
    "novideo": ("first", "action"),
}

_BASE = {("first", "first"), ("future", "first"), ("future", "future"),
         ("action", "first"), ("action", "action")}
REACH: dict[str, frozenset[tuple[str, str]]] = {
    "fastwam": frozenset(_BASE),
    "joint": frozenset(_BASE | {("action", "future")}),
    "idm": frozenset({("first", "first"), ("future", "first"), ("future", "future"), ("cond", "first"),
                      ("cond", "cond"), ("action", "first"), ("action", "cond"), ("action", "action")}),
    "novideo": frozenset({("first", "first"), ("action", "first"), ("action", "action")}),
}


def groups_for(variant: str) -> tuple[str, ...]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return GROUPS_BY_VARIANT[variant]


def group_slices(sizes: dict[str, int], order: tuple[str, ...]) -> dict[str, slice]:
    out, start = {}, 0
    for g in order:
        out[g] = slice(start, start + sizes.get(g, 0))
        start += sizes.get(g, 0)
    return out


def build_mask(variant: str, sizes: dict[str, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [S, S] mask over the groups of `variant` (groups missing from `sizes` have 0 tokens)."""
    order = groups_for(variant)
    unknown = set(sizes) - set(order)
    if unknown:
        raise ValueError(f"variant {variant!r} has no token groups {sorted(unknown)}")
    sl = group_slices(sizes, order)
    total = sum(sizes.get(g, 0) for g in order)
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    for q, k in REACH[variant]:
        mask[sl[q], sl[k]] = True
    return mask
