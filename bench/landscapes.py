"""Landscapes VAE quality and speed: SWD of samples and of reconstructions vs the real-vs-real floor, PSNR,
sharpness, samples/s and the encode+decode latency of one photo; optional grids and model-card metrics.

    python bench/landscapes.py --model weights/landscapes-vae64 --grid weights/landscapes-vae64 --card
    python bench/landscapes.py --model weights/landscapes-vae64 --baseline ~/genlib-runs/landscapes-plain/model

Real sets: the last 500 images of the zip (never trained on, see genlib/train/data.py) are the held-out
reference; the floor compares 500 *training* images with that same held-out set. Reconstructions are of the
held-out images. Sharpness is the mean absolute Laplacian of the grayscale images divided by the held-out
reals' (1.0 = as much fine detail as the photos; a blurry model scores well below 1). `--baseline` measures a
second model (e.g. the plain VAE trained by `genlib.train.vae --plain`) on the same sets for comparison.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memorisation import DUPLICATE, grey16, nearest  # noqa: E402
from swd import swd  # noqa: E402

import genlib  # noqa: E402
from genlib.images import grid  # noqa: E402
from genlib.train.data import load_images, split_names, zip_names  # noqa: E402

CARD_BEGIN, CARD_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def generated(model, n: int, seed0: int = 10_000, temperature: float = 1.0) -> np.ndarray:
    out = []
    for s in range(seed0, seed0 + n, 100):
        out += [np.asarray(im) for im in model.generate(min(100, seed0 + n - s), seed=s, temperature=temperature)]
    return np.stack(out)


def reconstructed(model, real: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(real), 100):
        z = model.encode_images([Image.fromarray(a) for a in real[i : i + 100]])
        out += [np.asarray(im) for im in model.decode(z)]
    return np.stack(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the PSNR in dB (8-bit peak)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=(1, 2, 3))
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def detail(images: np.ndarray) -> float:
    """Mean absolute Laplacian of the grayscale images (0-255 scale): how much fine detail they hold."""
    x = torch.from_numpy(images).double().mean(dim=3, keepdim=True).permute(0, 3, 1, 2)
    k = torch.tensor([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=torch.float64).view(1, 1, 3, 3)
    return float(F.conv2d(x, k).abs().mean())


def speed(model, batch: int, reps: int) -> float:
    model.generate(batch, seed=0)
    t = time.perf_counter()
    for r in range(reps):
        model.generate(batch, seed=r)
    return batch * reps / (time.perf_counter() - t)


def photo_latency(model, real: np.ndarray, reps: int = 10) -> dict[str, float]:
    """Milliseconds (median) to encode and to decode one 1024x768 photo (crop + Lanczos resize included)."""
    photo = Image.fromarray(real[0]).resize((1024, 768), Image.Resampling.LANCZOS)
    enc, dec = [], []
    model.reconstruct(photo)
    for _ in range(reps):
        t0 = time.perf_counter()
        z = model.encode(photo)
        t1 = time.perf_counter()
        model.decode(z)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    e, d = 1e3 * float(np.median(enc)), 1e3 * float(np.median(dec))
    return {"encode_ms": e, "decode_ms": d, "encode_decode_ms": e + d}


def nearest_train(images: np.ndarray, train_grey: torch.Tensor) -> np.ndarray:
    """Each image's distance to its nearest training image, either way round (training used flips): mean absolute
    difference of 16x16 greyscale thumbnails, SOURCES.md's near-duplicate measure (0-255 scale)."""
    d0, _ = nearest(grey16(images), train_grey, "l1")
    d1, _ = nearest(grey16(images[:, :, ::-1].copy()), train_grey, "l1")
    return np.minimum(d0, d1)


def measure(
    ref: str, real: np.ndarray, other: np.ndarray, train_grey: torch.Tensor, floor: dict, reps: int, timed: bool = True
) -> dict:
    model = genlib.load(ref, device="cpu")
    if model.config.resolution != real.shape[1]:
        raise SystemExit(f"{ref} makes {model.config.resolution} px images; the reals are {real.shape[1]} px")
    fake = generated(model, len(real))
    rec = reconstructed(model, real)
    d_real = detail(real)
    d_fake, d_held = nearest_train(fake, train_grey), nearest_train(real, train_grey)
    return {
        "model": ref,
        "n": len(real),
        "model_type": model.model_type,
        "revision": model.source.revision,
        "parameters": model.num_parameters(),
        "samples_swd": swd(fake, real),
        "recon_swd": swd(rec, real),
        "recon_psnr_db": psnr(rec, real),
        "samples_sharpness": detail(fake) / d_real,
        "recon_sharpness": detail(rec) / d_real,
        "train_sharpness": detail(other) / d_real,
        "floor_swd": floor,
        "prior_components": model.config.prior_components,
        "nearest_train_grey16": {
            "samples_median": float(np.median(d_fake)),
            "heldout_median": float(np.median(d_held)),
            "samples_duplicates": int((d_fake < DUPLICATE).sum()),
            "heldout_duplicates": int((d_held < DUPLICATE).sum()),
        },
        **(
            {
                "images_per_s": {"batch1": speed(model, 1, 10 * reps), "batch64": speed(model, 64, max(1, reps // 5))},
                "photo": photo_latency(model, real),
            }
            if timed
            else {}
        ),
    }


def table(results: list[dict]) -> str:
    f = results[0]["floor_swd"]
    levels = [k for k in f if k != "mean"]
    per = lambda s: " / ".join(f"{s[k]:.2f}" for k in levels)  # noqa: E731
    lines = [
        f"| set | SWD x1e3 (mean) | per level {'/'.join(levels)} | PSNR (dB) | sharpness (reals = 1) |",
        "|---|---|---|---|---|",
        f"| real vs real (floor: {results[0]['n']} training vs held-out) | {f['mean']:.2f} | {per(f)} | | "
        f"{results[0]['train_sharpness']:.2f} |",
    ]
    for r in results:
        name = Path(r["model"]).name or r["model"]
        k = r.get("prior_components", 1)
        name += f" ({k} Gaussians)" if k > 1 else " (1 Gaussian)"
        for key, label in (("samples_swd", "samples"), ("recon_swd", "reconstructions")):
            s = r[key]
            ps = f"{r['recon_psnr_db']:.2f}" if key == "recon_swd" else ""
            sh = r["samples_sharpness" if key == "samples_swd" else "recon_sharpness"]
            lines.append(
                f"| {name}: {label} | {s['mean']:.2f} ({s['mean'] / f['mean']:.2f}x floor) | {per(s)} | {ps} | {sh:.2f} |"
            )
    lines.append("")
    for r in results:
        nt = r["nearest_train_grey16"]
        lines.append(
            f"- {Path(r['model']).name or r['model']}: nearest training image (16x16 grey, mean abs. difference):"
            f" median {nt['samples_median']:.1f} for samples, {nt['heldout_median']:.1f} for held-out photos;"
            f" near-duplicates (< {DUPLICATE:g}): {nt['samples_duplicates']} of {r['n']} samples,"
            f" {nt['heldout_duplicates']} of {r['n']} held-out photos"
        )
    for r in results:
        if "photo" not in r:
            continue
        name = Path(r["model"]).name or r["model"]
        sp, ph = r["images_per_s"], r["photo"]
        lines.append(
            f"- {name}: {sp['batch1']:.1f} samples/s at batch 1, {sp['batch64']:.1f} at batch 64; one 1024x768 photo: "
            f"encode {ph['encode_ms']:.1f} ms + decode {ph['decode_ms']:.1f} ms = {ph['encode_decode_ms']:.1f} ms"
        )
    return "\n".join(lines)


def write_card(folder: Path, results: list[dict], n: int) -> None:
    """Replace the marked evaluation block of the model folder's README.md with the measured table."""
    path = folder / "README.md"
    text = path.read_text()
    if CARD_BEGIN not in text or CARD_END not in text:
        raise SystemExit(f"{path} has no {CARD_BEGIN} ... {CARD_END} block to fill")
    from genlib.train.common import cpu_name

    block = (
        f"{CARD_BEGIN}\nMeasured by `bench/landscapes.py` on {n} held-out images ({n} samples, seeds 10000 and up,"
        f" temperature 1); CPU: {cpu_name()}, {torch.get_num_threads()} threads.\n\n"
        f"{table(results)}\n"
    )
    for name, alt in [
        ("samples.png", "samples, seeds 0-63"),
        ("reconstructions.png", "held-out originals, each beside its reconstruction"),
        ("samples-vs-baseline.png", "seeds 0-31: this model (top four rows), the baseline (bottom four)"),
    ]:
        if (folder / name).is_file():
            block += f"\n![{alt}]({name})\n"
    block += CARD_END
    text = re.sub(re.escape(CARD_BEGIN) + ".*?" + re.escape(CARD_END), lambda _: block, text, flags=re.S)
    path.write_text(text)


def write_grids(ref: str, real: np.ndarray, out: Path, baseline: str | None) -> None:
    model = genlib.load(ref, device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    grid(model.generate(64, seed=0), 8).save(out / "samples.png")
    originals = [Image.fromarray(a) for a in real[:32]]
    recs = model.decode(model.encode_images(originals))
    pairs = [im for pair in zip(originals, recs, strict=True) for im in pair]  # original, reconstruction, ...
    grid(pairs, 8).save(out / "reconstructions.png")
    if baseline:
        base = genlib.load(baseline, device="cpu")
        # Top four rows: this model, seeds 0-31; bottom four: the baseline, same seeds.
        grid(model.generate(32, seed=0) + base.generate(32, seed=0), 8).save(out / "samples-vs-baseline.png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="landscapes", help="model reference (embedded name, folder, owner/name@rev)")
    p.add_argument("--baseline", default=None, help="a second model to measure on the same sets (the plain VAE)")
    p.add_argument(
        "--also", action="append", default=[], metavar="REF", help="more models to measure (repeatable), untimed"
    )
    p.add_argument("--no-speed", action="store_true", help="quality only: skip the timings")
    p.add_argument("--data", type=Path, default=Path("../shared/data/landscapes/train.zip"))
    p.add_argument("--holdout", type=int, default=500)
    p.add_argument("--n", type=int, default=500, help="held-out images and samples compared (at most --holdout)")
    p.add_argument("--reps", type=int, default=10, help="timing repetitions")
    p.add_argument("--grid", type=Path, default=None, help="write samples.png and reconstructions.png here")
    p.add_argument("--card", action="store_true", help="fill the metrics block of the model folder's README.md")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    res = genlib.load(args.model, device="cpu").config.resolution
    if args.baseline and genlib.load(args.baseline, device="cpu").config.resolution != res:
        raise SystemExit(f"--baseline {args.baseline} has another resolution than --model {args.model}")
    names = zip_names(args.data)
    train, held = split_names(names, args.holdout)
    real = load_images(args.data, held, res)[: args.n]
    rng = np.random.default_rng(0)
    other = load_images(args.data, sorted(rng.choice(train, len(real), replace=False).tolist()), res)
    floor = swd(other, real)
    train_grey = grey16(load_images(args.data, train, res))  # for the nearest-training-image check, once
    timed = not args.no_speed
    results = [measure(args.model, real, other, train_grey, floor, args.reps, timed)]
    if args.baseline:
        results.append(measure(args.baseline, real, other, train_grey, floor, args.reps, timed))
    results += [measure(ref, real, other, train_grey, floor, args.reps, timed=False) for ref in args.also]
    print(json.dumps(results, indent=1))
    print()
    print(table(results))
    if args.grid:
        write_grids(args.model, real, args.grid, args.baseline)
    if args.card and args.grid != Path(args.model):
        write_grids(args.model, real, Path(args.model), args.baseline)  # the card shows them
    if args.card:
        folder = Path(args.model)
        if not folder.is_dir():
            raise SystemExit("--card needs --model to be a local model folder")
        write_card(folder, results, len(real))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
