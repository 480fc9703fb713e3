"""What the widgets share about models: the user's models changed, and the loaded ones.

The training widget emits :data:`user_models` ``.changed`` when a run ends (finished,
cancelled or failed after saving a best epoch); the Denoise and Burst widgets
listen to refresh their model menus, and :data:`MODEL_CACHE` forgets the models
loaded so far (a retrained model with the same name must be read again).
:func:`cached_model_plan` loads a model once for every widget (Denoise, Deconvolve).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from psygnal import Signal


class UserModels:
    """Holder of the :attr:`changed` signal (one module-level instance, :data:`user_models`)."""

    changed = Signal()


#: Emit ``user_models.changed()`` after saving a model under ``user_model_dir()``.
user_models = UserModels()

#: Loaded model plans by ``(model, modality)``, shared by the widgets.
MODEL_CACHE: dict[tuple[str | None, str | None], Any] = {}


def forget_models() -> None:
    """A model was (re)trained: loaded models may be stale, read them again."""
    MODEL_CACHE.clear()


user_models.changed.connect(forget_models)


def cached_model_plan(
    spec: str | None,
    modality: str | None,
    file_metadata: dict[str, Any],
    ensemble: int | None = None,
) -> Generator[Any, None, Any]:
    """In a worker: ``plan_model(spec, ...)`` loaded once, then cached (shared by widgets).

    The modality is the one chosen, else the one found in the layer's file metadata;
    the cache is emptied when a model is (re)trained. ``ensemble``: flips/rotations
    averaged (``None``: the model's own).
    """
    from em_restore.backend._progress import Progress
    from em_restore.backend.models import plan_model
    from em_restore.io import guess_modality

    yield Progress(0, 1, "loading model")
    key = (spec, modality or guess_modality(file_metadata))
    plan = MODEL_CACHE.get(key)
    if plan is None:
        plan = plan_model(spec, modality=modality, metadata=file_metadata)
        MODEL_CACHE[key] = plan
    return plan.fresh(ensemble)  # the model is shared; the noise model is this layer's own


#: The method menu's entries for models (the Denoise widget's).
DEFAULT_MODEL = "default model"
MODEL_PREFIX = "model: "


def model_plan(request: dict[str, Any]) -> Generator[Any, None, Any]:
    """In the worker: the model chosen in the method menu (:func:`cached_model_plan`).

    ``request["ensemble"]``: flips/rotations averaged (absent or ``None``: the
    model's own). The default model is compared with the classical plan
    (``request["compare"]``, default on) and checked against the counts (a new
    GuardedPlan per job: it gathers that job's decisions), as in the CLI.
    """
    method = request["method"]
    spec = None if method == DEFAULT_MODEL else method[len(MODEL_PREFIX) :]
    plan = yield from cached_model_plan(
        spec, request["modality"], request["file_metadata"], request.get("ensemble")
    )
    if method == DEFAULT_MODEL:
        from em_restore.backend.models.guarded import GuardedPlan

        plan = GuardedPlan(plan, compare=request.get("compare", True))
    return plan
