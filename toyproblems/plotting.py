"""Matplotlib helpers for the claim figures (Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(ncols: int = 1):
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.0))
    return (fig, axes) if ncols > 1 else (fig, axes)


def save_figure(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
