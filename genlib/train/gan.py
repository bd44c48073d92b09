"""Train the faces GAN: non-saturating loss, lazy R1 penalty, EMA generator, bf16 autocast on the CPU.

    python -m genlib.train.gan --data ../shared/data/faces/train.zip --out weights/faces-gan64 --minutes 65

Resumable: rerun the same command and it continues from `--run-dir`'s last checkpoint. The last
`--holdout` images of the zip are never trained on (bench/faces.py measures on them).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genlib.images import grid
from genlib.models.gan import Discriminator, GANConfig, Generator
from genlib.train.checkpoint import load_checkpoint, save_checkpoint
from genlib.train.common import add_bf16_argument, cpu_name, log, use_bf16
from genlib.train.data import load_images, split_names, zip_names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m genlib.train.gan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=Path("../shared/data/faces/train.zip"), help="zip of face JPEGs")
    p.add_argument("--out", type=Path, default=Path("weights/faces-gan64"), help="model folder written at the end")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("~/genlib-runs/faces").expanduser(),
        help="checkpoints, log and sample grids (outside the repo)",
    )
    p.add_argument("--minutes", type=float, default=65.0, help="training time budget, summed over resumes")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--max-channels", type=int, default=256)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta1", type=float, default=0.0, help="Adam beta1 for both networks")
    p.add_argument("--r1", type=float, default=1.0, help="R1 gradient penalty weight (gamma)")
    p.add_argument("--r1-every", type=int, default=8, help="apply R1 every N steps (lazy regularisation)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the sampling generator")
    p.add_argument("--holdout", type=int, default=1000, help="last N images of the zip kept out of training")
    p.add_argument("--seed", type=int, default=0)
    add_bf16_argument(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--ckpt-minutes", type=float, default=5.0)
    p.add_argument("--sample-minutes", type=float, default=10.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time budget only)")
    return p.parse_args(argv)


def real_batch(data: np.ndarray, idx: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(data[idx.numpy()]).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
    flip = torch.rand(x.shape[0]) < 0.5  # faces are left-right symmetric enough
    x[flip] = x[flip].flip(3)
    return x


@torch.no_grad()
def finalise_w_avg(g: Generator, n: int = 20000, seed: int = 1234) -> None:
    z = torch.randn(n, g.config.z_dim, generator=torch.Generator().manual_seed(seed))
    g.w_avg.copy_(g.mapping(z).mean(0))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = args.run_dir
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)

    names = zip_names(args.data)
    train_names, held = split_names(names, args.holdout)
    log(run_dir, f"data {args.data}: {len(names)} images, training on {len(train_names)}, holding out {len(held)}")
    t0 = time.time()
    data = load_images(args.data, train_names, args.resolution, cache_dir=run_dir)
    log(run_dir, f"decoded {data.shape} in {time.time() - t0:.1f}s")

    cfg = GANConfig(
        resolution=args.resolution,
        z_dim=args.z_dim,
        w_dim=args.z_dim,
        channels=args.channels,
        max_channels=args.max_channels,
    )
    g, d = Generator(cfg), Discriminator(cfg)
    g_ema = copy.deepcopy(g).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(args.beta1, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(args.beta1, 0.99))
    modules = {"g": g, "d": d, "g_ema": g_ema}
    optims = {"g": opt_g, "d": opt_d}
    ckpt = run_dir / "checkpoint"
    meta = load_checkpoint(ckpt, modules, optims) or {"step": 0, "train_seconds": 0.0, "images": 0}
    if meta["step"]:
        log(run_dir, f"resumed at step {meta['step']} ({meta['train_seconds'] / 60:.1f} min trained)")
    step, train_s = meta["step"], meta["train_seconds"]
    gen = torch.Generator().manual_seed(args.seed + step)
    fixed_z = g_ema.latents(list(range(64)))
    bf16 = use_bf16(args)
    budget = args.minutes * 60
    last_ckpt = last_sample = time.time()
    tick, stats = time.time(), []

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    while train_s < budget and not (args.max_steps and step >= args.max_steps):
        t_step = time.time()
        idx = torch.randint(0, len(data), (args.batch,), generator=gen)
        real = real_batch(data, idx)
        # Discriminator: logistic loss on real vs (detached) fake.
        z = torch.randn(args.batch, cfg.z_dim, generator=gen)
        with autocast():
            fake = g(z)
            d_real, d_fake = d(real).float(), d(fake.detach()).float()
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if args.r1 and step % args.r1_every == 0:
            # Lazy R1: penalise D's gradient on real images (in float32), scaled by the interval.
            x = real[: args.batch // 2].detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
            (args.r1 / 2 * args.r1_every * grad.pow(2).sum(dim=(1, 2, 3)).mean()).backward()
        opt_d.step()
        # Generator: non-saturating loss through a fresh batch.
        z = torch.randn(args.batch, cfg.z_dim, generator=gen)
        with autocast():
            loss_g = F.softplus(-d(g(z)).float()).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # EMA of the generator (ramped up early so the average is not dominated by the random init).
        beta = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
                pe.lerp_(p, 1 - beta)
        step += 1
        train_s += time.time() - t_step
        stats.append((loss_d.item(), loss_g.item(), d_real.float().mean().item(), d_fake.float().mean().item()))
        if step % 50 == 0:
            ld, lg, dr, df = np.mean(stats, axis=0)
            rate = 50 * args.batch / (time.time() - tick)
            log(
                run_dir,
                f"step {step} img {step * args.batch} min {train_s / 60:.1f} loss_d {ld:.3f} loss_g {lg:.3f} "
                f"D(real) {dr:.2f} D(fake) {df:.2f} {rate:.1f} img/s",
            )
            tick, stats = time.time(), []
        if time.time() - last_sample > args.sample_minutes * 60:
            finalise_w_avg(g_ema)
            grid(g_ema.images_from_latents(fixed_z), 8).save(run_dir / "samples" / f"{step:07d}.png")
            last_sample = time.time()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save_checkpoint(
                ckpt, modules, optims, {"step": step, "train_seconds": train_s, "images": step * args.batch}
            )
            last_ckpt = time.time()

    save_checkpoint(ckpt, modules, optims, {"step": step, "train_seconds": train_s, "images": step * args.batch})
    finalise_w_avg(g_ema)
    grid(g_ema.images_from_latents(fixed_z), 8).save(run_dir / "samples" / f"{step:07d}.png")
    g_ema.save_pretrained(args.out)
    info = {
        "steps": step,
        "images_seen": step * args.batch,
        "train_minutes": round(train_s / 60, 1),
        "batch": args.batch,
        "bf16_autocast": bf16,
        "train_images": len(train_names),
        "holdout": args.holdout,
        "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    (run_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    log(run_dir, f"done: {info}; model written to {args.out}")


if __name__ == "__main__":
    main()
