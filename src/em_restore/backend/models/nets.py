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

* :class:`BurstDenseUNet` (``"burst_dense_unet"``): the burst deblurring network
  (one shared-weight Dense U-Net per frame, max pooling across frames after every
  block, nearest upsampling + convolution); takes ``(batch, frames, rows, cols)``
  registered frames and their coverage masks (see :mod:`.burst`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ARCHITECTURES",
    "BurstDenseUNet",
    "FastDenoiser",
    "FastDenoiserConfig",
    "UNetResNet18",
    "build_network",
]


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


# --------------------------------------------------------------------------- burst
@dataclass(frozen=True)
class BurstDenseUNetConfig:
    """Hyper-parameters of :class:`BurstDenseUNet`."""

    channels: int = 32
    growth: int = 16
    layers: int = 2
    levels: int = 3
    unshuffle: int = 4
    in_channels: int = 5

    def __post_init__(self) -> None:
        if self.in_channels not in (2, 4, 5):
            raise ValueError(f"in_channels must be 2, 4 or 5; got {self.in_channels!r}.")
        if not 2 <= self.levels <= 4:
            raise ValueError(f"levels must be 2, 3 or 4; got {self.levels!r}.")
        if self.unshuffle not in (1, 2, 4):
            raise ValueError(f"unshuffle must be 1, 2 or 4; got {self.unshuffle!r}.")


MOTION_SCALE = 8.0  # px/frame: velocities enter the burst network divided by this


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.1)  # no dead units: plain ReLU stalls this net at start


def _frame_max(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Max over the frames of each burst, broadcast back: ``(B*T, C, H, W)``."""
    bt, c, h, w = x.shape
    m = x.reshape(bt // frames, frames, c, h, w).amax(dim=1, keepdim=True)
    return m.expand(-1, frames, -1, -1, -1).reshape(bt, c, h, w)


class _DenseBlock(nn.Module):
    """Densely connected 3×3 convolutions, then a 1×1 transition to ``cout``."""

    def __init__(self, cin: int, growth: int, layers: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(cin + i * growth, growth, 3, padding=1) for i in range(layers)
        )
        self.transition = nn.Conv2d(cin + layers * growth, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(_act(conv(torch.cat(feats, dim=1))))
        return _act(self.transition(torch.cat(feats, dim=1)))


class BurstDenseUNet(nn.Module):
    """Permutation-invariant burst network: shared-weight Dense U-Nets exchanging maxima.

    Every frame of a burst goes through the same Dense U-Net (shared weights). The
    input of every block is the frame's own features concatenated with their
    **maximum over the frames** of the burst (global max pooling across frames), so
    the copies exchange information while the result stays independent of the
    frames' order and of their number. Encoder: pixel-unshuffle (``unshuffle``×,
    so the convolutions run at reduced resolution) of the frame and its coverage
    mask, then ``levels`` dense blocks separated by 2× max pooling
    (channels ``c, 2c, 4c…``). Decoder: **nearest-neighbour upsampling + 3×3
    convolution** (no transposed convolutions, no grid artefacts), skip
    connections, dense blocks with the same cross-frame max. Head: the max and the
    mean over frames, a 3×3 convolution and pixel-shuffle back to full resolution, added to
    the masked mean of the frames (residual learning; starts as that mean).

    ``forward(frames, masks, motion, base)`` takes ``(B, T, H, W)`` normalised
    frames, ``(B, T, H, W)`` masks (1 where the frame covers the pixel), with
    ``in_channels >= 4`` each frame's stage velocity ``(B, T, 2)`` in px/frame (from
    the registration; it tells the network the direction and length of the motion
    blur; given per frame, it travels with its frame, so the result still does not
    depend on the order) and a ``(B, 1, H, W)`` **base** estimate the output is a
    residual over (default: the masked mean of the frames; the bundled model uses
    the classical multi-frame Wiener deconvolution, itself symmetric in the
    frames), which ``in_channels = 5`` also feeds to every copy. Returns
    ``(B, 1, H, W)``; ``H`` and ``W`` must be multiples of :attr:`stride`.

    Examples
    --------
    >>> net = BurstDenseUNet(BurstDenseUNetConfig(channels=8, growth=4, unshuffle=2))
    >>> x = torch.rand(2, 5, 32, 32)
    >>> v = torch.rand(2, 5, 2)
    >>> y = net(x, torch.ones_like(x), v)
    >>> y.shape, net.stride
    (torch.Size([2, 1, 32, 32]), 8)
    >>> order = [4, 2, 0, 1, 3]
    >>> bool(torch.allclose(net(x[:, order], torch.ones_like(x), v[:, order]), y, atol=1e-6))
    True
    """

    arch: ClassVar[str] = "burst_dense_unet"
    config_class: ClassVar[type] = BurstDenseUNetConfig

    def __init__(self, config: BurstDenseUNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or BurstDenseUNetConfig()
        self.config = cfg
        c, g, n, lv = cfg.channels, cfg.growth, cfg.layers, cfg.levels
        widths = [c * 2**i for i in range(lv)]
        r = cfg.unshuffle
        self.stride = r * 2 ** (lv - 1)
        self.head = nn.Conv2d(cfg.in_channels * r * r, c, 3, padding=1)
        self.enc = nn.ModuleList()
        cin = c
        for wd in widths:
            self.enc.append(_DenseBlock(2 * cin, g, n, wd))
            cin = wd
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(lv - 2, -1, -1):
            self.up.append(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1))
            self.dec.append(_DenseBlock(3 * widths[i], g, n, widths[i]))
        self.tail = nn.Conv2d(2 * c, r * r, 3, padding=1)
        nn.init.normal_(self.tail.weight, std=1e-3)  # starts close to the masked mean
        nn.init.zeros_(self.tail.bias)

    def forward(
        self,
        frames: torch.Tensor,
        masks: torch.Tensor,
        motion: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, h, w = frames.shape
        m = masks.to(frames.dtype)
        if base is None:  # the masked mean of the frames
            base = (frames * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1.0)
        chans = [frames, m]
        if self.config.in_channels >= 4:
            if motion is None:
                motion = frames.new_zeros(b, t, 2)
            mv = (motion.to(frames.dtype) / MOTION_SCALE)[..., None, None]
            chans += [mv[:, :, 0].expand(b, t, h, w), mv[:, :, 1].expand(b, t, h, w)]
        if self.config.in_channels == 5:
            chans.append(base.expand(b, t, h, w))
        x = torch.stack(chans, dim=2).reshape(b * t, len(chans), h, w)
        r = self.config.unshuffle
        x = _act(self.head(F.pixel_unshuffle(x, r)))
        skips = []
        for i, block in enumerate(self.enc):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(torch.cat([x, _frame_max(x, t)], dim=1))
            skips.append(x)
        for up, block, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            x = _act(up(F.interpolate(x, scale_factor=2, mode="nearest")))
            x = block(torch.cat([x, skip, _frame_max(x, t)], dim=1))
        c, hh, ww = x.shape[1:]
        pooled = x.reshape(b, t, c, hh, ww).amax(dim=1)
        avg = x.reshape(b, t, c, hh, ww).mean(dim=1)
        return base + F.pixel_shuffle(self.tail(torch.cat([pooled, avg], dim=1)), r)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    FastDenoiser.arch: FastDenoiser,
    UNetResNet18.arch: UNetResNet18,
    BurstDenseUNet.arch: BurstDenseUNet,
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
