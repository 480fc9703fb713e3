"""The shared thread pool (em_restore.backend._threads): order, nesting, context, results."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from em_restore.backend import _args
from em_restore.backend import _threads as T
from em_restore.backend.bm3d import bm3d


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(T, "THREADS", 2)


def test_results_come_back_in_order_and_from_worker_threads(two_threads):
    names = []

    def work(i):
        names.append(threading.current_thread().name)
        return i * i

    assert T.pmap(work, range(20)) == [i * i for i in range(20)]
    assert all(n.startswith("em-restore") for n in names)


def test_nested_calls_run_inline_and_do_not_deadlock(two_threads):
    def outer(i):
        inner = T.pmap(lambda j: (j, threading.current_thread().name), range(3))
        assert {name for _, name in inner} == {threading.current_thread().name}
        return sum(j for j, _ in inner) + i

    assert T.pmap(outer, range(6)) == [3 + i for i in range(6)]


def test_the_callers_context_follows_the_work(two_threads):
    with _args.validated():
        flags = T.pmap(lambda _: _args._VALIDATED.get(), range(4))
    assert flags == [True] * 4
    assert T.pmap(lambda _: _args._VALIDATED.get(), range(4)) == [False] * 4


def test_one_thread_runs_in_the_caller(monkeypatch):
    monkeypatch.setattr(T, "THREADS", 1)
    me = threading.current_thread().name
    assert T.pmap(lambda _: threading.current_thread().name, range(3)) == [me] * 3


def test_errors_propagate(two_threads):
    def fail(i):
        if i == 3:
            raise ValueError("item 3")
        return i

    with pytest.raises(ValueError, match="item 3"):
        T.pmap(fail, range(5))


def test_bm3d_bands_side_by_side_equal_one_thread_and_one_band(monkeypatch):
    rng = np.random.default_rng(4)
    clean = np.kron(rng.random((12, 12)), np.ones((16, 16)))
    img = clean + 0.2 * rng.standard_normal(clean.shape)
    whole = bm3d(img, sigma=0.2)  # one band at this size
    monkeypatch.setattr("em_restore.backend.bm3d._BAND_BYTES", 2e5)  # one band per grid row
    monkeypatch.setattr(T, "THREADS", 1)
    serial = bm3d(img, sigma=0.2)
    monkeypatch.setattr(T, "THREADS", 3)
    parallel = bm3d(img, sigma=0.2)
    np.testing.assert_array_equal(parallel, serial)  # bands are added in band order
    np.testing.assert_allclose(serial, whole, rtol=0, atol=1e-12)  # only rounding differs
    assert np.mean((whole - clean) ** 2) < 0.1 * np.mean((img - clean) ** 2)
