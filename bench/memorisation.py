"""Memorisation check of the faces GAN: how close generated faces come to the training faces.

    python bench/bias.py ...          # first: trains and saves the attribute classifier used for "features"
    python bench/memorisation.py --data ../shared/data/faces/train.zip --card --json /tmp/memorisation.json

For `--n` generated faces per ψ and for the GAN's held-out real faces (the baseline: real faces it never
saw), the distance to the nearest training face, each training face also mirrored (training used random
flips), in three spaces: 64x64 RGB pixels (RMS difference), SOURCES.md's near-duplicate measure (mean
absolute difference of 16x16 box-filtered greyscale thumbnails, duplicates < 10), and the attribute
classifier's penultimate features (cosine distance). Writes the closest pairs side by side as a PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from attributes import DEFAULT_CLASSIFIER, generated, load_classifier, load_faces, predict  # noqa: E402
from card import write_section  # noqa: E402

import genlib  # noqa: E402

DUPLICATE = 10.0  # SOURCES.md: 16x16 greyscale mean absolute difference below this is a near-duplicate
SPACES = {
    "pixels": "pixels: RMS difference of the 64x64 RGB images (0-255)",
    "grey16": "16x16 grey: mean absolute difference of 16x16 box-filtered greyscale thumbnails (0-255)",
    "features": "features: cosine distance of the attribute classifier's penultimate features (centred on the training mean)",
}
CHUNK = 250


def grey16(images: np.ndarray) -> torch.Tensor:
    """(N, 256) float: ITU-R 601 luma (as PIL's "L"), averaged over 4x4 boxes of a 64x64 image."""
    g = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    n, h, w = g.shape
    return torch.from_numpy(g.reshape(n, 16, h // 16, 16, w // 16).mean(axis=(2, 4)).reshape(n, 256))


def pixels(images: np.ndarray) -> torch.Tensor:
    """(N, 12288) float in [-1, 1] (centred, so the squared-norm expansion stays exact enough in float32)."""
    return torch.from_numpy(images.reshape(len(images), -1)).float().div_(127.5).sub_(1)


def nearest(q: torch.Tensor, ref: torch.Tensor, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest reference row: 'rms', 'l1' (mean absolute) or 'cos'."""
    dist, idx = [], []
    ref_sq = ref.pow(2).sum(1) if metric == "rms" else None
    for i in range(0, len(q), CHUNK):
        c = q[i : i + CHUNK]
        if metric == "rms":
            d = (c.pow(2).sum(1, keepdim=True) + ref_sq - 2 * c @ ref.T).clamp_min_(0).div_(ref.shape[1]).sqrt_()
            d.mul_(127.5)  # back to the 0-255 scale
        elif metric == "l1":
            d = torch.cdist(c, ref, p=1).div_(ref.shape[1])
        else:
            d = 1 - c @ ref.T
        m = d.min(1)
        dist.append(m.values.numpy())
        idx.append(m.indices.numpy())
    return np.concatenate(dist), np.concatenate(idx)


def nearest_mirrored(q_images: np.ndarray, refs: dict[str, torch.Tensor], q_feats: dict[str, np.ndarray]) -> dict:
    """Per space: distance, training index and whether the match is mirrored (min over the query and its mirror)."""
    out = {}
    both = [q_images, q_images[:, :, ::-1]]
    for space, metric in (("pixels", "rms"), ("grey16", "l1"), ("features", "cos")):
        if space not in refs:
            continue
        if space == "features":
            qs = [torch.from_numpy(f) for f in q_feats["both"]]
        else:
            qs = [pixels(b) if space == "pixels" else grey16(b) for b in both]
        (d0, i0), (d1, i1) = (nearest(x, refs[space], metric) for x in qs)
        flip = d1 < d0
        out[space] = {"dist": np.where(flip, d1, d0), "index": np.where(flip, i1, i0), "mirrored": flip}
    return out


def unit(f: np.ndarray) -> np.ndarray:
    return f / np.linalg.norm(f, axis=1, keepdims=True).clip(1e-8)


def summary(d: np.ndarray, held: np.ndarray | None = None) -> dict[str, float]:
    s = {
        "min": float(d.min()),
        "p1": float(np.percentile(d, 1)),
        "p5": float(np.percentile(d, 5)),
        "median": float(np.median(d)),
    }
    if held is not None:
        s["below_held_p1"] = float((d < np.percentile(held, 1)).mean())
        s["median_vs_held"] = s["median"] / float(np.median(held))
    return s


def pairs_image(queries: np.ndarray, train: np.ndarray, match: dict, k: int, path: Path) -> list[int]:
    """The k queries closest to a training face (16x16 grey) on top, their nearest training face below."""
    order = np.argsort(match["dist"])[:k]
    top = Image.new("RGB", (64 * k, 128))
    for col, i in enumerate(order):
        t = train[match["index"][i]]
        top.paste(Image.fromarray(queries[i]), (64 * col, 0))
        top.paste(Image.fromarray(np.ascontiguousarray(t[:, ::-1] if match["mirrored"][i] else t)), (64 * col, 64))
    path.parent.mkdir(parents=True, exist_ok=True)
    top.save(path, optimize=True)
    return order.tolist()


def fmt(v: float, space: str) -> str:
    return f"{v:.4f}" if space == "features" else f"{v:.2f}"


def markdown(r: dict) -> str:
    lines = [
        f"`python bench/memorisation.py --card`: for {r['n']:,} generated faces per ψ (seeds {r['seed0']:,}-"
        f"{r['seed0'] + r['n'] - 1:,}) and the {r['held']:,} held-out real faces (never trained on: the baseline), "
        f"the distance to the nearest of the {r['train']:,} training faces, each also mirrored (training used "
        "random flips), in three spaces:",
        "",
    ]
    lines += [f"- {SPACES[s]}" for s in r["spaces"]]
    if "features" in r["spaces"]:
        lines.append(
            "  (256 numbers per face from the bias audit's classifier, which never trained on the held-out faces: a "
            "learned face space that is less sensitive than pixels to small shifts, lighting and background; it "
            "is not a face-recognition embedding, so it shows similar-looking faces, not the same person)."
        )
    lines += [
        "",
        "| space | set | min | 1st percentile | median | median vs held-out | below the held-out 1st percentile |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in r["spaces"]:
        h = r["held_out"][s]
        lines.append(
            f"| {s} | held-out real | {fmt(h['min'], s)} | {fmt(h['p1'], s)} | {fmt(h['median'], s)} | 1.00x | 1% |"
        )
        for p in r["psis"]:
            g = r["generated"][str(p)][s]
            lines.append(
                f"| {s} | generated ψ={p} | {fmt(g['min'], s)} | {fmt(g['p1'], s)} | {fmt(g['median'], s)} | "
                f"{g['median_vs_held']:.2f}x | {100 * g['below_held_p1']:.1f}% |"
            )
    dup = ", ".join(f"{r['duplicates'][str(p)]:,} of {r['n']:,} at ψ={p}" for p in r["psis"])
    lines += [
        "",
        f"**Near-duplicates of a training face** (16x16 grey distance < {DUPLICATE:g}, SOURCES.md's threshold): {dup}. "
        f"Held-out real faces: {r['duplicates']['held_out']} (the data builder removed near-duplicates across the "
        "whole set before splitting, but without mirroring: a held-out face under the threshold here matches a "
        "mirrored training face; the generated ones are not filtered at all).",
        "",
        f"![closest pairs]({Path(r['image']).name})",
        "",
        f"`{Path(r['image']).name}`: the {len(r['closest'])} generated faces (ψ={r['psis'][0]}, top) closest to a training face "
        "(bottom, mirrored when that matched better) in 16x16 grey distance: "
        + ", ".join(f"{c['grey16']:.1f}" for c in r["closest"])
        + f" (seeds {', '.join(str(c['seed']) for c in r['closest'])}).",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="faces")
    p.add_argument("--data", type=Path, default=Path("../shared/data/faces/train.zip"))
    p.add_argument("--holdout", type=int, default=1000, help="as in training (genlib/train/gan.py --holdout)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("~/genlib-runs/faces").expanduser(),
        help="the GAN trainer's decoded-images cache (reused when present)",
    )
    p.add_argument("--n", type=int, default=2000, help="generated faces per ψ")
    p.add_argument("--seed0", type=int, default=10_000)
    p.add_argument("--truncations", default="1.0,0.7", help="the first one is shown in the closest-pairs image")
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER, help="saved by bench/bias.py")
    p.add_argument("--no-features", action="store_true", help="pixel spaces only (no classifier needed)")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--image", type=Path, default=None, help="closest-pairs PNG (default: next to --card)")
    p.add_argument("--limit", type=int, default=0, help="smoke test: only the first N training and held-out faces")
    p.add_argument(
        "--card",
        type=Path,
        nargs="?",
        const=Path("weights/faces-gan64/README.md"),
        default=None,
        help="update the memorisation section of this model card",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if not args.no_features and not args.classifier.exists():
        sys.exit(f"{args.classifier} not found: run bench/bias.py first (it saves the classifier), or --no-features")

    faces = load_faces(args.data, args.holdout, args.cache_dir, args.limit)
    model = genlib.load(args.model)
    psis = [float(s) for s in args.truncations.split(",")]
    queries = {"held_out": faces.held} | {str(psi): generated(model, args.n, psi, args.seed0) for psi in psis}
    refs = {"pixels": pixels(faces.train), "grey16": grey16(faces.train)}
    feats: dict[str, dict[str, np.ndarray]] = {k: {} for k in queries}
    if not args.no_features:
        clf = load_classifier(args.classifier)
        train_feats = predict(clf, faces.train)[1]
        mu = train_feats.mean(0)  # centred: ReLU features share a large positive component
        refs["features"] = torch.from_numpy(unit(train_feats - mu))
        for k, im in queries.items():
            feats[k]["both"] = [unit(predict(clf, x)[1] - mu) for x in (im, np.ascontiguousarray(im[:, :, ::-1]))]
    matches = {k: nearest_mirrored(im, refs, feats[k]) for k, im in queries.items()}
    spaces = list(refs)
    held = matches["held_out"]
    res: dict = {
        "model": args.model,
        "revision": model.source.revision,
        "n": args.n,
        "seed0": args.seed0,
        "psis": psis,
        "train": len(faces.train),
        "held": len(faces.held),
        "spaces": spaces,
        "threads": torch.get_num_threads(),
        "held_out": {s: summary(held[s]["dist"]) for s in spaces},
        "generated": {str(p): {s: summary(matches[str(p)][s]["dist"], held[s]["dist"]) for s in spaces} for p in psis},
        "duplicates": {k: int((m["grey16"]["dist"] < DUPLICATE).sum()) for k, m in matches.items()},
    }
    first = str(psis[0])
    image = args.image or (args.card.parent / "closest-pairs.png" if args.card else Path("closest-pairs.png"))
    order = pairs_image(queries[first], faces.train, matches[first]["grey16"], args.pairs, image)
    res["closest"] = [
        {
            "seed": args.seed0 + i,
            "train_name": faces.train_names[int(matches[first]["grey16"]["index"][i])],
            "mirrored": bool(matches[first]["grey16"]["mirrored"][i]),
            **{s: float(matches[first][s]["dist"][i]) for s in spaces},
        }
        for i in order
    ]
    res["image"] = str(image)
    md = markdown(res)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.card:
        write_section(args.card, "memorisation", md)


if __name__ == "__main__":
    main()
