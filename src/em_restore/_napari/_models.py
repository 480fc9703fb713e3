"""One shared signal: the user's models changed (a training run saved or replaced one).

The training widget emits :data:`user_models` ``.changed`` when a run ends (finished,
cancelled or failed after saving a best epoch); the Denoise and Burst widgets
listen to refresh their model menus, and the Denoise module forgets the models it
has loaded (a retrained model with the same name must be read again).
"""

from __future__ import annotations

from psygnal import Signal


class UserModels:
    """Holder of the :attr:`changed` signal (one module-level instance, :data:`user_models`)."""

    changed = Signal()


#: Emit ``user_models.changed()`` after saving a model under ``user_model_dir()``.
user_models = UserModels()
