"""Loading a model factory ``"package.module:function"`` and auditing it."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Mapping, Optional

from scaleinv.audit.driver import audit
from scaleinv.audit.report import AuditReport


def call_factory(spec: str, **kwargs):
    """Import "package.module:factory" (or "path/to/file.py:factory") and return what
    ``factory(**kwargs)`` returns (unchecked: a flax factory's tuple or a torch factory's
    ``(nn.Module, batch[, options])``, see :mod:`scaleinv.torch.audit`)."""
    if ":" not in spec:
        raise ValueError(f"factory must be 'module:function', got {spec!r}")
    mod_name, fn_name = spec.rsplit(":", 1)
    if mod_name.endswith(".py"):
        s = importlib.util.spec_from_file_location(Path(mod_name).stem, mod_name)
        if s is None:
            raise ValueError(f"cannot import file {mod_name!r}")
        mod = importlib.util.module_from_spec(s)
        s.loader.exec_module(mod)
    else:
        mod = importlib.import_module(mod_name)
    if not hasattr(mod, fn_name):
        raise ValueError(f"module {mod_name!r} has no attribute {fn_name!r}")
    return getattr(mod, fn_name)(**kwargs)


def load_factory(spec: str, **kwargs):
    """Import "package.module:factory" (or "path/to/file.py:factory"), call it with ``kwargs``
    and return (apply_fn, params, batch, options) with options {} when the factory returns a
    3-tuple. Options may hold target_group, target_degree, expect, groups (audit kwargs)."""
    return unpack_factory_result(call_factory(spec, **kwargs), spec)


def unpack_factory_result(res, spec: str = "factory"):
    """(apply_fn, params, batch, options) from a flax factory's result (validated)."""
    if not isinstance(res, (tuple, list)) or len(res) not in (3, 4):
        raise ValueError(f"factory {spec!r} must return (apply_fn, params, example_batch[, options]), "
                         f"got {type(res).__name__}")
    apply_fn, params, batch = res[:3]
    options = dict(res[3]) if len(res) == 4 else {}
    allowed = {"target_group", "target_degree", "expect", "groups", "depths", "input_degrees", "scales"}
    bad = set(options) - allowed
    if bad:
        raise ValueError(f"factory options {sorted(bad)} not understood; allowed: {sorted(allowed)}")
    return apply_fn, params, batch, options


def audit_factory(spec: str, factory_kwargs: Optional[Mapping[str, Any]] = None, **audit_kwargs) -> AuditReport:
    """:func:`audit` of the model returned by the factory ``spec`` ("package.module:function");
    the factory's options are defaults, ``audit_kwargs`` override them."""
    apply_fn, params, batch, options = load_factory(spec, **dict(factory_kwargs or {}))
    return audit(apply_fn, params, batch, **{**options, **audit_kwargs})


