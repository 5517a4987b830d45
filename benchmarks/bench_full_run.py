"""Full default `dvc repro` from a fresh clone: wall time, CPU utilisation and per-stage times.

Usage (venv active, from the project root; nothing else should run on the machine)::

    python benchmarks/bench_full_run.py                    # clone HEAD to a temp dir, install, dvc repro
    python benchmarks/bench_full_run.py --rev e49aa97      # the same for another commit (a "before" figure)
    python benchmarks/bench_full_run.py --venv .venv       # reuse this venv instead of scripts/install.sh
    python benchmarks/bench_full_run.py --json out.json    # also write the figures as JSON
    python benchmarks/bench_full_run.py --preset presets/pocus.yaml   # a real-data preset (needs ../shared)

Cores busy = CPU seconds (user + system) of the whole machine over wall seconds, read from /proc/stat at
every stage start, so a stage's figure counts everything that ran during it (keep the machine idle).
Stage times run from DVC's "Running stage" line to the next one, so they include DVC's own hashing of the
stage's outputs. The clone is removed afterwards unless --keep is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (user + nice + system + irq + softirq)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, list[tuple[str, float, float]]]:
    """Run ``cmd``; return its wall seconds and (stage, start wall, start CPU seconds) per "Running stage" line."""
    marks: list[tuple[str, float, float]] = []
    t0, c0 = time.perf_counter(), cpu_seconds()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        m = STAGE_LINE.search(line)
        if m:
            marks.append((m.group(1), time.perf_counter() - t0, cpu_seconds() - c0))
            print(f"  [{marks[-1][1]:7.1f} s] {m.group(1)}", flush=True)
    if proc.wait() != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{''.join(tail)}")
    wall = time.perf_counter() - t0
    marks.append(("<end>", wall, cpu_seconds() - c0))
    return wall, marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="git repository to clone (default: this project)")
    parser.add_argument("--rev", default="HEAD", help="commit to check out in the clone (default: HEAD)")
    parser.add_argument("--venv", default="", help="existing venv to use instead of running scripts/install.sh")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--preset", default="", help="apply this preset to the clone's params.yaml first")
    args = parser.parse_args()

    repo = Path(args.repo).resolve()
    work = Path(tempfile.mkdtemp(prefix="lus-bench-"))
    clone = work / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", args.rev], cwd=clone, check=True)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True,
                         check=True).stdout.strip()
    shared = repo.parent / "shared"
    if shared.exists() and not (work / "shared").exists():
        (work / "shared").symlink_to(shared)   # tests and real-data presets read ../shared
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    install_s = 0.0
    if args.venv:
        venv = Path(args.venv).resolve()
    else:
        t = time.perf_counter()
        subprocess.run(["bash", "scripts/install.sh"], cwd=clone, check=True, env=env)
        install_s = time.perf_counter() - t
        venv = clone / ".venv"
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    if args.preset:   # the clone's own preset code and file, as a user of that commit would apply it
        subprocess.run([str(venv / "bin" / "python"), "-c", "from lus.config.presets import apply_preset; "
                        f"apply_preset('params.yaml', {args.preset!r})"], cwd=clone, env=env, check=True)
    load = os.getloadavg()[0]
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {load:.2f} before the run; "
          f"commit {rev}; clone {clone}")

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, marks = run_timed(["dvc", "repro"], clone, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    stages = [{"stage": name, "seconds": round(t1 - t0, 1), "cores_busy": round((c1 - c0) / max(t1 - t0, 1e-9), 2)}
              for (name, t0, c0), (_, t1, c1) in zip(marks[:-1], marks[1:])]
    noop = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=clone, env=env, check=True, capture_output=True)
        noop.append(time.perf_counter() - t)
    status = subprocess.run(["dvc", "status"], cwd=clone, env=env, capture_output=True, text=True).stdout.strip()

    print(f"\n{'stage':32s} {'seconds':>8s} {'cores busy':>10s}")
    for s in stages:
        print(f"{s['stage']:32s} {s['seconds']:8.1f} {s['cores_busy']:10.2f}")
    groups: dict[str, float] = {}
    for s in stages:
        groups[s["stage"].split("@")[0]] = groups.get(s["stage"].split("@")[0], 0.0) + s["seconds"]
    print("per stage kind: " + ", ".join(f"{k} {v:.0f} s" for k, v in groups.items()))
    summary = {
        "commit": rev, "preset": args.preset, "machine": platform.platform(), "cpus": os.cpu_count(), "load_before": round(load, 2),
        "install_seconds": round(install_s, 1), "repro_seconds": round(wall, 1),
        "user_seconds": round(user, 1), "system_seconds": round(system, 1),
        "cores_busy": round((user + system) / wall, 2),
        "peak_rss_mb": round(after.ru_maxrss / 1024, 0),
        "noop_seconds": [round(x, 2) for x in noop], "status_after": status, "stages": stages,
    }
    print(f"dvc repro: {int(wall // 60)} min {wall % 60:.0f} s wall ({wall:.1f} s), user {user:.0f} s, system "
          f"{system:.0f} s, {summary['cores_busy']:.2f} cores busy on average, peak RSS {summary['peak_rss_mb']:.0f} MB"
          + (f"; install {install_s:.0f} s" if install_s else ""))
    print(f"no-op dvc repro: {' / '.join(f'{x:.2f}' for x in noop)} s; dvc status after: {status or '(empty)'}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    if args.keep:
        print(f"clone kept: {clone}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
