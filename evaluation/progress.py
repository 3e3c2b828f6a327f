"""Run a per-record function over many records in worker processes, with a rich progress bar on stderr."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _init_worker() -> None:
    # one BLAS thread per process: the workers already use every core
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def parallel_map(fn: Callable[..., Any], args: Sequence[tuple], *, workers: int | None = None, progress: bool = True,
                 label: str = "records") -> list[Any]:
    """[fn(*a) for a in args], results in input order; workers=1 runs in this process."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    workers = default_workers() if workers is None else max(1, workers)
    results: list[Any] = [None] * len(args)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress, transient=False) as bar:
        task = bar.add_task(label, total=len(args))
        if workers == 1 or len(args) <= 1:
            for i, a in enumerate(args):
                results[i] = fn(*a)
                bar.advance(task)
            return results
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
            futures = {pool.submit(fn, *a): i for i, a in enumerate(args)}
            for f in as_completed(futures):
                i = futures[f]
                try:
                    results[i] = f.result()
                except Exception as e:
                    raise RuntimeError(f"{label}: item {args[i][1:2]} failed: {e}") from e
                bar.advance(task)
    return results
