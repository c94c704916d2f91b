"""scaleinv for PyTorch users: the recipe, the diagnostics and the audit on ``torch.nn`` models.

Optional: needs the ``torch`` extra (``pip install 'scaleinv[torch]'``, pinned ``torch==2.13.0``;
the CPU wheel comes from ``--index-url https://download.pytorch.org/whl/cpu``). The JAX side of
scaleinv never imports this package.

  optim     -- SGDWD (SGD + weight decay + relative global clipping, per param group),
               RelativeGlobalClip (adds the clipping to any torch optimizer)
  rotational -- Rotational (Kosson et al.'s rotational wrapper, target angle from
               :mod:`scaleinv.theory`), equilibrium_target
  dynamics  -- Dynamics: a hook object logging norms, effective LR, angular / relative updates
               and the predicted equilibrium angle to JSONL (``scaleinv plot`` draws it)
  audit     -- homogeneity audit of an ``nn.Module`` (shares the JAX audit's fitting and report)
  capture   -- recording one forward pass (submodule calls, inputs / outputs) for the audit
  testing   -- assert_homogeneous and hypothesis strategies for torch modules
  sibert    -- SIBERTForMaskedLM: the flax SIBERT as an nn.Module, loading a ``scaleinv export`` directory
  hf_trainer -- DynamicsCallback: Dynamics in the Hugging Face ``Trainer`` (needs transformers +
               accelerate, the ``hf`` extra; imported only by ``import scaleinv.torch.hf_trainer``)

Each submodule is imported explicitly (``from scaleinv.torch.optim import SGDWD``).
"""
try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised by a subprocess test with torch hidden
    raise ImportError("scaleinv.torch needs PyTorch: pip install 'scaleinv[torch]' (torch==2.13.0, "
                      "CPU wheel: --index-url https://download.pytorch.org/whl/cpu)") from e
