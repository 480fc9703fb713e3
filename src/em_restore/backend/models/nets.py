"""Network definitions (``torch.nn.Module`` only: no I/O, no training, no data).

Two architectures, each rebuilt from a strict, JSON-able config:

* :class:`FastDenoiser` (``"fast_denoiser"``): designed for interactive use on a
  laptop CPU. The image is folded by **pixel-unshuffle** (space-to-depth, factor
  ``r``) so every convolution runs at 1/r of the resolution with ``r²`` times the
  channels, then a small three-level U of residual blocks (further 2× pixel-unshuffle
  downsampling, pixel-shuffle upsampling: no pooling, no transposed convolutions),
  and a **pixel-shuffle** output added to the input (residual learning). About
  1 M parameters and 63 ms per 512² frame on the project's 2-core CPU.
* :class:`UNetResNet18` (``"unet_resnet18"``): the reference, the network of the
  low-dose TEM paper: a U-Net whose encoder is ResNet-18 (7×7 stem, max pool, four
  stages of two basic blocks with batch norm, 64–512 channels) and whose decoder
  upsamples by nearest neighbour + 3×3 convolutions (256, 128, 64, 32, 16 channels)
  with skip connections. About 14 M parameters. Also residual to the input here, so
  both networks learn the same thing (the noise) and train the same way.

Both take and return ``(batch, 1, rows, cols)`` float tensors of *normalised*
intensities (see :mod:`.inference`); rows and cols must be multiples of
:attr:`stride` (inference pads).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARCHITECTURES", "FastDenoiser", "FastDenoiserConfig", "UNetResNet18", "build_network"]


def _strict(cls, params: Any, where: str):
    """Build config dataclass ``cls`` from a dict, rejecting unknown or mistyped keys."""
    if not isinstance(params, dict):
        raise ValueError(f"{where} must be a JSON object; got {type(params).__name__}.")
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(names)}."
        )
    out = {}
    for key, value in params.items():
        default = getattr(cls, key, None)
        if isinstance(default, tuple):
            ok = isinstance(value, list | tuple) and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value
            )
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not ok:
            raise ValueError(f"{where}[{key!r}] must be positive integer(s); got {value!r}.")
        out[key] = value
    return cls(**out)


# --------------------------------------------------------------------------- fast
@dataclass(frozen=True)
class FastDenoiserConfig:
    """Hyper-parameters of :class:`FastDenoiser`."""

    channels: int = 32
    unshuffle: int = 4
    blocks: tuple[int, int, int] = (2, 2, 2)

    def __post_init__(self) -> None:
        if len(self.blocks) != 3:
            raise ValueError(f"blocks must have 3 entries (one per level); got {self.blocks!r}.")
        if self.unshuffle not in (1, 2, 4, 8):
            raise ValueError(f"unshuffle must be 1, 2, 4 or 8; got {self.unshuffle!r}.")


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class FastDenoiser(nn.Module):
    """Pixel-unshuffle U-Net with residual blocks, residual to the input (see module doc).

    Examples
    --------
    >>> net = FastDenoiser(FastDenoiserConfig())
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
    >>> net.stride
    16
    """

    arch: ClassVar[str] = "fast_denoiser"
    config_class: ClassVar[type] = FastDenoiserConfig

    def __init__(self, config: FastDenoiserConfig | None = None) -> None:
        super().__init__()
        cfg = config or FastDenoiserConfig()
        self.config = cfg
        c, r = cfg.channels, cfg.unshuffle
        self.stride = 4 * r
        self.head = nn.Conv2d(r * r, c, 3, padding=1)
        self.enc0 = nn.Sequential(*[_ResBlock(c) for _ in range(cfg.blocks[0])])
        self.down1 = nn.Conv2d(4 * c, 2 * c, 1)
        self.enc1 = nn.Sequential(*[_ResBlock(2 * c) for _ in range(cfg.blocks[1])])
        self.down2 = nn.Conv2d(8 * c, 4 * c, 1)
        self.enc2 = nn.Sequential(*[_ResBlock(4 * c) for _ in range(cfg.blocks[2])])
        self.up2 = nn.Conv2d(4 * c, 8 * c, 1)
        self.dec1 = _ResBlock(2 * c)
        self.up1 = nn.Conv2d(2 * c, 4 * c, 1)
        self.dec0 = _ResBlock(c)
        self.tail = nn.Conv2d(c, r * r, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # starts as the identity: output = input
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.config.unshuffle
        f0 = self.enc0(F.relu(self.head(F.pixel_unshuffle(x, r))))
        f1 = self.enc1(self.down1(F.pixel_unshuffle(f0, 2)))
        f2 = self.enc2(self.down2(F.pixel_unshuffle(f1, 2)))
        g1 = self.dec1(f1 + F.pixel_shuffle(self.up2(f2), 2))
        g0 = self.dec0(f0 + F.pixel_shuffle(self.up1(g1), 2))
        return x + F.pixel_shuffle(self.tail(F.relu(g0)), r)


# --------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class UNetResNet18Config:
    """Hyper-parameters of :class:`UNetResNet18` (defaults: the paper's network)."""

    width: int = 64
    decoder: tuple[int, int, int, int, int] = (256, 128, 64, 32, 16)

    def __post_init__(self) -> None:
        if len(self.decoder) != 5:
            raise ValueError(f"decoder must list 5 channel counts; got {self.decoder!r}.")


class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(cin + cskip, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.block(x)


class UNetResNet18(nn.Module):
    """U-Net with a ResNet-18 encoder (the low-dose TEM paper's network), residual output.

    Examples
    --------
    >>> net = UNetResNet18(UNetResNet18Config(width=8, decoder=(16, 8, 8, 8, 8)))
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
    """

    arch: ClassVar[str] = "unet_resnet18"
    config_class: ClassVar[type] = UNetResNet18Config
    stride: int = 32

    def __init__(self, config: UNetResNet18Config | None = None) -> None:
        super().__init__()
        cfg = config or UNetResNet18Config()
        self.config = cfg
        w = cfg.width
        d = cfg.decoder
        self.stem = nn.Sequential(
            nn.Conv2d(1, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        self.pool = nn.MaxPool2d(3, 2, 1)

        def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(_Basic(cin, cout, stride), _Basic(cout, cout, 1))

        self.layer1 = stage(w, w, 1)
        self.layer2 = stage(w, 2 * w, 2)
        self.layer3 = stage(2 * w, 4 * w, 2)
        self.layer4 = stage(4 * w, 8 * w, 2)
        self.up1 = _Up(8 * w, 4 * w, d[0])
        self.up2 = _Up(d[0], 2 * w, d[1])
        self.up3 = _Up(d[1], w, d[2])
        self.up4 = _Up(d[2], w, d[3])
        self.up5 = _Up(d[3], 0, d[4])
        self.head = nn.Conv2d(d[4], 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.stem(x)
        f1 = self.layer1(self.pool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        y = self.up1(f4, f3)
        y = self.up2(y, f2)
        y = self.up3(y, f1)
        y = self.up4(y, f0)
        y = self.up5(y)
        return x + self.head(y)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    FastDenoiser.arch: FastDenoiser,
    UNetResNet18.arch: UNetResNet18,
}


def build_network(arch: str, params: dict | None = None) -> nn.Module:
    """Rebuild a network from its architecture name and (strict) hyper-parameters.

    Examples
    --------
    >>> net = build_network("fast_denoiser", {"channels": 16})
    >>> net.config.channels, net.config.blocks
    (16, (2, 2, 2))
    >>> build_network("fast_denoiser", {"chanels": 16})
    Traceback (most recent call last):
    ...
    ValueError: arch_params has unknown key(s) chanels; allowed: channels, unshuffle, blocks.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}."
        )
    cls = ARCHITECTURES[arch]
    config = _strict(cls.config_class, dict(params or {}), "arch_params")
    return cls(config)


def network_params(net: nn.Module) -> dict:
    """The JSON-able hyper-parameters that :func:`build_network` takes back."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(net.config).items()}
