"""Computing lazy results in bounded memory, on this machine or on a dask cluster.

Every method has a lazy form that builds a dask graph and computes nothing:

- :func:`~em_restore.backend.denoise.denoise_lazy`;
- :meth:`~em_restore.backend.models.inference.ModelPlan.lazy`;
- :func:`~em_restore.backend.deconvolve.deconvolve_lazy`;
- :func:`~em_restore.backend.burst.burst_lazy`.

The input is read lazily, one frame per chunk (:func:`em_restore.io.read`). The writers
consume such a graph chunk by chunk: :func:`em_restore.io.write_zarr` stores every chunk
as it is computed, and :func:`em_restore.io.write_tiff` writes page by page. Only the
frames in flight are ever in memory, so the peak memory does not depend on the stack's
length (``benchmarks/bench_stream.py``).

:func:`computing` is the context in which such a write runs:

- **locally**, dask's threaded scheduler runs it; :func:`with_progress` reports the
  result's chunks as they finish;
- **on a cluster** (``scheduler="tcp://host:8786"``), an existing dask.distributed
  scheduler runs the same graph. Its workers must see the input and the output paths,
  for example on a shared file system. The same graph gives the same numbers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["SchedulerError", "computing", "connect", "with_progress"]


class SchedulerError(OSError):
    """The dask scheduler cannot be reached (message says which and what to do)."""


def with_progress(lazy: Any, on_progress: Callable[[int, int], None]):
    """``lazy`` with a report per finished chunk: ``on_progress(done, total)``.

    Counted in this process across any number of computes (e.g. a TIFF written page
    by page), so it reports local computations; on a cluster the chunks finish in
    the workers and nothing is reported.

    Examples
    --------
    >>> import dask.array as da
    >>> seen = []
    >>> x = with_progress(da.ones((3, 4, 4), chunks=(1, 4, 4)), lambda d, t: seen.append((d, t)))
    >>> float(x.sum().compute(scheduler="sync")), seen
    (48.0, [(1, 3), (2, 3), (3, 3)])
    """
    total = int(lazy.npartitions)
    lock = threading.Lock()
    done = [0]

    def tick(block):
        with lock:
            done[0] += 1
            n = done[0]
        on_progress(n, total)
        return block

    return lazy.map_blocks(tick, dtype=lazy.dtype, meta=lazy._meta)


def connect(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` for a running scheduler, or a one-line :class:`SchedulerError`."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise SchedulerError(
            "running on a cluster needs the 'distributed' package; pip install distributed"
        ) from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SchedulerError(
            f"cannot reach the dask scheduler at {address!r} ({first}); start one "
            "('dask scheduler' and 'dask worker ADDRESS') or drop --scheduler"
        ) from None


@contextlib.contextmanager
def computing(scheduler: str | None = None) -> Iterator[Any]:
    """Context in which dask computations run: the threaded scheduler, or the
    dask.distributed cluster at ``scheduler`` (yields its ``Client``, else ``None``)."""
    import dask

    if scheduler:
        client = connect(scheduler)
        try:
            with dask.config.set(scheduler=client):
                yield client
        finally:
            client.close()
        return
    with dask.config.set(scheduler="threads"):
        yield None
