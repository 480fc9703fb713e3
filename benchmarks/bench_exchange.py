"""ONNX (onnxruntime, CPU) against torch for the bundled denoiser: speed and agreement.

Exports ``em-denoise-fast`` to ONNX (``em_restore.backend.models.exchange``) and times,
in the same process and interleaved (torch, onnx, torch, onnx...), the median of
``--repeats`` end-to-end ``predict_frame`` calls on a simulated low-dose TEM 512²
frame (normalise, outliers, pad, predict, undo): the same pipeline, only the network
runner differs. Also the network alone (one forward pass on the padded, normalised
frame), the thread counts, and the PSNR of the ONNX result against the torch result.

Prints, never asserts.

    .venv/bin/python benchmarks/bench_exchange.py [--repeats 9] [--size 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from em_restore.backend.models import exchange, load_model, predict_frame


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    frame, _ = exchange._simulated_frame(size=args.size, seed=7)
    torch_model = load_model("em-denoise-fast", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_model = exchange.load_onnx(
            exchange.export_onnx(torch_model, Path(tmp) / "fast.onnx"),
            threads=torch.get_num_threads(),
        )
        a, b = predict_frame(torch_model, frame), predict_frame(onnx_model, frame)  # warm-up
        psnr = 10 * np.log10(float(np.ptp(a)) ** 2 / float(np.mean((a - b) ** 2)))
        x = np.random.default_rng(0).random((1, 1, args.size, args.size), dtype=np.float32)
        xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)

        def torch_net():
            with torch.inference_mode():
                torch_model.net(xt)

        rounds = {"torch": [], "onnx": [], "torch net": [], "onnx net": []}
        for _ in range(3):  # interleaved, so load from other processes hits both alike
            rounds["torch"].append(
                _median_ms(lambda: predict_frame(torch_model, frame), args.repeats)
            )
            rounds["onnx"].append(
                _median_ms(lambda: predict_frame(onnx_model, frame), args.repeats)
            )
            rounds["torch net"].append(_median_ms(torch_net, args.repeats))
            rounds["onnx net"].append(_median_ms(lambda: onnx_model.net.run(x), args.repeats))
    ms = {k: min(v) for k, v in rounds.items()}  # the least-disturbed of 3 medians
    print(
        f"em-denoise-fast, {args.size}² frame, CPU, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) vs onnxruntime "
        f"{__import__('onnxruntime').__version__} (same threads), median of {args.repeats}, "
        "best of 3 interleaved rounds"
    )
    print(f"{'':<28}{'torch':>10}{'onnx':>10}{'onnx/torch':>12}")
    for label, key in (("predict_frame (ms/frame)", ""), ("network only (ms/pass)", " net")):
        t, o = ms[f"torch{key}"], ms[f"onnx{key}"]
        print(f"{label:<28}{t:>10.1f}{o:>10.1f}{o / t:>12.2f}")
    print(f"PSNR of the ONNX result against the torch result: {psnr:.1f} dB")


if __name__ == "__main__":
    main()
