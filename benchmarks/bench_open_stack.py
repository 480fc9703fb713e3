"""Opening a large TIFF stack is lazy: time and bytes read at open vs. reading it all.

    .venv/bin/python benchmarks/bench_open_stack.py [--gb 2.0] [--dir /tmp]

Writes an uncompressed uint16 ImageJ stack of about ``--gb`` GB (and a zlib-
compressed page-by-page variant of 1/10 the size), then reports for each:
the time ``em_restore.io.read`` takes, the bytes the process read from disk
during it (``/proc/self/io``), and, as the baseline measured in the same run,
the time and bytes of reading one frame and of ``tifffile.imread`` of the whole
file. Target (issue 2): a 2 GB stack opens in < 2 s without reading the pixels.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from em_restore import io


def _read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _measure(fn):
    b0, t0 = _read_bytes(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0, _read_bytes() - b0


def _drop_cache(path: Path) -> None:
    # Ask the kernel to forget the file's pages so "read" means read from disk
    # where permitted; harmless where not.
    try:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except (AttributeError, OSError):
        pass


def _write_stack(path: Path, n: int, shape: tuple[int, int], compression=None) -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 4096, size=shape, dtype=np.uint16)
    frames = (np.roll(frame, i, axis=1) for i in range(n))
    tifffile.imwrite(
        path,
        frames,
        shape=(n, *shape),
        dtype=np.uint16,
        imagej=compression is None,
        compression=compression,
        resolution=(1 / 0.25, 1 / 0.25),
        metadata={"unit": "nm", "axes": "TYX"} if compression is None else None,
    )


def run(gb: float, folder: Path) -> None:
    shape = (2048, 2048)
    n = max(2, round(gb * 1e9 / (shape[0] * shape[1] * 2)))
    cases = [("uncompressed", n, None), ("zlib page-by-page", max(2, n // 10), "zlib")]
    print(
        f"{'stack':<20} {'size':>9} {'open s':>8} {'open MB read':>13} "
        f"{'1 frame s':>10} {'full read s':>12} {'open/full':>10}"
    )
    for label, frames, compression in cases:
        path = folder / f"bench_{label.split()[0]}.tif"
        _write_stack(path, frames, shape, compression)
        size = path.stat().st_size
        _drop_cache(path)
        image, t_open, b_open = _measure(lambda p=path: io.read(p))
        _, t_one, _ = _measure(lambda im=image, k=frames // 2: im.data[k].compute())
        _drop_cache(path)
        _, t_full, _ = _measure(lambda p=path: tifffile.imread(p))
        print(
            f"{label:<20} {size / 1e9:>7.2f}GB {t_open:>8.3f} {b_open / 1e6:>13.2f} "
            f"{t_one:>10.3f} {t_full:>12.2f} {t_open / t_full:>10.4f}"
        )
        assert image.data.shape == (frames, *shape)
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    run(args.gb, args.dir)


if __name__ == "__main__":
    main()
