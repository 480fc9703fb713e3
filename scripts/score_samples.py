"""Score restored sample images against the samples' ground truth (PSNR, SSIM).

    .venv/bin/python scripts/score_samples.py results/

The truth is each sample's noise-free expectation: the clean specimen through the
acquisition's own blur, times the dose (denoising removes noise, not blur).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from em_restore import io
from em_restore.backend.psf import convolve, gaussian_psf
from em_restore.samples import sample_path


def _load(path: Path) -> np.ndarray:
    return np.asarray(io.read(path).data.compute(), dtype=np.float64)


def _truths() -> dict[str, np.ndarray]:
    nano = _load(sample_path("nanoparticles_clean.tif"))
    truth = json.loads(sample_path("nanoparticles_truth.json").read_text())
    vesicles = _load(sample_path("vesicles_clean.tif"))
    psf = _load(sample_path("vesicles_psf.tif"))
    ves_truth = json.loads(sample_path("vesicles_truth.json").read_text())
    low = truth["low_dose"]
    nano_psf = gaussian_psf(low["psf"][1])  # the low-dose camera's own blur, not noise
    return {
        "nanoparticles_5e": convolve(nano, nano_psf) * low["dose"] * low["gain"] + low["offset"],
        "vesicles_noisy": convolve(vesicles, psf) * ves_truth["acquisition"]["dose"],
    }


def main(folder: Path) -> None:
    print(f"{'sample':<18} {'PSNR in':>8} {'PSNR out':>9} {'SSIM in':>8} {'SSIM out':>9}  method")
    for name, truth in _truths().items():
        for suffix in ("denoised", "classical"):
            restored_path = folder / f"{name}_{suffix}.tif"
            if not restored_path.exists():
                continue
            noisy, restored = _load(sample_path(f"{name}.tif")), _load(restored_path)
            rng = float(np.ptp(truth))
            pair = (noisy, restored)
            scores = [peak_signal_noise_ratio(truth, im, data_range=rng) for im in pair]
            scores += [structural_similarity(truth, im, data_range=rng) for im in pair]
            record = io.read(restored_path).metadata.get("denoise", {})
            method = record.get("method", "?")
            if method == "model":
                method = f"model {record['model']['name']}"
            print(
                f"{name:<18} {scores[0]:>8.2f} {scores[1]:>9.2f} {scores[2]:>8.3f} "
                f"{scores[3]:>9.3f}  {method}"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results"))
