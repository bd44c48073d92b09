"""Faces GAN: a DCGAN-style generator with a small mapping network, and its discriminator.

Generator: z -> mapping MLP -> w -> 4x4 feature map -> (upsample, 3x3 conv, pixel norm, leaky ReLU) per
octave -> RGB. Pixel norm (ProGAN) instead of batch norm keeps every image independent of the rest of
its batch, so a seed gives the same face whatever the batch size. Truncation moves w toward `w_avg`,
the mean of w over many latents. The discriminator mirrors it (with minibatch std, R1 in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genlib.errors import BadConfig, BadInput
from genlib.models.base import GenlibModel

MAX_IMAGES = 256  # per generate() call
MAX_SEED = 2**63 - 1


@dataclass
class GANConfig:
    resolution: int = 64  # output side in pixels, a power of two >= 8
    z_dim: int = 128  # latent drawn from N(0, I)
    w_dim: int = 128  # mapping network output
    mapping_layers: int = 2
    channels: int = 32  # channels at full resolution; doubled per octave down, capped at max_channels
    max_channels: int = 256

    def channels_at(self, res: int) -> int:
        return min(self.max_channels, self.channels * (self.resolution // res))


def check_image_config(cls: type, d: dict[str, Any], limits: dict[str, int]) -> Any:
    """Build an all-integer image-model config dataclass from config.json, naming any bad field.

    Shared by the GAN and the VAE: integer fields, a power-of-two `resolution`, and [1, limit] ranges."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in d.items() if k in names}
    for k, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool):
            raise BadConfig(f"config.json: {k} must be an integer, got {v!r}")
    cfg = cls(**values)
    r = cfg.resolution
    if r < 8 or r > 1024 or r & (r - 1):
        raise BadConfig(f"config.json: resolution must be a power of two in [8, 1024], got {r}")
    for k, hi in limits.items():
        v = getattr(cfg, k)
        if not 1 <= v <= hi:
            raise BadConfig(f"config.json: {k}={v} is outside [1, {hi}]")
    return cfg


def _check_config(d: dict[str, Any]) -> GANConfig:
    limits = {"z_dim": 4096, "w_dim": 4096, "mapping_layers": 16, "channels": 4096, "max_channels": 4096}
    return check_image_config(GANConfig, d, limits)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit RMS (ProGAN); per sample, no batch statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm = PixelNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class Generator(GenlibModel):
    """z (or w) -> RGB image in [-1, 1]."""

    model_type = "genlib-gan"
    task = "faces"
    config_class = GANConfig

    def __init__(self, config: GANConfig) -> None:
        super().__init__(config)
        c = config
        layers: list[nn.Module] = [PixelNorm()]
        for i in range(c.mapping_layers):
            layers += [nn.Linear(c.z_dim if i == 0 else c.w_dim, c.w_dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*layers)
        c4 = c.channels_at(4)
        self.stem = nn.Linear(c.w_dim, c4 * 16)
        self.stem_norm = PixelNorm()
        blocks = []
        res = 4
        while res < c.resolution:
            blocks.append(UpBlock(c.channels_at(res), c.channels_at(res * 2)))
            res *= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.Conv2d(c.channels_at(c.resolution), 3, 3, padding=1)
        # Mean of w over many latents (set by the trainer); the centre that truncation pulls toward.
        self.register_buffer("w_avg", torch.zeros(c.w_dim))
        init_weights(self)

    @classmethod
    def config_from_dict(cls, d: dict[str, Any]) -> GANConfig:
        return _check_config(d)

    def synthesis(self, w: torch.Tensor) -> torch.Tensor:
        x = self.stem(w).view(w.shape[0], -1, 4, 4)
        x = F.leaky_relu(self.stem_norm(x), 0.2)
        for block in self.blocks:
            x = block(x)
        return torch.tanh(self.to_rgb(x))

    def forward(self, z: torch.Tensor, truncation: float | list[float] = 1.0) -> torch.Tensor:
        """Truncation ψ is one number or one per row (so a batch can mix users' settings)."""
        w = self.mapping(z)
        psi = torch.as_tensor(truncation, dtype=w.dtype, device=w.device)
        psi = psi.reshape(-1, 1) if psi.ndim else psi
        # Always applied, even for ψ = 1, so every path gives bit-identical images for a seed.
        w = self.w_avg + psi * (w - self.w_avg)
        return self.synthesis(w)

    # ----- generation API -----
    def latents(self, seeds: list[int]) -> torch.Tensor:
        """One z per seed, each from its own CPU generator: a seed's face does not depend on the batch."""
        zs = [torch.randn(self.config.z_dim, generator=torch.Generator().manual_seed(s)) for s in seeds]
        return torch.stack(zs)

    @torch.no_grad()
    def images_from_latents(self, z: torch.Tensor, truncation: float | list[float] = 1.0) -> list[Image.Image]:
        x = self(z.to(self.device, self.dtype), truncation=truncation)
        return tensor_to_pil(x)

    def generate(self, n: int = 1, seed: int = 0, truncation: float = 1.0) -> list[Image.Image]:
        """`n` faces for seeds seed, seed+1, ...; truncation ψ in [0, 1] (0 = the mean face)."""
        check_generate_args(n, seed, truncation)
        return self.images_from_latents(self.latents(list(range(seed, seed + n))), truncation)

    def interpolate(self, seed_a: int, seed_b: int, frames: int = 16, truncation: float = 1.0) -> list[Image.Image]:
        """Frames along the great circle (slerp) between the two seeds' latents z; ends are the seeds' faces."""
        check_generate_args(1, seed_a, truncation)
        check_generate_args(1, seed_b, truncation)
        if not isinstance(frames, int) or isinstance(frames, bool) or not 2 <= frames <= MAX_IMAGES:
            raise BadInput(f"frames must be an integer in [2, {MAX_IMAGES}], got {frames!r}")
        za, zb = self.latents([seed_a, seed_b])
        ts = torch.linspace(0, 1, frames)
        z = torch.stack([slerp(za, zb, float(t)) for t in ts])
        z[0], z[-1] = za, zb  # exact endpoints
        return self.images_from_latents(z, truncation)


def init_weights(module: nn.Module) -> None:
    """He init for leaky-ReLU nets and zero biases: PyTorch's default init shrinks the signal each layer, so
    a deep generator starts out ignoring z and collapses to one image."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.device.type != "meta":
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents live near a sphere, so this keeps their norm."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1, 1)
    omega = torch.acos(cos)
    if omega.abs() < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def check_generate_args(n: Any, seed: Any, truncation: Any) -> None:
    """Clear errors for the arguments people get wrong."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise BadInput(f"n must be an integer in [1, {MAX_IMAGES}], got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED - n:
        raise BadInput(f"seed must be an integer in [0, 2**63 - 1 - n], got {seed!r}")
    if not isinstance(truncation, (int, float)) or isinstance(truncation, bool) or not 0.0 <= truncation <= 1.0:
        raise BadInput(f"truncation must be a number in [0, 1], got {truncation!r}")
    if math.isnan(float(truncation)):
        raise BadInput("truncation must be a number in [0, 1], got nan")


def tensor_to_pil(x: torch.Tensor) -> list[Image.Image]:
    """[-1, 1] NCHW -> PIL RGB images (round to nearest)."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a, "RGB") for a in x]


class MinibatchStd(nn.Module):
    """Append the batch's feature standard deviation as a channel, so D can see a collapsed batch (ProGAN)."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group, n)
        if n % g:
            g = 1
        y = x.float().reshape(g, -1, c, h, w).std(dim=0, unbiased=False).mean(dim=(1, 2, 3))  # n/g
        y = y.repeat(g).reshape(n, 1, 1, 1).expand(n, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)


class Discriminator(nn.Module):
    """Image -> realness logit (training only, never shipped): strided convs, minibatch std, linear head.

    Regularised by the R1 gradient penalty in the trainer rather than by spectral norm, which trained
    too slowly at this size on a CPU budget.
    """

    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        c = config
        layers: list[nn.Module] = [nn.Conv2d(3, c.channels_at(c.resolution), 3, padding=1), nn.LeakyReLU(0.2)]
        res = c.resolution
        while res > 4:
            layers += [nn.Conv2d(c.channels_at(res), c.channels_at(res // 2), 4, stride=2, padding=1)]
            layers += [nn.LeakyReLU(0.2)]
            res //= 2
        self.features = nn.Sequential(*layers)
        self.mbstd = MinibatchStd()
        c4 = c.channels_at(4)
        self.conv4 = nn.Conv2d(c4 + 1, c4, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(c4 * 16, c4), nn.LeakyReLU(0.2), nn.Linear(c4, 1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv4(self.mbstd(self.features(x))), 0.2)
        return self.head(x.flatten(1)).squeeze(1)
