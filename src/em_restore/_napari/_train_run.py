"""One run of the training widget: its request, its generator in the worker, what it
has saved, and how its events show (loss curves, preview layer, status line)."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np

from em_restore._napari._models import user_models

PREVIEW_NAME = "training preview"


def training_data(request: dict[str, Any]) -> Any:
    """In the worker: read the pixels (a dask layer is computed here) and build the
    dataset (pairs registered, images simulated) that :func:`iter_train_model` consumes."""
    from em_restore.backend.models.datasets import training_data as build

    return build(
        request["mode"],
        request["noisy"],
        request["clean"],
        task=request["task"],
        modality=request["modality"],
        dose=request["dose"],
        frames=request["frames"],
        seed=request["config"]["seed"],
    )


def epoch_status(event: Any) -> str:
    if event.val_psnr is not None:
        score = f"val PSNR {event.val_psnr:.2f} dB"
        if event.val_ssim is not None:
            score += f", SSIM {event.val_ssim:.3f}"
    else:
        score = f"val loss {event.val_loss:.4g}"
    return (
        f"Train: epoch {event.epoch}/{event.epochs} — {score}; best epoch "
        f"{event.best_epoch}; ETA {event.eta}"
    )


def result_status(name: str, result: Any) -> str:
    score = ""
    if result.best_psnr is not None:
        score = f", val PSNR {result.best_psnr:.2f} dB"
        if result.input_psnr is not None:
            score += f" (input {result.input_psnr:.2f} dB)"
    return (
        f"Train: done — {name!r}, {result.origin()}, best epoch {result.best_epoch}{score}; "
        f"stopped: {result.stop_reason}"
    )


class TrainRun:
    """A run started by the training widget (a request from :mod:`._train_form`)."""

    def __init__(self, request: dict[str, Any]) -> None:
        from em_restore.backend.models.store import CONFIG_FILE

        self.request = request
        self.name, self.folder = request["name"], request["folder"]
        self.gen: Any = None
        self.result: Any = None
        # a resumed run continues a saved model: it is there from the start
        self.saved = bool(request["resume"] and (self.folder / CONFIG_FILE).is_file())
        self.epochs_seen = 0
        self.last_step_status = 0.0

    def work(self) -> Generator[Any, None, Any]:
        """The worker: read the images, build the dataset, train into the model folder."""
        from em_restore.backend._progress import Progress
        from em_restore.backend.models.fit import FitConfig, iter_train_model

        r = self.request
        yield Progress(0, 1, "reading images")
        data = training_data(r)
        simulated = r["mode"] == "simulated" and r["task"] == "denoise"
        self.gen = iter_train_model(
            FitConfig(**r["config"]),
            data,
            self.folder,
            name=self.name,
            modalities=(r["modality"],) if simulated else None,
            modality=r["modality"],
            overwrite=r["overwrite"],
            resume=r["resume"],
            device=r["device"],
        )
        return (yield from self.gen)

    def event(self, w: Any, event: Any) -> None:
        """An event of this run, on the main thread, shown in the widget ``w``."""
        from em_restore.backend.models.fit_config import Epoch
        from em_restore.backend.models.loop import TrainStep

        if isinstance(event, Epoch):
            self.epochs_seen += 1
            if event.best:
                self.saved = True  # the backend saved it before yielding the event
        if not w._alive or self is not w._run:
            return
        if isinstance(event, Epoch):
            w.curves.add(event.epoch, event.train_loss, event.val_loss, best=event.best)
        job = w.job
        if job is None or job.cancelled or self.result is not None or not job.running:
            return  # stale: the run was cancelled or has ended
        if isinstance(event, Epoch):
            self.show_preview(w, event)
            w._set_status(epoch_status(event))
        elif isinstance(event, TrainStep) and self.epochs_seen == 0:
            now = time.monotonic()
            if now - self.last_step_status > 0.2 or event.step == event.total:
                self.last_step_status = now
                w._set_status(f"Train: step {event.step}/{event.total}, loss {event.loss:.4g}")

    def show_preview(self, w: Any, event: Any) -> None:
        if event.preview is None:
            return
        preview = np.asarray(event.preview, dtype=np.float32)
        meta = {
            "em_restore": {"training_preview": True, "model": self.name, "epoch": int(event.epoch)}
        }
        layer = w.preview_layer
        if layer is not None and layer in w.viewer.layers:
            layer.data = preview
            layer.metadata = meta
            layer.reset_contrast_limits()
        else:
            w.preview_layer = w.viewer.add_image(preview, name=PREVIEW_NAME, metadata=meta)

    def cancel_message(self) -> str:
        if self.saved:
            return f"Train cancelled; the best epoch so far is kept in {self.folder}"
        return "Train cancelled before any epoch ended; no model was saved"

    def finished(self, w: Any) -> None:
        """The worker has stopped (done, cancelled or failed): release it, list the model."""
        if self.gen is not None:
            self.gen.close()  # a cancelled run is left suspended: run its clean-up now
            self.gen = None
        job, result = w.job, self.result
        if w._alive and self is w._run:
            if result is not None:
                w._set_status(result_status(self.name, result))
            elif job is not None and job.cancelled:
                kept = f"best epoch kept as {self.name!r}" if self.saved else "nothing saved"
                w._set_status(f"Train: cancelled; {kept}")
        if result is not None:
            from napari.utils.notifications import show_info

            show_info(f"Train: model {self.name!r} saved in {self.folder}")
        if result is not None or self.saved:
            user_models.changed.emit()
