"""The recipe's optimizers as ``torch.optim.Optimizer``s (twins of :mod:`scaleinv.optim` and
:mod:`scaleinv.rotational`; the tests check that both give the same float64 trajectory).

* :class:`SGDWD` -- SGD + weight decay (no momentum) + relative global clipping, per param group
  (talk, "Ingredient 2" and "Ingredient 3"; paper Sec. 5):

      g_S <- g_S * min(1, sqrt(2 C lambda / eta) ||x_S|| / ||g_S||)      (one norm per group S)
      x(t+1) = (1 - eta lambda) x(t) - eta g_S(t)

  Without momentum coupled and decoupled weight decay coincide; as in :func:`scaleinv.optim.sgd_wd`
  the step is x - eta (g + lambda x).
* :class:`RelativeGlobalClip` -- the same clipping in front of ANY torch optimizer (clip, then the
  inner ``step``), per param group with the group's ``lr`` and ``weight_decay``.
* :class:`Rotational` -- the rotational wrapper of Kosson et al. (ICML 2024; REQ
  ``RotationalWrapper``): every neuron (row ``p.reshape(p.shape[0], -1)[i]``, PyTorch's
  (out, in, ...) layout) or whole tensor keeps its initial norm n and rotates by ~eta_r per step
  along the inner optimizer's update u (radial part and mean removed)::

      p  <- n centre(p) / ||centre(p)||,     u <- centre(u - p <u, p> / n^2)
      s  <- beta s + (1 - beta) ||u||^2,     p' = p + eta_r n u / (sqrt(s / (1 - beta^t)) + eps)
      p' <- n p' / ||p'||

  eta_r defaults to the inner optimizer's equilibrium angle (:func:`scaleinv.theory.equilibrium_angle`):
  sqrt(2 eta lambda) for :class:`SGDWD`, sqrt(2 eta lambda / (1 + alpha)) for ``torch.optim.SGD``
  (momentum alpha, L2 through the momentum), sqrt(2 eta lambda (1 - beta1) / (1 + beta1)) for
  ``torch.optim.AdamW``.

Whether a group clipped is reported by :meth:`SGDWD.clip_stats` / :meth:`RelativeGlobalClip.clip_stats`
(one :class:`ClipStats` per param group, like :class:`scaleinv.optim.RelativeClipState`).
A group is clipped iff its ``clip`` option is True; the default ``clip=None`` means "iff
weight_decay > 0" (the threshold needs lambda > 0: no-decay groups such as biases or a head pass
unchanged). ``clip=True`` with ``weight_decay == 0`` is an error.
"""
from __future__ import annotations

import math
from typing import Callable, List, NamedTuple, Optional, Union

import torch
from torch.optim import Optimizer

from scaleinv import theory

__all__ = ["ClipStats", "SGDWD", "RelativeGlobalClip", "Rotational", "relative_clip_", "equilibrium_target"]


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


def equilibrium_target(optimizer: Optimizer, group: dict) -> float:
    """Equilibrium angular update eta_r of ``optimizer`` for one param group
    (:func:`scaleinv.theory.equilibrium_angle`): SGDWD -> "sgd"; torch.optim.SGD -> "sgdm" with
    the group's momentum; torch.optim.AdamW -> "adamw" with beta1. The weight decay is the
    group's ``weight_decay`` (for :class:`Rotational` groups whose L2 was moved out of the
    momentum, the original value kept in ``rotational_weight_decay``)."""
    inner = optimizer.optimizer if isinstance(optimizer, (RelativeGlobalClip,)) else optimizer
    lr = float(group["lr"])
    wd = float(group.get("rotational_weight_decay", group.get("weight_decay", 0.0)))
    if not wd > 0:
        raise ValueError("the equilibrium angle needs weight_decay > 0 in the param group "
                         "(rotational equilibrium is a balance of weight decay and gradient growth)")
    if isinstance(inner, SGDWD):
        return float(theory.equilibrium_angle("sgd", lr, wd))
    if isinstance(inner, torch.optim.SGD):
        if group.get("nesterov") or group.get("dampening", 0):
            raise ValueError("no equilibrium angle for Nesterov / dampened SGD: pass target= explicitly")
        return float(theory.equilibrium_angle("sgdm", lr, wd, momentum=float(group.get("momentum", 0.0))))
    if isinstance(inner, torch.optim.AdamW):
        return float(theory.equilibrium_angle("adamw", lr, wd, beta1=float(group["betas"][0])))
    raise ValueError(f"no closed-form equilibrium angle for {type(inner).__name__} (known: SGDWD, "
                     "torch.optim.SGD, torch.optim.AdamW): pass target= explicitly")


def _rows(x: torch.Tensor, per_neuron: bool) -> torch.Tensor:
    return x.reshape(x.shape[0], -1) if per_neuron else x.reshape(1, -1)


def _centre(rows, zero_mean):
    return rows - rows.mean(dim=1, keepdim=True) if zero_mean else rows


def _row_norm(rows):
    return torch.sqrt(torch.sum(torch.square(rows), dim=1))


class Rotational(_Wrapper):
    """Rotational variant of a torch optimizer (Kosson et al. 2024; twin of
    :func:`scaleinv.rotational.rotational` with ``neuron_axis=0``), see the module docstring.

    Args:
      optimizer: the inner optimizer (its update's direction is used; its scale is divided out).
      target: eta_r in radians per step: None (the inner optimizer's equilibrium angle per param
        group, :func:`equilibrium_target`, re-read every step so LR schedules are followed), a
        float, or a callable ``step -> float`` (step = 0, 1, ...).
      rotate: which parameters are rotational: None (``p.ndim > 1``, REQ's default), a callable
        ``p -> bool`` or a collection of parameters.
      per_neuron: rows (True) or whole tensors (False) keep their norm.
      zero_mean, update_norm_decay (beta), eps: as in REQ (True, 0.9, 1e-8).
      divide_by_lr: divide the inner update by the group's lr (REQ's units for u and eps; the
        twin of ``inner_learning_rate=`` in the JAX wrapper).

    For ``torch.optim.SGD`` the L2 term must not enter the rotational weights' momentum (REQ):
    rotational parameters of groups with weight decay are moved into their own param groups with
    ``weight_decay=0`` (the original value kept as ``rotational_weight_decay`` for the target).
    Wrap before creating an LR scheduler. The rotational state (n, s, count) is in ``state_dict()``.
    """

    def __init__(self, optimizer: Optimizer, target: Union[None, float, Callable[[int], float]] = None, *,
                 rotate=None, per_neuron: bool = True, zero_mean: bool = True,
                 update_norm_decay: float = 0.9, eps: float = 1e-8, divide_by_lr: bool = True):
        if not 0.0 <= float(update_norm_decay) < 1.0:
            raise ValueError(f"update_norm_decay must be in [0, 1), got {update_norm_decay}")
        _positive("eps", eps, allow_zero=True)
        if target is not None and not callable(target):
            _positive("target (eta_r, radians per step)", target)
        self.target, self.per_neuron, self.zero_mean = target, per_neuron, zero_mean
        self.beta, self.eps, self.divide_by_lr = float(update_norm_decay), float(eps), divide_by_lr
        if rotate is None:
            self._is_rot = lambda p: p.ndim > 1
        elif callable(rotate):
            self._is_rot = rotate
        else:
            ids = {id(p) for p in rotate}
            self._is_rot = lambda p: id(p) in ids
        if isinstance(optimizer, torch.optim.SGD):
            self._split_l2_groups(optimizer)
        _Wrapper.__init__(self, optimizer)
        self._shared = True
        self.count = 0
        self.rot_state = {}  # param -> {"norm": (rows,), "update_sq": (rows,)}
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if self._is_rot(p):
                        n = _row_norm(_rows(p, per_neuron))
                        self.rot_state[p] = {"norm": n.clone(), "update_sq": torch.zeros_like(n)}
        if target is None:  # fail now, not at the first step
            for group in self.param_groups:
                if any(p in self.rot_state for p in group["params"]):
                    equilibrium_target(self.optimizer, group)

    def _split_l2_groups(self, optimizer):
        new_groups = []
        for g in optimizer.param_groups:
            rot = [p for p in g["params"] if self._is_rot(p)]
            if not rot or not g.get("weight_decay", 0):
                new_groups.append(g)
                continue
            rest = [p for p in g["params"] if not self._is_rot(p)]
            rg = dict(g, params=rot, weight_decay=0.0, rotational_weight_decay=g["weight_decay"])
            rg.pop("param_names", None)
            if rest:
                g["params"] = rest
                g.pop("param_names", None)
                new_groups.append(g)
            new_groups.append(rg)
        optimizer.param_groups[:] = new_groups

    def _eta_r(self, group) -> float:
        if self.target is None:
            return equilibrium_target(self.optimizer, group)
        return float(self.target(self.count)) if callable(self.target) else float(self.target)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        eta_r = [self._eta_r(g) if any(p in self.rot_state for p in g["params"]) else None
                 for g in self.param_groups]
        lr_in = [float(g["lr"]) if self.divide_by_lr else 1.0 for g in self.param_groups]
        before = {p: p.detach().clone() for g in self.param_groups for p in g["params"]
                  if p in self.rot_state and p.grad is not None}
        self.optimizer.step()
        t = self.count + 1
        for gi, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p not in before:
                    continue
                st = self.rot_state[p]
                old = before[p]
                rows_p = _centre(_rows(old, self.per_neuron), self.zero_mean)
                n = st["norm"].reshape(-1, 1).to(old.dtype)
                rows_p = n * rows_p / _row_norm(rows_p)[:, None]
                rows_u = _rows(p - old, self.per_neuron) / lr_in[gi]
                rows_u = rows_u - rows_p * (torch.sum(rows_u * rows_p, dim=1, keepdim=True) / n**2)
                rows_u = _centre(rows_u, self.zero_mean)
                sq = torch.sum(torch.square(rows_u), dim=1)
                st["update_sq"] = self.beta * st["update_sq"] + (1.0 - self.beta) * sq
                avg = torch.sqrt(st["update_sq"] / (1.0 - self.beta ** t)).reshape(-1, 1)
                new = rows_p + eta_r[gi] * n * rows_u / (avg + self.eps)
                new = n * new / _row_norm(new)[:, None]
                p.copy_(new.reshape(p.shape))
        self.count = t
        return loss

    def _extra_state(self):
        index = {p: i for i, p in enumerate(q for g in self.param_groups for q in g["params"])}
        return {"count": self.count,
                "rotational": {index[p]: {k: v.clone() for k, v in s.items()} for p, s in self.rot_state.items()}}

    def _load_extra(self, extra):
        if not extra:
            return
        flat = [q for g in self.param_groups for q in g["params"]]
        self.count = int(extra["count"])
        self.rot_state = {flat[int(i)]: {k: v.clone() for k, v in s.items()} for i, s in extra["rotational"].items()}
