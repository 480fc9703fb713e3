"""Fidelity maps in the widgets: where a result is not supported by the raw counts.

Thin: the numbers are :mod:`em_restore.backend.fidelity`. Worker side,
:func:`iter_result_fidelity` checks a result against its raw data: a frame with
:func:`~em_restore.backend.fidelity.fidelity`; a stack with
:func:`~em_restore.backend.fidelity.fidelity_lazy` (the noise model estimated once,
on the frame on screen) computed into a layer that fills frame by frame
(:mod:`._fill`), so the viewer never computes a map itself. Main-thread side,
:func:`add_fidelity_layer` shows the map as a colour overlay on the result (same
scale and translate), and :func:`record_fidelity` puts the summary into a layer's
``metadata["em_restore"]["fidelity"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox

from em_restore import __version__
from em_restore._napari._fill import Filling, Streaming
from em_restore._napari._layers import result_layer_kwargs
from em_restore.backend.denoise import Progress

#: How a map is drawn over its result: bright where the counts do not support it.
FIDELITY_LOOK: dict[str, Any] = {
    "colormap": "magma",
    "blending": "additive",
    "contrast_limits": (0.0, 1.0),
    "opacity": 0.6,
}

Forward = Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]] | None


def fidelity_checkbox(value: bool) -> CheckBox:
    """The "fidelity map" option of a restoration widget."""
    box = CheckBox(text="fidelity map", value=value)
    box.tooltip = (
        "after the result: a map of where it is not supported by the raw counts "
        "(0.5 = flagged, 1 = not supported), with its summary in the metadata"
    )
    return box


def _forward_at(forward: Forward, flat: int) -> Callable | None:
    return forward[flat] if isinstance(forward, list | tuple) else forward


def frame_summary(raw2d, restored2d, noise=None, *, modality=None, forward=None) -> Any:
    """In a worker: :class:`~em_restore.backend.fidelity.Fidelity` of one frame."""
    from em_restore.backend.fidelity import fidelity

    return fidelity(
        np.asarray(raw2d, dtype=np.float64),
        np.asarray(restored2d, dtype=np.float64),
        noise,
        modality=modality,
        forward=forward,
    )


def iter_result_fidelity(
    raw: Any,
    restored: Any,
    index: tuple[int, ...],
    show: Callable[[Filling], Any],
    *,
    modality: str | None = None,
    forward: Forward = None,
) -> Generator[Any, None, tuple[Any, dict]]:
    """In a worker: ``(map, summary)`` of ``restored`` against ``raw`` (same shape).

    A frame: the map is a numpy array. A stack: the map is a :class:`Filling`, shown by
    ``show`` (called on the main thread, see :class:`Streaming`) while it fills; the noise
    model is estimated on frame ``index`` (the one on screen), whose full summary
    (regions, tests) is returned with every frame's flagged area. ``forward``: one
    callable, or one per frame in C order (burst: each window's motion blur).
    """
    from em_restore.backend.fidelity import FLAG_LEVEL, fidelity_lazy, fidelity_noise

    if len(raw.shape) == 2:
        yield Progress(0, 1, "checking fidelity")
        f = frame_summary(raw, restored, modality=modality, forward=_forward_at(forward, 0))
        return f.map, f.summary
    lead = tuple(int(n) for n in raw.shape[:-2])
    index = tuple(index) if len(index) == len(lead) else tuple(n // 2 for n in lead)
    yield Progress(0, 1, "estimating the noise")
    raw_frame = np.asarray(raw[index], dtype=np.float64)
    noise = fidelity_noise(raw_frame, modality=modality)
    flat = int(np.ravel_multi_index(index, lead))
    f = frame_summary(
        raw_frame, restored[index], noise, modality=modality, forward=_forward_at(forward, flat)
    )
    lazy = fidelity_lazy(raw, restored, noise, modality=modality, forward=forward)
    filling = Filling(lazy)
    yield Streaming(filling, show)
    yield from filling.run("frames checked")
    flagged = [
        round(float((np.asarray(filling.array[i]) >= FLAG_LEVEL).mean()), 5)
        for i in np.ndindex(*lead)
    ]
    summary = {
        **f.summary,
        "frame": list(index),
        "stack": {
            "flagged_fraction": round(float(np.mean(flagged)), 5),
            "frames_flagged": flagged,
        },
    }
    return filling, summary


def fidelity_layer_kwargs(result: Any, summary: dict | None, name: str | None = None) -> dict:
    """kwargs of the map layer of ``result``: on it, drawn as :data:`FIDELITY_LOOK`."""
    meta = result.metadata.get("em_restore", {})
    record: dict[str, Any] = {
        "operation": "fidelity",
        "restored_layer": result.name,
        "raw_layer": meta.get("source_layer"),
        "em_restore_version": __version__,
    }
    if summary is not None:
        record["fidelity"] = summary
    kwargs = result_layer_kwargs(result, name or f"{result.name} fidelity", record)
    kwargs["metadata"]["em_restore"]["source_layer"] = result.name
    kwargs.update(FIDELITY_LOOK)
    return kwargs


def add_fidelity_layer(viewer: Any, result: Any, fmap: Any, summary: dict | None) -> Any:
    """Add (or replace) the map layer ``"<result> fidelity"`` over ``result``."""
    kwargs = fidelity_layer_kwargs(result, summary)
    if kwargs["name"] in viewer.layers:
        viewer.layers.remove(kwargs["name"])
    return viewer.add_image(fmap, **kwargs)


def show_stack_map(viewer: Any, result: Filling, fmap: Any) -> Any:
    """Main thread, as a stack's map starts filling: its result is complete; add the map."""
    result.mark_complete()
    return add_fidelity_layer(viewer, result.layer, fmap, None)


def finish_fidelity(viewer: Any, result: Any, fmap: Any, summary: dict) -> Any:
    """Main thread, at the job's end: the map layer (added now for a frame; a stack's,
    already filling, marked complete) with ``summary`` in its and ``result``'s metadata."""
    if isinstance(fmap, Filling):
        fmap.mark_complete()
        layer = fmap.layer
        record_fidelity(layer, summary)
    else:
        layer = add_fidelity_layer(viewer, result, fmap, summary)
    record_fidelity(result, summary)
    return layer


def record_fidelity(layer: Any, summary: dict, **extra: Any) -> None:
    """``layer.metadata["em_restore"]["fidelity"] = summary`` (and ``extra`` beside it)."""
    meta = dict(layer.metadata)
    record = dict(meta.get("em_restore", {}))
    record["fidelity"] = summary
    record.update(extra)
    meta["em_restore"] = record
    layer.metadata = meta


def summary_line(summary: dict) -> str:
    """One line: flagged area, χ² ratio, the worst region."""
    frac = summary.get("flagged_fraction", 0.0)
    parts = [f"flagged {100 * frac:.1f} % of the area"]
    if summary.get("chi2_ratio") is not None:
        parts.append(f"χ² ratio {summary['chi2_ratio']:.3f}")
    regions = summary.get("regions") or []
    if regions:
        y0, x0, y1, x1 = regions[0]["bbox"]
        parts.append(
            f"worst region {y1 - y0}×{x1 - x0} px at (y {y0}, x {x0}), {regions[0]['test']} test"
        )
    else:
        parts.append("no flagged region")
    return "; ".join(parts)
