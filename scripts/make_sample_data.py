"""Regenerate ``sample_data/`` from the simulator (seeded, deterministic).

    .venv/bin/python scripts/make_sample_data.py [--out sample_data]

Every file is a calibrated TIFF readable by ``em_restore.io.read``; ground truth
goes next to it (clean images, kernels, JSON). Budget: <= 20 MB in all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from em_restore import io
from em_restore.backend import simulate as sim

SEED = 20261121
ROOT = Path(__file__).resolve().parents[1]


def _write(out: Path, name: str, data: np.ndarray, pixel_nm: float, **kw) -> None:
    io.write_tiff(out / name, data, pixel_size_nm=pixel_nm, overwrite=True, **kw)


def nanoparticles(out: Path, rng: np.random.Generator) -> dict:
    """Nanoparticles (bright-field TEM) at 5 and 1000 e⁻/px, same field, same particles."""
    pixel_nm, shape = 1.0, (512, 512)
    clean, particles = sim.nanoparticles(
        shape,
        pixel_size_nm=pixel_nm,
        diameters_nm=(20.0, 100.0),
        n=18,
        allow_touching_pairs=2,
        rng=rng,
    )
    low = sim.AcquisitionConfig.low_dose_tem(dose=5.0)
    high = sim.AcquisitionConfig.high_dose_tem(dose=1000.0)
    _write(out, "nanoparticles_clean.tif", clean.astype(np.float32), pixel_nm)
    _write(out, "nanoparticles_5e.tif", sim.simulate_acquisition(clean, low, rng=rng), pixel_nm)
    _write(out, "nanoparticles_1000e.tif", sim.simulate_acquisition(clean, high, rng=rng), pixel_nm)
    truth = {
        "pixel_size_nm": pixel_nm,
        "particles": [
            {"center_yx_nm": [float(c) for c in p.center_yx_nm], "diameter_nm": p.diameter_nm}
            for p in particles
        ],
        "low_dose": _config_dict(low),
        "high_dose": _config_dict(high),
    }
    (out / "nanoparticles_truth.json").write_text(json.dumps(truth, indent=1))
    return {"particles": len(particles)}


def vesicles(out: Path, rng: np.random.Generator) -> dict:
    """Liquid-cell TEM: vesicles in liquid, low dose and blurred, with truth and kernel."""
    pixel_nm, shape = 0.8, (512, 512)
    clean, scene = sim.vesicles(shape, pixel_size_nm=pixel_nm, rng=rng)
    psf = sim.gaussian_psf(2.0)
    config = sim.AcquisitionConfig.liquid_cell_tem(dose=20.0, psf=psf)
    noisy = sim.simulate_acquisition(clean, config, rng=rng)
    _write(out, "vesicles_clean.tif", clean.astype(np.float32), pixel_nm)
    _write(out, "vesicles_noisy.tif", noisy, pixel_nm)
    _write(out, "vesicles_psf.tif", psf.astype(np.float32), pixel_nm)
    truth = {
        "pixel_size_nm": pixel_nm,
        "psf": "gaussian, sigma 2.0 px (vesicles_psf.tif)",
        "acquisition": _config_dict(config),
        "vesicles": [
            {"center_yx_nm": [float(c) for c in v.center_yx_nm], "diameter_nm": v.diameter_nm}
            for v in scene.vesicles
        ],
    }
    (out / "vesicles_truth.json").write_text(json.dumps(truth, indent=1))
    return {"vesicles": len(scene.vesicles)}


def stream(out: Path, rng: np.random.Generator) -> dict:
    """A 24-frame moving-stage stream over tissue: motion blur, drift and noise."""
    pixel_nm, n_frames, frame = 2.0, 24, (256, 256)
    velocity = (1.5, 9.0)
    specimen, _ = sim.tissue_texture((400, 560), rng=rng)
    config = sim.AcquisitionConfig(modality="tem", dose=40.0, bits=16)
    noisy, sharp, offsets = sim.moving_stage_stream(
        specimen,
        n_frames=n_frames,
        frame_shape=frame,
        velocity_px_per_frame=velocity,
        jitter=1.5,
        config=config,
        rng=rng,
    )
    interval = 0.01
    _write(out, "stream_noisy.tif", noisy, pixel_nm, axes="tyx", frame_interval=interval)
    _write(
        out,
        "stream_sharp.tif",
        sharp.astype(np.float32),
        pixel_nm,
        axes="tyx",
        frame_interval=interval,
    )
    np.savetxt(
        out / "stream_offsets.csv",
        offsets,
        delimiter=",",
        header="y_px,x_px (mid-exposure position of each frame in the specimen)",
        fmt="%.4f",
    )
    return {"frames": n_frames}


def _config_dict(config: sim.AcquisitionConfig) -> dict:
    return {
        k: (v if not isinstance(v, np.ndarray) else f"kernel {v.shape}")
        for k, v in vars(config).items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for make in (nanoparticles, vesicles, stream):
        print(make.__name__, make(args.out, rng))
    total = sum(p.stat().st_size for p in args.out.iterdir() if p.is_file())
    print(f"total {total / 1e6:.1f} MB in {args.out}")


if __name__ == "__main__":
    main()
