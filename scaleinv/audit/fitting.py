"""Degree fits of captured tensors: :class:`Fit`, :func:`degree_from_samples`, the dtype tolerance."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from scaleinv.homogeneity import HomogeneityResult, fit_log_log
from scaleinv.report import jsonable


def default_rtol(dtype) -> float:
    """Relative-residual tolerance for accepting a degree: 1e-4 (f32), 1e-9 (f64), 5e-2 (16 bit)."""
    bits = np.dtype(dtype).itemsize * 8
    return 1e-9 if bits >= 64 else 1e-4 if bits >= 32 else 5e-2


@dataclass
class Fit:
    """Degree of one tensor in one group.

    status: "homogeneous" (degree = rounded slope, residual <= rtol), "not homogeneous",
    "zero" (the tensor is 0 at c = 1: k-homogeneous for every k, degree not identifiable) or
    "nonfinite"; slope: least-squares slope of log||y_c|| vs log c; residual: max_c
    ||y_c - c^K y_1|| / ||c^K y_1|| with K the rounded slope; fit_residual: rms of the log-log fit.
    """

    status: str
    degree: Optional[int]
    slope: float
    residual: float
    fit_residual: float
    rtol: float

    @property
    def homogeneous(self) -> bool:
        return self.status == "homogeneous"

    @property
    def consistent(self) -> bool:
        """homogeneous, or identically zero (which is homogeneous of every degree)."""
        return self.status in ("homogeneous", "zero")

    def label(self) -> str:
        return {"homogeneous": str(self.degree), "zero": "zero", "nonfinite": "nan"}.get(self.status, "✗")

    def as_dict(self):
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_result(cls, r: HomogeneityResult, rtol: float) -> "Fit":
        return cls("homogeneous" if r.homogeneous else "not homogeneous",
                   r.rounded if r.homogeneous else None, r.degree, r.residual, r.fit_residual, rtol)


def degree_from_samples(scales: Sequence[float], y1, ys: Sequence[Any], rtol: float) -> Fit:
    """The fit of :func:`scaleinv.homogeneity.estimate_degree` (:func:`~scaleinv.homogeneity.fit_log_log`) on precomputed samples.

    y1 = f(x), ys[i] = f(c_i x) (arrays or pytrees). Same formulas (slope of log||y_c|| vs
    log c, residual max_c ||y_c - c^K y_1|| / ||c^K y_1||, K = round(slope)); needed because the
    audit evaluates *all* intermediates in one forward pass per c instead of one fn per tensor.
    """
    scales = np.asarray([float(c) for c in scales], np.float64)
    y1 = _flat(y1)
    ys = [_flat(y) for y in ys]
    n1 = float(np.linalg.norm(y1))
    if not np.isfinite(n1) or not all(np.all(np.isfinite(y)) for y in ys):
        return Fit("nonfinite", None, float("nan"), float("inf"), float("inf"), rtol)
    if n1 == 0.0:
        return Fit("zero", None, float("nan"), 0.0, 0.0, rtol)
    k, K, rel, fit_res = fit_log_log(scales, y1, ys)
    ok = rel <= rtol
    return Fit("homogeneous" if ok else "not homogeneous", K if ok else None, k, rel, fit_res, rtol)


def _flat(y) -> np.ndarray:
    leaves = [np.asarray(l, dtype=np.float64).ravel() for l in jax.tree.leaves(y)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


def _is_float(a) -> bool:
    return isinstance(a, (jax.Array, np.ndarray)) and jnp.issubdtype(a.dtype, jnp.floating)


def _float_leaves(tree) -> List[Tuple[str, Any]]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if _is_float(leaf):
            out.append((jax.tree_util.keystr(path), leaf))
    return out

