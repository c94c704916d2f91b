"""Pages of the documentation site generated at build time (``mkdocs build``, via the
mkdocs-gen-files plugin configured in ``mkdocs.yml``), so that they never drift from their sources:

* ``reports/verify.md``, ``reports/verify-newer.md``, ``reports/proofs.md``: the rows of
  ``docs/results/{verify,verify/newer,proofs}/report.json`` rendered by the library's own
  ``scaleinv.report.to_markdown`` (the same table the commands write), grouped by claim, with
  each group's figure;
* ``reports/errata.md``: every row with status ``erratum`` in those JSON files;
* ``reports/cards.md``: the optimizer cards of ``docs/results/cards/*.json`` (``scaleinv card --all``);
* ``api/theory.md``: one mkdocstrings section per module of ``scaleinv/theory/``;
* ``notebooks/*.md``: the jupytext notebooks ``notebooks/NN_*.py`` (markdown cells as text, code
  cells as code blocks; NOT executed), each figure the notebook saves (``save(fig, "NAME")``)
  shown after the cell that saves it, from the committed ``notebooks/figures/NAME.png``;
* ``sibert/results.md``, ``benchmarks.md``, ``contributing/architecture.md``,
  ``contributing/conventions.md``: repository markdown files, included with their links rewritten
  (a link to a file that is a page of the site points to the page, an image is copied next to it,
  a link to any other repository file becomes the file's path as code: the site stands alone).

Only JSON, markdown and PNG files are read; nothing heavy is imported or run.
"""
from __future__ import annotations

import json
import posixpath
import re
from collections import Counter, OrderedDict
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]

# Repository markdown files that are pages of the site: repo path -> site path.
INCLUDED = {
    "sibert/README.md": "sibert/usage.md",
    "docs/results/sibert/README.md": "sibert/results.md",
    "benchmarks/README.md": "benchmarks.md",
    "docs/ARCHITECTURE.md": "contributing/architecture.md",
    "docs/CONVENTIONS.md": "contributing/conventions.md",
    "docs/PAPER_NOTES.md": "concepts/paper-notes.md",
}
REPORTS = {  # site page -> (JSON, title, figure folder in the repo)
    "reports/verify.md": ("docs/results/verify/report.json", "`scaleinv verify`: every claim",
                          "docs/results/verify"),
    "reports/verify-newer.md": ("docs/results/verify/newer/report.json",
                                "`scaleinv verify`: the newer theory (S, N, M, E)", "docs/results/verify/newer"),
    "reports/proofs.md": ("docs/results/proofs/report.json", "`scaleinv proofs`: the derivations", None),
}
# Headings of the claim groups (the rows carry ids like "C5.norm"; a group not listed here is
# titled by its first row's statement).
GROUP_TITLES = {
    "C1": "Homogeneity degrees", "C2": "Ex 1: GD's divergence threshold (unbounded smoothness)",
    "C3": "Ex 2: unbalanced factorization, GD vs Adam", "C4": "Normalized MF: GD + WD forgets the init",
    "C5": "SGD + WD norm equilibrium", "C6": "Time to equilibrium against the init scale",
    "C7": "Weight decay = exponential learning rate", "C8": "Relative global clipping",
    "R1": "Equilibrium angular update", "R2": "Equilibrium norm", "R3": "Time to rotational equilibrium",
    "R4": "The rotational wrapper", "R5": "Normalized MF: angles of A and B",
    "S1": "LR schedules: the quasi-static ratio", "S2": "LR schedules: the adiabatic lag",
    "S3": "Schedule-corrected weight decay (SGDC)", "S4": "Noisy normalized regression under a cosine schedule",
    "N1": "AdamW under pure noise: the stationary norm", "N2": "AdamW under pure noise: weight / update cosine",
    "N3": "AdamW under pure noise: the beta2 dependence", "M1": "Weight decay as a memory timescale", "M2": "The weight-decay timescale against the dataset size",
    "E1": "GD + WD at the edge of stability",
    "P1": "Homogeneity of the derivatives", "P2": "Ex 1: the divergence threshold", "P3": "MF gradients",
    "P4": "Effective learning rate", "P5": "Weight decay = exponential learning rate",
    "P6": "SGD + WD norm equilibrium", "P7": "Clipping at the equilibrium", "P8": "Descent lemma of GD + WD",
    "P9": "The equilibrium norm band", "P10": "Equilibrium angular update", "P11": "Steady-state gradient ratio",
    "P12": "AdamW under pure noise", "P13": "Influence of one gradient (memory timescale)",
    "P14": "Edge of stability",
}
def source_text(src: str) -> str:
    return src.replace("|", "\\|")


LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text)


def copy(src: Path, dst: str) -> None:
    with mkdocs_gen_files.open(dst, "wb") as f:
        f.write(src.read_bytes())


def rel(from_page: str, to_path: str) -> str:
    return posixpath.relpath(to_path, posixpath.dirname(from_page) or ".")


# ---------------------------------------------------------------- reports from JSON
def load_rows(json_rel: str):
    from scaleinv.report import Row   # the library's row and renderer: one source of truth

    data = json.loads((ROOT / json_rel).read_text())
    rows = [Row(**{k: v for k, v in r.items() if k in Row.__dataclass_fields__}) for r in data["rows"]]
    return data.get("meta", {}), rows


def escaped(row):
    """The row with markdown's emphasis characters escaped in its text fields (sympy prints
    powers as ``**``, which markdown would turn into bold)."""
    from dataclasses import replace

    def esc(x):
        if isinstance(x, str):
            return x.replace("*", "\\*")
        if isinstance(x, (list, tuple)):
            return [esc(v) for v in x]
        return x

    return replace(row, statement=esc(row.statement), predicted=esc(row.predicted), measured=esc(row.measured),
                   tolerance=esc(row.tolerance), note=esc(row.note))


def group_of(row_id: str) -> str:
    return row_id.split(".")[0]


def report_page(page: str, json_rel: str, title: str, fig_dir: str | None) -> None:
    from scaleinv.report import to_markdown

    meta, rows = load_rows(json_rel)
    counts = Counter(r.status for r in rows)
    out = [f"# {title}", "",
           f'!!! info "Generated from `{json_rel}` when the site is built"',
           "    This page is rendered from the JSON report committed in the repository, with the library's "
           "own `scaleinv.report.to_markdown`; it is never edited by hand. "
           + ("Regenerate the JSON with `scaleinv proofs --json docs/results/proofs/report.json`."
              if "proofs" in json_rel else
              "Regenerate the JSON with `scaleinv verify --out docs/results/verify` (the newer-theory claims "
              "with `--out docs/results/verify/newer`, see the README)."), ""]
    info = ", ".join(([f"seed {meta['seed']}"] if "seed" in meta else [])
                     + ([("quick mode" if meta["quick"] else "full mode")] if "quick" in meta else [])
                     + [f"{k} {meta[k]}" for k in ("jax", "python") if k in meta]
                     + ([f"{meta['seconds']} s"] if "seconds" in meta else []))
    out += [f"**{len(rows)} rows: {counts.get('pass', 0)} pass, {counts.get('erratum', 0)} errata, "
            f"{counts.get('fail', 0)} fail.** " + (f"Run: {info}." if info else ""), "",
            "Columns: the claim (with its source in the talk or paper), the prediction, the measurement, the "
            "tolerance, the error budget where the row states one (known approximation error + seed-to-seed noise, "
            "docs/CONVENTIONS.md), and the status (`erratum`: the source's formula disagrees with the derivation and the "
            "measurement; the corrected form is in the claim and on the [errata page](errata.md)).", ""]
    groups: "OrderedDict[str, list]" = OrderedDict()
    for r in rows:
        groups.setdefault(group_of(r.id), []).append(r)
    for g, rs in groups.items():
        sources = sorted({r.source for r in rs if r.source})
        title = GROUP_TITLES.get(g, rs[0].statement.split(":")[0][:80])
        out += [f"## {g}: {title} {{#{g.lower()}}}", ""]
        if sources:
            out += ["Source: " + "; ".join(source_text(s) for s in sources[:3])
                    + ("; ..." if len(sources) > 3 else "") + " ([paper notes](../concepts/paper-notes.md)).", ""]
        out += [to_markdown([escaped(r) for r in rs]), ""]
        notes = [escaped(r) for r in rs if r.note]
        for r in notes:
            out += [f"- **{r.id}**: {r.note}"]
        if notes:
            out.append("")
        if fig_dir:
            png = ROOT / fig_dir / f"{g}.png"
            if png.exists():
                dst = posixpath.join(posixpath.dirname(page), Path(fig_dir).name, f"{g}.png")
                copy(png, dst)
                out += [f"![figure of claim group {g}]({rel(page, dst)})", ""]
    write(page, "\n".join(out))


def errata_page(page: str = "reports/errata.md") -> None:
    from scaleinv.report import fmt

    out = ["# Errata found in the talk", "",
           '!!! info "Generated from the JSON reports when the site is built"',
           "    Every row with status `erratum` in `docs/results/proofs/report.json` (`scaleinv proofs`, the "
           "sympy derivations) and `docs/results/verify/report.json` (`scaleinv verify`, the numerical "
           "confirmation). An erratum is a finding about the source, not a failure of the tool: the stated "
           "formula disagrees with the one derived from the definitions, and the measurement has the size of "
           "the derived discrepancy.", ""]
    found = []
    for json_rel, name, target in (("docs/results/proofs/report.json", "proofs", "proofs.md"),
                                   ("docs/results/verify/report.json", "verify", "verify.md"),
                                   ("docs/results/verify/newer/report.json", "verify (newer theory)",
                                    "verify-newer.md")):
        _, rows = load_rows(json_rel)
        seen = {r.id for _, _, r in found}   # verify/newer repeats a subset of verify's rows
        found += [(name, target, escaped(r)) for r in rows if r.status == "erratum" and r.id not in seen]
    out += [f"**{len(found)} erratum rows**; each section below gives the stated form, the derived or "
            "measured one and the size of the discrepancy.", "",
            "| id | report | claim |", "|---|---|---|"]
    for name, target, r in found:
        out.append(f"| [{r.id}](#{anchor(r.id)}) | {name} | {fmt(r.statement).replace('|', chr(92) + '|')} |")
    out.append("")
    for name, target, r in found:
        g = group_of(r.id)
        out += [f"## {r.id} {{#{anchor(r.id)}}}", "",
                f"*{name}, [{g}: {GROUP_TITLES.get(g, g)}]({target}#{g.lower()}); source: {source_text(r.source)}*", "",
                f"**Claim.** {fmt(r.statement)}", "",
                f"**Predicted / as stated.** {fmt(r.predicted)}", "",
                f"**Measured / derived.** {fmt(r.measured)}", "",
                f"**Tolerance.** {fmt(r.tolerance)}", ""]
        if r.note:
            out += [f"**Note.** {fmt(r.note)}", ""]
    write(page, "\n".join(out) + "\n")


def anchor(row_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", row_id.lower()).strip("-")


# ---------------------------------------------------------------- notebooks, statically
DISPLAY = re.compile(r"[ \t]*\n?[ \t]*\$\$(.+?)\$\$[ \t]*\n?", re.S)
SAVE = re.compile(r"""\bsave\(\s*\w+\s*,\s*["']([\w.-]+)["']""")


def notebook_page(src: Path) -> str:
    import jupytext

    nb = jupytext.read(src)
    page = f"notebooks/{src.stem}.md"
    out = [f'!!! note "Static rendering of `notebooks/{src.name}`"',
           "    The notebook's text and code, with the figures it saves (committed, regenerated by "
           "`scaleinv figures`); it is not executed when the site is built. The tests execute it "
           "(`tests/notebooks`), and its last cell asserts its headline numbers against theory. Open it in "
           f"Jupyter with `jupytext --to notebook notebooks/{src.name}`.", ""]
    for cell in nb.cells:
        text = cell.source.rstrip()
        if not text:
            continue
        if cell.cell_type == "markdown":
            # a display equation inside a paragraph (as Jupyter allows) becomes its own block
            out += [DISPLAY.sub(lambda m: "\n\n$$" + m.group(1).strip() + "$$\n\n", text).strip(), ""]
            continue
        out += ["```python", text, "```", ""]
        for name in SAVE.findall(text):
            png = ROOT / "notebooks" / "figures" / f"{name}.png"
            if png.exists():
                dst = f"notebooks/figures/{name}.png"
                copy(png, dst)
                out += [f"![{name}]({rel(page, dst)})", ""]
    # the title line of the notebook goes first
    body = "\n".join(out)
    title = next((c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"), f"# {src.stem}")
    body = body.replace(title + "\n", "", 1)
    write(page, title + "\n\n" + body)
    return page


# ---------------------------------------------------------------- repository markdown, included
def include(repo_rel: str, page: str) -> None:
    src = ROOT / repo_rel
    base = posixpath.dirname(repo_rel)

    def fix(m: re.Match) -> str:
        bang, text, target = m.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = posixpath.normpath(posixpath.join(base, path))
        if resolved in INCLUDED:
            return f"{bang}[{text}]({rel(page, INCLUDED[resolved])}{'#' + anchor if anchor else ''})"
        if resolved == "README.md":
            return f"[{text}]({rel(page, 'index.md')})"
        if bang and (ROOT / resolved).is_file():
            dst = posixpath.join(posixpath.dirname(page), "files", resolved.replace("/", "_"))
            copy(ROOT / resolved, dst)
            return f"![{text}]({rel(page, dst)})"
        shown = resolved + ("/" if (ROOT / resolved).is_dir() else "")
        return text if text.strip("`") == shown.rstrip("/") or text.strip("`") == path else f"{text} (`{shown}`)"

    text = src.read_text()
    out, in_code = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        out.append(line if in_code else LINK.sub(fix, line))
    note = (f'!!! note "Included from `{repo_rel}`"\n    The repository file, with its links pointing into this site; '
            "paths in `code` are files of the repository.\n\n")
    lines = "\n".join(out).split("\n", 1)
    write(page, lines[0] + "\n\n" + note + (lines[1] if len(lines) > 1 else ""))


def cards_page(page: str = "reports/cards.md", src: str = "docs/results/cards") -> None:
    """The optimizer cards (``scaleinv card --all --quick --out docs/results/cards``): a summary
    table, then each card's rows (from its JSON) and its figure page."""
    folder = ROOT / src
    order = json.loads((folder / "index.json").read_text())["cards"]
    out = ["# Optimizer cards", "",
           f'!!! info "Generated from `{src}/*.json` when the site is built"',
           "    Every registered optimizer measured on the toys of `scaleinv card` beside the optimizer "
           "registry's prediction (\"no prediction\" where it has none; a prediction is never the measurement). "
           "Status: `pass` / `fail` against the prediction's stated tolerance, `measured` (no prediction), "
           "`failed` (the toy run diverged, raised or ran out of time). Regenerate with "
           f"`scaleinv card --all --quick --out {src}`.", "",
           "| optimizer | eta | lambda | pass | fail | measured | failed toys |", "|---|---|---|---|---|---|---|"]
    cards = []
    for name in order:
        doc = json.loads((folder / f"{name}.json").read_text())
        c = Counter(r["status"] for r in doc["rows"])
        m = doc["meta"]
        out.append(f"| [`{m['optimizer']}`](#{anchor('card-' + name)}) | {m['eta']} | {m['weight_decay']} | "
                   f"{c['pass']} | {c['fail']} | {c['measured']} | {c['failed']} |")
        cards.append((name, doc))
    for name, doc in cards:
        m = doc["meta"]
        out += ["", f"## `{m['optimizer']}` {{#{anchor('card-' + name)}}}", "", m["summary"].replace("|", "\\|"), "",
                f"{'quick' if m['quick'] else 'full'} mode, seed {m['seed']}, eta = {m['eta']}, lambda = "
                f"{m['weight_decay']}; {m['seconds']} s.", "",
                "| id | quantity | predicted | measured | tolerance | status | note |", "|---|---|---|---|---|---|---|"]
        for r in doc["rows"]:
            cells = [r["id"], r["quantity"], r["predicted"], r["measured"], r["tolerance"], r["status"], r["note"]]
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells]
            out.append("| " + " | ".join(v.replace("|", "\\|").replace("*", "\\*") for v in cells) + " |")
        png = folder / f"{name}.png"
        if png.is_file():
            dst = f"reports/cards/{name}.png"
            copy(png, dst)
            out += ["", f"![card of {m['optimizer']}]({rel(page, dst)})"]
    write(page, "\n".join(out) + "\n")


def theory_api_page(page: str = "api/theory.md") -> None:
    """One section per module of ``scaleinv/theory/`` (a new paper's module appears by itself)."""
    mods = sorted(p.stem for p in (ROOT / "scaleinv" / "theory").glob("[a-z]*.py"))
    first = [m for m in ("li2022", "kosson2024") if m in mods]
    out = ["# scaleinv.theory", "", "::: scaleinv.theory", "    options:", "      show_root_heading: false",
           "      members: false", ""]
    for m in first + [m for m in mods if m not in first]:
        out += [f"::: scaleinv.theory.{m}", ""]
    write(page, "\n".join(out))


theory_api_page()
for page, (json_rel, title, fig_dir) in REPORTS.items():
    report_page(page, json_rel, title, fig_dir)
errata_page()
cards_page()
for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
    notebook_page(nb)
for repo_rel, page in INCLUDED.items():
    include(repo_rel, page)
for png in sorted((ROOT / "notebooks" / "figures").glob("*.png")):   # the concept pages' figures
    copy(png, f"figures/{png.name}")
