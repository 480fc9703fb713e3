"""One shared thread pool for independent, numpy-heavy work items.

The classical plan filters its calibration crops side by side, and BM3D filters the
bands of a frame side by side: numpy releases the GIL inside its loops, so threads
use the cores without copies between processes. :func:`pmap` is the only entry:

* results come back in the order of the items, so what is computed does not depend
  on the number of threads (callers combine them in that order);
* a call from inside a pool thread runs its items in that thread (nested use, e.g.
  BM3D within a calibration crop, cannot deadlock the pool or oversubscribe it);
* each item runs in a copy of the caller's ``contextvars`` context (the
  "already validated" flag of :mod:`._args` follows the work).

:data:`THREADS` sets the pool size: ``None`` (default) one per core, at most 8; ``1``
runs everything in the calling thread.
"""

from __future__ import annotations

import contextvars
import itertools
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["THREADS", "pmap", "row_blocks", "threads"]

#: Worker threads (None: one per core, at most 8; 1: no pool).
THREADS: int | None = None

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()
_LOCAL = threading.local()


def threads() -> int:
    """The number of threads :func:`pmap` uses now."""
    return max(1, THREADS or min(8, os.cpu_count() or 1))


def _mark_worker() -> None:
    _LOCAL.worker = True


def pmap(fn: Callable[[Any], Any], items: Iterable) -> list:
    """``[fn(x) for x in items]``, on the pool's threads when that can help.

    Examples
    --------
    >>> pmap(lambda x: x * x, range(5))
    [0, 1, 4, 9, 16]
    """
    items = list(items)
    n = threads()
    if n <= 1 or len(items) <= 1 or getattr(_LOCAL, "worker", False):
        return [fn(x) for x in items]
    with _LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            pool = _POOLS[n] = ThreadPoolExecutor(
                max_workers=n, thread_name_prefix="em-restore", initializer=_mark_worker
            )
    futures = [pool.submit(contextvars.copy_context().run, fn, x) for x in items]
    return [f.result() for f in futures]


def row_blocks(rows: int, least: int = 16) -> list[tuple[int, int]]:
    """``[(r0, r1), ...]``: ``rows`` split into one block per thread, ``least`` rows at least.

    Examples
    --------
    >>> row_blocks(10, least=16)
    [(0, 10)]
    """
    n = min(threads(), max(1, rows // least))
    edges = [rows * i // n for i in range(n + 1)]
    return list(itertools.pairwise(edges))
