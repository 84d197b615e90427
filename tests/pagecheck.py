"""A static report as a reader's browser shows it.

Every page reachable by links from ``index.html`` is opened in Chromium, measured at a
phone's and a desktop's width by ``pagecheck.js`` (every element, text, chart and link;
no class name of the report is assumed), printed to A4 and photographed. The judging
below holds those measurements against standards the report did not write: the
viewport, WCAG 2 AA contrast, the A4 page, the files on disk.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

#: viewport widths (CSS px): a phone held upright, a desktop window
PHONE, DESKTOP = 400, 1400
WIDTHS = (DESKTOP, PHONE)
VIEWPORT_HEIGHT = 900
#: the smallest chart text a reader can read on screen (CSS px)
MIN_CHART_TEXT_PX = 10.0
#: WCAG 2 AA: text 4.5:1 (1.4.3), graphical objects 3:1 (1.4.11)
TEXT_CONTRAST, GRAPHIC_CONTRAST = 4.5, 3.0
#: text averaging fewer visible characters per line than this over 3 lines or more is
#: squeezed into a column too narrow to read ("one letter per line")
MIN_CHARS_PER_LINE = 5
#: A4 with Chromium's default print margins (0.4 in), as a reader's "Print" gives it
A4_MM = (210.0, 297.0)
PRINT_MARGIN = "0.4in"
_MARGIN_MM = 0.4 * 25.4
_PX_PER_MM = 96 / 25.4
PRINT_WIDTH_PX = (A4_MM[0] - 2 * _MARGIN_MM) * _PX_PER_MM
PRINT_HEIGHT_PX = (A4_MM[1] - 2 * _MARGIN_MM) * _PX_PER_MM
#: schemes a static report may refer to: its own files and inline data
LOCAL_SCHEMES = ("file", "data")


@dataclass
class Page:
    """One page of a report as the browser showed it."""

    path: Path  # as reached from index.html (through the report's symbolic links)
    url: str
    #: pagecheck.js's measurements per viewport width
    screen: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: every URL the page asked for, and console errors / warnings it raised
    requests: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    #: height of the page laid out for print at the A4 text width, and its PDF's pages
    print_height_px: float = 0.0
    pdf_pages: int = 0

    def name(self, root: Path) -> str:
        return self.path.relative_to(root).as_posix()


def crawl(browser: Any, index: Path, artefacts: Path, tag: str, *,
          screenshots: bool = False) -> list[Page]:
    """Open ``index`` and every report page its links reach; measure and print each, and
    photograph it at each width with ``screenshots`` (for a reader: nothing judges a
    screenshot, and they are much of the browser's work). PDFs and screenshots go to
    ``artefacts`` named ``<tag>-<page>``."""
    script = _script()
    root = index.parent
    artefacts.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": DESKTOP, "height": VIEWPORT_HEIGHT}, offline=True,
        service_workers="block", device_scale_factor=1,
    )

    def guard(route: Any) -> None:  # a static report must never reach the network
        if urlsplit(route.request.url).scheme in LOCAL_SCHEMES:
            route.continue_()
        else:
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    current: list[Page] = []
    page.on("request", lambda r: current[-1].requests.append(r.url))
    page.on("requestfailed", lambda r: current[-1].console.append(f"request failed: {r.url}"))
    page.on("console", lambda m: current[-1].console.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: current[-1].console.append(f"page error: {e}"))
    pages: list[Page] = []
    queue = [index]
    seen = {str(index)}
    try:
        while queue:
            path = queue.pop(0)
            found = Page(path=path, url=path.as_uri())
            current.append(found)
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", found.name(root))
            _print(page, found, artefacts / f"{tag}-{stem}.pdf")
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": VIEWPORT_HEIGHT})
                found.screen[width] = page.evaluate(script, {
                    "openDetails": True, "charts": True, "contrast": width == DESKTOP,
                    "minCharsPerLine": MIN_CHARS_PER_LINE,
                })
                if screenshots:
                    page.screenshot(path=str(artefacts / f"{tag}-{stem}-{width}.png"),
                                    full_page=True)
            pages.append(found)
            for link in found.screen[DESKTOP]["links"]:
                target = local_path(link["url"])
                if (target is not None and target.suffix == ".html" and target.is_file()
                        and target.is_relative_to(root) and str(target) not in seen):
                    seen.add(str(target))
                    queue.append(target)
    finally:
        context.close()
    return pages


def _print(page: Any, found: Page, pdf_path: Path) -> None:
    """Lay the page out for print at the A4 text width (its height says how many pages it
    needs), then print it to A4 as a reader would, with the browser's default margins."""
    page.goto(found.url, wait_until="load")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": round(PRINT_WIDTH_PX), "height": VIEWPORT_HEIGHT})
    found.print_height_px = page.evaluate(
        "document.documentElement.getBoundingClientRect().height")
    margin = dict.fromkeys(("top", "right", "bottom", "left"), PRINT_MARGIN)
    pdf = page.pdf(format="A4", margin=margin, print_background=True)
    page.emulate_media(media="screen")  # after: page.pdf() prints the emulated media
    pdf_path.write_bytes(pdf)
    found.pdf_pages = pdf_page_count(pdf)


def _script() -> str:
    # page.evaluate() takes the function itself: drop the file's leading comment
    text = Path(__file__).with_name("pagecheck.js").read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if not line.startswith("//"))


def pdf_page_count(pdf: bytes) -> int:
    """Pages of a PDF as Chromium writes it (page objects, not compressed in streams)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def local_path(url: str) -> Path | None:
    """The file a ``file:`` URL names (without its fragment), or None for other schemes."""
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(url2pathname(parts.path))


# --- judging ---------------------------------------------------------------------------


def too_wide(measured: dict[str, Any]) -> list[str]:
    """Elements that stick out of the viewport (outermost only), and the page's own
    sideways scroll if any."""
    out = list(measured["wide"])
    if measured["pageWidth"] > measured["viewport"] + 1:
        out.append(f"the page scrolls sideways: {measured['pageWidth']} px wide in a "
                   f"{measured['viewport']} px viewport")
    return out


def small_chart_text(measured: dict[str, Any]) -> list[str]:
    return [f"{chart['where']}: {t['text']!r} at {t['px']:.1f} px"
            for chart in measured["charts"] for t in chart["texts"]
            if t["px"] < MIN_CHART_TEXT_PX - 0.05]


def poor_contrast(measured: dict[str, Any]) -> list[str]:
    """Chart text under 4.5:1 and chart marks under 3:1 against what is painted behind
    them (a filled shape of the chart, else the page), grouped by colour pair."""
    failures: Counter[str] = Counter()
    for chart in measured["charts"]:
        page_bg = _over(_rgba(chart["background"]), (255.0, 255.0, 255.0))
        items = [(t, TEXT_CONTRAST, f"text {t['text']!r}") for t in chart["texts"]]
        items += [(m, GRAPHIC_CONTRAST, m["what"]) for m in chart["marks"] if not m["exempt"]]
        for item, need, what in items:
            if item["colour"] is None:
                continue
            behind = page_bg
            if item["under"] is not None:
                colour, alpha = _rgba(item["under"]["colour"])
                behind = _blend(colour, alpha * item["under"]["alpha"], page_bg)
            fg = _blend(_rgba(item["colour"])[0], item["alpha"], behind)
            ratio = contrast(fg, behind)
            if ratio < need:
                failures[f"{what}: {_hex(fg)} on {_hex(behind)} is {ratio:.2f}:1, "
                         f"needs {need:g}:1"] += 1
    return [f"{what} (x{n})" if n > 1 else what for what, n in failures.items()]


def dead_links(page: Page, root: Path) -> list[str]:
    """References that do not resolve to a file of the report (and, with a fragment, to
    an element of that file), or that point off the machine."""
    out = []
    for link in page.screen[DESKTOP]["links"]:
        url = link["url"]
        scheme = urlsplit(url).scheme
        if scheme == "data":
            continue
        target = local_path(url)
        if target is None:
            out.append(f"{link['where']} -> {url}: not a file of the report ({scheme}:)")
            continue
        if not target.is_relative_to(root):
            out.append(f"{link['where']} -> {url}: outside the report's folder")
            continue
        if not target.exists():
            out.append(f"{link['where']} -> {url}: no such file")
            continue
        fragment = unquote(urlsplit(url).fragment)
        if fragment and target.suffix == ".html" and fragment not in html_ids(target):
            out.append(f"{link['where']} -> {url}: no element with id {fragment!r}")
    return out


def requests_off_the_machine(page: Page) -> list[str]:
    return [url for url in page.requests if urlsplit(url).scheme not in LOCAL_SCHEMES]


def html_ids(path: Path) -> set[str]:
    """The ids (and anchor names) an HTML file defines: what a ``#fragment`` can reach."""
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser.ids


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


# --- colour (WCAG 2 relative luminance and contrast ratio) ------------------------------

RGB = tuple[float, float, float]


def contrast(a: RGB, b: RGB) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def luminance(rgb: RGB) -> float:
    def lin(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _rgba(css: str) -> tuple[RGB, float]:
    """``rgb(r, g, b)`` / ``rgba(r, g, b, a)`` as computed styles give them."""
    nums = [float(n) for n in re.findall(r"-?\d*\.?\d+", css)]
    if len(nums) < 3:
        raise ValueError(f"not an rgb() colour: {css!r}")
    return (nums[0], nums[1], nums[2]), (nums[3] if len(nums) > 3 else 1.0)


def _blend(top: RGB, alpha: float, bottom: RGB) -> RGB:
    a = min(max(alpha, 0.0), 1.0)
    return (top[0] * a + bottom[0] * (1 - a), top[1] * a + bottom[1] * (1 - a),
            top[2] * a + bottom[2] * (1 - a))


def _over(colour: tuple[RGB, float], bottom: RGB) -> RGB:
    return _blend(colour[0], colour[1], bottom)


def _hex(rgb: Iterable[float]) -> str:
    return "#" + "".join(f"{round(c):02x}" for c in rgb)
