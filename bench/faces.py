"""Faces GAN quality and speed: SWD vs the real-vs-real floor, Haar face rate, 8x8 grid, images/s.

    python bench/faces.py --model faces --data ../shared/data/faces/train.zip

Real sets: the last 1,000 images of the zip (never trained on, see genlib/train/data.py) are the
held-out reference; the real-vs-real floor compares 1,000 *training* images with that same held-out
set, so both rows use the same sample sizes and the same reference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from haar import face_rate  # noqa: E402
from swd import swd  # noqa: E402

import genlib  # noqa: E402
from genlib.images import grid  # noqa: E402
from genlib.train.data import load_images, split_names, zip_names  # noqa: E402


def generated(model, n: int, truncation: float, seed0: int = 10_000) -> np.ndarray:
    out = []
    for s in range(seed0, seed0 + n, 100):
        out += [np.asarray(im) for im in model.generate(min(100, seed0 + n - s), seed=s, truncation=truncation)]
    return np.stack(out)


def speed(model, batch: int, reps: int) -> float:
    z = model.latents(list(range(batch)))
    with torch.no_grad():
        model(z)
        t = time.perf_counter()
        for _ in range(reps):
            model(z)
    return batch * reps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="faces")
    p.add_argument("--data", type=Path, default=Path("../shared/data/faces/train.zip"))
    p.add_argument("--holdout", type=int, default=1000)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--truncations", default="1.0,0.7")
    p.add_argument("--grid", type=Path, default=None, help="write the seeds 0-63 grid here (e.g. the model folder)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    model = genlib.load(args.model)
    names = zip_names(args.data)
    train, held = split_names(names, args.holdout)
    real = load_images(args.data, held, model.config.resolution)[: args.n]
    rng = np.random.default_rng(0)
    other = load_images(
        args.data, sorted(rng.choice(train, len(real), replace=False).tolist()), model.config.resolution
    )
    res: dict = {"model": args.model, "revision": model.source.revision, "n": len(real)}
    res["floor_swd"] = swd(other, real)
    res["real_face_rate"] = face_rate(real)
    res["train_face_rate"] = face_rate(other)
    for psi in [float(x) for x in args.truncations.split(",")]:
        fake = generated(model, len(real), psi)
        res[f"psi={psi}"] = {"swd": swd(fake, real), "face_rate": face_rate(fake)}
    res["images_per_s"] = {"batch1": speed(model, 1, 200), "batch64": speed(model, 64, 10)}
    if args.grid:
        grid(model.generate(64, seed=0, truncation=1.0), 8).save(args.grid / "samples.png")
        grid(model.generate(64, seed=0, truncation=0.7), 8).save(args.grid / "samples-psi0.7.png")
    print(json.dumps(res, indent=1))
    print("\n| set | SWD x1e3 (mean) | per level 64/32/16 | Haar face rate |\n|---|---|---|---|")
    f = res["floor_swd"]
    print(
        f"| real vs real (floor) | {f['mean']:.2f} | {f['64']:.2f} / {f['32']:.2f} / {f['16']:.2f} | "
        f"{res['real_face_rate']:.3f} (held-out), {res['train_face_rate']:.3f} (train) |"
    )
    for k, v in res.items():
        if k.startswith("psi="):
            s = v["swd"]
            print(
                f"| generated {k} | {s['mean']:.2f} ({s['mean'] / f['mean']:.2f}x floor) | "
                f"{s['64']:.2f} / {s['32']:.2f} / {s['16']:.2f} | {v['face_rate']:.3f} "
                f"({v['face_rate'] / res['real_face_rate']:.2f}x real) |"
            )
    print(f"\nimages/s: batch 1 {res['images_per_s']['batch1']:.1f}, batch 64 {res['images_per_s']['batch64']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
