"""The dynamics log in the Hugging Face ``Trainer``: :class:`DynamicsCallback` (needs ``transformers``).

:class:`scaleinv.torch.dynamics.Dynamics` hooks the optimizer's ``step``; this callback attaches
it when ``Trainer.train()`` starts (``on_train_begin``), hands it each step's loss
(``on_pre_optimizer_step``) and closes it when training ends. The rows are exactly those of the
hand-written loop (``Dynamics`` + ``opt.step()``) on the same model, data order and optimizer:
per-layer ``norm``, ``grad_norm``, ``lr_eff`` = lr / ||w||^2, ``angle`` (angular update) and
``pred_angle`` (the optimizer's predicted equilibrium angle), per group and the top-level keys
``scaleinv plot`` draws, in ``run_dir/metrics.jsonl`` (and TensorBoard scalars with
``tensorboard=DIR``). ``step`` counts optimizer steps from 0 (``Trainer``'s ``global_step`` of
the row is ``step + 1``).

Passing the recipe's optimizers (``SGDWD``, ``RelativeGlobalClip``, ``Rotational``) with a
scheduler::

    from transformers import Trainer, TrainingArguments
    from torch.optim.lr_scheduler import LambdaLR
    from scaleinv.torch.optim import SGDWD
    from scaleinv.torch.hf_trainer import DynamicsCallback

    groups = [{"params": encoder_weights, "weight_decay": 1e-4},          # clipped (wd > 0)
              {"params": biases_norms_head, "weight_decay": 0.0}]        # not clipped
    opt = SGDWD(groups, lr=0.1, C=2.0)            # or RelativeGlobalClip(torch.optim.AdamW(...))
                                                  # or Rotational(torch.optim.AdamW(...))
    sched = LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))   # the wrappers share param_groups
    args = TrainingArguments("out", max_steps=1000, max_grad_norm=0.0, report_to=[])
    trainer = Trainer(model=model, args=args, train_dataset=ds, optimizers=(opt, sched),
                      callbacks=[DynamicsCallback("runs/dyn", every=10)])
    trainer.train()

``max_grad_norm=0.0``: ``Trainer`` otherwise clips the global gradient norm to 1.0 before the
optimizer, which is not part of the recipe (``SGDWD`` clips relative to ||x|| per group) and
breaks the scale invariance of the step; the logged ``grad_norm`` is the gradient the
optimizer receives, after any such clipping. ``Trainer`` calls ``sched.step()`` after every
optimizer step, as the hand-written loop does. Without ``optimizers=`` the callback attaches to
the optimizer that ``Trainer`` creates (``args.optim``, AdamW by default; its equilibrium angle
is sqrt(2 lr wd (1 - beta1) / (1 + beta1)) for groups with weight decay). Under accelerate's
``AcceleratedOptimizer`` the hooks go on the wrapped torch optimizer.

The loss in the rows is the model output's ``loss`` (``outputs.loss``, recorded by a forward
hook in training mode), averaged over the micro-batches of one optimizer step.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import torch
from transformers import TrainerCallback

from scaleinv.torch.dynamics import Dynamics

__all__ = ["DynamicsCallback", "DynamicsCallbackError"]


class DynamicsCallbackError(RuntimeError):
    """The callback was given no optimizer / model to attach to."""


def _unwrap(optimizer):
    """The torch optimizer under accelerate's ``AcceleratedOptimizer`` (which only forwards step)."""
    while type(optimizer).__name__ == "AcceleratedOptimizer" and hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    return optimizer


def _loss_of(output):
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    if loss is None and isinstance(output, (tuple, list)) and output and torch.is_tensor(output[0]) \
            and output[0].ndim == 0:
        loss = output[0]
    return loss


class DynamicsCallback(TrainerCallback):
    """A ``transformers.TrainerCallback`` running :class:`~scaleinv.torch.dynamics.Dynamics`.

    Args: ``run_dir``, ``every``, ``per_neuron``, ``group``, ``tensorboard`` as in ``Dynamics``;
    ``optimizer``: the optimizer to attach to (default: the one given to
    ``Trainer(optimizers=(opt, sched))``). After training, :attr:`dynamics` holds the closed
    ``Dynamics`` (``.last``: the last row).
    """

    def __init__(self, run_dir: Union[str, Path], every: int = 1, per_neuron: Union[bool, str] = False,
                 group: int = 0, tensorboard: Union[None, str, Path] = None, optimizer=None):
        self.run_dir, self.every, self.per_neuron, self.group = run_dir, every, per_neuron, group
        self.tensorboard, self._optimizer = tensorboard, optimizer
        self.dynamics: Optional[Dynamics] = None
        self._losses: List[torch.Tensor] = []
        self._hook = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not state.is_world_process_zero:
            return
        opt = _unwrap(self._optimizer if self._optimizer is not None else optimizer)
        if opt is None:
            raise DynamicsCallbackError(
                "DynamicsCallback needs the optimizer: the Trainer passed none; pass Trainer(optimizers=(opt, "
                "scheduler)) or DynamicsCallback(..., optimizer=opt)")
        if model is None:
            raise DynamicsCallbackError("DynamicsCallback: the Trainer passed no model")
        self.close()
        self.dynamics = Dynamics(model, opt, self.run_dir, every=self.every, per_neuron=self.per_neuron,
                                 group=self.group, tensorboard=self.tensorboard)
        self.dynamics.step = int(state.global_step)  # resumed runs continue the step count
        self._losses = []
        self._hook = model.register_forward_hook(self._record_loss)

    def _record_loss(self, module, inputs, output):
        if module.training and torch.is_grad_enabled():
            loss = _loss_of(output)
            if torch.is_tensor(loss):
                self._losses.append(loss.detach())

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self.dynamics is not None:
            losses, self._losses = self._losses, []
            if losses:
                self.dynamics.observe(losses[0] if len(losses) == 1 else torch.stack(losses).mean())

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        """Detach from the model and optimizer and close the log (called at the end of training)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.dynamics is not None:
            self.dynamics.close()
