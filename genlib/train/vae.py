"""Train the landscapes VAE-GAN (or, with --plain, the plain VAE baseline) on the CPU with bf16 autocast.

    python -m genlib.train.vae --data ../shared/data/landscapes/train.zip --out weights/landscapes-vae64 \\
        --minutes 70 --run-dir ~/genlib-runs/landscapes

Losses of the encoder + decoder: L1 pixel reconstruction, KL to N(0, I) (weight --kl per nat), and, unless
--plain, matching the discriminator's features of real and reconstructed images (--fm) plus the non-saturating
adversarial loss on reconstructions and on decoded prior samples. The adversarial weight is balanced
against the reconstruction loss by their gradients at the decoder's last layer (VQGAN's adaptive weight,
times --adv) and ramped in from --adv-start steps. The patch discriminator uses the logistic loss with a
lazy R1 penalty. Samples come from an EMA of the encoder + decoder.

Resumable: rerun the same command and it continues from `--run-dir`'s checkpoint; --minutes counts training
steps only and is summed over resumes. The last --holdout images of the zip are never trained on
(bench/landscapes.py measures on them). At the end the principal directions of the encoded training
images are stored in the model, and the model folder (weights, config, model card) is written to --out.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlib.images import grid
from genlib.models.gan import tensor_to_pil
from genlib.models.vae import VAE, Discriminator, VAEConfig
from genlib.train.checkpoint import load_checkpoint, save_checkpoint
from genlib.train.common import add_bf16_argument, cpu_name, log, use_bf16
from genlib.train.data import load_images, split_names, zip_names

CL = torch.channels_last  # oneDNN's convolutions run about 10% faster on NHWC tensors here


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m genlib.train.vae", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=Path("../shared/data/landscapes/train.zip"), help="zip of JPEGs")
    p.add_argument("--out", type=Path, default=Path("weights/landscapes-vae64"), help="model folder written at the end")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("~/genlib-runs/landscapes").expanduser(),
        help="checkpoints, log and sample grids (outside the repo)",
    )
    p.add_argument("--minutes", type=float, default=70.0, help="training time budget, summed over resumes")
    p.add_argument(
        "--init-from",
        metavar="REF",
        help="start from this model's encoder + decoder (a folder, embedded name or owner/name@rev; its architecture"
        " must match; the discriminator and optimisers start fresh): continue or fine-tune a trained model",
    )
    p.add_argument("--plain", action="store_true", help="plain VAE baseline: no discriminator, no feature matching")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--latent-dim", type=int, default=128)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--max-channels", type=int, default=256)
    p.add_argument("--d-channels", type=int, default=32, help="discriminator channels at full resolution")
    p.add_argument(
        "--prior-components",
        type=int,
        default=1,
        help="Gaussians in the prior fitted to the encoded training images at the end (default 1; a mixture"
        " measured worse for the VAE-GAN, see its model card)",
    )
    p.add_argument("--directions", type=int, default=8, help="principal directions stored with the model")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 for both networks")
    p.add_argument("--kl", type=float, default=1e-5, help="KL weight per nat, relative to the mean L1 pixel error")
    p.add_argument("--fm", type=float, default=1.0, help="feature-matching loss weight")
    p.add_argument("--adv", type=float, default=0.5, help="adversarial weight (times the adaptive balance)")
    p.add_argument("--adv-start", type=int, default=200, help="adversarial loss ramps in over steps [start, 2 start]")
    p.add_argument("--adapt-every", type=int, default=8, help="recompute the adaptive weight every N steps")
    p.add_argument("--r1", type=float, default=1.0, help="R1 gradient penalty weight (gamma)")
    p.add_argument("--r1-every", type=int, default=8, help="apply R1 every N steps (lazy regularisation)")
    p.add_argument("--stats-decay", type=float, default=0.99, help="EMA decay of the running latent Gaussian")
    p.add_argument("--ema-kimg", type=float, default=10.0, help="half-life of the EMA model in thousands of images")
    p.add_argument("--holdout", type=int, default=500, help="last N images of the zip kept out of training")
    p.add_argument("--seed", type=int, default=0)
    add_bf16_argument(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--sample-minutes", type=float, default=10.0)
    p.add_argument("--log-every", type=int, default=25, help="log averaged losses every N steps")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time budget only)")
    return p.parse_args(argv)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) in [-1, 1], channels-last in memory."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1).contiguous(memory_format=CL)


def real_batch(data: np.ndarray, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    x = to_tensor(data[idx.numpy()])
    flip = torch.rand(x.shape[0], generator=gen) < 0.5  # landscapes are left-right symmetric
    x[flip] = x[flip].flip(3)
    return x


class LatentStats(torch.nn.Module):
    """Running (EMA over batches) mean and covariance of the encoder's latents: the Gaussian that the prior
    samples shown to the discriminator are drawn from during training. Starts as N(0, I)."""

    def __init__(self, dim: int, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("second", torch.eye(dim, dtype=torch.float64))  # E[z z^T]

    @torch.no_grad()
    def update(self, mu: torch.Tensor) -> None:
        z = mu.detach().double()
        self.mean.lerp_(z.mean(0), 1 - self.decay)
        self.second.lerp_(z.T @ z / len(z), 1 - self.decay)

    @torch.no_grad()
    def transform(self, eps: torch.Tensor) -> torch.Tensor:
        """Standard normal eps [N, dim] -> latents of the running Gaussian."""
        cov = self.second - torch.outer(self.mean, self.mean)
        evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
        factor = evecs * evals.clamp_min(0).sqrt()
        return (self.mean + eps.double() @ factor.T).float()

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.transform(torch.randn(n, len(self.mean), generator=gen, dtype=torch.float64))


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) in nats, summed over latent dims, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last: torch.Tensor) -> float:
    """|grad rec| / |grad adv| at the decoder's last layer (Esser et al. 2021), clamped to [0, 1e4]."""
    (g_rec,) = torch.autograd.grad(rec_loss, last, retain_graph=True)
    (g_adv,) = torch.autograd.grad(adv_loss, last, retain_graph=True)
    return float((g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0, 1e4))


@torch.no_grad()
def init_from(vae: VAE, stats: LatentStats, ref: str) -> None:
    """Copy a trained model's weights into `vae` (same architecture) and start `stats` at its fitted prior."""
    import genlib

    src = genlib.load(ref)
    if not isinstance(src, VAE):
        raise SystemExit(f"--init-from {ref} is a {type(src).__name__}, not a landscapes VAE")
    diff = {
        k: (v, getattr(vae.config, k))
        for k, v in asdict(src.config).items()
        if getattr(vae.config, k) != v and k != "prior_components"  # the prior is refitted at the end anyway
    }
    if diff:
        raise SystemExit(f"--init-from {ref} has another architecture (its value, this run's): {diff}")
    mixture = ("mixture_weights", "mixture_means", "mixture_factors")
    state = {k: v for k, v in src.state_dict().items() if k not in mixture}
    missing, unexpected = vae.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= set(mixture), (missing, unexpected)
    mean, factor = src.prior_mean.double(), src.prior_factor.double()
    stats.mean.copy_(mean)
    stats.second.copy_(factor @ factor.T + torch.outer(mean, mean))


def fit_mixture(latents: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A k-component full-covariance Gaussian mixture fitted to latents [N, d] by EM (scikit-learn, k-means
    start): (weights [k], means [k, d], covariances [k, d, d]). Ex-post density estimation as in Ghosh et al.
    2020; for the shipped VAE-GAN it measured worse than one Gaussian (see genlib/models/vae.py)."""
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError as e:
        raise SystemExit("--prior-components > 1 needs scikit-learn: pip install -r requirements-dev.txt") from e
    if len(latents) < 2 * k:
        raise SystemExit(f"--prior-components {k} needs at least {2 * k} training images, got {len(latents)}")
    x = latents.double().numpy()
    gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-4, max_iter=500, random_state=seed).fit(x)
    return torch.from_numpy(gm.weights_), torch.from_numpy(gm.means_), torch.from_numpy(gm.covariances_)


@torch.no_grad()
def encode_all(model: VAE, data: np.ndarray, batch: int = 256) -> torch.Tensor:
    return torch.cat([model.encoder(to_tensor(data[i : i + batch]))[0].float() for i in range(0, len(data), batch)])


@torch.no_grad()
def sample_grids(model: VAE, z: torch.Tensor, fixed_x: torch.Tensor, path: Path) -> None:
    """Decoded latents `z` (8 per row) and, beside it, training images over their reconstructions."""
    model.eval()
    grid(tensor_to_pil(model.decoder(z)), 8).save(path.with_suffix(".png"))
    rec = model.decoder(model.encoder(fixed_x)[0])
    rows = []
    for i in range(0, len(fixed_x), 8):  # a row of originals, then a row of their reconstructions
        rows += tensor_to_pil(fixed_x[i : i + 8]) + tensor_to_pil(rec[i : i + 8])
    grid(rows, 8).save(path.with_name(path.stem + "-recon.png"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = args.run_dir.expanduser()
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    kind = "plain VAE" if args.plain else "VAE-GAN"

    names = zip_names(args.data)
    train_names, held = split_names(names, args.holdout)
    log(
        run_dir,
        f"{kind}: data {args.data}: {len(names)} images, training on {len(train_names)}, holding out {len(held)}",
    )
    t0 = time.time()
    data = load_images(args.data, train_names, args.resolution, cache_dir=run_dir)
    log(run_dir, f"decoded {data.shape} in {time.time() - t0:.1f}s")

    cfg = VAEConfig(
        resolution=args.resolution,
        latent_dim=args.latent_dim,
        channels=args.channels,
        max_channels=args.max_channels,
        n_directions=args.directions,
        prior_components=args.prior_components,
    )
    torch.manual_seed(args.seed)
    vae = VAE(cfg).to(memory_format=CL)
    stats = LatentStats(cfg.latent_dim, args.stats_decay)
    if args.init_from:  # overwritten below by a checkpoint of this run, if there is one
        init_from(vae, stats, args.init_from)
        log(run_dir, f"initialised the encoder + decoder and the latent Gaussian from {args.init_from}")
    vae_ema = copy.deepcopy(vae).eval().requires_grad_(False)
    opt_ae = torch.optim.Adam(vae.parameters(), lr=args.lr, betas=(args.beta1, 0.99))
    modules: dict[str, torch.nn.Module] = {"vae": vae, "vae_ema": vae_ema, "latent_stats": stats}
    optims: dict[str, torch.optim.Optimizer] = {"ae": opt_ae}
    d = None
    if not args.plain:
        d = Discriminator(cfg, channels=args.d_channels, max_channels=args.max_channels).to(memory_format=CL)
        modules["d"] = d
        optims["d"] = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(args.beta1, 0.99))
    run_config = {"plain": args.plain, "d_channels": args.d_channels, "data": str(args.data), **asdict(cfg)}
    if args.init_from:
        run_config["init_from"] = args.init_from
    ckpt = run_dir / "checkpoint"
    meta = load_checkpoint(ckpt, modules, optims) if ckpt.with_suffix(".json").exists() else None
    if meta is not None and meta.get("run_config") != run_config:
        raise SystemExit(f"{ckpt} was made with {meta.get('run_config')}, not {run_config}: use another --run-dir")
    meta = meta or {"step": 0, "train_seconds": 0.0, "wall_seconds": 0.0, "images": 0, "sessions": 0, "lam": 1.0}
    meta["run_config"] = run_config
    meta["sessions"] += 1
    if meta["step"]:
        log(run_dir, f"resumed at step {meta['step']} ({meta['train_seconds'] / 60:.1f} min trained)")
    step, train_s, lam = meta["step"], meta["train_seconds"], meta["lam"]
    torch.manual_seed(args.seed + step)  # the reparameterisation noise
    gen = torch.Generator().manual_seed(args.seed + step)
    # Seeds 0-63 as generate() draws them, mapped through the running Gaussian until the prior is fitted.
    fixed_eps = torch.stack(
        [torch.randn(cfg.latent_dim, generator=torch.Generator().manual_seed(s)) for s in range(64)]
    )
    fixed_x = to_tensor(data[:32])
    bf16 = use_bf16(args)
    budget = args.minutes * 60
    session_start = last_ckpt = last_sample = time.time()
    tick, tick_step, rows, last_mean = time.time(), step, [], {}
    last_layer = vae.decoder.to_rgb.weight

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def checkpoint() -> None:
        meta.update(step=step, train_seconds=train_s, images=step * args.batch, lam=lam)
        meta["wall_seconds"] = meta_wall0 + time.time() - session_start
        save_checkpoint(ckpt, modules, optims, meta)

    meta_wall0 = meta["wall_seconds"]
    while train_s < budget and not (args.max_steps and step >= args.max_steps):
        t_step = time.time()
        n = args.batch
        x = real_batch(data, torch.randint(0, len(data), (n,), generator=gen), gen)
        # ----- encoder + decoder -----
        with autocast():
            rec, mu, logvar = vae(x)
            stats.update(mu.float())
            loss_rec = F.l1_loss(rec.float(), x)
            loss_kl = kl_divergence(mu.float(), logvar.float())
            row = {"l1": loss_rec.item(), "kl": loss_kl.item()}
            loss = loss_rec + args.kl * loss_kl
            if d is not None:
                fake = vae.decoder(stats.sample(n, gen))
                d.requires_grad_(False)
                logits, feats = d(torch.cat([x, rec, fake]))
                logits = logits.float()
                loss_fm = sum(F.l1_loss(f[n : 2 * n].float(), f[:n].detach().float()) for f in feats) / len(feats)
                loss_adv = F.softplus(-logits[n:]).mean()  # reconstructions and prior samples
                ramp = min(1.0, max(0.0, (step - args.adv_start) / max(1, args.adv_start)))
                loss_nll = loss_rec + args.fm * loss_fm
                if ramp > 0 and step % args.adapt_every == 0:
                    lam = adaptive_weight(loss_nll, loss_adv, last_layer)
                loss = loss + args.fm * loss_fm + ramp * args.adv * lam * loss_adv
                row.update(fm=loss_fm.item(), adv=loss_adv.item(), lam=lam)
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        opt_ae.step()
        # ----- patch discriminator: real vs reconstructions and prior samples -----
        if d is not None:
            d.requires_grad_(True)
            with autocast():
                logits, _ = d(torch.cat([x, rec.detach(), fake.detach()]))
                logits = logits.float()
                d_real, d_fake = logits[:n], logits[n:]
                loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # fakes: reconstructions, samples
            optims["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            if args.r1 and step % args.r1_every == 0:
                # Lazy R1 on real images (float32), on the image's mean patch logit, scaled by the interval.
                xr = x[: n // 2].detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(d(xr)[0].mean(dim=(1, 2)).sum(), xr, create_graph=True)
                (args.r1 / 2 * args.r1_every * grad.pow(2).sum(dim=(1, 2, 3)).mean()).backward()
            optims["d"].step()
            row.update(
                loss_d=loss_d.item(),
                d_real=d_real.mean().item(),
                d_rec=d_fake[:n].mean().item(),
                d_sample=d_fake[n:].mean().item(),
            )
        # ----- EMA (half-life in images, ramped up early as in StyleGAN2-ADA) -----
        ema_nimg = min(args.ema_kimg * 1000, (step + 1) * n * 0.05)
        beta = 0.5 ** (n / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(vae_ema.parameters(), vae.parameters(), strict=True):
                pe.lerp_(p, 1 - beta)
        step += 1
        train_s += time.time() - t_step
        rows.append(row)
        if step % args.log_every == 0:
            mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in rows[-1]}
            last_mean = mean
            dt = time.time() - tick
            its = (step - tick_step) / dt
            log(
                run_dir,
                f"step {step} img {step * n} min {train_s / 60:.1f} "
                + " ".join(f"{k} {v:.4g}" for k, v in mean.items())
                + f" | {its:.2f} it/s {its * n:.1f} img/s",
            )
            if not all(math.isfinite(v) for v in mean.values()):
                raise SystemExit("a loss is not finite: lower --lr or --adv, or resume from the last checkpoint")
            tick, tick_step, rows = time.time(), step, []
        if time.time() - last_sample > args.sample_minutes * 60:
            sample_grids(vae_ema, stats.transform(fixed_eps), fixed_x, run_dir / "samples" / f"{step:07d}.png")
            last_sample = time.time()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            last_ckpt = time.time()

    checkpoint()
    # The prior and principal directions: PCA of the EMA encoder's latents of every training image (no flips).
    t_pca = time.time()
    latents = encode_all(vae_ema, data)
    vae_ema.set_prior(latents)
    scales = [round(v, 3) for v in vae_ema.direction_scales.tolist()]
    log(run_dir, f"prior and directions from {len(latents)} latents in {time.time() - t_pca:.1f}s; std {scales}")
    if cfg.prior_components > 1:
        t_mix = time.time()
        vae_ema.set_mixture(*fit_mixture(latents, cfg.prior_components, args.seed))
        weights = [round(w, 3) for w in vae_ema.mixture_weights.tolist()]
        log(run_dir, f"{cfg.prior_components}-Gaussian prior in {time.time() - t_mix:.1f}s; weights {weights}")
    sample_grids(vae_ema, vae_ema.latents(list(range(64))), fixed_x, run_dir / "samples" / f"{step:07d}.png")
    vae_ema.save_pretrained(args.out)
    info = {
        "kind": kind,
        "steps": step,
        "images_seen": step * args.batch,
        "epochs": step * args.batch / len(data),
        "train_minutes": round(train_s / 60, 1),
        "wall_minutes": round(meta["wall_seconds"] / 60, 1),
        "sessions": meta["sessions"],
        "batch": args.batch,
        "bf16_autocast": bf16,
        "train_images": len(train_names),
        "holdout": args.holdout,
        "parameters": vae_ema.num_parameters(),
        "latent_std": float(latents.std(0).mean()),
        "final_losses": {k: round(v, 4) for k, v in last_mean.items()},
        "command": "python -m genlib.train.vae " + shlex.join(argv),
        "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (args.out / "README.md").write_text(model_card(args, info))
    (run_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    log(run_dir, f"done: {info}; model written to {args.out}")


def model_card(args: argparse.Namespace, info: dict) -> str:
    """README.md with Hub metadata: data and its terms, intended use, limitations, misuse, the training run,
    and a marked block that `bench/landscapes.py --card` fills with the held-out metrics."""
    name = args.out.name
    ref = "landscapes" if name == "landscapes-vae64" else str(args.out)  # the embedded name, or the folder
    arch = (
        "plain VAE (the baseline: L1 reconstruction + KL only)"
        if args.plain
        else "VAE-GAN (L1 + KL + discriminator feature matching + patch-GAN loss on reconstructions and prior samples)"
    )
    gan = (
        ""
        if args.plain
        else f" feature matching {args.fm}, adversarial {args.adv} x adaptive weight (from step {args.adv_start},"
        f" recomputed every {args.adapt_every}), R1 {args.r1} every {args.r1_every} steps,"
    )
    k = args.prior_components
    prior = f"{args.latent_dim}-d Gaussian prior" if k == 1 else f"prior of {k} {args.latent_dim}-d Gaussians"
    prior_tensors = (
        "`prior_mean` and `prior_factor`"
        if k == 1
        else "`mixture_weights`, `mixture_means` and `mixture_factors`, and their overall mean and covariance as"
        " `prior_mean` and `prior_factor`"
    )
    fit = " (EM in scikit-learn, k-means start)" if k > 1 else ""
    origin = f"trained from `{args.init_from}` onwards" if args.init_from else "trained from scratch"
    init = (
        f"- Initialised from `{args.init_from}` (encoder, decoder and latent Gaussian; discriminator and optimisers"
        " new): the steps and minutes below are this run's only, on top of that model's own training\n"
        if args.init_from
        else ""
    )
    return f"""---
license: other
license_name: research-non-commercial
license_link: https://www.kaggle.com/datasets/puneet6060/intel-image-classification
library_name: genlib
pipeline_tag: unconditional-image-generation
tags:
- genlib
- vae
- {"vae-baseline" if args.plain else "vae-gan"}
- image-generation
- landscapes
- safetensors
- cpu-trained
datasets:
- intel-image-classification
metrics:
- swd
- psnr
---

# {name}

A {info["parameters"] / 1e6:.1f}M-parameter {arch} for {args.resolution}x{args.resolution} landscapes
(forest, glacier, mountain, sea), {origin} on the CPU by `genlib.train.vae`. It samples new scenes
from a {prior} fitted to the encoded training images, encodes a photo (centre-cropped
to a square, Lanczos-resized to {args.resolution} px) into that latent, reconstructs it, makes variations,
interpolates between seeds and photos, and moves along the {args.directions} principal directions of the training
latents (stored in `model.safetensors` as `directions` and `direction_scales`, with the prior as {prior_tensors}).

```python
import genlib
from genlib.uploads import open_upload

m = genlib.load("{ref}")  # or a folder, or owner/name@revision
images = m.generate(8, seed=0, temperature=1.0)  # PIL images; same seed + weights -> same pixels
photo = open_upload("my_photo.jpg")  # any size or aspect; checked and converted to RGB
z = m.encode(photo)
frames = m.interpolate(0, photo, frames=16)  # from seed 0's sample to the photo's reconstruction
moved = m.decode(m.move(z, [2.0, 0, -1.0]))  # +2 std along direction 1, -1 along direction 3
```

## Training data
The natural-scene classes (forest, glacier, mountain, sea) of the Intel Image Classification dataset (Kaggle
`puneet6060/intel-image-classification`, first released by Intel for an Analytics Vidhya challenge), taken from
the GitHub repo `afroozsheikh/Intel-Image-Classifier` at commit `5b571f44a7fdd66301f05b6921c07ee71b9e324c`:
centre-cropped to a square, Lanczos-resized, de-duplicated and shuffled (genlib's shared/data/SOURCES.md, section B).
{info["train_images"]:,} images were trained on; the last {info["holdout"]} of the zip (by name) were held out and
are what the metrics below use.

**Licence and terms:** the source repo states no licence, and the dataset's own terms are not clearly stated;
Kaggle lists the data as (c) the original authors and it is usually described as free for research and
non-commercial use. **Treat these weights as research / non-commercial only** (hence `license: other`); genlib's
Apache-2.0 licence covers its code, not this model.

## Intended use
Demos of genlib (the Gradio app's landscapes tab), tests and teaching: a small generative model of scenery that
trains in about an hour on two CPU cores, and shows what a VAE's latent space does (sampling, encoding,
interpolation, directions).

## Limitations
{args.resolution}x{args.resolution} pixels only, four kinds of scene, about 6,000 training images: samples are small,
often only plausible at a glance, with smeared or repeated textures; buildings, people, animals, night scenes and
anything not in the data come out as the nearest forest, glacier, mountain or sea. A reconstruction keeps the layout
and colours of a photo, not its details. The principal directions are found without labels: what each one changes
(light, snow, water, season...) is whatever varies most in the data, and may mix several things.

## Misuse
Do not present its images, or its reconstructions and variations of a photo, as photographs of real places, or
use them as evidence of anything. Every PNG genlib writes carries its provenance and an AI-generated marker (IPTC
`trainedAlgorithmicMedia`); do not strip it.

## Training
{init}- Command: `{info["command"]}`
- Steps: {info["steps"]:,} (batch {info["batch"]}, {info["images_seen"]:,} images seen, {info["epochs"]:.1f} epochs
  of {info["train_images"]:,} images, random horizontal flips), in {info["sessions"]} session(s)
- Time: {info["train_minutes"]} minutes of training steps ({info["wall_minutes"]} minutes wall clock with sampling and
  checkpoints); hardware: {info["hardware"]}
- Adam (lr {args.lr}, betas ({args.beta1}, 0.99)), KL weight {args.kl} per nat,{gan} EMA half-life {args.ema_kimg}k images, bf16 autocast: {info["bf16_autocast"]}, seed {args.seed}
- Architecture: latent {args.latent_dim}, channels {args.channels} at full resolution (max {args.max_channels}); prior: {prior}{fit}
- Losses at the end: {", ".join(f"{k} {v}" for k, v in info["final_losses"].items())}

## Evaluation (held-out images)
<!-- bench:begin -->
**Placeholder: not measured yet.** Run
`python bench/landscapes.py --model {args.out} --card --grid {args.out}` to fill this section with SWD (samples
and reconstructions vs the {info["holdout"]} held-out images, beside the real-vs-real floor), reconstruction PSNR,
sharpness and speed, and to write `samples.png` and `reconstructions.png`.
<!-- bench:end -->
"""


if __name__ == "__main__":
    main()
