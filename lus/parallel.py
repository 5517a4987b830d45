"""Independent jobs (one fold, one architecture) in worker processes, so every core of the machine trains.

Why processes and not more torch threads: the project's networks are small, and a second intra-op thread
speeds a step up by far less than 2x, while two folds trained side by side keep both cores busy. Each job
runs with the same torch thread count as a sequential run, in a fresh process started with ``spawn``
(no copy of the parent's torch thread pool or RNG), and seeds itself, so its results are bit-identical to
running the jobs one after another; only the wall time changes. That is also why the worker count is a
command-line option and not a DVC param: changing it must not rerun anything.

Exceptions of a job reach the caller unchanged (a stage's user errors stay one clear line); the other
jobs are cancelled. ``workers <= 1`` runs the jobs in this process, in order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import argparse

T = TypeVar("T")

WORKERS_ENV = "LUS_WORKERS"


def worker_count(requested: int, n_jobs: int, threads_per_job: int = 1) -> int:
    """Processes to use: ``requested`` (> 0), else ``$LUS_WORKERS``, else cores // threads per job; at most ``n_jobs``."""
    if requested < 0:
        raise ValueError(f"--workers must be >= 0 (0 = one per core), got {requested}")
    if requested == 0:
        env = os.environ.get(WORKERS_ENV, "").strip()
        if env:
            if not env.isdigit():
                raise ValueError(f"${WORKERS_ENV} must be a whole number >= 0, got '{env}'")
            requested = int(env)
    if requested == 0:
        requested = max(1, (os.cpu_count() or 1) // max(1, threads_per_job))
    return max(1, min(requested, n_jobs))


def add_workers_arg(parser: "argparse.ArgumentParser", what: str) -> None:
    """The stages' ``--workers`` option (``what``: e.g. "folds"); see :func:`worker_count`."""
    parser.add_argument("--workers", type=int, default=0, help=f"{what} trained at once (0 = ${WORKERS_ENV}, else "
                                                              "one per core); results do not depend on it")


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _die_with_parent() -> None:
    """Linux: SIGKILL this worker when the stage process dies, so killing a stage stops its training too."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass


def _start_worker(threads: int) -> None:
    _die_with_parent()
    _init_worker(threads)


def run_jobs(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], workers: int, threads: int,
             names: Sequence[str] | None = None) -> list[T]:
    """``[fn(*job) for job in jobs]``, with up to ``workers`` processes of ``threads`` torch threads each.

    ``fn`` must be importable by name (a module-level function) and each job's arguments picklable. Results
    come back in job order. A job that fails stops the others; a worker that dies (e.g. out of memory) is
    reported with the job's name.
    """
    names = list(names) if names is not None else [str(i) for i in range(len(jobs))]
    if workers <= 1 or len(jobs) <= 1:
        _init_worker(threads)
        return [fn(*job) for job in jobs]
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    print(f"running {len(jobs)} jobs in {workers} processes ({threads} torch thread(s) each): "
          f"{', '.join(names)}", file=sys.stderr, flush=True)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads,))
    futures = [pool.submit(fn, *job) for job in jobs]
    failed = True
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        for name, fut in zip(names, futures):
            if fut.done() and fut.exception() is not None:
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    raise RuntimeError(f"job {name}: a worker process died (out of memory or killed?)") from exc
                raise exc
        results = [fut.result() for fut in futures]
        failed = False
        return results
    finally:
        if failed:  # do not wait for the other jobs: stop their processes (the executor has no public kill)
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
