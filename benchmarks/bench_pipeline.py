"""DVC overhead: seconds of a no-op `dvc repro` and of `dvc exp run -S aggregator.tnorm=min`.

Usage (from the root of a project where `dvc repro` has completed, venv active)::

    python benchmarks/bench_pipeline.py                 # 3 no-op repros, 1 t-norm experiment
    python benchmarks/bench_pipeline.py --noop-rounds 5 --skip-exp

The experiment changes the workspace (DVC applies its results), so the script refuses to run on a git
workspace with uncommitted changes and restores it afterwards (`git checkout -- .` and `dvc checkout`).
Run it in a scratch clone if in doubt. It also prints which stages the experiment ran: only
``train_aggregator`` and what depends on it may rerun.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path


def sh(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds and combined output of ``cmd``; exits with its output if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default=".", help="project root (default: current folder)")
    parser.add_argument("--noop-rounds", type=int, default=3)
    parser.add_argument("--skip-exp", action="store_true", help="only time the no-op repro")
    args = parser.parse_args()
    root = Path(args.project).resolve()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    _, status = sh(["dvc", "status"], root)
    if "changed" in status or "modified" in status:
        sys.exit("dvc status reports changes: run `dvc repro` first, so the no-op timing measures a no-op")
    noop = [sh(["dvc", "repro"], root)[0] for _ in range(args.noop_rounds)]
    print(f"no-op dvc repro: {' / '.join(f'{s:.2f}' for s in noop)} s (median {sorted(noop)[len(noop) // 2]:.2f} s)")
    if args.skip_exp:
        return

    _, dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"], root)
    if dirty.strip():
        sys.exit("the git workspace has uncommitted changes; commit them or use a scratch clone")
    try:
        seconds, out = sh(["dvc", "exp", "run", "-S", "aggregator.tnorm=min"], root)
        ran = re.findall(r"Running stage '([^']+)'", out)
        print(f"dvc exp run -S aggregator.tnorm=min: {seconds:.1f} s; stages run: {', '.join(ran)}")
        unexpected = [s for s in ran if s not in ("train_aggregator", "evaluate", "export")]
        if unexpected:
            print(f"WARNING: unexpected stages rerun: {', '.join(unexpected)}")
    finally:
        sh(["git", "checkout", "--", "."], root)
        sh(["dvc", "checkout", "--quiet"], root)
        print("workspace restored (git checkout -- . ; dvc checkout)")


if __name__ == "__main__":
    main()
