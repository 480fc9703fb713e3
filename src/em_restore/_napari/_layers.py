"""Convert between :class:`em_restore.io.EMImage` and napari layer data tuples."""

from __future__ import annotations

from typing import Any

import numpy as np

from em_restore.io import EMImage

# napari has one scale per axis and no per-axis unit before 0.6; we keep the
# units in metadata too so the writer and the measurement tools can read them.


def contrast_limits_from_first_frame(image: EMImage) -> tuple[float, float] | None:
    """Robust display range from one frame only, so opening a stack stays lazy."""
    if "c" in image.axes:
        return None
    index = tuple(0 for _ in range(image.data.ndim - 2))
    frame = np.asarray(image.data[index].compute(), dtype=np.float64)
    finite = frame[np.isfinite(frame)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [0.1, 99.9])
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return (float(lo), float(hi))


def layer_data_tuple(image: EMImage, name: str) -> tuple[Any, dict[str, Any], str]:
    """napari ``(data, kwargs, "image")`` for a read file, at its physical scale."""
    rgb = "c" in image.axes
    spatial = [i for i, a in enumerate(image.axes) if a != "c"]
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(image.scale[i] for i in spatial),
        "units": tuple(_napari_unit(image.units[i]) for i in spatial),
        "axis_labels": tuple(image.axes[i] for i in spatial),
        "rgb": rgb,
        "metadata": {
            "em_restore": {
                "axes": image.axes,
                "scale": list(image.scale),
                "units": list(image.units),
                **image.metadata,
            }
        },
    }
    limits = contrast_limits_from_first_frame(image)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    return (image.data, kwargs, "image")


def _napari_unit(unit: str) -> str | None:
    """napari's units go through pint: map ours to names pint knows."""
    return {
        "nm": "nm",
        "1/nm": "1/nm",
        "s": "s",
        "pixel": "pixel",
        "frame": "pixel",
    }.get(unit, "pixel")


def current_frame_index(layer: Any, world_point: Any) -> tuple[int, ...]:
    """Index of the leading (non-yx) axes of ``layer`` shown at ``world_point``."""
    n_lead = layer.data.ndim - (3 if getattr(layer, "rgb", False) else 2)
    if n_lead <= 0:
        return ()
    data_point = np.asarray(layer.world_to_data(world_point), dtype=float)
    lead = data_point[-(n_lead + 2) : -2] if data_point.size >= n_lead + 2 else data_point[:n_lead]
    shape = layer.data.shape[:n_lead]
    return tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip(lead, shape, strict=True))


def result_layer_kwargs(source: Any, name: str, em_restore_metadata: dict[str, Any]) -> dict:
    """kwargs for a result layer that sits exactly on its source: same scale, units,
    translate and axis labels, with the source's metadata and our parameters."""
    src_meta = dict(source.metadata.get("em_restore", {}))
    kwargs: dict[str, Any] = {
        "name": name,
        "scale": tuple(source.scale),
        "translate": tuple(source.translate),
        "metadata": {
            "em_restore": {
                **{k: v for k, v in src_meta.items() if k in {"axes", "scale", "units"}},
                "source_layer": source.name,
                "source": src_meta.get("source"),
                **em_restore_metadata,
            }
        },
    }
    for attr in ("units", "axis_labels"):
        value = getattr(source, attr, None)
        if value is not None:
            kwargs[attr] = tuple(str(v) for v in value)
    return kwargs


def drop_leading_axes(kwargs: dict, n_lead: int) -> dict:
    """``kwargs`` of :func:`result_layer_kwargs` for one 2-D frame of an ``n_lead``-axes stack."""
    for key in ("scale", "translate", "units", "axis_labels"):
        if key in kwargs:
            kwargs[key] = kwargs[key][n_lead:]
    return kwargs


def layer_choices(viewer: Any, kind: str = "Image") -> list[tuple[str, Any]]:
    """``(name, layer)`` of every layer of a napari type (``"Image"``, ``"Shapes"``)."""
    import napari.layers

    cls = getattr(napari.layers, kind)
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, cls)]


def where_the_user_is(viewer: Any, kind: str = "Image") -> Any:
    """The layer a menu of ``kind`` layers should start on: the active one, else the only one.

    ``None`` when the active layer is of another kind and there are several (or no)
    layers of this kind: the menu then waits for the user's choice.
    """
    import napari.layers

    cls = getattr(napari.layers, kind)
    active = viewer.layers.selection.active
    if isinstance(active, cls):
        return active
    layers = [layer for layer in viewer.layers if isinstance(layer, cls)]
    return layers[0] if len(layers) == 1 else None


def start_where_the_user_is(combo: Any, viewer: Any, kind: str = "Image") -> None:
    """Point an empty layer menu at :func:`where_the_user_is` (a chosen layer stays)."""
    if combo.value is not None:
        return
    layer = where_the_user_is(viewer, kind)
    if layer is not None and any(layer is choice for choice in combo.choices):
        combo.value = layer


#: Operations whose results are images to restore further (another widget follows a
#: selection of them); maps, kernels, differences and previews are never followed.
RESTORATIONS = ("denoise", "deconvolve", "burst", "live")


def worth_following(layer: Any, own: str | None = None) -> bool:
    """Whether a menu follows the user's selection of ``layer``: raw data, or the
    restoration of another operation than the menu's own (``own``): a widget does not
    jump to the result it has just added, which napari makes the selected layer."""
    meta = layer.metadata.get("em_restore", {}) if isinstance(layer.metadata, dict) else {}
    if meta.get("training_preview"):
        return False
    operation = meta.get("operation")
    return operation is None or (operation in RESTORATIONS and operation != own)


def follow_selection(combo: Any, viewer: Any, own: str | None = None) -> None:
    """Point ``combo`` at the viewer's active image layer when :func:`worth_following`."""
    import napari.layers

    layer = viewer.layers.selection.active
    if not isinstance(layer, napari.layers.Image) or not worth_following(layer, own):
        return
    if layer is not combo.value and any(layer is choice for choice in combo.choices):
        combo.value = layer


def viewer_grid(viewer: Any) -> Any:
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def show_side_by_side(viewer: Any, raw: Any, result: Any) -> None:
    """Raw and result alone, side by side in a linked grid, contrast linked."""
    for layer in viewer.layers:
        layer.visible = layer is raw or layer is result
    grid = viewer_grid(viewer)
    grid.enabled = True
    grid.shape = (1, 2)
    grid.stride = 1
    if getattr(result, "contrast_limits", None) is not None and not raw.rgb:
        result.contrast_limits = raw.contrast_limits

        def _link(event: Any) -> None:
            if result in viewer.layers:
                result.contrast_limits = raw.contrast_limits

        raw.events.contrast_limits.connect(_link)
    viewer.reset_view()
