"""Deep restoration models: networks, model files and registry, inference, training.

The names below are loaded on first use (PEP 562), so importing a torch-free
submodule (:mod:`.fit_config`, :mod:`.normalise`) does not import torch; the
networks, the store, inference and training do.

* :mod:`.nets`: ``FastDenoiser`` (the CPU-fast default) and ``UNetResNet18`` (the
  low-dose TEM paper's reference), rebuilt from strict configs;
* :mod:`.store`: safetensors + JSON model folders, the registry of bundled and
  user models, :func:`load_model`;
* :mod:`.inference`: tiled, blended, normalised prediction on frames, stacks and
  dask arrays;
* :mod:`.training`: reproducible training of the bundled models on the simulator;
* :mod:`.datasets` and :mod:`.fit`: training on the user's own data (paired,
  self-supervised, simulated from their clean images, burst), as a generator of
  typed events that writes a model folder.
"""

from importlib import import_module

#: public name -> the submodule that defines it
_EXPORTS = {
    **dict.fromkeys(
        (
            "ModelPlan",
            "iter_predict",
            "plan_model",
            "predict",
            "predict_frame",
            "predict_lazy",
            "select_device",
        ),
        ".inference",
    ),
    **dict.fromkeys(("ARCHITECTURES", "FastDenoiser", "UNetResNet18", "build_network"), ".nets"),
    **dict.fromkeys(
        (
            "LoadedModel",
            "ModelConfig",
            "ModelEntry",
            "ModelError",
            "default_model_name",
            "list_models",
            "load_model",
            "save_model",
            "user_model_dir",
        ),
        ".store",
    ),
    **dict.fromkeys(
        ("SimulationRecipe", "TrainConfig", "TrainResult", "iter_train", "train"), ".training"
    ),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
