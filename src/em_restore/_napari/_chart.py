"""The training widget's loss chart: train and validation loss per epoch (QPainter)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class TrainingCurves(QWidget):
    """Train and validation loss per epoch, drawn with QPainter.

    ``train`` and ``val`` hold ``(epoch, loss)`` points, in arrival order.
    """

    TRAIN_COLOUR = QColor(80, 160, 255)
    VAL_COLOUR = QColor(255, 150, 50)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.best_epoch: int | None = None
        self.setMinimumHeight(120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("loss per epoch: training (blue) and held-out validation (orange)")

    def clear(self) -> None:
        self.train, self.val, self.best_epoch = [], [], None
        self.update()

    def add(self, epoch: int, train: float, val: float, *, best: bool = False) -> None:
        self.train.append((int(epoch), float(train)))
        self.val.append((int(epoch), float(val)))
        if best:
            self.best_epoch = int(epoch)
        self.update()

    def paintEvent(self, _event: Any) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 52, 8, 18, 18
        box_w, box_h = max(w - left - right, 1), max(h - top - bottom, 1)
        text = self.palette().windowText().color()
        painter.setPen(QPen(text, 1))
        painter.drawRect(left, top, box_w, box_h)
        points = [p for p in self.train + self.val if np.isfinite(p[1])]
        if not points:
            painter.drawText(left + 6, top + box_h // 2, "loss curves appear after each epoch")
            return
        e0, e1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        if y1 <= y0:
            y0, y1 = y0 - 0.5 * abs(y0) - 1e-12, y1 + 0.5 * abs(y1) + 1e-12
        pad = 0.05 * (y1 - y0)
        y0, y1 = y0 - pad, y1 + pad

        def xy(epoch: int, value: float) -> QPointF:
            fx = 0.5 if e1 == e0 else (epoch - e0) / (e1 - e0)
            fy = (value - y0) / (y1 - y0)
            return QPointF(left + fx * box_w, top + (1.0 - fy) * box_h)

        painter.drawText(2, top + 10, f"{y1:.3g}")
        painter.drawText(2, top + box_h, f"{y0:.3g}")
        painter.drawText(left, h - 4, f"epoch {e0}")
        painter.drawText(left + box_w - 60, h - 4, f"epoch {e1}")
        for series, colour, label, dx in (
            (self.train, self.TRAIN_COLOUR, "train", 0),
            (self.val, self.VAL_COLOUR, "validation", 50),
        ):
            pts = [xy(e, v) for e, v in series if np.isfinite(v)]
            painter.setPen(QPen(colour, 2))
            painter.drawText(left + 6 + dx, top - 4, label)
            if len(pts) > 1:
                painter.drawPolyline(QPolygonF(pts))
            for p in pts:
                painter.drawEllipse(p, 2.0, 2.0)
        if self.best_epoch is not None:
            best = [xy(e, v) for e, v in self.val if e == self.best_epoch and np.isfinite(v)]
            if best:
                painter.setPen(QPen(self.VAL_COLOUR, 1))
                painter.drawEllipse(best[-1], 5.0, 5.0)
                painter.drawText(left + 130, top - 4, f"best: epoch {self.best_epoch}")
