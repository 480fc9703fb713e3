"""npe2 writer contribution: an image layer to a calibrated TIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from em_restore import io


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write ``data`` to ``path`` as TIFF with the layer's pixel size.

    napari's save dialog has already asked the user about replacing an
    existing file, so an existing path is overwritten, except the file the
    layer was read from: raw data is never replaced. That refusal is a
    ``FileExistsError`` rather than a ``ValueError`` because napari reads a
    writer's ``ValueError`` as "not my format" and would hide the message.
    """
    ours = (meta.get("metadata") or {}).get("em_restore", {})
    source = ours.get("source")
    if source and Path(source).resolve() == Path(path).resolve():
        raise FileExistsError(
            f"refusing to overwrite the raw file {path!r} the layer was read from; "
            "choose another file name"
        )
    scale = tuple(meta.get("scale") or (1.0, 1.0))
    units = list(ours.get("units") or [])
    unit = units[-1] if units else "nm"
    ndim = getattr(data, "ndim", 2)
    axes = ours.get("axes") or ("tyx" if ndim == 3 else "yx")[-ndim:]
    written = io.write_tiff(
        path,
        data,
        pixel_size_nm=(float(scale[-2]), float(scale[-1])),
        unit=unit,
        axes=axes,
        metadata={"name": meta.get("name")},
        overwrite=True,
    )
    return [str(written)]
