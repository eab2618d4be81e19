"""``cobench leaderboard site``: one static site of every board, its links followed on disk and
its pages loaded in headless Chromium (images decoded, tables sorted)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests.leaderboard.conftest import lb_cli
from tests.leaderboard.test_html import chromium, needs_chromium, parse

UNBUILT_TOML = """\
[leaderboard]
title = "A board defined ahead of its GPU run"

[grid]
datasets = ["digits"]
models = ["small-cnn"]
methods = ["fgsm", "pgd"]
eps = [8, 16, 32]
seeds = [0, 1]
"""


class Links(HTMLParser):
    """Every ``href`` and ``src`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.srcs.append(a.get("src") or "")


def links_of(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text())
    return parser


@pytest.fixture
def site(tiny, tmp_path) -> Path:
    """The site of the tiny board (with a committed figure added) and a board not built yet."""
    figure = tiny.parent / "searches" / "phase.png"
    figure.parent.mkdir()
    figure.write_bytes((tiny.parent / "plots" / "tiny" / "eps-sweep.png").read_bytes())
    text = tiny.read_text().replace(
        "[leaderboard]\n", '[leaderboard]\nfigures = [{ path = "searches/phase.png", caption = "A **search**" }]\n'
    )
    tiny.write_text(text)
    assert lb_cli(["render", str(tiny)]).exit_code == 0
    unbuilt = tiny.parent / "unbuilt.toml"
    unbuilt.write_text(UNBUILT_TOML)
    out = tmp_path / "site"
    result = lb_cli(["site", str(tiny), str(unbuilt), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 leaderboard(s), 1 built" in result.output
    return out


def test_every_link_and_image_resolves_to_a_file_of_the_site(site):
    pages = sorted(site.rglob("*.html"))
    assert [p.relative_to(site).as_posix() for p in pages] == ["index.html", "tiny/index.html"]
    for page in pages:
        links = links_of(page)
        for url in links.hrefs + links.srcs:
            parts = urlsplit(url)
            assert not parts.scheme and not parts.netloc and not url.startswith("/"), f"{page}: {url} is not relative"
            target = (page.parent / unquote(parts.path)).resolve()
            assert target.is_file() and site.resolve() in target.parents, f"{page}: {url} does not resolve"
    index = links_of(site / "index.html")
    assert index.hrefs == ["tiny/index.html"]  # the board not built yet has no page
    board = links_of(site / "tiny" / "index.html")
    assert board.hrefs == ["../index.html", "tiny.csv", "tiny.json"]
    # five plots and the committed figure, each a file beside the page (no embedded data)
    assert sorted(board.srcs) == sorted(
        [f"plots/{p.name}" for p in (site / "tiny" / "plots").glob("*.png")] + ["figures/1-phase.png"]
    )
    assert len(board.srcs) == 6 and "data:image" not in (site / "tiny" / "index.html").read_text()


def test_downloads_are_the_boards_rendered_tables(site, tiny):
    for ext in ("csv", "json"):
        assert (site / "tiny" / f"tiny.{ext}").read_bytes() == tiny.with_suffix(f".{ext}").read_bytes()


def test_index_lists_every_board_with_cells_cost_and_best_row(site, tiny):
    page = (site / "index.html").read_text()
    board = json.loads(tiny.with_suffix(".json").read_text())
    top = next(r for r in board["rows"] if r["eps"] == 16 and r["injection"] == "none" and r["rank"] == 1)
    metric = board["ranked_by"]
    mean, std = 100 * top[f"{metric}_mean"], 100 * top[f"{metric}_std"]
    assert f"{top['method']} at 16/255: PGD {mean:.1f} ± {std:.1f} %" in page
    hours = board["coverage"]["grid_wall_hours"]
    assert f'data-value="{hours:g}"' in page
    assert "16 of 16" in page and "Tiny test leaderboard" in page
    assert "A board defined ahead of its GPU run" in page and "12 (not built yet)" in page
    assert page.index('data-board="tiny"') < page.index('data-board="unbuilt"')  # built boards first


def test_a_rebuild_replaces_the_site_and_other_folders_are_refused(site, tiny, tmp_path):
    (site / "tiny" / "stale.png").write_bytes(b"old")
    assert lb_cli(["site", str(tiny), "-o", str(site)]).exit_code == 0
    assert not (site / "tiny" / "stale.png").exists() and (site / "index.html").is_file()
    other = tmp_path / "docs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    from click.testing import CliRunner

    from cobench.cli import _load_plugin_commands, cli

    _load_plugin_commands()
    result = CliRunner().invoke(cli, ["leaderboard", "site", str(tiny), "-o", str(other)])
    assert result.exit_code == 2 and "holds other files" in result.output
    assert (other / "notes.txt").read_text() == "mine"


#: appended to a copy of a page: after the load event, counts the images the browser decoded
IMAGE_PROBE = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.documentElement.setAttribute("data-images", imgs.length + "/" + ok.length);
});
</script>"""


def loaded_images(tmp_path: Path, page: Path) -> str:
    """``total/decoded`` images of ``page`` as Chromium loads it from disk (relative URLs as served)."""
    probe = page.with_name("probe-" + page.name)
    probe.write_text(page.read_text().replace("</body>", IMAGE_PROBE + "</body>"))
    dom = chromium(tmp_path, probe.resolve().as_uri(), "--dump-dom", "--virtual-time-budget=5000")
    probe.unlink()
    assert dom.returncode == 0, dom.stderr[-2000:]
    root = dom.stdout[: dom.stdout.index(">", dom.stdout.index("<html")) + 1]
    return root.split('data-images="')[1].split('"')[0]


@needs_chromium
def test_site_loads_in_headless_chromium(site, tmp_path):
    index = chromium(tmp_path, (site / "index.html").resolve().as_uri(), "--dump-dom", "--virtual-time-budget=3000")
    assert index.returncode == 0, index.stderr[-2000:]
    assert 'data-sortable-tables="1"' in index.stdout and 'href="tiny/index.html"' in index.stdout
    assert loaded_images(tmp_path, site / "index.html") == "0/0"
    assert loaded_images(tmp_path, site / "tiny" / "index.html") == "6/6"

    # the board page still sorts: #sort=pgd_acc-asc orders every table by PGD accuracy
    url = (site / "tiny" / "index.html").resolve().as_uri()
    dom = chromium(tmp_path, url + "#sort=pgd_acc-asc", "--dump-dom", "--virtual-time-budget=3000")
    parsed = parse(dom.stdout)
    assert parsed.root_attrs.get("data-sortable-tables") == "2", "the page's script did not run"
    for t in parsed.tables:
        col = t["keys"].index("pgd_acc")
        values = [float(r[col][0]) for r in t["rows"]]
        assert values == sorted(values) and t["aria"] == {"pgd_acc": "ascending"}

    # the index sorts too (built boards come first; by title, "A board ..." comes first)
    index_url = (site / "index.html").resolve().as_uri()
    dom = chromium(tmp_path, index_url + "#sort=title-asc", "--dump-dom", "--virtual-time-budget=3000")
    assert dom.stdout.index('data-board="unbuilt"') < dom.stdout.index('data-board="tiny"')
