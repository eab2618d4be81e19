"""How busy the machine was while a benchmark ran: load average, the other processes using CPU,
and (where ``nvidia-smi`` exists) the GPUs' utilisation and their other processes.

Every benchmark script records :func:`machine_load` before and after its measurements beside
its figures, and :func:`warn_if_busy` prints a warning when the machine was not idle: timings
taken while other jobs share the cores (or the GPU) are inflated, and their ratios less exact.

    python benchmarks/machine_load.py        # what the machine is doing now
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: a process counts as busy above this share of one core over the sample
BUSY_CPU_PERCENT = 20.0
#: the machine counts as idle while its 1-minute load average is below this share of its cores
IDLE_LOAD_PER_CORE = 0.25
#: a GPU counts as busy above this utilisation (percent) before the benchmark starts
BUSY_GPU_PERCENT = 10.0


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system clock ticks) of every process /proc lists."""
    out: dict[int, tuple[str, int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            out[int(entry.name)] = (name, int(fields[11]) + int(fields[12]))
        except (IndexError, ValueError):
            continue
    return out


def busy_processes(sample_s: float = 1.0, exclude: set[int] | None = None) -> list[dict[str, Any]]:
    """Processes other than ours that used more than ``BUSY_CPU_PERCENT`` of a core over ``sample_s``
    seconds, busiest first (Linux ``/proc``; empty elsewhere)."""
    exclude = {os.getpid(), *(exclude or set())}
    before = _cpu_ticks()
    if not before:
        return []
    time.sleep(sample_s)
    after = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = []
    for pid, (name, ticks) in after.items():
        if pid in exclude or pid not in before:
            continue
        percent = 100.0 * (ticks - before[pid][1]) / hz / sample_s
        if percent > BUSY_CPU_PERCENT:
            busy.append({"pid": pid, "name": name, "cpu_percent": round(percent, 1)})
    return sorted(busy, key=lambda p: -p["cpu_percent"])


def gpu_load() -> list[dict[str, Any]] | None:
    """Per GPU: name, utilisation (%) and memory used (MiB), from ``nvidia-smi``; None without it."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4:
            try:
                gpus.append(
                    {
                        "index": int(parts[0]),
                        "name": parts[1],
                        "utilization_percent": float(parts[2]),
                        "memory_used_mib": float(parts[3]),
                    }
                )
            except ValueError:
                continue
    return gpus


def machine_load(sample_s: float = 1.0, judge_loadavg: bool = True) -> dict[str, Any]:
    """The machine's load now: load averages, cores, other busy processes, GPUs; and ``idle``.

    ``judge_loadavg=False`` records the load average without judging by it: right after a
    benchmark it mostly counts the benchmark's own threads (they are not "other processes")."""
    cores = os.cpu_count() or 1
    try:
        load = list(os.getloadavg())
    except (AttributeError, OSError):
        load = None
    busy = busy_processes(sample_s)
    gpus = gpu_load()
    reasons = []
    if judge_loadavg and load is not None and load[0] > IDLE_LOAD_PER_CORE * cores:
        reasons.append(f"1-minute load average {load[0]:.2f} on {cores} cores")
    if busy:
        reasons.append(
            "other busy processes: "
            + ", ".join(f"{p['name']} (pid {p['pid']}, {p['cpu_percent']:.0f}% of a core)" for p in busy[:5])
        )
    for g in gpus or []:
        if g["utilization_percent"] > BUSY_GPU_PERCENT:
            reasons.append(f"GPU {g['index']} ({g['name']}) {g['utilization_percent']:.0f}% busy")
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": cores,
        "loadavg": load,
        "busy_processes": busy,
        "gpus": gpus,
        "idle": not reasons,
        "not_idle_because": reasons,
    }


def warn_if_busy(record: dict[str, Any], when: str, echo: Callable[[str], None] = print) -> bool:
    """Print a warning naming why the machine was not idle ``when``; returns whether it warned."""
    if record.get("idle", True):
        return False
    echo(
        f"WARNING: the machine was not idle {when}: "
        + "; ".join(record["not_idle_because"])
        + ". Timings are inflated and ratios less exact; re-run on an idle machine for figures to publish."
    )
    return True


class LoadRecorder:
    """Records the load before and after a benchmark (``with LoadRecorder() as load: ...``) and
    warns when the machine was not idle; ``load.record`` goes beside the benchmark's figures."""

    def __init__(self, sample_s: float = 1.0, echo: Callable[[str], None] = print):
        self.sample_s, self.echo = sample_s, echo
        self.record: dict[str, Any] = {}

    def __enter__(self) -> LoadRecorder:
        self.record["before"] = machine_load(self.sample_s)
        warn_if_busy(self.record["before"], "before the benchmark", self.echo)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.record["after"] = machine_load(self.sample_s, judge_loadavg=False)  # the load is ours now
        warn_if_busy(self.record["after"], "after the benchmark", self.echo)
        self.record["idle"] = self.record["before"]["idle"] and self.record["after"]["idle"]


if __name__ == "__main__":
    now = machine_load()
    print(json.dumps(now, indent=2))
    warn_if_busy(now, "now")
