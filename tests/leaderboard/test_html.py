"""The HTML page: self-contained, and rendered for real in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cobench.leaderboard.render.html import IMAGE_DATA, normalise

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome") if shutil.which(n)), None
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (Debian: apt-get install chromium)"
)


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


class Tables(HTMLParser):
    """The sortable tables of a page: per table, its header keys and rows of (data-value, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.cell: list | None = None
        self.root_attrs: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root_attrs = a
        elif tag == "table" and "sortable" in (a.get("class") or ""):
            self.tables.append({"keys": [], "rows": [], "aria": {}})
        elif self.tables and tag == "th":
            self.tables[-1]["keys"].append(a.get("data-key"))
            if a.get("aria-sort"):
                self.tables[-1]["aria"][a.get("data-key")] = a["aria-sort"]
        elif self.tables and tag == "tr" and "data-method" in a:
            self.tables[-1]["rows"].append([])
        elif self.tables and tag == "td":
            self.cell = [a.get("data-value"), ""]

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.tables[-1]["rows"][-1].append(tuple(self.cell))
            self.cell = None


def parse(page: str) -> Tables:
    p = Tables()
    p.feed(page)
    return p


def test_page_is_self_contained(tiny):
    page = tiny.with_suffix(".html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the page must not load anything remotely"
    assert "<script>" in page and "<style>" in page
    assert len(IMAGE_DATA.findall(page)) == 5 and all(
        len(m) > 1000 for m in IMAGE_DATA.findall(page)
    )  # eps sweep, heatmap, CO-rate heatmap, two curve figures
    assert 'data:image/png;base64,"' in normalise(page)
    tables = parse(page).tables
    assert len(tables) == 2 and all(len(t["rows"]) == 4 for t in tables)


@needs_chromium
def test_page_renders_in_headless_chromium_with_all_methods(tiny, tmp_path):
    page = tiny.with_suffix(".html")
    url = page.resolve().as_uri()
    dom = chromium(tmp_path, url, "--dump-dom", "--virtual-time-budget=3000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = parse(dom.stdout)
    assert parsed.root_attrs.get("data-sortable-tables") == "2", "the page's script did not run"
    methods = {row[1][1] for t in parsed.tables for row in t["rows"]}
    assert methods == {"fgsm", "n-fgsm"}
    for name in ("fgsm", "n-fgsm"):
        assert f'data-method="{name}"' in dom.stdout

    # the script sorts: #sort=pgd_acc-asc orders every table by PGD accuracy, missing values last
    sorted_dom = chromium(tmp_path, url + "#sort=pgd_acc-asc", "--dump-dom", "--virtual-time-budget=3000")
    for t in parse(sorted_dom.stdout).tables:
        col = t["keys"].index("pgd_acc")
        values = [float(r[col][0]) for r in t["rows"]]
        assert values == sorted(values) and t["aria"] == {"pgd_acc": "ascending"}
    desc = chromium(tmp_path, url + "#sort=method-desc", "--dump-dom", "--virtual-time-budget=3000")
    for t in parse(desc.stdout).tables:
        assert [r[1][1] for r in t["rows"]] == ["n-fgsm", "n-fgsm", "fgsm", "fgsm"]

    shot = tmp_path / "page.png"
    res = chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1280,2000", "--virtual-time-budget=3000")
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (2000, 1280)
    rgb = (img[..., :3] * 255).astype(int)
    colours = {tuple(px) for px in rgb[::3, ::3].reshape(-1, 3)}
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    non_white = (rgb.sum(axis=2) < 700).mean()
    assert non_white > 0.03, f"only {non_white:.1%} of the screenshot is not white"
    # the table header bar (dark blue) is on screen
    header = (abs(rgb[..., 0] - 0x24) < 8) & (abs(rgb[..., 1] - 0x43) < 8) & (abs(rgb[..., 2] - 0x5F) < 8)
    assert header.sum() > 5000
