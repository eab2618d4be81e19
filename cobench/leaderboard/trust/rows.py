"""What a leaderboard row can be trusted for: where its results came from, whether they
contradict themselves, whether their weights were re-evaluated, whether its cost ratio
compares like with like, and which rows the seeds' noise cannot separate.

Everything here annotates the aggregated rows of :func:`cobench.store.tables.aggregate`; the
renderers only display the annotations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cobench.leaderboard.collect import Collection
from cobench.leaderboard.trust.records import FAILED, NOT_FETCHED, RECORDS_DIR, verification_status
from cobench.store.consistency import problems
from cobench.store.tables import GROUP_KEYS
from cobench.store.weights import WeightsStore

#: confidence level of the CO-rate interval over seeds
CO_CI_LEVEL = 0.95


def group_key(result: dict[str, Any]) -> tuple:
    cfg = result["config"]
    return (
        cfg["dataset"]["name"],
        cfg["model"]["name"],
        cfg["injection"]["name"],
        cfg["beta"],
        cfg["method"]["name"],
        cfg["eps"],
    )


def row_key(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in GROUP_KEYS)


def plugin_label(result: dict[str, Any]) -> str:
    """``distribution version`` (``@commit``) of the plugin behind the method, else its module name."""
    name = result["config"]["method"]["name"]
    rec = (((result.get("provenance") or {}).get("components") or {}).get("methods") or {}).get(name)
    if rec and rec.get("distribution"):
        text = f"{rec['distribution']} {rec.get('version') or '?'}"
        return text + (f" @{rec['commit'][:10]}" if rec.get("commit") else "")
    return str((result.get("plugins") or {}).get("methods") or "unknown plugin")


def timing_key(result: dict[str, Any]) -> str | None:
    """Same machine, same build, the same sharing of the device (cells per device, where recorded)
    and the training set in the same place (minibatches copied from the host are slower than
    device-resident ones): only then are two cells' times per step comparable."""
    prov = result.get("provenance") or {}
    machine, build = prov.get("machine"), prov.get("cobench")
    if not machine or not build:
        return None
    execution = prov.get("execution") or {}
    shared = execution.get("cells_per_device")
    host = ["train data on the host"] if execution.get("train_data") == "host" else []
    return json.dumps([machine, build] + ([shared] if shared is not None else []) + host, sort_keys=True)


def data_fingerprint(result: dict[str, Any]) -> str | None:
    return ((result.get("provenance") or {}).get("data") or {}).get("loaded")


def board_data_fingerprint(coll: Collection) -> str | None:
    """The dataset fingerprint most of the board's own (grid) results were trained on."""
    grid_ids = {c.cell_id for c in coll.cells}
    prints = [p for p in (data_fingerprint(r) for _, r in coll.ok if r["cell_id"] in grid_ids) if p]
    return max(sorted(set(prints)), key=prints.count) if prints else None


def data_problems(result: dict[str, Any], reference: str | None) -> list[str]:
    mine = data_fingerprint(result)
    if reference is None:
        return []
    if mine is None:
        return ["it records no dataset fingerprint, so it cannot show it used the board's data"]
    if mine != reference:
        return [
            f"it was trained on other data (fingerprint {mine[:19]}...) than the board's cells ({reference[:19]}...)"
        ]
    return []


def co_interval(co_flags: list[int]) -> tuple[float | None, float | None]:
    """Wilson score interval of the CO rate over seeds (scipy)."""
    if not co_flags:
        return None, None
    from scipy.stats import binomtest

    ci = binomtest(sum(co_flags), len(co_flags)).proportion_ci(confidence_level=CO_CI_LEVEL, method="wilson")
    return float(ci.low), float(ci.high)


def annotate(rows: list[dict[str, Any]], coll: Collection) -> None:
    """Add source, plugin, verification, problems, CO interval and honest cost to each row."""
    grid_ids = {c.cell_id for c in coll.cells}
    by_key: dict[tuple, list[tuple[Path, dict[str, Any]]]] = {}
    for path, result in coll.ok:
        by_key.setdefault(group_key(result), []).append((path, result))
    reference_data = board_data_fingerprint(coll)
    fgsm_keys: dict[tuple, set] = {}
    for key, items in by_key.items():
        if key[GROUP_KEYS.index("method")] == "fgsm":
            fgsm_keys[key[:4] + key[5:]] = {timing_key(r) for _, r in items}
    for row in rows:
        items = by_key.get(row_key(row), [])
        results = [r for _, r in items]
        built_here = all(r["cell_id"] in grid_ids for r in results)
        row["source"] = "built here" if built_here else "submitted"
        row["plugin"] = ", ".join(sorted({plugin_label(r) for r in results}))
        store = None if built_here else WeightsStore()  # whether a submission's weights are here to verify
        statuses = {p: verification_status(coll.leaderboard, p, r, store) for p, r in items}
        row["verification"] = (
            "built here"
            if built_here
            else (
                "verified"
                if set(statuses.values()) == {"verified"}
                else FAILED
                if FAILED in statuses.values()
                else NOT_FETCHED
                if NOT_FETCHED in statuses.values()
                else "unverified"
            )
        )
        row["problems"] = [f"{p}: {msg}" for p, r in items for msg in problems(r) + data_problems(r, reference_data)]
        row["problems"] += [
            f"{p}: re-evaluating its saved weights did not reproduce its accuracies "
            f"(see {RECORDS_DIR}/{r['cell_id']}.json)"
            for p, r in items
            if statuses[p] == FAILED
        ]
        row["flagged"] = bool(row["problems"])
        row["co_rate_ci_low"], row["co_rate_ci_high"] = co_interval(
            [r["metrics"]["co"] for r in results if (r.get("metrics") or {}).get("co") is not None]
        )
        times = [(r.get("cost") or {}).get("time_per_step_s") for r in results]
        known = [t for t in times if t is not None]
        row["time_per_step_s"] = sum(known) / len(known) if times and len(known) == len(times) else None
        devices = sorted(
            {
                str(
                    ((r.get("provenance") or {}).get("machine") or {}).get("device_name")
                    or (r.get("environment") or {}).get("device_name")
                    or "unknown"
                )
                for r in results
            }
        )
        row["timing_device"] = ", ".join(devices)
        keys = {timing_key(r) for r in results}
        fgsm = fgsm_keys.get(row_key(row)[:4] + row_key(row)[5:], set())
        if not (len(keys) == 1 and None not in keys and fgsm == keys):
            row["cost_vs_fgsm"] = None  # timed on different machines or builds: not comparable


def noise_aware_ranks(rows: list[dict[str, Any]], metric: str | None) -> None:
    """Rank ``rows`` (already sorted best first) by ``metric``; flagged rows get no rank.

    A row shares the rank of the first row of its tie group while its mean is within the larger
    of the two rows' standard deviations over seeds of that row's mean: the seeds cannot tell
    them apart. Ranks are competition ranks (1, 1, 3).
    """
    position, leader = 0, None
    for row in rows:
        row["rank_tied"] = False
        if row.get("flagged") or metric is None or row.get(f"{metric}_mean") is None:
            row["rank"] = None
            continue
        position += 1
        mean, sd = row[f"{metric}_mean"], row.get(f"{metric}_std") or 0.0
        if leader is not None and leader[f"{metric}_mean"] - mean <= max(sd, leader.get(f"{metric}_std") or 0.0):
            row["rank"] = leader["rank"]
            row["rank_tied"] = leader["rank_tied"] = True
        else:
            row["rank"] = position
            leader = row
