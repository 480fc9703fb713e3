"""EMD readers (both HDF5): Thermo Fisher Velox and Berkeley NCEM.

Velox: ``/Data/Image/<uuid>/Data`` (y, x, frames) and ``.../Metadata``, a uint8
array holding one zero-padded JSON document per frame.
NCEM: any group with attribute ``emd_group_type == 1`` holding ``data`` and
``dim1``, ``dim2``... (one per axis of ``data``, with ``name``/``units`` attributes).
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import h5py
import numpy as np

from ._image import (
    EMImage,
    frame_axis,
    frame_chunks,
    lazy,
    spatial_axes_meta,
    spatial_to_nm,
    unsupported,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HINT = "re-export the image from Velox (EMD or TIFF), or check the file was fully copied"


class _H5Array:
    """An h5py dataset plus the open file it lives in, sliced under a lock.

    Holding the File object keeps it open as long as the dask array exists;
    the lock serialises reads (one HDF5 handle, several dask threads).
    """

    def __init__(self, h5file: h5py.File, dataset: h5py.Dataset) -> None:
        self.file = h5file
        self.dataset = dataset
        self.shape = dataset.shape
        self.dtype = dataset.dtype.newbyteorder("=")
        self.ndim = dataset.ndim
        self._lock = threading.Lock()

    def __getitem__(self, key) -> np.ndarray:
        with self._lock:
            return np.asarray(self.dataset[key], dtype=self.dtype)

    def __dask_tokenize__(self):
        return (self.file.filename, self.dataset.name, self.shape, str(self.dtype))


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise unsupported(path, f"not a readable HDF5/EMD file ({exc})", _HINT) from exc


def read_emd(path: str | os.PathLike) -> EMImage:
    """Read a Velox or NCEM EMD file lazily (the HDF5 file stays open).

    Parameters
    ----------
    path : str or os.PathLike
        ``.emd`` file.

    Returns
    -------
    EMImage
        "yx" or "tyx". Velox stacks (y, x, frames) are transposed lazily.
    """
    path = os.fspath(path)
    h5file = _open(path)
    try:
        if "Data" in h5file and "Image" in h5file["Data"]:
            return _read_velox(path, h5file)
        group = _find_ncem_group(h5file)
        if group is not None:
            return _read_ncem(path, h5file, group)
        if "Data" in h5file:
            raise unsupported(
                path,
                "this Velox EMD holds no image (only spectra or spectrum images?)",
                "export the image from Velox",
            )
        raise unsupported(path, "HDF5 file is neither a Velox nor an NCEM EMD", _HINT)
    except BaseException:
        h5file.close()
        raise


# -- Velox -------------------------------------------------------------------


def _velox_json(metadata: h5py.Dataset, frame: int = 0) -> dict:
    column = np.asarray(metadata[:, frame], dtype=np.uint8)
    text = column.tobytes().split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    return json.loads(text) if text.strip() else {}


def _velox_images(h5file: h5py.File) -> list[h5py.Group]:
    images = h5file["Data/Image"]
    return [images[k] for k in images if isinstance(images[k], h5py.Group) and "Data" in images[k]]


def count_velox_images(path: str | os.PathLike) -> int:
    """Number of image signals in a Velox EMD (0 for NCEM or other HDF5)."""
    with _open(os.fspath(path)) as h5file:
        if "Data" in h5file and "Image" in h5file["Data"]:
            return len(_velox_images(h5file))
    return 0


def _velox_frame_time(meta: dict, meta2: dict | None) -> float | None:
    """Frame step (s): scan frame time, else detector exposure, else time stamps."""
    frame_time = _float(meta.get("Scan", {}).get("FrameTime"))
    if frame_time:
        return frame_time
    binary = meta.get("BinaryResult", {})
    detector = meta.get("Detectors", {}).get(f"Detector-{binary.get('DetectorIndex', '')}", {})
    exposure = _float(detector.get("ExposureTime"))
    if exposure:
        return exposure
    return _timestamp_step(meta, meta2)


def _timestamp_step(meta: dict, meta2: dict | None) -> float | None:
    def stamp(m):
        for key, value in (m or {}).get("CustomProperties", {}).items():
            if key.endswith(".TimeStamp") and isinstance(value, dict):
                return _float(value.get("value"))
        return None

    first, second = stamp(meta), stamp(meta2)
    if first is None or second is None or second <= first:
        return None
    return (second - first) * 1e-6  # Velox time stamps are in µs


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _number(value: Any) -> Any:
    """Velox writes numbers as strings: float when possible, else unchanged."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _read_velox(path: str, h5file: h5py.File) -> EMImage:
    images = _velox_images(h5file)
    if not images:
        raise unsupported(path, "Velox EMD has an empty /Data/Image group", _HINT)
    group = max(images, key=lambda g: int(np.prod(g["Data"].shape)))
    dataset = group["Data"]
    if dataset.ndim != 3:
        raise unsupported(path, f"unexpected Velox image shape {dataset.shape}", _HINT)
    n_frames = dataset.shape[2]
    meta = _velox_json(group["Metadata"]) if "Metadata" in group else {}
    meta2 = _velox_json(group["Metadata"], 1) if n_frames > 1 and "Metadata" in group else None
    array = lazy(_H5Array(h5file, dataset), (*dataset.shape[:2], 1))
    binary = meta.get("BinaryResult", {})
    size = binary.get("PixelSize", {})
    raw_y, raw_x = _number(size.get("height")), _number(size.get("width"))
    unit_y, unit_x = binary.get("PixelUnitY", ""), binary.get("PixelUnitX", "")
    scale_y, out_y = spatial_to_nm(raw_y, unit_y)
    scale_x, out_x = spatial_to_nm(raw_x, unit_x)
    extra = _velox_extra(meta, images, group)
    md = spatial_axes_meta(path, "velox-emd", (raw_y, raw_x), (unit_y, unit_x), **extra)
    if n_frames == 1:
        pixels = array[:, :, 0]
        return EMImage(pixels, "yx", (scale_y, scale_x), (out_y, out_x), md)
    letter, step, step_unit = frame_axis(_velox_frame_time(meta, meta2), "s")
    pixels = array.transpose(2, 0, 1)
    return EMImage(pixels, letter + "yx", (step, scale_y, scale_x), (step_unit, out_y, out_x), md)


def _velox_extra(meta: dict, images: list, group: h5py.Group) -> dict[str, Any]:
    optics = meta.get("Optics", {})
    binary = meta.get("BinaryResult", {})
    extra = {
        "voltage_V": _float(optics.get("AccelerationVoltage")),
        "magnification": _float(optics.get("NominalMagnification")),
        "detector": binary.get("Detector"),
        "instrument": meta.get("Instrument", {}).get("InstrumentModel"),
        "velox_image": group.name,
        "velox_other_images": [g.name for g in images if g.name != group.name],
        "velox_metadata": meta,
        "other_signals": _velox_others(group.file),
    }
    return {k: v for k, v in extra.items() if v is not None}


# Velox /Data groups that hold signals which are not images to restore
_VELOX_OTHER_KINDS = {
    "SpectrumImage": "spectrum image",
    "SpectrumStream": "spectrum image",
    "Spectrum": "spectrum",
    "Line": "spectrum",
}


def _velox_others(h5file: h5py.File) -> list[dict[str, Any]]:
    """The spectra and spectrum images beside the image, as ``io.read_all`` lists them."""
    others = []
    for kind, label in _VELOX_OTHER_KINDS.items():
        if kind not in h5file["Data"]:
            continue
        for name, group in h5file["Data"][kind].items():
            data = group.get("Data") if isinstance(group, h5py.Group) else None
            if not isinstance(data, h5py.Dataset):
                continue
            others.append(
                {
                    "index": len(others),
                    "title": f"{kind} {name}",
                    "kind": label,
                    "signal_type": "",
                    "shape": [int(n) for n in data.shape],
                    "dtype": str(data.dtype),
                    "axes": [],
                }
            )
    return others


# -- NCEM --------------------------------------------------------------------


def _find_ncem_group(h5file: h5py.File) -> h5py.Group | None:
    found: list[h5py.Group] = []

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group) and "data" in obj:
            kind = obj.attrs.get("emd_group_type")
            if kind is not None and int(np.asarray(kind).ravel()[0]) == 1:
                found.append(obj)

    h5file.visititems(visit)
    return found[0] if found else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return _text(value.ravel()[0]) if value.size else ""
    return "" if value is None else str(value)


def _ncem_unit(raw: str) -> str:
    """NCEM writes units like "[n_m]" or "[]": drop brackets and underscores."""
    return raw.strip().strip("[]").replace("_", "")


def _ncem_dim(group: h5py.Group, index: int, size: int) -> tuple[float, str, str]:
    """(step, unit, name) of axis ``index`` from dataset ``dim<index+1>``."""
    dim = group.get(f"dim{index + 1}")
    if dim is None or dim.ndim != 1 or dim.shape[0] < 2:
        return 1.0, "", ""
    values = np.asarray(dim[:2], dtype=float)
    unit = _ncem_unit(_text(dim.attrs.get("units", "")))
    return float(values[1] - values[0]), unit, _text(dim.attrs.get("name", ""))


def _read_ncem(path: str, h5file: h5py.File, group: h5py.Group) -> EMImage:
    dataset = group["data"]
    if dataset.ndim not in (2, 3):
        raise unsupported(path, f"{dataset.ndim}-D EMD data is not an image or stack", _HINT)
    dims = [_ncem_dim(group, i, n) for i, n in enumerate(dataset.shape)]
    (sy, uy, _), (sx, ux, _) = dims[-2], dims[-1]
    scale_y, out_y = spatial_to_nm(sy, uy)
    scale_x, out_x = spatial_to_nm(sx, ux)
    array = lazy(_H5Array(h5file, dataset), frame_chunks(dataset.shape, dataset.ndim - 2))
    attrs = {k: _text(v) for k, v in group.attrs.items()}
    md = spatial_axes_meta(
        path,
        "ncem-emd",
        (sy, sx),
        (uy, ux),
        ncem_group=group.name,
        ncem_attrs=attrs,
        axis_names=[name for _, _, name in dims],
    )
    if dataset.ndim == 2:
        return EMImage(array, "yx", (scale_y, scale_x), (out_y, out_x), md)
    step, unit, _ = dims[0]
    letter, step, step_unit = frame_axis(step, unit)
    return EMImage(array, letter + "yx", (step, scale_y, scale_x), (step_unit, out_y, out_x), md)


__all__ = ["HDF5_MAGIC", "read_emd"]
