"""The recipe's clipping optimizers as ``torch.optim.Optimizer``s (twins of :mod:`scaleinv.optim`;
the tests check that both give the same float64 trajectory). The rotational wrapper is
:mod:`scaleinv.torch.rotational`.

* :class:`SGDWD` -- SGD + weight decay (no momentum) + relative global clipping, per param group
  (talk, "Ingredient 2" and "Ingredient 3"; paper Sec. 5):

      g_S <- g_S * min(1, sqrt(2 C lambda / eta) ||x_S|| / ||g_S||)      (one norm per group S)
      x(t+1) = (1 - eta lambda) x(t) - eta g_S(t)

  Without momentum coupled and decoupled weight decay coincide; as in :func:`scaleinv.optim.sgd_wd`
  the step is x - eta (g + lambda x).
* :class:`RelativeGlobalClip` -- the same clipping in front of ANY torch optimizer (clip, then the
  inner ``step``), per param group with the group's ``lr`` and ``weight_decay``.
Whether a group clipped is reported by :meth:`SGDWD.clip_stats` / :meth:`RelativeGlobalClip.clip_stats`
(one :class:`ClipStats` per param group, like :class:`scaleinv.optim.RelativeClipState`).
A group is clipped iff its ``clip`` option is True; the default ``clip=None`` means "iff
weight_decay > 0" (the threshold needs lambda > 0: no-decay groups such as biases or a head pass
unchanged). ``clip=True`` with ``weight_decay == 0`` is an error.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional

import torch
from torch.optim import Optimizer


__all__ = ["ClipStats", "SGDWD", "RelativeGlobalClip", "relative_clip_"]


class ClipStats(NamedTuple):
    """What relative global clipping did in one param group (Python numbers).

    count: steps taken; clipped: did the last step clip; grad_norm: ||g_S|| before clipping;
    threshold: sqrt(2 C lambda / eta) ||x_S|| + eps (inf for an unclipped group); num_clipped:
    clipped steps so far."""

    count: int
    clipped: bool
    grad_norm: float
    threshold: float
    num_clipped: int


def _positive(name, value, allow_zero=False):
    v = float(value)
    if not (v > 0 or (allow_zero and v == 0)) or v != v:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _clip_enabled(group) -> bool:
    clip, wd = group.get("clip", None), float(group.get("weight_decay", 0.0))
    if clip is None:
        return wd > 0
    if clip and not wd > 0:
        raise ValueError("relative global clipping needs weight_decay > 0 in its param group (threshold "
                         "sqrt(2 C weight_decay / lr) ||x||); set clip=False for groups without weight decay")
    return bool(clip)


def _check_C(C):
    try:
        C = float(C)
    except (TypeError, ValueError):
        raise TypeError(f"C must be a number > 1, got {C!r}") from None
    if not C > 1.0:
        raise ValueError(f"C must be > 1 (the talk's default is 2; the paper uses sqrt(C) = 2, i.e. C = 4), got C = {C}")
    return C


@torch.no_grad()
def relative_clip_(params: List[torch.Tensor], lr: float, weight_decay: float, C: float = 2.0,
                   eps: float = 0.0):
    """Clip the ``.grad`` of ``params`` (one group S) in place to sqrt(2 C lambda / eta) ||x_S|| + eps.

    ||x_S|| is over all of ``params``, ||g_S|| over those with a gradient. Returns
    (clipped, grad_norm, threshold) as Python numbers. Edge cases as in
    :func:`scaleinv.optim.relative_global_clip`: ||x_S|| = 0 -> threshold eps (a nonzero gradient
    is clipped to 0, also for eta = 0); eta = 0 with ||x_S|| > 0 -> threshold inf (no clipping);
    an inf / NaN in g_S or x_S -> every gradient entry of S becomes NaN and ``clipped`` is False."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return False, 0.0, float("nan")
    g_norm = float(torch.sqrt(sum(torch.sum(torch.square(g.double())) for g in grads)))
    x_norm = float(torch.sqrt(sum(torch.sum(torch.square(p.double())) for p in params)))
    if not (math.isfinite(g_norm) and math.isfinite(x_norm)):
        for g in grads:
            g.fill_(float("nan"))
        return False, g_norm, float("nan")
    if x_norm == 0:
        threshold = float(eps)
    elif lr == 0:
        threshold = float("inf")
    else:
        threshold = math.sqrt(2.0 * C * weight_decay / lr) * x_norm + eps
    clipped = g_norm > threshold
    if clipped:
        factor = threshold / g_norm
        for g in grads:
            g.mul_(factor)
    return clipped, g_norm, threshold


class _ClipBookkeeping:
    """Per-group :class:`ClipStats` kept in a list (saved in ``state_dict()['relative_clip']``)."""

    def _init_stats(self):
        self._clip_stats = [ClipStats(0, False, float("nan"), float("inf"), 0) for _ in self.param_groups]

    def _clip_groups(self, C_default=None):
        while len(self._clip_stats) < len(self.param_groups):  # groups added after construction
            self._clip_stats.append(ClipStats(0, False, float("nan"), float("inf"), 0))
        for i, group in enumerate(self.param_groups):
            old = self._clip_stats[i]
            if _clip_enabled(group):
                C = group.get("C", C_default)
                clipped, gn, thr = relative_clip_(group["params"], group["lr"], group["weight_decay"], C,
                                                  group.get("clip_eps", 0.0))
            else:
                clipped, gn, thr = False, float("nan"), float("inf")
            self._clip_stats[i] = ClipStats(old.count + 1, clipped, gn, thr, old.num_clipped + int(clipped))

    def clip_stats(self) -> List[ClipStats]:
        """One :class:`ClipStats` per param group (the last step)."""
        return list(self._clip_stats)

    def _stats_state(self):
        return [s._asdict() for s in self._clip_stats]

    def _load_stats(self, rows):
        self._clip_stats = [ClipStats(**r) for r in rows]


class SGDWD(_ClipBookkeeping, Optimizer):
    """SGD + weight decay + relative global clipping (the SIBERT encoder recipe), per param group.

    Args:
      params: parameters or param groups (group options: ``lr``, ``weight_decay``, ``C``, ``clip``).
      lr: eta (> 0); weight_decay: lambda (>= 0); C: clipping constant (> 1, default 2);
      clip: None (clip iff weight_decay > 0), True or False (see the module docstring).

    Twin of ``scaleinv.optim.sgd_wd_rgc(lr, weight_decay, C)`` (``sgd_wd`` where ``clip=False``)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0, C: float = 2.0,
                 clip: Optional[bool] = None):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, C=C, clip=clip, clip_eps=0.0))
        self._init_stats()

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        g = self.param_groups[-1]
        _positive("lr", g["lr"])
        _positive("weight_decay", g["weight_decay"], allow_zero=True)
        g["C"] = _check_C(g["C"])
        _clip_enabled(g)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._clip_groups()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.clone()
                if wd != 0:
                    d.add_(p, alpha=wd)
                p.add_(d, alpha=-lr)
        return loss

    def state_dict(self):
        sd = super().state_dict()
        sd["relative_clip"] = self._stats_state()
        return sd

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        rows = state_dict.pop("relative_clip", None)
        super().load_state_dict(state_dict)
        if rows is not None:
            self._load_stats(rows)


class _Wrapper(Optimizer):
    """An Optimizer that shares the inner optimizer's param groups (the same dicts, so LR
    schedulers and ``add_param_group`` act on both) and state; torch's step hooks work on it."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self.param_groups = optimizer.param_groups
        self.state = optimizer.state

    def add_param_group(self, param_group):
        if hasattr(self, "_shared"):
            self.optimizer.add_param_group(param_group)
        else:  # during Optimizer.__init__: the dicts are the inner optimizer's own
            Optimizer.add_param_group(self, param_group)

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _extra_state(self):
        return {}

    def _load_extra(self, extra):
        pass

    def state_dict(self):
        return {"inner": self.optimizer.state_dict(), "extra": self._extra_state()}

    def load_state_dict(self, state_dict):
        self.optimizer.load_state_dict(state_dict["inner"])
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
        self._load_extra(state_dict.get("extra", {}))

    def __repr__(self):
        return f"{type(self).__name__}({self.optimizer!r})"


class RelativeGlobalClip(_ClipBookkeeping, _Wrapper):
    """Relative global clipping in front of any torch optimizer, per param group:

        g_S <- g_S * min(1, sqrt(2 C lambda / eta) ||x_S|| / ||g_S||)

    with eta = group["lr"] and lambda = group["weight_decay"] read at every step (so LR
    schedulers are followed), then ``optimizer.step()``. Groups without weight decay are not
    clipped unless they set ``clip=True`` (an error). ``C`` may be overridden per group (``C``).
    Wrapping ``torch.optim.SGD(params, lr, weight_decay=wd)`` gives the twin of
    ``scaleinv.optim.sgd_wd_rgc(lr, wd, C)``."""

    def __init__(self, optimizer: Optimizer, C: float = 2.0, eps: float = 0.0):
        self.C = _check_C(C)
        _positive("eps", eps, allow_zero=True)
        self.eps = float(eps)
        _Wrapper.__init__(self, optimizer)
        self._shared = True
        for g in self.param_groups:
            if "C" in g:
                g["C"] = _check_C(g["C"])
            g.setdefault("clip_eps", self.eps)
            _clip_enabled(g)
        self._init_stats()

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            g.setdefault("clip_eps", self.eps)
        self._clip_groups(C_default=self.C)
        self.optimizer.step()
        return loss

    def _extra_state(self):
        return {"relative_clip": self._stats_state()}

    def _load_extra(self, extra):
        if "relative_clip" in extra:
            self._load_stats(extra["relative_clip"])
