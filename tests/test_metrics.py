"""Comparison metrics (em_restore.backend.metrics)."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest

from em_restore.backend import metrics


def test_psnr_mae_ssim_known_values():
    ref = np.linspace(0, 10, 50 * 60).reshape(50, 60)
    out = metrics.compare(ref + 0.1, ref)
    assert out["psnr"] == pytest.approx(20 * math.log10(10 / 0.1), abs=1e-6)
    assert out["mae"] == pytest.approx(0.1)
    assert metrics.compare(ref, ref) == {"psnr": math.inf, "ssim": pytest.approx(1.0), "mae": 0.0}
    noisy = ref + np.random.default_rng(0).normal(0, 1, ref.shape)
    assert metrics.compare(noisy, ref)["ssim"] < metrics.compare(ref + 0.1, ref)["ssim"]


def test_shape_mismatch_and_bad_input_are_clear():
    with pytest.raises(ValueError, match="same shape"):
        metrics.compare(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.compare(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.difference(da.zeros((2, 4, 4)), np.zeros((2, 4, 5)))


def test_difference_is_lazy_for_dask_and_exact():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    b = np.ones_like(a)
    lazy = metrics.difference(da.from_array(a, chunks=(1, 3, 4)), b)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), a.astype(np.float32) - 1)
    eager = metrics.difference(b, a)  # unsigned input: no wrap-around
    assert eager.min() == -22


def test_histograms_share_bins():
    edges, (c1, c2) = metrics.histograms(np.arange(10.0), np.arange(5.0, 15.0), bins=3)
    assert edges[0] == 0 and edges[-1] == 14
    assert c1.sum() == 10 and c2.sum() == 10
