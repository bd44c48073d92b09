"""Multi-scale sliced Wasserstein distance (Karras et al. 2018, "Progressive Growing of GANs", sec. 5).

Each image set becomes a Laplacian pyramid; at every level, 7x7 RGB patches are sampled, normalised per
channel, and the two sets' patch distributions compared by the sliced Wasserstein distance (random
projections, sorted, mean absolute difference). Reported x1e3 per level and averaged, as in the paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_GAUSS = torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64)
_GAUSS = (_GAUSS[:, None] * _GAUSS[None, :]) / 256.0


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = _GAUSS.to(x.dtype).expand(x.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Finest first; the last level is the low-pass residual."""
    out = []
    for _ in range(levels - 1):
        down = _blur(x)[:, :, ::2, ::2]
        up = F.interpolate(down, scale_factor=2, mode="nearest")
        out.append(x - _blur(up))
        x = down
    out.append(x)
    return out


def _descriptors(level: torch.Tensor, per_image: int, patch: int, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = level.shape
    ys = torch.randint(0, h - patch + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - patch + 1, (n, per_image), generator=gen)
    patches = level.unfold(2, patch, 1).unfold(3, patch, 1)  # n, c, H', W', p, p
    idx_n = torch.arange(n)[:, None].expand(n, per_image)
    d = patches[idx_n, :, ys, xs]  # n, per_image, c, p, p
    d = d.reshape(n * per_image, c, patch * patch)
    d = (d - d.mean(dim=(0, 2), keepdim=True)) / d.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return d.reshape(n * per_image, -1)


def _sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, dirs: int, repeats: int, gen: torch.Generator) -> float:
    results = []
    for _ in range(repeats):
        proj = torch.randn(a.shape[1], dirs, generator=gen, dtype=a.dtype)
        proj /= proj.norm(dim=0, keepdim=True)
        pa, _ = torch.sort(a @ proj, dim=0)
        pb, _ = torch.sort(b @ proj, dim=0)
        results.append((pa - pb).abs().mean().item())
    return float(np.mean(results))


def swd(
    images_a: np.ndarray,
    images_b: np.ndarray,
    min_res: int = 16,
    per_image: int = 128,
    patch: int = 7,
    dirs: int = 512,
    repeats: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """SWD x1e3 per pyramid level (keyed by resolution) and their mean; inputs (N, H, W, 3) uint8, same N."""
    if len(images_a) != len(images_b):
        raise ValueError("SWD compares sets of the same size")
    gen = torch.Generator().manual_seed(seed)
    res = images_a.shape[1]
    levels = int(np.log2(res // min_res)) + 1
    to_t = lambda im: torch.from_numpy(im).permute(0, 3, 1, 2).double() / 127.5 - 1  # noqa: E731
    pa, pb = laplacian_pyramid(to_t(images_a), levels), laplacian_pyramid(to_t(images_b), levels)
    out = {}
    for la, lb in zip(pa, pb, strict=True):
        da = _descriptors(la, per_image, patch, gen).float()
        db = _descriptors(lb, per_image, patch, gen).float()
        out[str(la.shape[-1])] = 1e3 * _sliced_wasserstein(da, db, dirs, repeats, gen)
    out["mean"] = float(np.mean(list(out.values())))
    return out
