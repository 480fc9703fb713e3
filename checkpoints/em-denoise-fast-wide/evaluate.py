"""The figures in figures.json: this checkpoint against em-denoise-fast-v1, same run.

Mean PSNR on bench_models.py's 30 classic simulated images (TEM/STEM/SEM, 1-100
e-/px, 256²) and on its 19 quick held-out frames (wide simulator, held-out families,
5 e-/px), and per held-out family. From the repository root::

    .venv/bin/python checkpoints/em-denoise-fast-wide/evaluate.py [FOLDER]
"""

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
import bench_models as b  # noqa: E402

from em_restore.backend.models import load_model, predict_frame  # noqa: E402

folder = sys.argv[1] if len(sys.argv) > 1 else str(HERE)
models = {
    "em-denoise-fast-v1": load_model("em-denoise-fast-v1", device="cpu"),
    "em-denoise-fast-wide": load_model(folder, device="cpu"),
}
out = {}
rows = [
    [b.metrics(predict_frame(m, noisy), truth)[0] for m in models.values()]
    for _, _, _, noisy, truth in b.held_out(256, False)
]
out["classic30"] = dict(zip(models, np.mean(rows, 0).round(2).tolist(), strict=True))
rows, fam = [], {}
for label, family, _, _, _, raw, truth in b.held_out_set(256, True):
    r = [b.metrics(predict_frame(m, raw), truth)[0] for m in models.values()]
    rows.append(r)
    fam.setdefault(family, []).append(r)
    print(f"{label:<40}", " ".join(f"{v:6.2f}" for v in r), flush=True)
out["heldout19"] = dict(zip(models, np.mean(rows, 0).round(2).tolist(), strict=True))
out["families"] = {
    f: dict(zip(models, np.mean(v, 0).round(2).tolist(), strict=True)) for f, v in fam.items()
}
print(json.dumps(out, indent=1))
(HERE / "figures.json").write_text(json.dumps(out, indent=1) + "\n")
