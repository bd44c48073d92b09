"""Bias audit of the faces GAN: perceived age group, gender and race of generated vs training faces.

    python bench/bias.py --data ../shared/data/faces/train.zip --card --json /tmp/bias.json

Trains the attribute classifier of bench/attributes.py on the UTKFace faces the GAN trained on, scores it
on the UTKFace faces among the GAN's 1,000 held-out, then compares its perceived-label shares over every
training face (UTKFace and CelebA) with those over `--n` generated faces at each ψ. Everything reported
is what this classifier perceives in 64x64 images, not a fact about any person. The classifier is saved
(`--classifier`) for bench/memorisation.py.
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
from attributes import (  # noqa: E402
    ATTRS,
    DEFAULT_CLASSIFIER,
    UTK_SOURCE,
    generated,
    load_faces,
    pct,
    predict,
    save_classifier,
    train_classifier,
)
from card import write_section  # noqa: E402

import genlib  # noqa: E402

NAMES = {"age": "age group", "gender": "gender", "race": "race"}


def shares(labels: np.ndarray, k: int) -> list[float]:
    return (np.bincount(labels, minlength=k) / max(1, len(labels))).tolist()


def perceived(probs: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Share of images whose most probable class is each group, per attribute."""
    return {a: shares(p.argmax(1), len(ATTRS[a])) for a, p in probs.items()}


def accuracy(probs: dict[str, np.ndarray], y: np.ndarray, y_train: np.ndarray) -> dict[str, dict]:
    """Held-out accuracy, per-group recall, and the baselines: training-majority class and chance."""
    out = {}
    for j, (a, groups) in enumerate(ATTRS.items()):
        pred, true = probs[a].argmax(1), y[:, j]
        major = int(np.bincount(y_train[:, j], minlength=len(groups)).argmax())
        recall = [
            float((pred[true == c] == c).mean()) if (true == c).any() else float("nan") for c in range(len(groups))
        ]
        out[a] = {
            "accuracy": float((pred == true).mean()),
            "majority_class": groups[major],
            "majority_baseline": float((true == major).mean()),
            "chance": 1 / len(groups),
            "recall": recall,
        }
    return out


def extremes(
    gen: dict[str, list[float]], train: dict[str, list[float]], min_share: float = 0.01
) -> dict[str, tuple[str, float]]:
    """The groups (of at least `min_share` of training faces) with the largest and smallest generated/training ratio."""
    ratios = [
        (f"{a} {g}", gen[a][i] / train[a][i])
        for a, gs in ATTRS.items()
        for i, g in enumerate(gs)
        if train[a][i] >= min_share
    ] or [("none", float("nan"))]
    return {"over": max(ratios, key=lambda r: r[1]), "under": min(ratios, key=lambda r: r[1])}


def markdown(r: dict) -> str:
    acc, psis = r["accuracy"], r["psis"]
    lines = [
        f"`python bench/bias.py --card` (seeds {r['seed0']:,}-{r['seed0'] + r['n'] - 1:,} at each ψ). A perceived-attribute "
        f"classifier (`bench/attributes.py`: a {r['classifier']['parameters'] / 1e6:.1f}M-parameter CNN, "
        f"{r['classifier']['epochs']} epochs, {r['classifier']['train_seconds'] / 60:.1f} min on this CPU) was trained "
        f"on the {r['utk_train']:,} UTKFace faces the GAN trained on, with UTKFace's annotations (age in years, "
        "gender, race) as labels, and scored on the "
        f"{r['utk_held']:,} UTKFace faces among the GAN's 1,000 held-out faces (neither model trained on them).",
        "",
        "| attribute | held-out accuracy | majority-class baseline | chance |",
        "|---|---|---|---|",
    ]
    for a, groups in ATTRS.items():
        v = acc[a]
        lines.append(
            f"| {NAMES[a]} ({len(groups)} groups) | {pct(v['accuracy'])} | {pct(v['majority_baseline'])} "
            f"({v['majority_class']}) | {pct(v['chance'])} |"
        )
    head = " | ".join(f"generated ψ={p}" for p in psis)
    lines += [
        "",
        "Share of faces the classifier labels as each group (its most probable class). Ratio = generated share / "
        "training share.",
        "",
        f"| perceived | held-out recall | held-out UTKFace ({r['utk_held']:,}): annotated / perceived | held-out, all "
        f"({r['held_faces']:,}): perceived | training faces ({r['train_faces']:,}): perceived | {head} |",
        "|---|---|---|---|---|" + "---|" * len(psis),
    ]
    for a, groups in ATTRS.items():
        for i, g in enumerate(groups):
            t = r["train_perceived"][a][i]
            cells = [
                f"{pct(r['generated'][str(p)][a][i])} ({r['generated'][str(p)][a][i] / t:.2f}x)" if t else "n/a"
                for p in psis
            ]
            lines.append(
                f"| {NAMES[a]} {g} | {pct(acc[a]['recall'][i])} | {pct(r['held_annotated'][a][i])} / "
                f"{pct(r['held_perceived'][a][i])} | {pct(r['held_all_perceived'][a][i])} | {pct(t)} | "
                f"{' | '.join(cells)} |"
            )
    lines.append("")
    for p in psis:
        e = r["extremes"][str(p)]
        lines.append(
            f"- ψ={p}: most over-represented, perceived {e['over'][0]} ({e['over'][1]:.2f}x the training share); "
            f"most under-represented, perceived {e['under'][0]} ({e['under'][1]:.2f}x)."
        )
    lines += [
        "(Over groups the classifier gives at least 1% of the training faces.) The classifier trained on the UTKFace "
        "part of the training faces, so it fits them better than unseen faces; the held-out column (the same "
        "source mix, never trained on by either model) shows how much that matters.",
    ]
    lines += [
        "",
        f"The training faces are {r['train_faces_utk']:,} UTKFace and {r['train_faces'] - r['train_faces_utk']:,} "
        "CelebA crops (see Training); only the UTKFace part has age, gender and race annotations, so the "
        "classifier learned from UTKFace alone and its view of the CelebA part (web photos of celebrities) and of "
        "generated faces is an extrapolation. These are a classifier's perceptions of 64x64 images, with the "
        "error rates above and UTKFace's five-way race annotation scheme and binary gender labels; they "
        "describe how the model's output shifts relative to its training data, not the identity of anyone.",
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
    p.add_argument("--truncations", default="1.0,0.7,0.5")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER, help="where to save the classifier")
    p.add_argument("--limit", type=int, default=0, help="smoke test: only the first N training and held-out faces")
    p.add_argument(
        "--card",
        type=Path,
        nargs="?",
        const=Path("weights/faces-gan64/README.md"),
        default=None,
        help="update the bias-audit section of this model card",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    faces = load_faces(args.data, args.holdout, args.cache_dir, args.limit)
    x_train, y_train = faces.utk("train")
    x_held, y_held = faces.utk("held")
    print(f"UTKFace with labels: {len(x_train)} training, {len(x_held)} held-out; {len(faces.train)} training faces")
    t0 = time.time()
    clf = train_classifier(x_train, y_train, epochs=args.epochs)
    train_s = time.time() - t0
    held_probs, _ = predict(clf, x_held)
    acc = accuracy(held_probs, y_held, y_train)
    n_params = sum(q.numel() for q in clf.parameters())
    save_classifier(
        clf,
        args.classifier,
        {
            "epochs": str(args.epochs),
            "utk_train": str(len(x_train)),
            "accuracy": json.dumps({a: v["accuracy"] for a, v in acc.items()}),
        },
    )
    print(f"classifier saved to {args.classifier}: " + ", ".join(f"{a} {pct(v['accuracy'])}" for a, v in acc.items()))

    model = genlib.load(args.model)
    psis = [float(s) for s in args.truncations.split(",")]
    gen = {}
    for psi in psis:
        gen[str(psi)] = perceived(predict(clf, generated(model, args.n, psi, args.seed0))[0])
    train_perc = perceived(predict(clf, faces.train)[0])
    res = {
        "model": args.model,
        "revision": model.source.revision,
        "n": args.n,
        "seed0": args.seed0,
        "psis": psis,
        "groups": ATTRS,
        "utk_train": len(x_train),
        "utk_held": len(x_held),
        "train_faces": len(faces.train),
        "train_faces_utk": sum(faces.sources.get(n) == UTK_SOURCE for n in faces.train_names),
        "classifier": {
            "parameters": n_params,
            "epochs": args.epochs,
            "train_seconds": train_s,
            "path": str(args.classifier),
            "threads": torch.get_num_threads(),
        },
        "accuracy": acc,
        "held_annotated": {a: shares(y_held[:, j], len(g)) for j, (a, g) in enumerate(ATTRS.items())},
        "held_perceived": perceived(held_probs),
        "held_faces": len(faces.held),
        "held_all_perceived": perceived(predict(clf, faces.held)[0]),
        "train_perceived": train_perc,
        "generated": gen,
        "extremes": {k: extremes(v, train_perc) for k, v in gen.items()},
    }
    md = markdown(res)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.card:
        write_section(args.card, "bias-audit", md)


if __name__ == "__main__":
    main()
