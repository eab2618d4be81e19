"""One prepared run on a lent GPU machine: prepared here, run there by one short command.

A lent machine has no network and receives only the working tree plus up to 8 carried ignored
folders, 64 MiB in all; what it writes under ``$OUT`` (at most 8 files) comes back. So:

    python benchmarks/device_run.py prepare          # here: data and wheels into carried folders
    bash benchmarks/device_run.sh run --out "$OUT"   # there: install offline, gpu_check, pack

``prepare`` copies ``../shared/data/cifar10-prefix`` into ``.device-data/`` (ignored through
``.git/info/exclude``), downloads the wheels of the dependencies the machine's image lacks
(``benchmarks/device_image_packages.txt``) into ``.whl/`` for its Python, checks that what
travels fits, and prints the command line. ``run`` installs those wheels without network (those
of distributions not installed already), then cobench itself (no dependencies, no build
isolation) into ``--site``, runs ``benchmarks/gpu_check.py`` (or, with ``--study GRID``, a grid
under ``--executor local-parallel --cells-per-device K``) within ``--budget-s``, and packs the
results into ``$OUT/device-run.tar.gz`` beside the summary and the log. ``--tiny --device cpu``
takes the same steps on a CPU in seconds (the test).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the CIFAR-10 prefix copy the GPU check and the study train on, and where it travels
DATA_SOURCE = ROOT.parent / "shared" / "data" / "cifar10-prefix"
DATA_DIR = ".device-data"
WHEEL_DIR = ".whl"
#: the ignored folders a device call must name in ``carry``
CARRY = (WHEEL_DIR, DATA_DIR)
#: what a device call may carry: the working tree and the carried folders
TRAVEL_LIMIT = 64 * 2**20
#: the longest command line a device call takes
COMMAND_LIMIT = 2000
#: at most this many files come back from $OUT
RETURNED_FILES = 8
IMAGE_PACKAGES = Path(__file__).resolve().parent / "device_image_packages.txt"
#: the image's Python and the platforms its wheels must match (the device notes' pip download flags)
IMAGE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
#: the distributions whose wheels travel: cobench's dependencies the image lacks and theirs
#: (``missing_from_image`` checks this against pyproject.toml and the wheels' own requirements)
WHEELS = ("jsonschema", "jsonschema-specifications", "referencing", "rpds-py", "pyautoattack")
#: files a wheel ships that nothing imports, left out so that the run fits: pyautoattack's examples
#: hold a 44.7 MB model of its own (the wheel is 42 MB of the 64 MiB a call carries)
SLIM = {"pyautoattack": ("pyautoattack/examples/",)}
STUDY_RESULTS = "study"
CHECK_RESULTS = "check"


class DeviceRunError(Exception):
    """A step that cannot go on; its message is the one line printed."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str | None:
    """The distribution a requirement names, or None when it only applies elsewhere (an extra, an
    older Python than the image's)."""
    name, _, marker = requirement.partition(";")
    marker = marker.strip()
    if "extra" in marker:
        return None
    match = re.search(r"python_version\s*<\s*['\"](\d+)\.(\d+)['\"]", marker)
    if match and (int(match[1]), int(match[2])) <= tuple(int(p) for p in IMAGE_PYTHON.split(".")):
        return None
    return normalize(re.split(r"[\s<>=!~\[(]", name.strip(), maxsplit=1)[0])


def image_packages() -> set[str]:
    lines = IMAGE_PACKAGES.read_text().splitlines()
    return {normalize(line) for line in lines if line.strip() and not line.startswith("#")}


def project_requirements() -> list[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def missing_from_image(requirements: list[str], provided: set[str] | None = None) -> list[str]:
    """The distributions of ``requirements`` neither in the image nor among ``WHEELS``."""
    have = image_packages() | {normalize(w) for w in WHEELS} | (provided or set())
    names = {requirement_name(r) for r in requirements}
    return sorted(n for n in names if n is not None and n not in have)


# --------------------------------------------------------------------------- prepare (here)
def run_command(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["(no output)"]
        raise DeviceRunError(f"{shlex.join(cmd[:4])} ... failed: {lines[-1]}")


def ignore_locally(root: Path, folder: str) -> None:
    """Make ``folder`` ignored (``.git/info/exclude``) unless it already is, so it travels only carried."""
    if subprocess.run(["git", "check-ignore", "-q", folder + "/"], cwd=root).returncode == 0:
        return
    exclude = root / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with exclude.open("a") as f:
        f.write(f"/{folder}/\n")


def copy_data(source: Path, root: Path) -> Path:
    if not (source / "cifar-10-batches-py").is_dir():
        raise DeviceRunError(f"no CIFAR-10 python layout under {source} (cifar-10-batches-py/): name it with --data")
    target = root / DATA_DIR / source.name
    # plain copies, writable (shared/ has no write bits), so that a second prepare can overwrite them
    shutil.copytree(source, target, dirs_exist_ok=True, copy_function=shutil.copyfile)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return target


def pinned(name: str) -> str:
    """``name==version`` as installed here (what the tests ran with), else ``name``."""
    try:
        return f"{name}=={md.version(name)}"
    except md.PackageNotFoundError:
        return name


def download_wheels(folder: Path) -> list[Path]:
    folder.mkdir(exist_ok=True)
    platforms = [flag for p in PLATFORMS for flag in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    cmd += ["--python-version", IMAGE_PYTHON, "--implementation", "cp", *platforms, *(pinned(w) for w in WHEELS)]
    run_command(cmd)
    wheels = [wheel_of(folder, name) for name in WHEELS]
    for wheel in wheels:
        slim_wheel(wheel, SLIM.get(normalize(wheel.name.split("-")[0]), ()))
    return wheels


def wheel_of(folder: Path, name: str) -> Path:
    found = [w for w in folder.glob("*.whl") if normalize(w.name.split("-")[0]) == normalize(name)]
    if len(found) != 1:
        raise DeviceRunError(f"{folder} holds {len(found)} wheels of {name}; keep exactly one (pip stops at two)")
    return found[0]


def wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        text = z.read(meta).decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def record_hash(data: bytes) -> str:
    return "sha256=" + urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def slim_wheel(wheel: Path, drop: tuple[str, ...]) -> int:
    """Rewrite ``wheel`` without the files under ``drop`` (its RECORD rewritten to match); returns
    the number of files left out. The package's own modules are untouched."""
    if not drop:
        return 0
    with zipfile.ZipFile(wheel) as z:
        entries = [(info, z.read(info)) for info in z.infolist()]
    kept = [(info, data) for info, data in entries if not info.filename.startswith(drop)]
    if len(kept) == len(entries):
        return 0
    dropped = {info.filename for info, _ in entries} - {info.filename for info, _ in kept}
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in kept:
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [line for line in data.decode().splitlines() if line.split(",")[0] not in dropped]
                data = ("\n".join(lines) + "\n").encode()
            z.writestr(info, data)
    os.replace(tmp, wheel)
    return len(dropped)


def travel_bytes(root: Path, carry: tuple[str, ...]) -> int:
    """What a device call sends: tracked and untracked-not-ignored files, and the carried folders."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    files = [root / p for p in listed.decode().split("\0") if p]
    files += [p for c in carry if (root / c).exists() for p in (root / c).rglob("*")]
    return sum(p.stat().st_size for p in files if p.is_file() and not p.is_symlink())


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def device_command(budget_s: int, study: str | None = None, cells_per_device: int = 4) -> str:
    cmd = f'bash benchmarks/device_run.sh run --out "$OUT" --budget-s {budget_s}'
    if study:
        cmd += f" --study {shlex.quote(study)} --cells-per-device {cells_per_device}"
    if len(cmd) > COMMAND_LIMIT:
        raise DeviceRunError(f"the device command is {len(cmd)} characters, over {COMMAND_LIMIT}")
    return cmd


def prepare(args: argparse.Namespace) -> None:
    root = Path(args.root)
    missing = missing_from_image(project_requirements())
    if missing:
        raise DeviceRunError(f"cobench needs {', '.join(missing)}, neither in the GPU image nor in WHEELS")
    for folder in CARRY:
        ignore_locally(root, folder)
    data = copy_data(Path(args.data), root)
    print(f"data: {data.relative_to(root)}")
    if not args.no_wheels:
        wheels = download_wheels(root / WHEEL_DIR)
        needs = [r for w in wheels for r in wheel_requirements(w)]
        missing = missing_from_image(needs)
        if missing:
            raise DeviceRunError(f"the wheels need {', '.join(missing)}: add them to WHEELS in {Path(__file__).name}")
        print("wheels: " + ", ".join(f"{w.name} ({mib(w.stat().st_size)})" for w in wheels))
    size = travel_bytes(root, CARRY)
    if size > TRAVEL_LIMIT:
        raise DeviceRunError(
            f"a device call would carry {mib(size)}, over its {mib(TRAVEL_LIMIT)}: the tracked tree is too "
            "large (committed weights?); slim it first"
        )
    print(f"travels: {mib(size)} of {mib(TRAVEL_LIMIT)}")
    print("device command (carry " + json.dumps(list(CARRY)) + "; timeout_s budget + 120):")
    print("  " + device_command(args.budget_s))
    print("  " + device_command(args.budget_s, "benchmarks/device_study.toml"))


# --------------------------------------------------------------------------- run (there)
def not_installed(wheels: list[Path]) -> list[Path]:
    """The wheels whose distribution this Python does not have (those the image lacks)."""
    out = []
    for wheel in wheels:
        try:
            md.version(wheel.name.split("-")[0])
        except md.PackageNotFoundError:
            out.append(wheel)
    return out


def pip_install(site: Path, *targets: str, build_isolation: bool = True) -> None:
    """``pip install`` with no network and no dependencies into ``site``."""
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    cmd += ["--disable-pip-version-check", "--target", str(site)]
    run_command(cmd + ([] if build_isolation else ["--no-build-isolation"]) + list(targets))


def install(root: Path, wheels_dir: Path, site: Path, log: list[str]) -> None:
    """Offline: the carried wheels this Python lacks, then cobench (from a copy of the tree, so no
    build files land in it) with no dependencies and no build isolation, all into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir.is_dir() else []
    todo = not_installed(wheels)
    if todo:
        pip_install(site, *(str(w) for w in todo))
    log.append(f"installed from {wheels_dir.name}/: {', '.join(w.name for w in todo) or '(none needed)'}")
    skipped = sorted(set(wheels) - set(todo))
    if skipped:
        log.append("already installed here: " + ", ".join(w.name for w in skipped))
    with tempfile.TemporaryDirectory(prefix="cobench-src-") as tmp:
        src = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        shutil.copytree(root / "cobench", src / "cobench", ignore=shutil.ignore_patterns("__pycache__"))
        pip_install(site, str(src), build_isolation=False)
    log.append(f"installed cobench into {site}")
    required = ["cobench", "jsonschema", "pyautoattack"]
    probe = f"import {', '.join(required)}"
    done = subprocess.run([sys.executable, "-c", probe], env=child_env(site), capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        raise DeviceRunError(f"after installing, {probe} fails: {last} (run prepare here first, carry {WHEEL_DIR})")


def child_env(site: Path) -> dict[str, str]:
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class Finished:
    returncode: int
    stopped: bool  # stopped at the budget
    seconds: float


def run_within(cmd: list[str], env: dict[str, str], log_path: Path, budget_s: float, grace_s: float) -> Finished:
    """Run ``cmd`` (its own process group) writing its output to ``log_path`` and ours; at
    ``budget_s`` it gets SIGINT (cobench keeps its finished cells and stops its workers), and
    ``grace_s`` later SIGKILL."""
    t0 = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        stopped = False
        try:
            proc.wait(timeout=budget_s)
        except subprocess.TimeoutExpired:
            stopped = True
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    sys.stdout.write(log_path.read_text())
    return Finished(proc.returncode, stopped, time.monotonic() - t0)


def environment_lines(site: Path) -> list[str]:
    probe = (
        "import torch, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, "
        "'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); "
        "[print('gpu', i, torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=child_env(site), capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        lines += smi.stdout.strip().splitlines()
    return lines


def pack(work: Path, out: Path) -> list[Path]:
    """``work`` as ``out/device-run.tar.gz``, beside its summary and the log (at most 8 files)."""
    out.mkdir(parents=True, exist_ok=True)
    archive = out / "device-run.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work, arcname="device-run")
    files = [archive]
    for name in ("run.log", "summary.txt", "environment.txt"):
        if (work / name).exists():
            shutil.copy2(work / name, out / name)
            files.append(out / name)
    assert len(files) <= RETURNED_FILES
    return files


def study_command(args: argparse.Namespace, data: Path, work: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cobench",
        "run",
        args.study,
        "--data-dir",
        str(data),
        "--device",
        args.device,
        "--executor",
        "local-parallel",
        "--cells-per-device",
        str(args.cells_per_device),
        "--results-dir",
        str(work / STUDY_RESULTS),
        "--no-checkpoints",
        *args.extra,
    ]


def check_command(args: argparse.Namespace, data: Path, work: Path) -> list[str]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--data-dir", str(data)]
    cmd += ["--device", args.device, "--out-dir", str(work / CHECK_RESULTS), "--budget-s", str(args.budget_s)]
    return cmd + (["--tiny"] if args.tiny else []) + args.extra


def summary_text(work: Path, finished: Finished, args: argparse.Namespace) -> str:
    head = (
        f"{'study ' + args.study if args.study else 'gpu_check'}: exit {finished.returncode} after "
        f"{finished.seconds:.0f} s" + (f", stopped at --budget-s {args.budget_s:g}" if finished.stopped else "")
    )
    if args.study:
        results = sorted((work / STUDY_RESULTS).rglob("eps*.json"))
        ok = sum(json.loads(p.read_text()).get("status") == "ok" for p in results)
        return f"{head}\n{ok} of {len(results)} cell result(s) ok (their JSON in the archive, under {STUDY_RESULTS}/)\n"
    texts = sorted((work / CHECK_RESULTS).glob("gpu_check-*.txt"))
    return head + "\n" + "".join(p.read_text() for p in texts)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    data = Path(args.data_dir) if args.data_dir else root / DATA_DIR / DATA_SOURCE.name
    if not (data / "cifar-10-batches-py").is_dir():
        raise DeviceRunError(
            f"no CIFAR-10 data at {data}: run `python benchmarks/device_run.py prepare` here and carry {DATA_DIR}"
        )
    if args.study and not Path(args.study).is_file():
        raise DeviceRunError(f"--study {args.study}: no such grid file")
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="cobench-device-run-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        site = Path(args.site) if args.site else Path(tmp) / "site"
        notes: list[str] = []
        install(root, Path(args.wheels), site, notes)
        print("\n".join(notes), flush=True)
        (work / "environment.txt").write_text("\n".join(notes + environment_lines(site)) + "\n")
        cmd = study_command(args, data, work) if args.study else check_command(args, data, work)
        # gpu_check stops its own sections within the budget; a study is stopped from outside
        limit = args.budget_s if args.study else args.budget_s + args.grace_s
        finished = run_within(cmd, child_env(site), work / "run.log", limit, args.grace_s)
        (work / "summary.txt").write_text(summary_text(work, finished, args))
        files = pack(work, out)
    print((out / "summary.txt").read_text())
    print("returned: " + ", ".join(p.name for p in files))
    return 0 if finished.returncode == 0 or finished.stopped else finished.returncode


# --------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="step", required=True)
    pre = sub.add_parser("prepare", help="here: data and wheels into the carried folders, then the command")
    pre.add_argument("--data", default=str(DATA_SOURCE), help="the CIFAR-10 prefix copy to carry")
    pre.add_argument("--no-wheels", action="store_true", help="copy the data only")
    pre.add_argument("--budget-s", type=int, default=360, help="the budget the printed command gives")
    r = sub.add_parser("run", help="there: install offline, run, pack the results under --out")
    r.add_argument("--out", required=True, help='where the files that come back go ("$OUT" there)')
    r.add_argument("--budget-s", type=float, default=360.0, help="seconds the run may take (install aside)")
    r.add_argument("--grace-s", type=float, default=60.0, help="after the budget, seconds to stop cleanly")
    r.add_argument("--device", default="cuda")
    r.add_argument("--tiny", action="store_true", help="gpu_check's tiny setting (with --device cpu: the test)")
    r.add_argument("--study", help="a grid TOML to run instead of gpu_check (e.g. benchmarks/device_study.toml)")
    r.add_argument("--cells-per-device", type=int, default=4, help="cells sharing the GPU in --study")
    r.add_argument("--data-dir", help=f"CIFAR-10 python layout [default: {DATA_DIR}/{DATA_SOURCE.name}]")
    r.add_argument("--wheels", default=str(ROOT / WHEEL_DIR), help="the carried wheel folder")
    r.add_argument("--site", help="where to install [default: a temporary folder]")
    r.add_argument("extra", nargs="*", help="after --: more flags for gpu_check or `cobench run`")
    args = p.parse_args(argv)
    if args.step == "run" and args.cells_per_device < 1:
        p.error("--cells-per-device must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.step == "prepare":
            prepare(args)
            return 0
        return run(args)
    except DeviceRunError as exc:
        print(f"device_run: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
