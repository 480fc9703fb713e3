"""Lazy readers for electron-microscopy images, and a calibrated TIFF writer.

``read(path)`` returns an :class:`EMImage` whose ``data`` is a dask array:
opening a file reads its header only, never its pixels. Spatial calibration
is always in nm (1/nm in reciprocal space), or 1 "pixel" when the file has none.

Supported: TIFF (ImageJ, DigitalMicrograph, FEI/Zeiss SEM, and through
rosettasciio the private tags of Zeiss, JEOL SightX, FEI, Hamamatsu...), MRC/MRCS/ST,
DM3/DM4, EMD (Velox and NCEM), TIA (.emi + .ser), PNG, JPEG; and through rosettasciio
Bruker .bcf, Phenom .elid, JEOL .img/.map/.asw and the other image formats listed in
``_rsciio.FORMATS``. ``read_all(path)`` returns every image signal of a file (a Velox
EMD with DPC segments, the HAADF of a .bcf beside its EDX cube); ``read`` the first.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ._image import EMImage, UnsupportedFileError, one_line, unsupported
from ._modality import guess_modality
from ._rsciio import FORMATS as _RSCIIO_FORMATS
from ._rsciio import MAGICS as _RSCIIO_MAGICS
from ._tiff import TIFF_MAGICS, write_tiff
from ._zarr import write_zarr

SUPPORTED_EXTENSIONS = [
    ".tif",
    ".tiff",
    ".mrc",
    ".mrcs",
    ".st",
    ".dm3",
    ".dm4",
    ".emd",
    ".emi",
    ".ser",
    ".png",
    ".jpg",
    ".jpeg",
    *_RSCIIO_FORMATS,
    ".zarr",
]

# extension -> (format name, private module, reader function); modules are
# imported on use so that importing em_restore.io stays cheap (no h5py, PIL).
_READERS = {
    ext: (name, module, reader)
    for name, module, reader, exts in (
        ("TIFF", "_tiff", "read_tiff", (".tif", ".tiff")),
        ("MRC", "_mrc", "read_mrc", (".mrc", ".mrcs", ".st")),
        ("DM3", "_dm", "read_dm", (".dm3",)),
        ("DM4", "_dm", "read_dm", (".dm4",)),
        ("EMD (HDF5)", "_emd", "read_emd", (".emd",)),
        ("TIA EMI", "_tia", "read_tia", (".emi",)),
        ("TIA SER", "_tia", "read_tia", (".ser",)),
        ("PNG", "_png", "read_png", (".png",)),
        ("JPEG", "_png", "read_png", (".jpg", ".jpeg")),
    )
    for ext in exts
}
# the formats read through rosettasciio (one EMImage per image signal)
_READERS.update({ext: (name, "_rsciio", "") for ext, (name, _) in _RSCIIO_FORMATS.items()})

_HEAD_BYTES = 2048
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SER_MAGIC = b"II\x97\x01"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_CONVERT = "convert it to TIFF (e.g. with Fiji) and open the TIFF"


class MissingFileError(UnsupportedFileError, FileNotFoundError):
    """The path does not exist (both an UnsupportedFileError and a FileNotFoundError)."""


def _is_dm(head: bytes) -> bool:
    if len(head) < 16:
        return False
    version = int.from_bytes(head[:4], "big")
    order_at = 8 if version == 3 else 12
    return version in (3, 4) and int.from_bytes(head[order_at : order_at + 4], "big") in (0, 1)


def _is_mrc(head: bytes) -> bool:
    from ._mrc import looks_like_mrc

    return looks_like_mrc(head)


def _is_hdf5(head: bytes) -> bool:
    # HDF5 may follow a user block of 512, 1024 or 2048... bytes
    return any(head[o : o + 8] == _HDF5_MAGIC for o in (0, 512, 1024))


def _is_emi(path: Path) -> bool:
    from ._tia import companion_ser

    ser = companion_ser(path)
    return ser.is_file() and _head(ser)[:4] == _SER_MAGIC


def _head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_HEAD_BYTES)


def _content_ok(ext: str, head: bytes, path: Path) -> bool:
    """Do the first bytes look like the format the extension promises?"""
    checks = {
        "TIFF": lambda: head[:4] in TIFF_MAGICS,
        "MRC": lambda: _is_mrc(head),
        "DM3": lambda: _is_dm(head),
        "DM4": lambda: _is_dm(head),
        "EMD (HDF5)": lambda: _is_hdf5(head),
        "TIA EMI": lambda: _is_emi(path),
        "TIA SER": lambda: head[:4] == _SER_MAGIC,
        "PNG": lambda: head[:8] == _PNG_MAGIC,
        "JPEG": lambda: head[:3] == _JPEG_MAGIC,
    }
    name = _READERS[ext][0]
    if name not in checks:  # read through rosettasciio: magic bytes where the format has them
        return bool(head) and any(head.startswith(m) for m in _RSCIIO_MAGICS.get(ext, (b"",)))
    return checks[name]()


def _sniff(head: bytes) -> str | None:
    """Name the format the bytes really are, to suggest a fix."""
    if head[:4] in TIFF_MAGICS:
        return ".tif"
    if _is_hdf5(head):
        return ".emd"
    if head[:8] == _PNG_MAGIC:
        return ".png"
    if head[:3] == _JPEG_MAGIC:
        return ".jpg"
    if head[:4] == _SER_MAGIC:
        return ".ser"
    if _is_dm(head):
        return ".dm3" if head[3] == 3 else ".dm4"
    return None


def can_read(path: str | os.PathLike) -> bool:
    """Whether :func:`read` can open ``path`` (extension and magic bytes only).

    Never raises and never reads pixel data.
    """
    try:
        path = Path(path)
        ext = path.suffix.lower()
        if ext == ".zarr":
            return path.is_dir() and any((path / n).exists() for n in ("zarr.json", ".zgroup"))
        if ext not in _READERS or not path.is_file():
            return False
        return _content_ok(ext, _head(path), path)
    except Exception:
        return False


def _check_path(path: Path) -> str:
    """Return the extension, or raise the one-line error for a bad path."""
    if not path.exists():
        raise MissingFileError(
            one_line(f"cannot read '{path}': file does not exist — check the path and name")
        )
    if path.is_dir():
        raise unsupported(path, "it is a folder, not a file", "choose an image file inside it")
    ext = path.suffix.lower()
    if ext not in _READERS:
        listed = ", ".join(SUPPORTED_EXTENSIONS)
        raise unsupported(path, f"unknown extension '{ext}'; supported: {listed}", _CONVERT)
    if path.stat().st_size == 0:
        raise unsupported(path, "file is empty (0 bytes)", "copy the file again")
    return ext


def _check_content(path: Path, ext: str) -> None:
    head = _head(path)
    if _content_ok(ext, head, path):
        return
    name = _READERS[ext][0]
    if ext == ".emi":
        problem = f"its pixel file '{path.stem}_1.ser' is missing or not a TIA .ser file"
        raise unsupported(path, problem, "keep the .emi and its _1.ser file in the same folder")
    actual = _sniff(head)
    if actual is not None and actual != ext:
        raise unsupported(
            path, f"content is not {name} but looks like '{actual}'", f"rename it to {actual}"
        )
    raise unsupported(
        path, f"content is not a valid {name} file (wrong or truncated header)", _CONVERT
    )


def read(path: str | os.PathLike) -> EMImage:
    """Open an EM image or stack lazily (the first image signal of the file).

    Parameters
    ----------
    path : str or os.PathLike
        File with one of :data:`SUPPORTED_EXTENSIONS`.

    Returns
    -------
    EMImage
        Dask-backed pixels with axes, scale (nm) and units.

    Raises
    ------
    UnsupportedFileError
        With a one-line message (file, problem, what to do) for a missing,
        unknown, empty, corrupt or truncated file. A missing path raises
        :class:`MissingFileError`, which is also a FileNotFoundError.
    """
    return read_all(path)[0]


def read_all(path: str | os.PathLike) -> list[EMImage]:
    """Open every image signal of a file lazily, the main one first.

    Most files hold one image or stack. A Velox EMD may hold several (HAADF, DF4
    segments, DPC, iDPC), a Bruker .bcf a HAADF beside its EDX cube, a Phenom .elid
    images beside EDS spectra. Spectra, spectrum images and 4-D data are not images
    to restore: they are listed in each image's ``metadata["other_signals"]``.

    Parameters and errors as :func:`read`; a file that holds no image signal at all
    raises :class:`UnsupportedFileError`.
    """
    path = Path(path)
    if path.suffix.lower() == ".zarr" and path.is_dir():
        from ._zarr import read_zarr

        return [read_zarr(path)]
    ext = _check_path(path)
    _check_content(path, ext)
    if ext == ".map" and _is_mrc(_head(path)):  # a CCP4/MRC density map, not a JEOL map
        ext = ".mrc"
    name, module, function = _READERS[ext]
    try:
        if module == "_rsciio":
            from ._rsciio import read_signals

            return read_signals(path, name, _RSCIIO_FORMATS[ext][1])
        if ext == ".emd":
            return _read_emd(path)
        image = getattr(importlib.import_module(f"{__name__}.{module}"), function)(path)
        if module == "_tiff" and image.metadata.get("calibration_source") == "none":
            image = _vendor_tiff_calibration(image, path)
        return [image]
    except UnsupportedFileError:
        raise
    except MemoryError:
        raise
    except Exception as exc:  # any parser failure is a bad file, not a crash
        problem = f"{name} file is corrupt or truncated ({type(exc).__name__}: {exc})"
        raise unsupported(path, problem, _CONVERT) from exc


def _read_emd(path: Path) -> list[EMImage]:
    """One Velox image: our reader; several image signals: rosettasciio reads them all."""
    from ._emd import count_velox_images, read_emd

    if count_velox_images(path) <= 1:
        return [read_emd(path)]
    from ._rsciio import read_signals

    return read_signals(path, "EMD (Velox)", ("rsciio.emd",))


def _vendor_tiff_calibration(image: EMImage, path: Path) -> EMImage:
    """An uncalibrated TIFF calibrated from the vendor tags rosettasciio knows.

    Our reader's pixels are kept (read page by page); only the calibration, the
    title and rosettasciio's metadata are taken from rosettasciio.
    """
    from ._rsciio import calibration_from_tiff

    theirs = calibration_from_tiff(path)
    if theirs is None or theirs.data.shape[-2:] != image.data.shape[-2:]:
        return image
    scale, units = list(image.scale), list(image.units)
    iy, ix = image.axes.index("y"), image.axes.index("x")
    scale[iy], scale[ix] = theirs.pixel_size
    units[iy] = units[ix] = theirs.spatial_unit
    tags = theirs.metadata["rsciio"]["original_metadata"]
    vendor = next((v for tag, v in _VENDOR_TIFF_TAGS.items() if tag in tags), "rosettasciio")
    meta = {**image.metadata, "calibration_source": vendor, "reader": "ours + rosettasciio tags"}
    for key in ("original_pixel_size", "original_unit", "title", "voltage_V", "microscope_type"):
        if key in theirs.metadata:
            meta[key] = theirs.metadata[key]
    if vendor == "jeol-sightx" and str(meta.get("title", "")).startswith("TEM"):
        meta.setdefault("microscope_type", "TEM")
    meta["rsciio"] = theirs.metadata["rsciio"]
    return EMImage(image.data, image.axes, tuple(scale), tuple(units), meta)


# private TIFF tags (as rosettasciio names them) -> who wrote the calibration
_VENDOR_TIFF_TAGS = {
    "CZ_SEM": "zeiss",
    "FEI_HELIOS": "fei",
    "FEI_SFEG": "fei",
    "SightX_Notes": "jeol-sightx",
}


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images in a folder that :func:`read` opens, sorted by name (not recursive).

    Hidden files (e.g. a writer's temporary file) are left out, and a TIA ``.ser``
    whose ``.emi`` is there too is listed once, as the ``.emi`` (it reads the
    ``.ser``). A ``.zarr`` store is one image.
    """
    folder = Path(folder)
    entries = [
        p
        for p in folder.iterdir()
        if not p.name.startswith(".")
        and p.suffix.lower() in SUPPORTED_EXTENSIONS
        and (p.is_file() or (p.is_dir() and p.suffix.lower() == ".zarr"))
    ]
    emi = {p.stem for p in entries if p.suffix.lower() == ".emi"}
    return sorted(
        (
            p
            for p in entries
            if not (p.suffix.lower() == ".ser" and p.stem.rpartition("_")[0] in emi)
        ),
        key=lambda p: p.name,
    )


__all__ = [
    "SUPPORTED_EXTENSIONS",
    "EMImage",
    "MissingFileError",
    "UnsupportedFileError",
    "can_read",
    "guess_modality",
    "image_files",
    "read",
    "read_all",
    "write_tiff",
    "write_zarr",
]
