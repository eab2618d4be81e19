"""Aggregate result rows over seeds and render the method x eps summary table."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from rich.table import Table

from cobench.api import NO_INJECTION
from cobench.store.records import FlatRow, Scalar

GROUP_KEYS = ("dataset", "model", "injection", "beta", "method", "eps")


def numbers(values: Iterable[Scalar]) -> list[float]:
    """The values that are numbers (an int stays an int: a median of epochs reads as it did)."""
    return [v for v in values if isinstance(v, (int, float))]


def number(value: Scalar) -> float | None:
    return value if isinstance(value, (int, float)) else None


def mean_std(values: Iterable[Scalar]) -> tuple[float | None, float | None, int]:
    vals = [float(v) for v in numbers(values) if not math.isnan(v)]
    if not vals:
        return None, None, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


#: accuracies aggregated by default; ``autoattack_acc`` is reported by the ``autoattack`` evaluator
METRICS = ("clean_acc", "fgsm_acc", "pgd_acc", "autoattack_acc")


def accuracy_metrics(rows: Iterable[FlatRow]) -> tuple[str, ...]:
    """``METRICS`` then every other accuracy (``*_acc``) the rows carry, such as a third-party
    evaluator's ``noise_acc``, so that it reaches the run table and not only summary.csv."""
    extra = sorted(
        {
            k
            for r in rows
            for k, v in r.items()
            if k.endswith("_acc") and k not in METRICS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
    )
    return METRICS + tuple(extra)


def sharing(rows: Iterable[FlatRow]) -> frozenset[Scalar]:
    """The cells-per-device under which the rows' times were taken (None: not recorded)."""
    return frozenset(r.get("cells_per_device") for r in rows)


def aggregate(rows: list[FlatRow], metrics: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, model, injection, beta, method, eps): mean/std over seeds of each
    metric (by default :func:`accuracy_metrics`), the CO rate (fraction of seeds that collapsed), the median CO epoch and the
    training cost relative to FGSM in the same setting (when FGSM is in the results).

    Each row's values are scalars (a :data:`FlatRow`); a leaderboard adds its own columns to them
    (ranks, problems, verification: cobench.leaderboard.trust), hence plain dicts."""
    metrics = accuracy_metrics(rows) if metrics is None else tuple(metrics)
    groups: dict[tuple[Scalar, ...], list[FlatRow]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            groups[tuple(r[k] for k in GROUP_KEYS)].append(r)
    fgsm_time: dict[tuple[Scalar, ...], tuple[float | None, frozenset[Scalar]]] = {}
    for key, rs in groups.items():
        if key[GROUP_KEYS.index("method")] == "fgsm":
            t = mean_std(r.get("cost_time_per_step_s") for r in rs)[0]
            setting = key[:4] + key[5:]
            fgsm_time[setting] = (t, sharing(rs))
    out: list[FlatRow] = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0][:5]) + (kv[0][5],)):
        row: FlatRow = dict(zip(GROUP_KEYS, key))
        row["seeds"] = len(rs)
        for m in metrics:
            mu, sd, n = mean_std(r.get(m) for r in rs)
            row[f"{m}_mean"], row[f"{m}_std"] = mu, sd
        cos = numbers(r.get("co") for r in rs)
        row["co_rate"] = sum(cos) / len(cos) if cos else None
        epochs = numbers(r.get("co_epoch") for r in rs)
        row["co_epoch_median"] = statistics.median(epochs) if epochs else None
        t = mean_std(r.get("cost_time_per_step_s") for r in rs)[0]
        ref, ref_sharing = fgsm_time.get(key[:4] + key[5:], (None, frozenset()))
        # times taken while K cells shared a device are not compared with times under other sharing
        comparable = ref_sharing == sharing(rs) and len(ref_sharing) == 1
        row["cost_vs_fgsm"] = (t / ref) if (t is not None and ref and comparable) else None
        row["forward_passes_per_step"] = mean_std(r.get("cost_forward_passes_per_step") for r in rs)[0]
        stopped = numbers(r.get("stopped_early") for r in rs)
        row["stopped_early"] = sum(stopped) if stopped else None  # seeds ended early (opt-in early stop)
        out.append(row)
    return out


def fmt_pct(mu: float | None, sd: float | None) -> str:
    if mu is None:
        return "-"
    return f"{100 * mu:.1f}" + (f" ± {100 * sd:.1f}" if sd else "")


def setting_name(row: FlatRow) -> str:
    inj = f"{row['injection']}" + (f" beta={row['beta']:g}/255" if row["injection"] != NO_INJECTION else "")
    return f"{row['dataset']} / {row['model']} / injection {inj}"


#: the accuracies every run table shows, as fixed columns
FIXED_COLUMNS = ("clean_acc", "fgsm_acc", "pgd_acc")


def extra_columns(agg: list[FlatRow]) -> list[str]:
    """Accuracies beyond the fixed columns that some aggregated row has: ``autoattack_acc``,
    then third-party ones in name order."""
    present = {k[: -len("_mean")] for r in agg for k, v in r.items() if k.endswith("_acc_mean") and v is not None}
    present -= set(FIXED_COLUMNS)
    return [m for m in METRICS if m in present] + sorted(present - set(METRICS))


def summary_tables(agg: list[FlatRow]) -> list[Table]:
    """One rich table per setting (dataset, model, injection, beta), rows = method x eps."""
    by_setting: dict[str, list[FlatRow]] = defaultdict(list)
    for r in agg:
        by_setting[setting_name(r)].append(r)
    tables = []
    for setting, rows in by_setting.items():
        table = Table(title=setting, title_justify="left")
        early = any(r.get("stopped_early") for r in rows)
        if early:
            table.caption = (
                "* stopped early: training ended once CO persisted (stop_after_collapse); accuracies are at that epoch"
            )
        extra = extra_columns(rows)
        for col in (
            "method",
            "eps",
            "clean %",
            "FGSM %",
            "PGD %",
            *(f"{m} %" for m in extra),
            "CO rate",
            "CO epoch",
            "cost/FGSM",
            "seeds",
        ):
            table.add_column(col, justify="left" if col == "method" else "right")
        for r in rows:
            co = "-" if r["co_rate"] is None else f"{r['co_rate']:.0%}"
            mark = f" *{r['stopped_early']}/{r['seeds']}" if r.get("stopped_early") else ""
            table.add_row(
                f"{r['method']}{mark}",
                f"{r['eps']:g}/255",
                *(fmt_pct(number(r.get(f"{m}_mean")), number(r.get(f"{m}_std"))) for m in (*FIXED_COLUMNS, *extra)),
                ("[bold red]" + co + "[/bold red]") if r["co_rate"] else co,
                "-" if r["co_epoch_median"] is None else f"{r['co_epoch_median']:g}",
                "-" if r["cost_vs_fgsm"] is None else f"{r['cost_vs_fgsm']:.1f}x",
                str(r["seeds"]),
            )
        tables.append(table)
    return tables
