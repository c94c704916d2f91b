"""Matplotlib helpers for the claim figures (Agg backend, no display needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def new_figure(ncols: int = 1):
    """``(fig, axes)``: one row of ``ncols`` axes (a single Axes when ``ncols`` is 1), 5.5 x 4 in each."""
    return plt.subplots(1, ncols, figsize=(5.5 * ncols, 4.0))


def plain_log_ticks(ax, which: str = "xy") -> None:
    """Log axes labelled at 1, 2, 5 x 10^k in plain numbers, minor ticks unlabelled (matplotlib
    labels minor ticks of a log axis spanning < ~2 decades, and they collide)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in which:
        axis = ax.xaxis if name == "x" else ax.yaxis
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def save_figure(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
