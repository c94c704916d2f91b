"""Check the built documentation site as a reader would (issue 19), after ``mkdocs build``.

    python tools/site_check.py site                         # the built HTML, programmatically
    python tools/site_check.py site --screenshots /tmp/shots --mathjax /path/to/mathjax/package \\
        index.html api/optim.html reports/verify.html       # + headless Chromium screenshots

Without a browser it reads every page of ``site/`` and reports (exit 1 if any):
pages with math (``.arithmatex``) that do not load MathJax, ``<img>`` sources and local
``href``s that do not resolve to a file of the site, and anchors (``page.html#id``) that do not
exist on their page. ``mkdocs build --strict`` already checks the markdown links; this also
covers the HTML that mkdocstrings and the theme write.

With ``--screenshots`` it opens the pages in headless Chromium through playwright
(``pip install playwright``; ``--chromium`` the browser binary, Debian's ``/usr/bin/chromium`` by
default: nothing is downloaded) and saves one PNG per page, after MathJax has typeset; it prints
per page how many equations MathJax rendered and which images failed to load. ``--mathjax DIR``
serves the site's MathJax CDN URL from a local copy of the ``mathjax@3`` npm package (for a
machine without access to the CDN, e.g. ``npm pack mathjax@3`` unpacked).
"""
from __future__ import annotations

import argparse
import mimetypes
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.links, self.imgs, self.scripts, self.math = set(), [], [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if "arithmatex" in (a.get("class") or "").split():
            self.math += 1


def check_html(site: Path) -> list[str]:
    # 404.html is served for any missing URL, so the theme writes its links from the site root
    pages = {p: _Page() for p in sorted(site.rglob("*.html")) if p.name != "404.html"}
    for p, parser in pages.items():
        parser.feed(p.read_text(errors="replace"))
    problems = []
    for p, parser in pages.items():
        rel = p.relative_to(site)
        if parser.math and not any("mathjax" in s.lower() for s in parser.scripts):
            problems.append(f"{rel}: {parser.math} equations but no MathJax script")
        for src in parser.imgs:
            if urlsplit(src).scheme in ("http", "https", "data"):
                continue
            if not (p.parent / unquote(urlsplit(src).path)).resolve().is_file():
                problems.append(f"{rel}: image {src} not found")
        for href in parser.links:
            u = urlsplit(href)
            if u.scheme or href.startswith("mailto:"):
                continue
            target = p if not u.path else (p.parent / unquote(u.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: link {href} not found")
            elif u.fragment and target.suffix == ".html" and target in pages and u.fragment not in pages[target].ids:
                problems.append(f"{rel}: anchor {href} not found")
    n_math = sum(1 for q in pages.values() if q.math)
    print(f"{len(pages)} pages, {n_math} with equations, "
          f"{sum(len(q.imgs) for q in pages.values())} images, {sum(len(q.links) for q in pages.values())} links")
    return problems


def screenshots(site: Path, out: Path, pages: list[str], mathjax: Path | None, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)

    def serve_mathjax(route):
        rel = route.request.url.split("/npm/mathjax@3/", 1)[1].split("?")[0]
        f = mathjax / rel if mathjax else None
        if f is not None and f.is_file():
            route.fulfill(path=str(f), content_type=mimetypes.guess_type(str(f))[0] or "application/octet-stream")
        else:
            route.fulfill(status=404)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        if mathjax:
            page.route(re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/.*"), serve_mathjax)
        for name in pages:
            path, _, frag = name.partition("#")
            page.goto((site / path).resolve().as_uri() + (f"#{frag}" if frag else ""),
                      wait_until="domcontentloaded", timeout=180_000)
            page.wait_for_timeout(6000)     # MathJax typesets asynchronously
            rendered = page.evaluate("Array.from(document.querySelectorAll('.arithmatex'))"
                                     ".filter(e => e.querySelector('mjx-container')).length")
            spans = page.evaluate("document.querySelectorAll('.arithmatex').length")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.naturalWidth).map(i => i.src)")
            png = out / (re.sub(r"[^\w.-]+", "_", name.replace(".html", "")) + ".png")
            page.screenshot(path=str(png))
            print(f"{name}: MathJax rendered {rendered} of {spans} equations; broken images {broken}; -> {png}")
        browser.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("site", type=Path)
    ap.add_argument("pages", nargs="*", default=["index.html", "api/optim.html", "reports/verify.html"])
    ap.add_argument("--screenshots", type=Path, default=None)
    ap.add_argument("--mathjax", type=Path, default=None)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_intermixed_args(argv)
    if not (args.site / "index.html").is_file():
        print(f"site_check: error: site: no index.html in {args.site} (run mkdocs build first)", file=sys.stderr)
        return 2
    problems = check_html(args.site)
    for line in problems:
        print("  " + line)
    print(f"{len(problems)} problems")
    if args.screenshots:
        screenshots(args.site, args.screenshots, args.pages, args.mathjax, args.chromium)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
