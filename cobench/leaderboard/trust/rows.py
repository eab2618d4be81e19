"""What a leaderboard row can be trusted for: where its results came from, whether they
contradict themselves, whether their weights were re-evaluated, whether its cost ratio
compares like with like, and how sure its CO rate is over the seeds.

:func:`assess` judges each row's results (the rows of :func:`cobench.store.tables.aggregate`,
grouped by :attr:`StoredResult.key`); the board carries the judgement, the renderers only show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cobench.leaderboard.collect import Collection, StoredResult
from cobench.leaderboard.trust.records import FAILED, NOT_FETCHED, RECORDS_DIR, verification_status
from cobench.store.consistency import problems
from cobench.store.tables import GROUP_KEYS
from cobench.store.weights import WeightsStore

#: confidence level of the CO-rate interval over seeds
CO_CI_LEVEL = 0.95
BUILT_HERE = "built here"
SUBMITTED = "submitted"


@dataclass(frozen=True)
class RowTrust:
    """What one row's results can be trusted for."""

    #: ``built here`` by the board's own grid, or ``submitted``
    source: str
    #: the plugins behind the method (:func:`plugin_label`), comma-separated
    plugin: str
    #: ``built here``, ``verified``, ``verification failed``, ``weights not fetched`` or ``unverified``
    verification: str
    #: every contradiction found, each naming its result file; a row with any is not ranked
    problems: tuple[str, ...] = ()
    #: Wilson interval of the CO rate over seeds (:func:`co_interval`)
    co_rate_ci_low: float | None = None
    co_rate_ci_high: float | None = None
    #: mean seconds per training step, where every seed recorded it
    time_per_step_s: float | None = None
    #: the devices the seeds were timed on, comma-separated
    timing_device: str = "unknown"
    #: timed on the machine and build FGSM was, so that the cost ratio to FGSM compares like with like
    timing_comparable: bool = True

    @property
    def flagged(self) -> bool:
        return bool(self.problems)


def plugin_label(result: StoredResult) -> str:
    """``distribution version`` (``@commit``) of the plugin behind the method, else its module name."""
    data = result.data
    rec = (((data.get("provenance") or {}).get("components") or {}).get("methods") or {}).get(result.method)
    if rec and rec.get("distribution"):
        text = f"{rec['distribution']} {rec.get('version') or '?'}"
        return text + (f" @{rec['commit'][:10]}" if rec.get("commit") else "")
    return str((data.get("plugins") or {}).get("methods") or "unknown plugin")


def timing_key(result: StoredResult) -> str | None:
    """Same machine, same build, the same sharing of the device (cells per device, where recorded)
    and the training set in the same place (minibatches copied from the host are slower than
    device-resident ones): only then are two cells' times per step comparable."""
    prov = result.data.get("provenance") or {}
    machine, build = prov.get("machine"), prov.get("cobench")
    if not machine or not build:
        return None
    execution = prov.get("execution") or {}
    shared = execution.get("cells_per_device")
    host = ["train data on the host"] if execution.get("train_data") == "host" else []
    return json.dumps([machine, build] + ([shared] if shared is not None else []) + host, sort_keys=True)


def data_fingerprint(result: StoredResult) -> str | None:
    return ((result.data.get("provenance") or {}).get("data") or {}).get("loaded")


def board_data_fingerprint(coll: Collection) -> str | None:
    """The dataset fingerprint most of the board's own (grid) results were trained on."""
    grid_ids = coll.grid_ids
    prints = [p for p in (data_fingerprint(r) for r in coll.ok if r.cell_id in grid_ids) if p]
    return max(sorted(set(prints)), key=prints.count) if prints else None


def data_problems(result: StoredResult, reference: str | None) -> list[str]:
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


def _without_method(key: tuple) -> tuple:
    """A row's key less its method: the FGSM row it is timed against has the same."""
    method = GROUP_KEYS.index("method")
    return key[:method] + key[method + 1 :]


def assess(coll: Collection) -> dict[tuple, RowTrust]:
    """Each row's trust, by the row's key (:attr:`StoredResult.key`)."""
    grid_ids = coll.grid_ids
    by_key: dict[tuple, list[StoredResult]] = {}
    for result in coll.ok:
        by_key.setdefault(result.key, []).append(result)
    reference_data = board_data_fingerprint(coll)
    fgsm_keys = {
        _without_method(key): {timing_key(r) for r in results}
        for key, results in by_key.items()
        if key[GROUP_KEYS.index("method")] == "fgsm"
    }
    out = {}
    for key, results in by_key.items():
        built_here = all(r.cell_id in grid_ids for r in results)
        store = None if built_here else WeightsStore()  # whether a submission's weights are here to verify
        statuses = {r.path: verification_status(coll.leaderboard, r, store) for r in results}
        found = [f"{r.path}: {msg}" for r in results for msg in problems(r.data) + data_problems(r, reference_data)]
        found += [
            f"{r.path}: re-evaluating its saved weights did not reproduce its accuracies "
            f"(see {RECORDS_DIR}/{r.cell_id}.json)"
            for r in results
            if statuses[r.path] == FAILED
        ]
        low, high = co_interval(
            [r.data["metrics"]["co"] for r in results if (r.data.get("metrics") or {}).get("co") is not None]
        )
        times = [(r.data.get("cost") or {}).get("time_per_step_s") for r in results]
        known = [t for t in times if t is not None]
        devices = sorted(
            {
                str(
                    ((r.data.get("provenance") or {}).get("machine") or {}).get("device_name")
                    or (r.data.get("environment") or {}).get("device_name")
                    or "unknown"
                )
                for r in results
            }
        )
        keys = {timing_key(r) for r in results}
        out[key] = RowTrust(
            source=BUILT_HERE if built_here else SUBMITTED,
            plugin=", ".join(sorted({plugin_label(r) for r in results})),
            verification=BUILT_HERE if built_here else _verification(set(statuses.values())),
            problems=tuple(found),
            co_rate_ci_low=low,
            co_rate_ci_high=high,
            time_per_step_s=sum(known) / len(known) if times and len(known) == len(times) else None,
            timing_device=", ".join(devices),
            # timed on different machines or builds than FGSM: its cost ratio is not comparable
            timing_comparable=len(keys) == 1
            and None not in keys
            and fgsm_keys.get(_without_method(key), set()) == keys,
        )
    return out


def _verification(statuses: set[str]) -> str:
    """A submitted row's verification, from its seeds': verified only when every seed is."""
    if statuses == {"verified"}:
        return "verified"
    for status in (FAILED, NOT_FETCHED):
        if status in statuses:
            return status
    return "unverified"
