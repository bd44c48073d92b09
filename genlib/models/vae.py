"""Landscapes VAE-GAN: a VAE whose decoder is also trained as a GAN generator, and its patch discriminator.

Encoder: image -> (strided 4x4 convs, leaky ReLU) per octave -> 4x4 map -> linear -> (mu, log sigma^2) of a
`latent_dim` Gaussian. Decoder: latent -> 4x4 map -> (upsample, two 3x3 convs with pixel norm) per octave
-> RGB in [-1, 1], the faces GAN's generator with a second conv per block.

Why a VAE-GAN (Larsen et al. 2016) and not a VQ-VAE with a prior: on a 2-core CPU the budget is about
an hour, and a VQ-VAE needs two trainings (codebook, then an autoregressive prior) and still gives
blurry codes without an adversarial loss (that is what VQGAN adds). A VAE-GAN is one training: the
reconstruction loss gives the decoder a strong, stable signal from the first step (a plain GAN would
still be learning shapes), a patch discriminator on reconstructions and on prior samples makes textures
sharp where a pixel loss averages them into blur, and matching the discriminator's features of real and
reconstructed images is a learned perceptual loss (no pretrained network is needed). Because prior
samples are trained against the discriminator too, `generate()` samples are as sharp as reconstructions.
A continuous Gaussian latent also gives what the app shows: seeds, temperature, smooth interpolation,
variations around a photo and PCA directions as sliders (a VQ-VAE's discrete codes give none of these
smoothly).

The prior is a full-covariance Gaussian fitted to the encoded training images (ex-post density estimation,
Ghosh et al. 2020), not N(0, I): a VAE's encoded latents do not fill N(0, I), so N(0, I) samples land where
the decoder saw no data. One PCA of the latents gives both the prior and the directions: with the
eigenvectors v_i (rows of `directions`, largest variance first) and standard deviations s_i
(`direction_scales`), `prior_factor` has columns s_i v_i and a seed's latent is prior_mean + temperature *
prior_factor @ eps. During training the discriminator sees decoder samples from a running fit of the same
Gaussian, so what `generate()` draws is what the decoder was trained to make realistic.

With `prior_components` K > 1 the prior is instead a mixture of K full-covariance Gaussians fitted by EM to the
same latents (Ghosh et al.'s ex-post density estimation used such a mixture). Measured on the shipped VAE-GAN it
is worse, not better (held-out sample SWD 3.13x the floor with one Gaussian, 3.67x / 3.41x / 3.53x with 4 / 10
/ 20): the mixture's samples lie where the encoded photos are, so they decode like reconstructions (4.14x), while
the decoder was trained adversarially on samples of the single Gaussian. So the trainer's default is K = 1; the
option stays for models whose decoder is trained on samples of their mixture. The single Gaussian's mean and PCA
are always stored: they centre interpolation and variations and give the directions.

No layer uses batch statistics, latents come from per-seed CPU generators, and on a CPU every image is
encoded and decoded on its own (measured as fast as one batch there), so a seed's landscape is bit-identical
whatever the batch it is made in, and a photo's latent whatever it is encoded with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from genlib.errors import BadConfig, BadInput
from genlib.models.base import GenlibModel
from genlib.models.gan import PixelNorm, check_image_config, init_weights, slerp, tensor_to_pil

MAX_IMAGES = 256  # per call
MAX_SEED = 2**63 - 1
MAX_TEMPERATURE = 2.0
MAX_AMOUNT = 10.0  # direction amounts, in standard deviations of the training latents along the direction

SeedOrImage = int | Image.Image


@dataclass
class VAEConfig:
    resolution: int = 64  # image side in pixels, a power of two >= 8
    latent_dim: int = 128  # Gaussian latent
    channels: int = 32  # channels at full resolution; doubled per octave down, capped at max_channels
    max_channels: int = 256
    n_directions: int = 8  # principal directions of the training latents stored with the weights
    prior_components: int = 1  # 1: one Gaussian prior; K > 1: a mixture of K full-covariance Gaussians

    def channels_at(self, res: int) -> int:
        return min(self.max_channels, self.channels * (self.resolution // res))


def _check_config(d: dict[str, Any]) -> VAEConfig:
    limits = {"latent_dim": 4096, "channels": 4096, "max_channels": 4096, "prior_components": 256}
    cfg = check_image_config(VAEConfig, d, limits)
    if not 1 <= cfg.n_directions <= cfg.latent_dim:
        raise BadConfig(f"config.json: n_directions={cfg.n_directions} is outside [1, latent_dim={cfg.latent_dim}]")
    return cfg


# ----- networks -----
class Encoder(nn.Module):
    """Image in [-1, 1] -> (mu, logvar), each [N, latent_dim]."""

    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, c.channels_at(c.resolution), 3, padding=1), nn.LeakyReLU(0.2)]
        res = c.resolution
        while res > 4:
            layers += [nn.Conv2d(c.channels_at(res), c.channels_at(res // 2), 4, stride=2, padding=1)]
            layers += [nn.LeakyReLU(0.2)]
            res //= 2
        c4 = c.channels_at(4)
        layers += [nn.Conv2d(c4, c4, 3, padding=1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c4 * 16, 2 * c.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class UpBlock(nn.Module):
    """Nearest 2x upsample, then two 3x3 convs, each with pixel norm and leaky ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm = PixelNorm()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.leaky_relu(self.norm(self.conv1(x)), 0.2)
        return F.leaky_relu(self.norm(self.conv2(x)), 0.2)


class Decoder(nn.Module):
    """Latent [N, latent_dim] -> image in [-1, 1]."""

    def __init__(self, c: VAEConfig) -> None:
        super().__init__()
        c4 = c.channels_at(4)
        self.stem = nn.Linear(c.latent_dim, c4 * 16)
        self.stem_conv = nn.Conv2d(c4, c4, 3, padding=1)
        self.norm = PixelNorm()
        blocks = []
        res = 4
        while res < c.resolution:
            blocks.append(UpBlock(c.channels_at(res), c.channels_at(res * 2)))
            res *= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = nn.Conv2d(c.channels_at(c.resolution), 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.norm(self.stem(z).view(z.shape[0], -1, 4, 4)), 0.2)
        x = F.leaky_relu(self.norm(self.stem_conv(x)), 0.2)
        for block in self.blocks:
            x = block(x)
        return torch.tanh(self.to_rgb(x))


class VAE(GenlibModel):
    """Encoder + decoder + the Gaussian prior and principal directions of the training latents (the shipped
    model)."""

    model_type = "genlib-vae"
    task = "landscapes"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Set by the trainer (`set_prior`): the prior N(prior_mean, prior_factor prior_factor^T) fitted to the
        # encoded training images, and its top `n_directions` principal directions (unit rows, largest variance
        # first) with the standard deviation along each. Until then, N(0, I) and the coordinate axes.
        d, k = config.latent_dim, config.n_directions
        self.register_buffer("prior_mean", torch.zeros(d))
        self.register_buffer("prior_factor", torch.eye(d))
        self.register_buffer("directions", torch.eye(d)[:k].clone())
        self.register_buffer("direction_scales", torch.ones(k))
        if config.prior_components > 1:  # set by `set_mixture`: weights, means and Cholesky factors
            m = config.prior_components
            self.register_buffer("mixture_weights", torch.full((m,), 1.0 / m))
            self.register_buffer("mixture_means", torch.zeros(m, d))
            self.register_buffer("mixture_factors", torch.eye(d).repeat(m, 1, 1))
        init_weights(self)
        if self.encoder.head.weight.device.type != "meta":
            with torch.no_grad():
                self.encoder.head.weight.mul_(0.1)  # start near N(0, I): mu ~ 0, log sigma^2 ~ 0
                # A non-zero stem bias (a learned constant input, as in StyleGAN): with zero biases the decoder
                # up to its first pixel norm is positively homogeneous, so it would ignore the latent's length.
                self.decoder.stem.bias.normal_()

    @classmethod
    def config_from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        return _check_config(d)

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, mu, logvar); `sample=False` decodes mu."""
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return self.decoder(z), mu, logvar

    # ----- latents -----
    def latents(self, seeds: list[int], temperature: float = 1.0) -> torch.Tensor:
        """One prior latent per seed (float32, CPU), drawn from the seed's own CPU generator, one seed at a time, so
        a seed's latent does not depend on the batch. One Gaussian: prior_mean + temperature * prior_factor @ eps.
        A mixture: a uniform number picks component k by its weight, then mixture_means[k] + temperature *
        mixture_factors[k] @ eps (temperature 0 gives the component's mean)."""
        d = self.config.latent_dim
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        if self.config.prior_components == 1:
            mean, factor = self.prior_mean.float().cpu(), self.prior_factor.float().cpu()
            return torch.stack([mean + temperature * (factor @ torch.randn(d, generator=g)) for g in gens])
        cdf = self.mixture_weights.double().cpu().cumsum(0)
        means, factors = self.mixture_means.float().cpu(), self.mixture_factors.float().cpu()
        out = []
        for g in gens:
            u = torch.rand(1, generator=g, dtype=torch.float64) * cdf[-1]
            k = min(int(torch.searchsorted(cdf, u)), len(cdf) - 1)
            out.append(means[k] + temperature * (factors[k] @ torch.randn(d, generator=g)))
        return torch.stack(out)

    @torch.no_grad()
    def set_prior(self, latents: torch.Tensor) -> None:
        """Fit the prior and the directions to latents [N, latent_dim] (the trainer's encoded training images)."""
        mean, vecs, stds = latent_pca(latents)
        k = self.config.n_directions
        self.prior_mean.copy_(mean)
        self.prior_factor.copy_(vecs.T * stds)  # columns: direction i times its standard deviation
        self.directions.copy_(vecs[:k])
        self.direction_scales.copy_(stds[:k])

    @torch.no_grad()
    def set_mixture(self, weights: torch.Tensor, means: torch.Tensor, covariances: torch.Tensor) -> None:
        """Use a Gaussian mixture (weights [K], means [K, d], covariances [K, d, d]) as the prior of `latents`."""
        if self.config.prior_components == 1:
            raise ValueError("this model has one Gaussian prior (config prior_components=1)")
        self.mixture_weights.copy_(weights / weights.sum())
        self.mixture_means.copy_(means)
        self.mixture_factors.copy_(torch.linalg.cholesky(covariances.double()))

    def move(self, latent: torch.Tensor, amounts: list[float]) -> torch.Tensor:
        """Move latent(s) `amounts[i]` standard deviations along direction i (fewer amounts than directions is
        fine); amounts that are 0 leave the latent bit-identical."""
        check_amounts(amounts, self.config.n_directions)
        out = latent
        for i, a in enumerate(amounts):
            if a != 0:
                step = (float(a) * self.direction_scales[i] * self.directions[i]).to(latent.device, latent.dtype)
                out = out + step
        return out.clone() if out is latent else out

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> Image.Image | list[Image.Image]:
        """A latent [latent_dim] -> one image; latents [N, latent_dim] -> a list of N images."""
        if not torch.is_tensor(latent) or latent.ndim not in (1, 2) or latent.shape[-1] != self.config.latent_dim:
            shape = list(latent.shape) if torch.is_tensor(latent) else type(latent).__name__
            raise BadInput(
                f"latent must be a tensor [latent_dim={self.config.latent_dim}] or [N, latent_dim], got {shape}"
            )
        if not torch.isfinite(latent).all():
            raise BadInput("latent holds nan or inf")
        z = latent.reshape(-1, self.config.latent_dim).to(self.device, self.dtype)
        if len(z) > MAX_IMAGES:
            raise BadInput(f"at most {MAX_IMAGES} latents per call, got {len(z)}")
        if self.device.type == "cpu":  # one at a time: bit-identical whatever the batch, and as fast on a CPU
            x = torch.cat([self.decoder(zi[None]) for zi in z])
        else:
            x = self.decoder(z)
        images = tensor_to_pil(x)
        return images[0] if latent.ndim == 1 else images

    def model_view(self, image: Image.Image) -> Image.Image:
        """The photo as the encoder gets it: centre-cropped to a square and resized to the model's resolution."""
        return fit_square(image, self.config.resolution)

    def image_tensor(self, images: list[Image.Image]) -> torch.Tensor:
        """PIL images -> [N, 3, R, R] in [-1, 1]: centre-crop to a square, then Lanczos resize to R."""
        return torch.stack([pil_to_tensor(im, self.config.resolution) for im in images])

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Posterior means [N, latent_dim] of many images (see `encode`)."""
        if not 1 <= len(images) <= MAX_IMAGES:
            raise BadInput(f"encode 1 to {MAX_IMAGES} images per call, got {len(images)}")
        x = self.image_tensor(images).to(self.device, self.dtype)
        if self.device.type == "cpu":
            return torch.cat([self.encoder(xi[None])[0] for xi in x]).float()
        return self.encoder(x)[0].float().cpu()

    def encode(self, image: Image.Image) -> torch.Tensor:
        """The latent [latent_dim] of a photo of any size or aspect: the posterior mean of the image
        centre-cropped to a square and Lanczos-resized to the model's resolution. Transparency is put on white."""
        return self.encode_images([image])[0]

    def reconstruct(self, image: Image.Image) -> Image.Image:
        """decode(encode(image))."""
        return self.decode(self.encode(image))  # type: ignore[return-value]

    # ----- generation API -----
    def generate(
        self, n: int = 1, seed: int = 0, temperature: float = 1.0, directions: list[float] | None = None
    ) -> list[Image.Image]:
        """`n` landscapes from the prior for seeds seed, seed+1, ...; temperature scales the prior's spread
        (0 = the prior's mean, the same central image for every seed; with a mixture prior, the mean of the
        seed's component); `directions` are amounts for `move`."""
        check_generate_args(n, seed, temperature)
        z = self.latents(list(range(seed, seed + n)), temperature)
        if directions is not None:
            z = self.move(z, directions)
        return self.decode(z)  # type: ignore[return-value]

    def variations(self, image: Image.Image, n: int = 4, strength: float = 0.5, seed: int = 0) -> list[Image.Image]:
        """`n` images around a photo: its latent rotated (about the prior's mean) toward the prior latents of
        seeds seed, seed+1, ... by `strength` in [0, 1] (0 = the reconstruction, 1 = those seeds' samples)."""
        check_generate_args(n, seed, 1.0)
        if not _is_number(strength) or not 0.0 <= strength <= 1.0:
            raise BadInput(f"strength must be a number in [0, 1], got {strength!r}")
        mu = self.encode(image)
        zs = self.latents(list(range(seed, seed + n)))
        if strength == 0:
            z = mu.expand_as(zs)
        elif strength == 1:
            z = zs
        else:
            angle, c = strength * math.pi / 2, self.prior_mean.float().cpu()
            z = c + math.cos(angle) * (mu - c) + math.sin(angle) * (zs - c)
        return self.decode(z)  # type: ignore[return-value]

    def interpolate(
        self, a: SeedOrImage, b: SeedOrImage, frames: int = 16, temperature: float = 1.0
    ) -> list[Image.Image]:
        """Frames along the slerp (about the prior's mean) between two latents; an end given as a seed is that
        seed's sample (at `temperature`), an end given as an image is its reconstruction, exactly."""
        check_generate_args(1, 0, temperature)
        if not isinstance(frames, int) or isinstance(frames, bool) or not 2 <= frames <= MAX_IMAGES:
            raise BadInput(f"frames must be an integer in [2, {MAX_IMAGES}], got {frames!r}")
        za, zb = self._end_latent(a, temperature), self._end_latent(b, temperature)
        c = self.prior_mean.float().cpu()
        ts = [float(t) for t in torch.linspace(0, 1, frames)]
        if min((za - c).norm(), (zb - c).norm()) < 1e-6:  # e.g. temperature 0: slerp needs a direction at both ends
            z = torch.stack([torch.lerp(za, zb, t) for t in ts])
        else:
            z = torch.stack([c + slerp(za - c, zb - c, t) for t in ts])
        images: list[Image.Image] = self.decode(z)  # type: ignore[assignment]
        # The ends decoded alone, as generate(1, seed) / reconstruct(image) do: identical pixels.
        images[0], images[-1] = self.decode(za), self.decode(zb)  # type: ignore[assignment]
        return images

    def _end_latent(self, end: SeedOrImage, temperature: float) -> torch.Tensor:
        if isinstance(end, Image.Image):
            return self.encode(end)
        check_generate_args(1, end, temperature)
        return self.latents([end], temperature)[0]


# ----- the prior and principal directions (fitted by the trainer) -----
@torch.no_grad()
def latent_pca(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of latents [N, d]: their mean [d], the unit eigenvectors of their covariance as rows [d, d], largest
    variance first (sign fixed so each row's largest component is positive), and the standard deviations [d]."""
    x = latents.double()
    mean = x.mean(0)
    x = x - mean
    cov = x.T @ x / max(1, len(x) - 1)
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)
    vecs = evecs[:, order].T.contiguous()
    vecs = vecs * torch.sign(vecs.gather(1, vecs.abs().argmax(1, keepdim=True)))
    return mean.float(), vecs.float(), evals[order].clamp_min(0).sqrt().float()


# ----- images in and out, argument checks -----
def fit_square(image: Image.Image, resolution: int) -> Image.Image:
    """What the model sees of a photo: centre-cropped to a square, Lanczos-resized to `resolution`, 8-bit RGB."""
    from genlib.uploads import open_upload

    if not isinstance(image, Image.Image):
        raise BadInput(f"expected a PIL image, got {type(image).__name__}")
    im = open_upload(image)  # refuses images over the upload pixel limit, converts any mode to RGB
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return im


def pil_to_tensor(image: Image.Image, resolution: int) -> torch.Tensor:
    """`fit_square` -> [3, R, R] in [-1, 1]."""
    im = fit_square(image, resolution)
    x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(resolution, resolution, 3)
    return x.permute(2, 0, 1).float().div(127.5).sub(1)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def check_generate_args(n: Any, seed: Any, temperature: Any) -> None:
    """Clear errors for the arguments people get wrong."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise BadInput(f"n must be an integer in [1, {MAX_IMAGES}], got {n!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED - n:
        raise BadInput(f"seed must be an integer in [0, 2**63 - 1 - n], got {seed!r}")
    if not _is_number(temperature) or not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise BadInput(f"temperature must be a number in [0, {MAX_TEMPERATURE}], got {temperature!r}")


def check_amounts(amounts: Any, k: int) -> None:
    if not isinstance(amounts, (list, tuple)):
        raise BadInput(f"directions must be a list of up to {k} numbers, got {type(amounts).__name__}")
    if len(amounts) > k:
        raise BadInput(f"directions: this model has {k} directions, got {len(amounts)} amounts")
    for a in amounts:
        if not _is_number(a) or abs(a) > MAX_AMOUNT:
            raise BadInput(f"directions: each amount must be a number in [-{MAX_AMOUNT}, {MAX_AMOUNT}], got {a!r}")


# ----- training only -----
class Discriminator(nn.Module):
    """Patch discriminator (training only, never shipped): image -> a realness logit per patch [N, r, r]
    (r = max(4, R/8); at 64 px each logit sees 40x40 px) and its features at every scale for the feature-matching
    loss. Each image is judged on its own."""

    def __init__(self, c: VAEConfig, channels: int = 32, max_channels: int = 256) -> None:
        super().__init__()

        def ch(res: int) -> int:
            return min(max_channels, channels * (c.resolution // res))

        self.from_rgb = nn.Sequential(nn.Conv2d(3, ch(c.resolution), 3, padding=1), nn.LeakyReLU(0.2))
        blocks = []
        res = c.resolution
        while res > max(4, c.resolution // 8):
            blocks.append(nn.Sequential(nn.Conv2d(ch(res), ch(res // 2), 4, stride=2, padding=1), nn.LeakyReLU(0.2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            nn.Conv2d(ch(res), ch(res), 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(ch(res), 1, 1)
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        x = self.from_rgb(x)
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return self.head(x).squeeze(1), feats
