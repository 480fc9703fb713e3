"""Deep restoration models: networks, model files and registry, inference, training.

Importing this package imports torch; the rest of ``em_restore`` does not.

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

from .inference import (
    ModelPlan,
    iter_predict,
    plan_model,
    predict,
    predict_frame,
    predict_lazy,
    select_device,
)
from .nets import ARCHITECTURES, FastDenoiser, UNetResNet18, build_network
from .store import (
    LoadedModel,
    ModelConfig,
    ModelEntry,
    ModelError,
    default_model_name,
    list_models,
    load_model,
    save_model,
    user_model_dir,
)
from .training import SimulationRecipe, TrainConfig, TrainResult, iter_train, train

__all__ = [
    "ARCHITECTURES",
    "FastDenoiser",
    "LoadedModel",
    "ModelConfig",
    "ModelEntry",
    "ModelError",
    "ModelPlan",
    "SimulationRecipe",
    "TrainConfig",
    "TrainResult",
    "UNetResNet18",
    "build_network",
    "default_model_name",
    "iter_predict",
    "iter_train",
    "list_models",
    "load_model",
    "plan_model",
    "predict",
    "predict_frame",
    "predict_lazy",
    "save_model",
    "select_device",
    "train",
    "user_model_dir",
]
