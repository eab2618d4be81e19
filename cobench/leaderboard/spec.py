"""A leaderboard definition: ``leaderboards/<name>.toml``.

The file is a grid file (``[grid]``, ``[training]``, ``[evaluation]``, ``[params.*]``, read by
:meth:`cobench.grid.spec.GridSpec.from_dict`) plus a ``[leaderboard]`` table of metadata::

    [leaderboard]
    title = "..."            # heading of the rendered page (default: the file name)
    description = "..."      # a paragraph under the heading
    results_dir = "results/<name>"   # where results are stored, relative to the TOML file
    rank_by = ["autoattack_acc", "pgd_acc"]   # first metric present ranks the rows
    metrics = ["noise_acc"]  # more accuracy columns, e.g. a third-party evaluator's (default: none)
    require_verification = false   # true: a submission enters only once `verify` reproduced it
    verify_tolerance = 0.01        # |re-evaluated - reported| allowed per accuracy (fraction)
    figures = [{ path = "searches/x.png", caption = "..." }]   # committed images shown on the page
    searches = ["results/<search>"]   # result folders of the searches behind the board (their time counts)
    [[leaderboard.published]]      # a reference's figure for one row, with its source (below)

A leaderboard has exactly one dataset and one model. Its outputs sit next to the TOML:
``<name>.md``, ``<name>.csv``, ``<name>.json``, ``<name>.html`` and ``plots/<name>/*.png``.

Published figures beside a board's own numbers: each ``[[leaderboard.published]]`` entry is one
number a reference published for one row of the board (method, eps, and the injection setting),
with where it was read::

    [[leaderboard.published]]
    method = "grad-align"
    eps = 8
    metric = "pgd50_10_acc"     # one of the board's accuracy columns
    value = 47.6                # in %, as published
    std = 0.5                   # optional, as published
    seeds = 5                   # optional: runs behind the figure
    checkpoint = "last"         # "last" (end of training), "best" (early-stopped) or "n/s" (not stated)
    approximate = true          # read off a plot (shown as ≈)
    source = "tml-epfl/understanding-fast-adv-training README.md l.30, img/fig1_robustnes_diff_eps_cifar10.png (Fig. 1 left)"
    differs = "lr 0.30 ... (every way the published setting differs from the board's)"
    # injection = "low-freq-pm", beta = 8   (default: no injection)

A figure enters a board only with its ``source``; where the published setting differs from the
board's (model, epochs, checkpoint, evaluation), ``differs`` must say how. The rendered tables
show it beside cobench's number of the same metric, with the difference cobench - published in
points (:mod:`cobench.leaderboard.board`); a figure for the ``best`` checkpoint is compared with
the board's ``best_<metric>`` column when the board shows one, else with ``<metric>`` and the
checkpoint difference is stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cobench.api import NO_INJECTION
from cobench.errors import ConfigError
from cobench.grid.spec import GridSpec, read_toml
from cobench.kinds import singular

CHECKPOINTS = ("last", "best", "n/s")
KEYS = (
    "method",
    "eps",
    "metric",
    "value",
    "std",
    "seeds",
    "checkpoint",
    "approximate",
    "source",
    "differs",
    "injection",
    "beta",
)


@dataclass(frozen=True)
class Published:
    method: str
    eps: float
    metric: str
    value: float  # in %
    source: str
    checkpoint: str = "last"
    std: float | None = None
    seeds: int | None = None
    approximate: bool = False
    differs: str = ""
    injection: str = NO_INJECTION
    beta: float = 0.0

    def key(self) -> tuple:
        return (self.injection, self.beta if self.injection != NO_INJECTION else 0.0, self.eps, self.method)

    def value_text(self) -> str:
        text = ("≈" if self.approximate else "") + f"{self.value:g}"
        if self.std is not None:
            text += f" ± {self.std:g}"
        return text


def parse_published(
    entries: Any, where: str, metrics: tuple[str, ...], methods: list[str], eps: list[float]
) -> tuple[Published, ...]:
    """The ``[[leaderboard.published]]`` entries of a board, checked; ``metrics`` are its accuracy columns."""
    if entries is None:
        return ()
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{where}: [leaderboard] published must be an array of tables ([[leaderboard.published]])")
    out = []
    for i, e in enumerate(entries):
        at = f"{where}: [[leaderboard.published]] #{i + 1}"
        unknown = sorted(set(e) - set(KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(KEYS)}")
        for key in ("method", "eps", "metric", "value", "source"):
            if key not in e:
                raise ConfigError(f"{at}: {key} is required (a figure enters a board only with its source)")
        if e["method"] not in methods:
            raise ConfigError(f"{at}: method {e['method']!r} is not one of the board's methods ({', '.join(methods)})")
        if not _number(e["eps"]) or float(e["eps"]) not in [float(x) for x in eps]:
            raise ConfigError(
                f"{at}: eps {e['eps']!r} is not one of the board's eps ({', '.join(f'{x:g}' for x in eps)})"
            )
        if e["metric"] not in metrics:
            raise ConfigError(
                f"{at}: metric {e['metric']!r} is not one of the board's accuracy columns ({', '.join(metrics)})"
            )
        if not _number(e["value"]) or not 0 <= e["value"] <= 100:
            raise ConfigError(f"{at}: value must be a percentage in [0, 100], got {e['value']!r}")
        if "std" in e and (not _number(e["std"]) or e["std"] < 0):
            raise ConfigError(f"{at}: std must be a number >= 0 (in points), got {e['std']!r}")
        if "seeds" in e and (not isinstance(e["seeds"], int) or isinstance(e["seeds"], bool) or e["seeds"] < 1):
            raise ConfigError(f"{at}: seeds must be an integer >= 1, got {e['seeds']!r}")
        if e.get("checkpoint", "last") not in CHECKPOINTS:
            raise ConfigError(f"{at}: checkpoint must be one of {', '.join(CHECKPOINTS)}, got {e['checkpoint']!r}")
        for key in ("source", "differs", "injection"):
            if key in e and (not isinstance(e[key], str) or (key != "differs" and not e[key].strip())):
                raise ConfigError(f"{at}: {key} must be a non-empty string")
        if "approximate" in e and not isinstance(e["approximate"], bool):
            raise ConfigError(f"{at}: approximate must be true or false")
        if "beta" in e and not _number(e["beta"]):
            raise ConfigError(f"{at}: beta must be a number (/255)")
        out.append(
            Published(
                method=e["method"],
                eps=float(e["eps"]),
                metric=e["metric"],
                value=float(e["value"]),
                source=" ".join(e["source"].split()),
                checkpoint=e.get("checkpoint", "last"),
                std=None if e.get("std") is None else float(e["std"]),
                seeds=e.get("seeds"),
                approximate=e.get("approximate", False),
                differs=" ".join(e.get("differs", "").split()),
                injection=e.get("injection", NO_INJECTION),
                beta=float(e.get("beta", 0.0)),
            )
        )
    return tuple(out)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


LEADERBOARD_KEYS = (
    "title",
    "description",
    "results_dir",
    "rank_by",
    "metrics",
    "require_verification",
    "verify_tolerance",
    "figures",
    "searches",
    "published",
)
#: the accuracies every board shows; ``metrics`` adds others after them
TABLE_METRICS = ("clean_acc", "fgsm_acc", "pgd_acc", "autoattack_acc")
#: accuracies (fractions) re-evaluated from saved weights may differ from the reported ones by this much
DEFAULT_VERIFY_TOLERANCE = 0.01
DEFAULT_RANK_BY = ("autoattack_acc", "pgd_acc")


@dataclass
class Leaderboard:
    name: str
    path: Path
    grid: GridSpec
    title: str
    description: str = ""
    results_rel: str = ""
    rank_by: tuple[str, ...] = DEFAULT_RANK_BY
    #: accuracy columns shown after :data:`TABLE_METRICS` (``[leaderboard] metrics``)
    metrics: tuple[str, ...] = ()
    require_verification: bool = False
    verify_tolerance: float = DEFAULT_VERIFY_TOLERANCE
    #: committed images shown on the page (a boundary search's phase diagram): (path relative to the TOML, caption)
    figures: tuple[tuple[str, str], ...] = ()
    #: result folders (relative to the TOML) of the searches that chose the board's grid, such as a
    #: ``cobench boundary`` run: their recorded training time counts in the board's build time
    searches: tuple[str, ...] = ()
    #: published figures shown beside the board's own (``[[leaderboard.published]]``)
    published: tuple[Published, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> Path:
        """The folder holding the TOML; outputs and results paths are relative to it."""
        return self.path.parent

    @property
    def results_dir(self) -> Path:
        return self.root / self.results_rel

    @property
    def plots_rel(self) -> str:
        return f"plots/{self.name}"

    @property
    def plots_dir(self) -> Path:
        return self.root / self.plots_rel

    def output(self, ext: str) -> Path:
        return self.root / f"{self.name}.{ext}"

    @property
    def built(self) -> bool:
        """Whether any result or rendered table exists yet (a board defined ahead of its GPU run has neither)."""
        from cobench.store.results import result_files

        has_results = self.results_dir.is_dir() and bool(result_files(self.results_dir))
        return has_results or any(self.output(ext).exists() for ext in ("md", "csv", "json", "html"))

    @property
    def dataset(self) -> str:
        return self.grid.datasets[0]

    @property
    def model(self) -> str:
        return self.grid.models[0]


def load_leaderboard(path: str | Path) -> Leaderboard:
    """Read and validate ``path``; raises :class:`ConfigError` naming the file on bad input."""
    path = Path(path)
    if path.suffix != ".toml":
        raise ConfigError(f"leaderboard {str(path)!r}: expected a .toml file (leaderboards/<name>.toml)")
    data = read_toml(path, "leaderboard file")
    if "leaderboard" not in data:
        raise ConfigError(
            f"{path}: no [leaderboard] table, so this is not a leaderboard file (a grid file?); "
            f'add [leaderboard] with title = "..." (valid keys: {", ".join(LEADERBOARD_KEYS)})'
        )
    meta = data["leaderboard"]
    if not isinstance(meta, dict):
        raise ConfigError(f"{path}: [leaderboard] must be a table")
    unknown = sorted(set(meta) - set(LEADERBOARD_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown [leaderboard] key(s) {', '.join(unknown)}; valid keys: {', '.join(LEADERBOARD_KEYS)}"
        )
    grid = GridSpec.from_dict(data, source=str(path))
    for key in ("datasets", "models"):
        values = getattr(grid, key)
        if len(values) != 1:
            raise ConfigError(
                f"{path}: a leaderboard has exactly one {singular(key)}, got {values}; "
                "write one leaderboard file per dataset and model"
            )
    name = path.stem
    rank_by = meta.get("rank_by", list(DEFAULT_RANK_BY))
    if isinstance(rank_by, str):
        rank_by = [rank_by]
    if not isinstance(rank_by, list) or not rank_by or not all(isinstance(m, str) and m for m in rank_by):
        raise ConfigError(
            f"{path}: [leaderboard] rank_by must be a non-empty list of metric names, e.g. {list(DEFAULT_RANK_BY)}"
        )
    metrics = meta.get("metrics", [])
    if (
        not isinstance(metrics, list)
        or not all(isinstance(m, str) and m.endswith("_acc") for m in metrics)
        or len(set(metrics)) != len(metrics)
        or set(metrics) & set(TABLE_METRICS)
    ):
        raise ConfigError(
            f"{path}: [leaderboard] metrics must be a list of distinct accuracy names ending in _acc "
            f'beyond the built-in columns ({", ".join(TABLE_METRICS)}), e.g. ["noise_acc"]; '
            f"got {metrics!r}"
        )
    results_rel = meta.get("results_dir", f"results/{name}")
    if not isinstance(results_rel, str) or not results_rel or Path(results_rel).is_absolute():
        raise ConfigError(
            f"{path}: [leaderboard] results_dir must be a path relative to the TOML file, got {results_rel!r}"
        )
    for key in ("title", "description"):
        if not isinstance(meta.get(key, ""), str):
            raise ConfigError(f"{path}: [leaderboard] {key} must be a string")
    require = meta.get("require_verification", False)
    if not isinstance(require, bool):
        raise ConfigError(f"{path}: [leaderboard] require_verification must be true or false, got {require!r}")
    tolerance = meta.get("verify_tolerance", DEFAULT_VERIFY_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ConfigError(
            f"{path}: [leaderboard] verify_tolerance must be a number in [0, 1) (a fraction of "
            f"accuracy, 0.01 = 1 point), got {tolerance!r}"
        )
    figures = meta.get("figures", [])
    if not isinstance(figures, list) or not all(
        isinstance(f, dict)
        and set(f) == {"path", "caption"}
        and isinstance(f["path"], str)
        and f["path"]
        and not Path(f["path"]).is_absolute()
        and isinstance(f["caption"], str)
        for f in figures
    ):
        raise ConfigError(
            f'{path}: [leaderboard] figures must be a list of {{ path = "...", caption = "..." }} '
            f"with paths relative to the TOML file, got {figures!r}"
        )
    for f in figures:
        if not (path.parent / f["path"]).is_file():
            raise ConfigError(f"{path}: [leaderboard] figures: {f['path']!r} is not a file next to the TOML")
    searches = meta.get("searches", [])
    if (
        not isinstance(searches, list)
        or not all(isinstance(d, str) and d and not Path(d).is_absolute() for d in searches)
        or len(set(searches)) != len(searches)
    ):
        raise ConfigError(
            f"{path}: [leaderboard] searches must be a list of distinct result folders relative to the "
            f'TOML file, e.g. ["results/{name}-boundary"]; got {searches!r}'
        )
    for d in searches:
        if not (path.parent / d).is_dir():
            raise ConfigError(f"{path}: [leaderboard] searches: {d!r} is not a folder next to the TOML")
    return Leaderboard(
        name=name,
        path=path,
        grid=grid,
        title=meta.get("title") or name,
        description=" ".join(meta.get("description", "").split()),
        results_rel=Path(results_rel).as_posix(),
        rank_by=tuple(rank_by),
        metrics=tuple(metrics),
        raw=data,
        require_verification=require,
        verify_tolerance=float(tolerance),
        figures=tuple((Path(f["path"]).as_posix(), " ".join(f["caption"].split())) for f in figures),
        searches=tuple(Path(d).as_posix() for d in searches),
        published=parse_published(
            meta.get("published"), str(path), TABLE_METRICS + tuple(metrics), list(grid.methods), list(grid.eps)
        ),
    )
