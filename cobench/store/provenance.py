"""Where a result came from: the distribution (and version, and VCS commit where pip recorded
one) behind every component, cobench's own, and a fingerprint of the data actually used.

A leaderboard row is only as reproducible as this record: "method X from plugin Y 0.3.1 at
commit abc, trained on exactly these arrays". The VCS commit is what pip writes into the
distribution's ``direct_url.json`` (PEP 610) for ``pip install git+...``; a plain release
has none, an editable install records only that it is editable.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable
from importlib import metadata as md

import torch

from cobench.plugins import PluginManager
from cobench.store.records import ComponentRecord, DistributionRecord, MachineRecord


def distribution_record(dist: md.Distribution | None) -> DistributionRecord:
    """``{"distribution", "version"[, "commit"][, "editable"]}`` of an installed distribution."""
    if dist is None:
        return {"distribution": None, "version": None}
    record: DistributionRecord = {"distribution": dist.metadata["Name"], "version": dist.version}
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except (json.JSONDecodeError, OSError):
        direct = None
    if isinstance(direct, dict):
        commit = (direct.get("vcs_info") or {}).get("commit_id")
        if commit:
            record["commit"] = commit
        if (direct.get("dir_info") or {}).get("editable"):
            record["editable"] = True
    return record


def cobench_record() -> DistributionRecord:
    from cobench import __version__

    try:
        return distribution_record(md.distribution("cobench"))
    except md.PackageNotFoundError:  # a source tree on PYTHONPATH
        return {"distribution": "cobench", "version": __version__}


def components_record(
    pm: PluginManager, components: Iterable[tuple[str, str]]
) -> dict[str, dict[str, ComponentRecord]]:
    """``{kind: {component name: {"plugin": entry-point name, distribution, version, ...}}}``."""
    reg = pm.registry
    out: dict[str, dict[str, ComponentRecord]] = {}
    for kind, name in components:
        plugin = reg.owners[kind][name]
        out.setdefault(kind, {})[name] = {"plugin": plugin, **distribution_record(pm.dists.get(plugin))}
    return out


def fingerprint(*tensors: torch.Tensor | None) -> str:
    """SHA-256 over dtype, shape and bytes of each tensor (on the CPU), in order; ``None`` counts too."""
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none;")
            continue
        t = t.detach().to("cpu").contiguous()
        digest.update(f"{t.dtype};{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + digest.hexdigest()


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_record(device: torch.device) -> MachineRecord:
    """What a timing (and, on CPU, the last bits of a result) depends on: the device's name, torch
    and CUDA builds, thread count, the CPU's model and the instruction set torch's kernels use."""
    return {
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "num_threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "host": hashlib.sha256(platform.node().encode()).hexdigest()[:12],  # same machine?, without naming it
    }
