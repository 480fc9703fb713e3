"""Guess the imaging modality (TEM, STEM, SEM) from a file's metadata."""

from __future__ import annotations

import re
from typing import Any

_STEM_DETECTORS = re.compile(r"(?i)\b(haadf|adf|maadf|bf-s|df4|df-s|df2|stem)\b")
_SEM_FORMATS = ("Phenom ELID",)
_TEM_CAMERAS = re.compile(
    r"(?i)(ceta|falcon|k2|k3|oneview|ultrascan|orius|us1000|us4000|bm-|eagle|flucam|rio|metro)"
)


def _walk(obj: Any, path: str = ""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}/{k}")
    elif isinstance(obj, list | tuple) and len(obj) < 64:
        for v in obj:
            yield from _walk(v, path)
    else:
        yield path, obj


def guess_modality(metadata: dict) -> str | None:
    """``"tem"``, ``"stem"``, ``"sem"`` or ``None`` (unknown) from reader metadata.

    Rules, first match wins: a DigitalMicrograph/TIA illumination or operation mode
    (``STEM``/``SCANNING`` → stem, ``TEM``/``IMAGING`` → tem); an FEI/Thermo or Zeiss
    SEM TIFF, a rosettasciio SEM ``microscope_type`` or a Phenom file → sem; the image's own
    detector (Velox ``BinaryResult/Detector``, the signal's title), then any Velox/TIA
    detector name (HAADF, ADF, BF-S... → stem; Ceta, Falcon, K2/K3, OneView,
    UltraScan, Orius... → tem); a rosettasciio TEM ``microscope_type`` → tem.

    Examples
    --------
    >>> guess_modality({"dm_tags": {"Microscope Info": {"Illumination Mode": "STEM"}}})
    'stem'
    >>> guess_modality({"calibration_source": "zeiss"})
    'sem'
    >>> guess_modality({}) is None
    True
    """
    if not isinstance(metadata, dict):
        return None
    items = [(p.lower(), v) for p, v in _walk(metadata) if isinstance(v, str)]
    for path, value in items:
        leaf = path.rsplit("/", 1)[-1]
        v = value.strip().upper()
        if leaf in ("illumination mode", "illumination_mode"):
            if "STEM" in v:
                return "stem"
            if v.startswith("TEM"):
                return "tem"
        if leaf == "operation mode" and v == "SCANNING":
            return "stem"
    if metadata.get("calibration_source") in ("fei", "zeiss"):
        return "sem"
    if metadata.get("microscope_type") == "SEM" or metadata.get("format") in _SEM_FORMATS:
        return "sem"
    # the detector that made this image (Velox's BinaryResult, the signal's title)
    # before the list of every detector the microscope has
    kind = _detector_kind(
        items, lambda p: p in ("/title", "/detector") or p.endswith("/binaryresult/detector")
    ) or _detector_kind(
        items, lambda p: p.rsplit("/", 1)[-1] in ("detector", "detectorname", "detector_name")
    )
    if kind:
        return kind
    for path, value in items:
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "operation mode" and value.strip().upper() == "IMAGING":
            return "tem"
    if metadata.get("microscope_type") == "TEM":
        return "tem"
    return None


def _detector_kind(items, where) -> str | None:
    """ "stem" or "tem" from the first detector name, at a path ``where`` accepts, that
    names a STEM detector or a TEM camera; ``None`` when none does."""
    for path, value in items:
        if where(path):
            if _STEM_DETECTORS.search(value):
                return "stem"
            if _TEM_CAMERAS.search(value):
                return "tem"
    return None
