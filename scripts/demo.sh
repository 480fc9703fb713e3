#!/usr/bin/env bash
# Set up and run the main job on the bundled sample data: denoising of the 5 e⁻/px
# nanoparticle image and of the liquid-cell vesicle image with the default denoiser
# (the bundled model for TEM) and, for comparison, the automatic classical filter,
# written to results/ as calibrated float32 TIFFs, then scored against their truth.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
mkdir -p results
.venv/bin/em-restore info sample_data/nanoparticles_5e.tif
for name in nanoparticles_5e vesicles_noisy; do
  .venv/bin/em-restore denoise "sample_data/$name.tif" -o "results/${name}_denoised.tif" \
    --modality tem --overwrite
  .venv/bin/em-restore denoise "sample_data/$name.tif" -o "results/${name}_classical.tif" \
    --method classical --modality tem --overwrite
done
.venv/bin/python scripts/score_samples.py results
