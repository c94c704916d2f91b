"""``scaleinv figures``: execute the notebooks and regenerate ``notebooks/figures/*.png``.

The notebooks are jupytext percent-format ``.py`` files (``notebooks/NN_name.py``); each is
read with ``jupytext.read``, executed by ``nbclient`` in a ``python3`` kernel with the working
directory ``notebooks/`` and the environment

* ``NOTEBOOK_QUICK=1|0``   -- shrunken sweeps (CI, tests) or the full ones (default here);
* ``NOTEBOOK_FIG_DIR``     -- where the PNGs go (default ``notebooks/figures``);
* ``NOTEBOOK_HEADLESS=1``  -- no frontend: a notebook with widgets (09) calls their callback
  directly instead of creating them.

A notebook fails when its closing assertion cell fails (its headline number disagrees with
theory); the command then exits 1. ``--ipynb DIR`` also writes the executed ``.ipynb`` files
(they are generated, never committed). Bad input (unknown ``--only``, unwritable ``--fig-dir`` /
``--ipynb``, ``--timeout`` < 1, the dev extra not installed, an installed wheel without the
source checkout's ``notebooks/``) exits 2 with one line before any notebook runs.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED_NOTEBOOKS = (
    "01_homogeneity_intuition",
    "02_unbalanced_factorization",
    "03_effective_lr_and_wd",
    "04_norm_equilibrium",
    "05_relative_global_clipping",
    "06_sibert_robustness",
    "07_proofs_report",
    "08_beyond_the_paper",
    "09_explorer",
)


def find_notebooks(directory: Path = NOTEBOOK_DIR):
    """The notebook sources: ``NN_*.py`` in ``directory``, sorted."""
    return sorted(p for p in Path(directory).glob("[0-9][0-9]_*.py"))


def ensure_kernel(name: str = "python3") -> None:
    """Make sure a Jupyter kernelspec ``name`` exists; install this interpreter's ipykernel as
    a user kernelspec if it does not (fresh virtual environments have none)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True, kernel_name=name)


def execute_notebook(path: Path, quick: bool, fig_dir: Path, timeout: int = 1800, ipynb_dir: Path | None = None):
    """Execute one jupytext notebook; returns the executed ``nbformat`` notebook.

    Raises ``nbclient.exceptions.CellExecutionError`` when a cell fails."""
    import jupytext
    from nbclient import NotebookClient

    ensure_kernel("python3")
    path = Path(path)
    nb = jupytext.read(path)
    env = {"NOTEBOOK_QUICK": "1" if quick else "0", "NOTEBOOK_FIG_DIR": str(Path(fig_dir).resolve()),
           "NOTEBOOK_HEADLESS": "1",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if ipynb_dir is not None:
        import nbformat

        Path(ipynb_dir).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(Path(ipynb_dir) / (path.stem + ".ipynb")))
    return nb


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="NOTEBOOK_QUICK=1: the small sweeps used in CI")
    p.add_argument("--only", default=None,
                   help="comma-separated notebook name prefixes, e.g. 01,04 (default: all)")
    p.add_argument("--fig-dir", default=str(NOTEBOOK_DIR / "figures"), help="where the PNGs go")
    p.add_argument("--ipynb", default=None, help="also write the executed .ipynb files to this folder")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")


def run(args) -> int:
    import time

    from scaleinv.progress import progress
    from scaleinv.usage import UsageError, check_output_dir, optional_check, require_modules

    if not NOTEBOOK_DIR.is_dir():
        raise UsageError(f"the notebooks are not part of the installed package ({NOTEBOOK_DIR} does not exist): "
                         f"run scaleinv figures from a source checkout (pip install -e '.[dev]')")
    books = find_notebooks()
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if not any(b.stem.startswith(w) for b in books)]
        if unknown or not wanted:
            raise UsageError(f"--only: no notebook starts with {', '.join(map(repr, unknown or [args.only]))}; "
                             f"allowed: {', '.join(b.stem for b in books)}")
        books = [b for b in books if any(b.stem.startswith(w) for w in wanted)]
    if args.timeout < 1:
        raise UsageError(f"--timeout: must be >= 1 (seconds per cell), got {args.timeout}")
    check_output_dir(args.fig_dir, "--fig-dir")
    optional_check(check_output_dir, args.ipynb, "--ipynb")
    require_modules("scaleinv figures", ("jupytext", "nbclient", "nbformat", "ipykernel"))

    from nbclient.exceptions import CellExecutionError

    failed = []
    with progress(len(books), "scaleinv figures", unit="notebook") as bar:
        for book in books:
            bar.item(book.stem)
            t = time.time()
            try:
                execute_notebook(book, args.quick, Path(args.fig_dir), args.timeout,
                                 Path(args.ipynb) if args.ipynb else None)
                bar.write(f"  {book.stem}: ok ({time.time() - t:.0f} s)")
            except CellExecutionError as e:
                failed.append(book.stem)
                bar.write(f"  {book.stem}: FAILED ({time.time() - t:.0f} s)\n{str(e)[-2000:]}")
            bar.update(1)
    print(f"{len(books) - len(failed)}/{len(books)} notebooks ok; figures in {args.fig_dir}")
    return 1 if failed else 0
