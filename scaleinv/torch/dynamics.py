"""Training-dynamics log for torch models: norms, effective LR, angular updates, equilibrium angle.

A :class:`Dynamics` object attaches to a torch optimizer with torch's step hooks
(``register_step_pre_hook`` / ``register_step_post_hook``). On every ``every``-th step it
records, for every parameter (a *layer*; optionally every neuron = row of a ``ndim >= 2``
weight, PyTorch's (out, in, ...) layout) with w_t the weights the gradient g_t was computed at
and w_{t+1} the weights after the step:

* ``norm``        ||w_t||                          ``grad_norm``  ||g_t|| (before any clipping)
* ``lr_eff``      eta / ||w_t||^2                  effective LR (talk, "Existing Analysis for SGD
                                                   on Scale Invariant Loss")
* ``angle``       angle(w_t, w_{t+1}) = 2 atan2(||a - b||, ||a + b||), a, b the unit vectors
* ``rel_update``  ||w_{t+1} - w_t|| / ||w_t||
* ``pred_angle``  the equilibrium angular update of the optimizer in use (Kosson et al. 2024,
                  :func:`scaleinv.theory.equilibrium_angle`): sqrt(2 eta lambda) (SGDWD),
                  sqrt(2 eta lambda / (1 + alpha)) (torch SGD, momentum alpha),
                  sqrt(2 eta lambda (1 - beta1) / (1 + beta1)) (AdamW), the gradient-dependent
                  Adam+L2 form with sigma = ||g|| ||w|| and C = numel (torch Adam), the wrapper's
                  target (:class:`scaleinv.torch.rotational.Rotational`); null without weight decay.

Keys follow :func:`scaleinv.angular.angular_summary`: ``layer/<name>/<quantity>``,
``neuron/<name>/angle_mean|angle_rms|angle_min|angle_max|norm_mean|norm_min|norm_max``,
``group/<i>/...`` per param group (one norm over the group's parameters) and, for
``scaleinv plot``, the top-level ``step, loss, lr, x_norm, grad_norm, lr_eff, angular_update,
clipped`` of the param group ``group`` (default 0, e.g. the scale-invariant group). Rows go to
``run_dir/metrics.jsonl``; ``run_dir/config.json`` names the optimizer so that ``scaleinv plot
RUN_DIR`` draws the predicted angle beside the measured one. ``tensorboard=DIR`` also writes
every row's numeric fields as TensorBoard scalars (same keys as tags, ``global_step = step``;
:mod:`scaleinv.tensorboard`, the ``tensorboard`` extra). In the Hugging Face ``Trainer``:
:class:`scaleinv.torch.hf_trainer.DynamicsCallback`.

Usage::

    dyn = Dynamics(model, opt, "runs/a", every=10, per_neuron=True)
    for x, y in data:
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
        dyn.observe(loss)          # optional: the loss of this step, for the log
        opt.step()                 # the hooks log every 10th step
    dyn.close()
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch.optim import Optimizer

from scaleinv import theory

__all__ = ["Dynamics", "predicted_angle", "angle"]


def _unit_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise angle between the rows of a and b (2 atan2(||ua - ub||, ||ua + ub||))."""
    ua = a / torch.linalg.norm(a, dim=-1, keepdim=True)
    ub = b / torch.linalg.norm(b, dim=-1, keepdim=True)
    return 2.0 * torch.atan2(torch.linalg.norm(ua - ub, dim=-1), torch.linalg.norm(ua + ub, dim=-1))


def angle(old: torch.Tensor, new: torch.Tensor) -> float:
    """angle(w_t, w_{t+1}) of one tensor (flattened), radians."""
    return float(_unit_angle(old.reshape(1, -1).double(), new.reshape(1, -1).double())[0])


def _inner(optimizer):
    """(the optimizer that holds the hyper-parameters, rotational wrapper or None)."""
    from scaleinv.torch.optim import RelativeGlobalClip
    from scaleinv.torch.rotational import Rotational

    rot = None
    while isinstance(optimizer, (RelativeGlobalClip, Rotational)):
        if isinstance(optimizer, Rotational) and rot is None:
            rot = optimizer
        optimizer = optimizer.optimizer
    return optimizer, rot


def predicted_angle(optimizer: Optimizer, group: dict, grad_norm: Optional[float] = None,
                    weight_norm: Optional[float] = None, numel: Optional[int] = None) -> Optional[float]:
    """Equilibrium angular update per step for a param group of ``optimizer`` (see the module
    docstring), or None when theory has none (no weight decay, unknown optimizer)."""
    from scaleinv.torch.rotational import equilibrium_target

    inner, rot = _inner(optimizer)
    if rot is not None:
        return rot._eta_r(group) if rot.target is not None else _try(equilibrium_target, inner, group)
    if type(inner) is torch.optim.Adam and float(group.get("weight_decay", 0.0)) > 0:
        if not group.get("decoupled_weight_decay", False):
            if grad_norm is None or not grad_norm > 0:
                return None
            sigma = grad_norm * weight_norm  # ||grad at the unit sphere|| (the gradient is (-1)-homogeneous)
            return float(theory.equilibrium_angle("adam_l2", float(group["lr"]), float(group["weight_decay"]),
                                                  beta1=float(group["betas"][0]), sigma=sigma, dim=numel))
    return _try(equilibrium_target, inner, group)


def _try(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return None


def _plot_config(optimizer: Optimizer, group: dict) -> dict:
    """The run config ``scaleinv plot`` reads: optimizer name, weight_decay, adam_b1."""
    from scaleinv.torch.optim import SGDWD, RelativeGlobalClip

    inner, rot = _inner(optimizer)
    clip = isinstance(optimizer, RelativeGlobalClip) or (isinstance(inner, SGDWD) and group.get("clip") is not False)
    wd = float(group.get("rotational_weight_decay", group.get("weight_decay", 0.0)))
    if rot is not None:
        name = "rotational"
    elif isinstance(inner, SGDWD) or (type(inner) is torch.optim.SGD and not group.get("momentum", 0)):
        name = "sgd-wd-rgc" if clip else "sgd-wd"
    elif type(inner) is torch.optim.SGD:
        name = "sgdm"
    elif type(inner) is torch.optim.AdamW:
        name = "adamw"
    else:
        name = type(inner).__name__.lower()
    cfg = {"optimizer": name, "weight_decay": wd, "source": "scaleinv.torch.dynamics",
           "torch_optimizer": type(inner).__name__}
    if "betas" in group:
        cfg["adam_b1"] = float(group["betas"][0])
    if "momentum" in group:
        cfg["momentum"] = float(group["momentum"])
    return cfg


def _clean(v):
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class Dynamics:
    """Logs the dynamics of ``optimizer``'s parameters every ``every`` steps (module docstring).

    Args:
      model: an ``nn.Module`` (parameter names from ``named_parameters()``) or an iterable of
        (name, parameter) pairs; parameters the optimizer does not hold are ignored.
      optimizer: any torch optimizer (also the :mod:`scaleinv.torch.optim` wrappers).
      run_dir: directory for ``metrics.jsonl`` and ``config.json`` (created).
      every: log every N-th optimizer step (steps 0, N, 2N, ...).
      per_neuron: False; True: per-neuron summaries of every ``ndim >= 2`` parameter (angle
        mean / rms / min / max, norm mean / min / max, relative update mean / max); "full": also
        the per-neuron lists ``neuron/<name>/norm|grad_norm|lr_eff|angle|rel_update`` (one value
        per row; the predicted angle is the layer's).
      group: the param group whose totals are the top-level keys ``scaleinv plot`` draws.
      tensorboard: None, or a directory for TensorBoard scalar events of the same rows
        (:class:`scaleinv.tensorboard.TensorBoardError` if it cannot be written or
        tensorboardX is missing; checked before anything is written).
    """

    def __init__(self, model, optimizer: Optimizer, run_dir: Union[str, Path], every: int = 1,
                 per_neuron: Union[bool, str] = False, group: int = 0,
                 tensorboard: Union[None, str, Path] = None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if per_neuron not in (False, True, "full"):
            raise ValueError(f"per_neuron must be False, True or 'full', got {per_neuron!r}")
        if not 0 <= group < len(optimizer.param_groups):
            raise ValueError(f"group must be in [0, {len(optimizer.param_groups) - 1}], got {group}")
        self._tb = None
        if tensorboard is not None:
            from scaleinv.tensorboard import ScalarWriter
            self._tb = ScalarWriter(tensorboard)
        named = model.named_parameters() if isinstance(model, torch.nn.Module) else model
        self.names: Dict[torch.Tensor, str] = {}
        for name, p in named:
            self.names.setdefault(p, name)
        self.optimizer, self.every, self.per_neuron, self.group = optimizer, every, per_neuron, group
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(
            json.dumps(_plot_config(optimizer, optimizer.param_groups[group]), indent=1) + "\n")
        self._file = open(self.run_dir / "metrics.jsonl", "a")
        self.step = 0
        self._loss = None
        self._before: Optional[List[Tuple[int, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]] = None
        self.last: Optional[dict] = None
        self._handles = [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    def observe(self, loss) -> None:
        """Record this step's loss (a tensor or number); read only on logging steps."""
        self._loss = loss

    def _name(self, p, gi, j):
        return self.names.get(p, f"group{gi}/param{j}")

    @torch.no_grad()
    def _pre(self, optimizer, args, kwargs):
        if self.step % self.every:
            return
        self._before = [(gi, p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
                        for gi, g in enumerate(optimizer.param_groups) for p in g["params"]]

    @torch.no_grad()
    def _post(self, optimizer, args, kwargs):
        if self._before is not None:
            row = self._row(optimizer)
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()
            if self._tb is not None:
                self._tb.add_row(row)
            self.last = row
            self._before = None
        self.step += 1
        self._loss = None

    def _row(self, optimizer) -> dict:
        groups = optimizer.param_groups
        loss = self._loss
        row = {"step": self.step, "loss": _clean(loss.item() if torch.is_tensor(loss) else loss)}
        by_group: Dict[int, list] = {gi: [] for gi in range(len(groups))}
        for gi, p, old, grad in self._before:
            by_group[gi].append((p, old, grad))
        cat = {}
        for gi, items in by_group.items():
            g = groups[gi]
            lr = float(g["lr"])
            olds, news, gsq = [], [], 0.0
            for j, (p, old, grad) in enumerate(items):
                name = self._name(p, gi, j)
                o, n = old.double(), p.detach().double()
                olds.append(o.reshape(-1))
                news.append(n.reshape(-1))
                w = float(torch.linalg.norm(o))
                gn = float(torch.linalg.norm(grad.double())) if grad is not None else None
                gsq += (gn or 0.0) ** 2
                pre = f"layer/{name}/"
                row[pre + "norm"] = _clean(w)
                row[pre + "grad_norm"] = _clean(gn)
                row[pre + "lr_eff"] = _clean(lr / w**2) if w > 0 else None
                row[pre + "angle"] = _clean(angle(o, n)) if w > 0 else None
                row[pre + "rel_update"] = _clean(float(torch.linalg.norm(n - o)) / w) if w > 0 else None
                row[pre + "pred_angle"] = _clean(predicted_angle(optimizer, g, gn, w, p.numel()))
                if self.per_neuron and p.ndim >= 2:
                    ro, rn = o.reshape(o.shape[0], -1), n.reshape(n.shape[0], -1)
                    ang = _unit_angle(ro, rn)
                    nrm = torch.linalg.norm(ro, dim=1)
                    rel = torch.linalg.norm(rn - ro, dim=1) / nrm
                    pre = f"neuron/{name}/"
                    for k, v in (("angle_mean", ang.mean()), ("angle_rms", ang.square().mean().sqrt()),
                                 ("angle_min", ang.min()), ("angle_max", ang.max()),
                                 ("norm_mean", nrm.mean()), ("norm_min", nrm.min()), ("norm_max", nrm.max()),
                                 ("rel_update_mean", rel.mean()), ("rel_update_max", rel.max())):
                        row[pre + k] = _clean(v)
                    if self.per_neuron == "full":
                        gr = (torch.linalg.norm(grad.double().reshape(grad.shape[0], -1), dim=1)
                              if grad is not None else None)
                        row[pre + "norm"] = [_clean(v) for v in nrm.tolist()]
                        row[pre + "grad_norm"] = [_clean(v) for v in gr.tolist()] if gr is not None else None
                        row[pre + "lr_eff"] = [_clean(lr / v**2) if v > 0 else None for v in nrm.tolist()]
                        row[pre + "angle"] = [_clean(v) for v in ang.tolist()]
                        row[pre + "rel_update"] = [_clean(v) for v in rel.tolist()]
            if olds:
                cat[gi] = (torch.cat(olds), torch.cat(news), math.sqrt(gsq))
        clip = self._clip_flags(optimizer)
        for gi, g in enumerate(groups):
            pre = f"group/{gi}/"
            row[pre + "lr"] = float(g["lr"])
            o, n, gn = cat.get(gi, (None, None, None))
            w = float(torch.linalg.norm(o)) if o is not None else 0.0
            row[pre + "norm"] = _clean(w) if o is not None else None
            row[pre + "grad_norm"] = _clean(gn)
            row[pre + "lr_eff"] = _clean(float(g["lr"]) / w**2) if w > 0 else None
            row[pre + "angle"] = _clean(angle(o, n)) if w > 0 else None
            row[pre + "rel_update"] = _clean(float(torch.linalg.norm(n - o)) / w) if w > 0 else None
            row[pre + "pred_angle"] = _clean(predicted_angle(optimizer, g, gn, w, o.numel() if o is not None else None))
            if clip is not None:
                row[pre + "clipped"] = bool(clip[gi]) if gi < len(clip) else None
        pre = f"group/{self.group}/"
        row.update({"lr": row[pre + "lr"], "x_norm": row[pre + "norm"], "grad_norm": row[pre + "grad_norm"],
                    "lr_eff": row[pre + "lr_eff"], "angular_update": row[pre + "angle"],
                    "pred_angle": row[pre + "pred_angle"]})
        if clip is not None:
            row["clipped"] = row[pre + "clipped"]
        return row

    @staticmethod
    def _clip_flags(optimizer) -> Optional[List[bool]]:
        o = optimizer
        while o is not None:
            if hasattr(o, "clip_stats"):
                return [s.clipped for s in o.clip_stats()]
            o = getattr(o, "optimizer", None)
        return None

    def close(self) -> None:
        """Remove the hooks and close the log file."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
