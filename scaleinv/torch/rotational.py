"""The rotational wrapper as a ``torch.optim.Optimizer`` (twin of :mod:`scaleinv.rotational`; the
tests check that both give the same float64 trajectory).

The rotational wrapper of Kosson et al. (ICML 2024; REQ
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
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch.optim import Optimizer

from scaleinv import theory
from scaleinv.torch.optim import SGDWD, RelativeGlobalClip, _positive, _Wrapper

__all__ = ["Rotational", "equilibrium_target"]


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
