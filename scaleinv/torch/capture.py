"""Recording one forward pass of a torch ``nn.Module`` for :mod:`scaleinv.torch.audit` (the twin of
:mod:`scaleinv.audit.capture`): forward pre-/post-hooks on every submodule record each call's
module, floating inputs / outputs and nesting (:class:`_Recorder`); :func:`_capture` runs the model
through ``torch.func.functional_call`` at given parameters and returns the captured values as
NumPy float64 arrays. Tensor identity gives the producer of each call's input, identity modules
and PostNorm blocks (as in the flax recorder)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from scaleinv.audit.capture import CallRecord


# ------------------------------------------------------------------------------ helpers
def float_tensors(obj) -> List[torch.Tensor]:
    """Floating tensors of a nested output (tuples, lists, dicts, HF ModelOutputs), in order."""
    out: List[torch.Tensor] = []

    def walk(v):
        if torch.is_tensor(v):
            if v.is_floating_point():
                out.append(v)
        elif isinstance(v, Mapping):
            for x in v.values():
                walk(x)
        elif isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
        elif hasattr(v, "to_tuple"):
            walk(v.to_tuple())

    walk(obj)
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _batch_call(batch) -> Tuple[tuple, dict]:
    if isinstance(batch, Mapping):
        return (), dict(batch)
    if isinstance(batch, (tuple, list)):
        return tuple(batch), {}
    return (batch,), {}


def _default_loss(out):
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if loss is None and torch.is_tensor(out) and out.numel() == 1:
        loss = out
    if loss is None:
        raise ValueError("cannot find the loss in the model output: return a scalar tensor, an output with "
                         ".loss (HF models called with labels), or pass loss_fn")
    return loss


# ------------------------------------------------------------------------------ recording
@dataclass
class _TCall(CallRecord):
    """One torch submodule call (:class:`scaleinv.audit.capture.CallRecord` plus its tensors)."""

    producer: Optional[int] = None
    module: Any = None
    args: Any = None
    kwargs: Any = None
    ins: List[torch.Tensor] = field(default_factory=list)
    outs: List[torch.Tensor] = field(default_factory=list)
    identity: bool = False
    postnorm: Optional[str] = None


class _Recorder:
    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.calls: List[_TCall] = []
        self.stack: List[int] = []
        self.counter = 0
        self.names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}

    def pre(self, mod, args, kwargs):
        call = _TCall((self.names[id(mod)],), "__call__", type(mod).__name__, self.counter,
                      self.stack[-1] if self.stack else None, module=mod, args=args, kwargs=kwargs)
        self.counter += 1
        self.stack.append(len(self.calls))
        self.calls.append(call)

    def post(self, mod, args, kwargs, out):
        i = self.stack.pop()
        c = self.calls[i]
        c.end, self.counter = self.counter, self.counter + 1
        c.ins, c.outs = float_tensors(args), float_tensors(out)

    def run(self, fn):
        handles = []
        for m in self.model.modules():
            handles.append(m.register_forward_pre_hook(self.pre, with_kwargs=True))
            handles.append(m.register_forward_hook(self.post, with_kwargs=True))
        try:
            return fn()
        finally:
            for h in handles:
                h.remove()

    def analyse(self) -> None:
        """Producer, identity and PostNorm facts (tensor identity, as in the flax recorder)."""
        made_by: Dict[int, List[int]] = {}
        for i, c in enumerate(self.calls):
            if len(c.outs) == 1:
                made_by.setdefault(id(c.outs[0]), []).append(i)
        for i, c in enumerate(self.calls):
            if c.ins:
                cands = [j for j in made_by.get(id(c.ins[0]), []) if self.calls[j].end < c.start]
                c.producer = min(cands, key=lambda j: self.calls[j].end) if cands else None
            c.identity = (not any(True for _ in c.module.parameters()) and len(c.outs) == 1 and bool(c.ins)
                          and c.outs[0] is c.ins[0])
            children = [cc for cc in self.calls if cc.parent == i]
            if children:
                last = max(children, key=lambda cc: cc.end)
                if ("Norm" in last.cls and len(c.outs) == 1 and len(last.outs) == 1 and c.outs[0] is last.outs[0]
                        and c.ins and last.ins and last.ins[0] is not c.ins[0]):
                    c.postnorm = last.cls


def _forward(model, params, batch, loss_fn):
    args, kwargs = _batch_call(batch)
    out = torch.func.functional_call(model, params, args, kwargs)
    return out, (loss_fn or _default_loss)(out)


def _capture(model, params, batch, loss_fn, n_calls: Optional[int] = None):
    rec = _Recorder(model)
    with torch.no_grad():
        _, loss = rec.run(lambda: _forward(model, params, batch, loss_fn))
    if n_calls is not None and len(rec.calls) != n_calls:
        raise RuntimeError("the model called a different set of modules on a second call; its forward must be "
                           "deterministic in which modules it calls")
    return {"loss": _np(loss), "calls": [{"in": [_np(t) for t in c.ins], "out": [_np(t) for t in c.outs]}
                                         for c in rec.calls]}
