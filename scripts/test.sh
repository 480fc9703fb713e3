#!/usr/bin/env bash
# Set up and run the whole test suite (lint, headless and GUI tests on a
# virtual display). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "test: ruff"
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks
echo "test: docs (mkdocs, strict: a warning fails)"
.venv/bin/mkdocs build --strict --quiet
echo "test: pytest"
# A real napari viewer needs an X server: Xvfb with Mesa's software OpenGL.
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python -m pytest "$@"
