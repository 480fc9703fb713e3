"""rosettasciio underneath: its signal dicts as :class:`EMImage` objects.

rosettasciio (``rsciio``, the HyperSpy community's readers, GPL-3.0) returns, per file,
a list of signal dicts: ``data`` (numpy or dask), ``axes`` (one dict per array axis,
in array order: ``name``, ``size``, ``scale``, ``units``, ``navigate``), ``metadata``
(HyperSpy's tree: title, signal type, instrument) and ``original_metadata`` (the
vendor's own). This module turns the *image* signals of such a list into EMImages
(dask pixels, axis letters, scale in nm) and lists the others — spectra, spectrum
images, 4-D data — in each image's metadata, since they are not images to restore.

``rsciio`` is imported only when a file is read through it (importing
``em_restore.io`` stays cheap).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from ._image import (
    EMImage,
    UnsupportedFileError,
    frame_chunks,
    is_time_unit,
    jsonable,
    lazy,
    spatial_to_nm,
    time_to_s,
    unsupported,
)

# Formats read through rosettasciio: extension -> (format name, rsciio modules to try).
# The vendor formats the project also reads itself (DM, MRC, TIA, EMD, TIFF) are
# routed in io/__init__.py; see docs/formats.md for which reader serves which.
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    ".bcf": ("Bruker BCF", ("rsciio.bruker",)),
    ".elid": ("Phenom ELID", ("rsciio.phenom",)),
    ".img": ("JEOL IMG", ("rsciio.jeol", "rsciio.hamamatsu")),
    ".map": ("JEOL MAP", ("rsciio.jeol",)),
    ".asw": ("JEOL ASW", ("rsciio.jeol",)),
    ".prz": ("PantaRhei PRZ", ("rsciio.pantarhei",)),
    ".unf": ("Semper UNF", ("rsciio.semper",)),
    ".sur": ("Digital Surf SUR", ("rsciio.digitalsurf",)),
    ".pro": ("Digital Surf PRO", ("rsciio.digitalsurf",)),
    ".blo": ("Blockfile", ("rsciio.blockfile",)),
    ".tvips": ("TVIPS", ("rsciio.tvips",)),
    ".mib": ("Quantum Detectors MIB", ("rsciio.quantumdetector",)),
    ".mrcz": ("MRCZ", ("rsciio.mrcz",)),
    ".hspy": ("HyperSpy HSPY", ("rsciio.hspy",)),
    ".zspy": ("HyperSpy ZSPY", ("rsciio.zspy",)),
    ".rpl": ("Ripple RPL", ("rsciio.ripple",)),
}

# Magic bytes of the formats that have them (others are recognised by extension).
MAGICS: dict[str, tuple[bytes, ...]] = {
    ".bcf": (b"AAMVHFSS",),  # Bruker's SFS container
    ".elid": (b"BZh", b"PK\x03\x04"),  # bzip2 (version 4 files), zip
    ".hspy": (b"\x89HDF\r\n\x1a\n",),
}

#: A format rosettasciio reads only whole is refused above this size: it would
#: otherwise be loaded into memory at open time.
EAGER_LIMIT_BYTES = 2 * 1024**3

_REEXPORT = "convert it to TIFF in the acquisition software (or with HyperSpy) and open the TIFF"


@contextlib.contextmanager
def _quiet_rsciio():
    """Silence rosettasciio's log warnings (e.g. "numba is not installed") for one read."""
    logger = logging.getLogger("RosettaSciIO")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _call_reader(module: str, path: Path, fmt: str) -> tuple[list[dict], bool]:
    """Signals of ``path`` read lazily, or eagerly (size-guarded) where rsciio cannot."""
    reader = importlib.import_module(module).file_reader
    with _quiet_rsciio():
        try:
            return reader(str(path), lazy=True), True
        except NotImplementedError as exc:
            if "lazy" not in str(exc).lower():
                raise
        size = path.stat().st_size
        if size > EAGER_LIMIT_BYTES:
            raise unsupported(
                path,
                f"{fmt} files are read whole (rosettasciio has no lazy reader for them) and "
                f"this one is {size / 1e9:.1f} GB, over the {EAGER_LIMIT_BYTES / 1e9:.1f} GB limit",
                _REEXPORT,
            )
        return reader(str(path), lazy=False), False


def _check_sfs(path: Path) -> None:
    """A Bruker SFS container declares its chunk count: a cut file is shorter than that.

    rosettasciio reads the HAADF image lazily from the start of the file, so a .bcf
    cut in its EDX cube would otherwise open without a word.
    """
    with open(path, "rb") as fh:
        head = fh.read(0x14C)
    if len(head) < 0x14C:
        needed = 0x14C
    else:
        chunk = int.from_bytes(head[0x128:0x12C], "little")
        needed = chunk * int.from_bytes(head[0x148:0x14C], "little")
    size = path.stat().st_size
    if size < needed:
        raise unsupported(
            path,
            f"file is truncated (its SFS container declares {needed} bytes, the file has {size})",
            "copy the file again from the microscope PC or re-export it from Esprit",
        )


def _check_bzip2(path: Path) -> None:
    """A Phenom ELID (version 4) is one bzip2 stream: it must end.

    rosettasciio's ELID reader waits for more input forever on a cut stream, so the
    stream is run through a decompressor first (output discarded, 16 MB at a time).
    The file is read whole anyway: the size guard applies before this.
    """
    import bz2

    size = path.stat().st_size
    if size > EAGER_LIMIT_BYTES:
        return  # refused by the size guard in _call_reader, without decompressing
    decompressor = bz2.BZ2Decompressor()
    with open(path, "rb") as fh:
        if fh.read(3) != b"BZh":
            return  # a zip ELID (older version): rosettasciio reports its own errors
        fh.seek(0)
        try:
            while not decompressor.eof:
                block = fh.read(1 << 20) if decompressor.needs_input else b""
                if decompressor.needs_input and not block:
                    break
                decompressor.decompress(block, 1 << 24)
        except (OSError, EOFError, ValueError) as exc:
            raise unsupported(
                path, f"its bzip2 stream is corrupt ({exc})", "copy the file again"
            ) from exc
    if not decompressor.eof:
        raise unsupported(
            path,
            f"file is truncated (its bzip2 stream stops at {size} bytes)",
            "copy the file again from the Phenom PC",
        )


# checks that rosettasciio does not make, by reader module
_INTEGRITY = {"rsciio.bruker": _check_sfs, "rsciio.phenom": _check_bzip2}


def read_signals(path: Path, fmt: str, modules: tuple[str, ...]) -> list[EMImage]:
    """All image signals of ``path`` (first = main), read through rosettasciio.

    Raises UnsupportedFileError (one line) when rsciio cannot parse the file or the
    file holds no image signal.
    """
    error: Exception | None = None
    for module in modules:
        if module in _INTEGRITY:
            _INTEGRITY[module](path)
        try:
            signals, was_lazy = _call_reader(module, path, fmt)
            break
        except UnsupportedFileError:
            raise
        except MemoryError:
            raise
        except ModuleNotFoundError as exc:  # an optional package of rosettasciio's
            raise unsupported(
                path,
                f"reading {fmt} needs the Python package '{exc.name}', which is not installed",
                f"install it (e.g. pip install {exc.name}) and open the file again",
            ) from exc
        except Exception as exc:  # a parser failure: try the next reader, then report
            error = exc
    else:
        problem = f"{fmt} file is corrupt or truncated ({type(error).__name__}: {error})"
        raise unsupported(path, problem, _REEXPORT) from error
    return images_from_signals(signals, path, fmt, lazy_read=was_lazy)


def images_from_signals(
    signals: list[dict], path: Path, fmt: str, *, lazy_read: bool = True
) -> list[EMImage]:
    """EMImages of the image signals in a rosettasciio signal list (others listed)."""
    summaries, images = [], []
    for index, signal in enumerate(signals):
        kind = classify(signal)
        summaries.append(_summary(signal, index, kind))
        if kind in ("image", "stack"):
            images.append(_to_image(signal, path, fmt, index, lazy_read))
    if not images:
        kinds = ", ".join(f"{s['title']!r} ({s['kind']})" for s in summaries) or "nothing"
        raise unsupported(
            path,
            f"{fmt} file holds no image to restore, only {kinds}",
            "use HyperSpy for spectra and 4-D data, or export an image from them as TIFF",
        )
    others = [s for s in summaries if s["kind"] not in ("image", "stack")]
    titles = [im.metadata["title"] for im in images]
    for image in images:
        image.metadata["image_signals"] = titles
        image.metadata["other_signals"] = others
    return images


def _axes(signal: dict) -> list[dict]:
    axes = list(signal.get("axes") or [])
    if axes and all(a.get("index_in_array") is not None for a in axes):
        axes.sort(key=lambda a: int(a["index_in_array"]))
    return axes


def _unit(axis: dict) -> str:
    unit = axis.get("units")
    return unit if isinstance(unit, str) else ""


def _is_spatial(axis: dict) -> bool:
    """A length, a reciprocal length or no unit at all (uncalibrated pixels)."""
    _, unit = spatial_to_nm(axis.get("scale", 1.0), _unit(axis))
    return unit in ("nm", "1/nm", "pixel")


def classify(signal: dict) -> str:
    """``image``, ``stack``, ``spectrum``, ``spectrum image``, ``4-D`` or ``other``.

    rosettasciio's ``navigate`` flags are not reliable across readers (Phenom marks
    image axes as navigation, Bruker leaves them unset), so an axis counts as a
    signal axis when flagged ``navigate=False``; when none is, every axis does.
    """
    axes = _axes(signal)
    data = signal["data"]
    if len(axes) != data.ndim:
        return "other"
    signal_axes = [a for a in axes if a.get("navigate") is False] or axes
    n_nav = len(axes) - len(signal_axes)
    if len(signal_axes) == 1 or (len(signal_axes) == 3 and not _is_spatial(signal_axes[-1])):
        return "spectrum" if data.ndim == 1 else "spectrum image"
    if len(signal_axes) == 2 and all(_is_spatial(a) for a in signal_axes):
        if axes[-2:] != signal_axes:
            return "other"
        return {0: "image", 1: "stack"}.get(n_nav, "4-D")
    if len(signal_axes) == 3 and all(_is_spatial(a) for a in signal_axes):
        return "stack"
    return "other"


def _title(signal: dict, index: int) -> str:
    title = (signal.get("metadata") or {}).get("General", {}).get("title")
    return str(title) if title else f"signal {index}"


def _summary(signal: dict, index: int, kind: str) -> dict[str, Any]:
    meta = signal.get("metadata") or {}
    return {
        "index": index,
        "title": _title(signal, index),
        "kind": kind,
        "signal_type": str(meta.get("Signal", {}).get("signal_type") or ""),
        "shape": [int(n) for n in signal["data"].shape],
        "dtype": str(signal["data"].dtype),
        "axes": [{"name": str(a.get("name", "")), "units": _unit(a)} for a in _axes(signal)],
    }


def _regular(data: Any) -> Any:
    """An RGB(A) structured dtype (rsciio's colour images) as a trailing channel axis."""
    if data.dtype.names is None:
        return data
    fields = list(data.dtype.names)
    base = data.dtype[fields[0]]
    if isinstance(data, da.Array):
        return data.map_blocks(
            _unpack_rgb, dtype=base, new_axis=data.ndim, chunks=(*data.chunks, (len(fields),))
        )
    return _unpack_rgb(np.asarray(data))


def _unpack_rgb(block: np.ndarray) -> np.ndarray:
    return np.stack([block[name] for name in block.dtype.names], axis=-1)


class _Guarded:
    """Array-like over a lazy rsciio array whose read errors become one-line errors.

    A truncated file may open fine and fail only when its pixels are read; this
    makes that failure the same UnsupportedFileError as a failure at open.
    """

    def __init__(self, array: da.Array, path: Path, fmt: str):
        self.array, self.path, self.fmt = array, path, fmt
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key) -> np.ndarray:
        try:
            return np.asarray(self.array[key].compute(scheduler="sync"))
        except UnsupportedFileError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            problem = f"{self.fmt} pixels cannot be read ({type(exc).__name__}: {exc})"
            raise unsupported(self.path, problem, "copy the file again or re-export it") from exc


def _lead_axis(axis: dict) -> tuple[str, float, str]:
    unit = _unit(axis)
    if is_time_unit(unit):
        scale, out = time_to_s(axis.get("scale"), unit)
        return "t", scale, out
    scale, out = spatial_to_nm(axis.get("scale"), unit)
    if out == "nm":
        return "z", scale, out
    return "t", 1.0, "frame"


def _to_image(signal: dict, path: Path, fmt: str, index: int, lazy_read: bool) -> EMImage:
    axes = _axes(signal)
    data = signal["data"]
    letters, scale, units = [], [], []
    for axis in axes[:-2]:
        letter, step, unit = _lead_axis(axis)
        letters.append(letter)
        scale.append(step)
        units.append(unit)
    original = []
    for letter, axis in zip("yx", axes[-2:], strict=True):
        step, unit = spatial_to_nm(axis.get("scale", 1.0), _unit(axis))
        letters.append(letter)
        scale.append(step)
        units.append(unit)
        original.append((axis.get("scale", 1.0), _unit(axis)))
    if units[-1] != units[-2]:  # one axis calibrated, the other not: trust neither
        scale[-2:], units[-2:] = [1.0, 1.0], ["pixel", "pixel"]
    dask_data = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    dask_data = _regular(dask_data)
    if dask_data.ndim == len(letters) + 1:  # colour channels from an RGB(A) dtype
        letters.append("c")
        scale.append(1.0)
        units.append("pixel")
    n_lead = len(axes) - 2
    chunks = frame_chunks(dask_data.shape, n_lead)
    pixels = lazy(_Guarded(dask_data, path, fmt), chunks)
    meta = _metadata(signal, path, fmt, index, original, lazy_read)
    return EMImage(pixels, "".join(letters), tuple(scale), tuple(units), meta)


def _beam_energy_v(meta: dict) -> float | None:
    for instrument in ("TEM", "SEM"):
        energy = meta.get("Acquisition_instrument", {}).get(instrument, {}).get("beam_energy")
        try:
            return float(energy) * 1e3  # rosettasciio gives kV
        except (TypeError, ValueError):
            continue
    return None


def _metadata(
    signal: dict, path: Path, fmt: str, index: int, original: list, lazy_read: bool
) -> dict[str, Any]:
    meta = signal.get("metadata") or {}
    (size_y, unit_y), (size_x, unit_x) = original
    out: dict[str, Any] = {
        "format": fmt,
        "source": os.fspath(path),
        "reader": "rosettasciio",
        "lazy": lazy_read,
        "title": _title(signal, index),
        "signal_index": index,
        "original_pixel_size": [jsonable(size_y), jsonable(size_x)],
        "original_unit": unit_x if unit_x == unit_y else [unit_y, unit_x],
    }
    if np.issubdtype(signal["data"].dtype, np.complexfloating):
        out["complex"] = True
    voltage = _beam_energy_v(meta)
    if voltage is not None:
        out["voltage_V"] = voltage
    instruments = list(meta.get("Acquisition_instrument", {}))
    if instruments:
        out["microscope_type"] = instruments[0]
    out["rsciio"] = {
        "metadata": jsonable(meta),
        "original_metadata": jsonable(signal.get("original_metadata") or {}),
    }
    return out


def calibration_from_tiff(path: Path) -> EMImage | None:
    """rosettasciio's reading of a TIFF's calibration (Zeiss, JEOL SightX, FEI, Hamamatsu...).

    Used when our TIFF reader finds none: the vendors' private tags that rosettasciio
    knows. Returns None when it finds none either, or cannot parse the file. A TIFF
    with none of those tags costs one IFD read, not an import of rosettasciio.
    """
    if not _has_vendor_tags(path):
        return None
    try:
        with _quiet_rsciio():
            signals = importlib.import_module("rsciio.tiff").file_reader(str(path), lazy=True)
    except Exception:
        return None
    try:
        image = images_from_signals(signals[:1], path, "TIFF")[0]
    except Exception:
        return None
    finally:
        _close_tiff_files(signals)
    return image if image.units[-1] != "pixel" else None


# private tags whose calibration rosettasciio reads: Zeiss CZ_SEM, FEI SFEG/Helios,
# Olympus SIS, TVIPS; JEOL SightX and Hamamatsu are known by their Make / Artist
_VENDOR_TAG_CODES = {34118, 34680, 34682, 33560, 37706}


def _has_vendor_tags(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages.first.tags
            codes = {tag.code for tag in tags}
            make, artist = str(tags.valueof(271) or ""), str(tags.valueof(315) or "")
    except Exception:
        return False
    return bool(codes & _VENDOR_TAG_CODES) or make == "JEOL Ltd." or "Hamamatsu" in artist


def _close_tiff_files(signals: list[dict]) -> None:
    """Close the TiffFile that rosettasciio's lazy TIFF reader leaves open (we keep no pixels)."""
    for signal in signals:
        graph = signal["data"].__dask_graph__() if isinstance(signal["data"], da.Array) else {}
        for task in dict(graph).values():
            for arg in getattr(task, "args", ()):
                parent = getattr(arg, "parent", None)
                if hasattr(parent, "filehandle") and hasattr(parent, "close"):
                    parent.close()
