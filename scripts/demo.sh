#!/usr/bin/env bash
# Set up and run the main job on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
.venv/bin/em-restore info sample_data/nanoparticles_5e.tif
