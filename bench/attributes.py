"""Perceived-attribute classifier for the faces audits (bench/bias.py, bench/memorisation.py), and their data.

A small plain-PyTorch CNN with three heads (age group, gender, race), trained from scratch on the UTKFace
part of `faces/train.zip`. UTKFace file names are `age_gender_race_date.jpg.chip.jpg`: gender 0 male,
1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others. Those are UTKFace's annotations; what the
classifier outputs is what it *perceives* in a 64x64 image, not a fact about anyone.

The split is the GAN's (genlib/train/data.py split_names): the classifier trains only on UTKFace faces the
GAN trained on, and is scored on the UTKFace faces among the GAN's held-out 1,000.
"""

from __future__ import annotations

import csv
import gzip
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from genlib.train.data import load_images, split_names, zip_names

ATTRS: dict[str, list[str]] = {
    "age": ["0-19", "20-39", "40-59", "60+"],
    "gender": ["male", "female"],
    "race": ["White", "Black", "Asian", "Indian", "Others"],
}
UTK_SOURCE = "mattans/AgeProgression"
DEFAULT_CLASSIFIER = Path("~/genlib-runs/audit/attributes.safetensors").expanduser()


def age_group(age: int) -> int:
    return min(age // 20, 3)


def utk_labels(source_path: str) -> tuple[int, int, int] | None:
    """(age group, gender, race) from a UTKFace file name, or None for the few malformed names."""
    parts = source_path.rsplit("/", 1)[-1].split("_")
    if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    age, gender, race = (int(p) for p in parts[:3])
    if not (0 <= age <= 120 and gender in (0, 1) and 0 <= race <= 4):
        return None
    return age_group(age), gender, race


def manifest_labels(manifest: Path) -> tuple[dict[str, tuple[int, int, int]], dict[str, str]]:
    """(UTKFace labels by file name, source repo by file name) from faces/manifest.csv.gz."""
    labels, sources = {}, {}
    with gzip.open(manifest, "rt", newline="") as f:
        for row in csv.DictReader(f):
            sources[row["name"]] = row["source"]
            if row["source"] == UTK_SOURCE and (lab := utk_labels(row["source_path"])) is not None:
                labels[row["name"]] = lab
    return labels, sources


@dataclass
class Faces:
    """The GAN's split of train.zip, decoded at 64x64, with UTKFace labels where they exist."""

    train_names: list[str]
    held_names: list[str]
    train: np.ndarray  # (N, 64, 64, 3) uint8: every face the GAN trained on (or the first --limit)
    held: np.ndarray  # the GAN's held-out faces
    labels: dict[str, tuple[int, int, int]]
    sources: dict[str, str]

    def utk(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels (N, 3)) of the labelled UTKFace faces of 'train' or 'held'."""
        names, images = (self.train_names, self.train) if split == "train" else (self.held_names, self.held)
        idx = [i for i, n in enumerate(names) if n in self.labels]
        return images[idx], np.array([self.labels[names[i]] for i in idx], dtype=np.int64).reshape(-1, 3)


def load_faces(data: Path, holdout: int = 1000, cache_dir: Path | None = None, limit: int = 0) -> Faces:
    """Decode the split (training faces from the GAN trainer's .npy cache if present); `limit` for smoke runs."""
    train_names, held_names = split_names(zip_names(data), holdout)
    if limit:
        train_names, held_names = train_names[:limit], held_names[:limit]
        cache_dir = None
    labels, sources = manifest_labels(data.parent / "manifest.csv.gz")
    train = load_images(data, train_names, 64, cache_dir=cache_dir)
    held = load_images(data, held_names, 64)
    return Faces(train_names, held_names, train, held, labels, sources)


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class AttributeNet(nn.Module):
    """64x64 RGB -> logits per attribute. Four stride-2 stages (32, 64, 128, 256 channels), global average pool."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        chans, layers, c = [width, width * 2, width * 4, width * 8], [], 3
        for w in chans:
            layers += [_block(c, w, 2), _block(w, w, 1)]
            c = w
        self.trunk = nn.Sequential(*layers)
        self.drop = nn.Dropout(0.2)
        self.heads = nn.ModuleDict({k: nn.Linear(c, len(v)) for k, v in ATTRS.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer: (N, 8 * width) pooled features."""
        return self.trunk(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.drop(self.features(x))
        return {k: h(f) for k, h in self.heads.items()}


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], channels-last."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
    return x.contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a shift of up to 4 px (reflect padding)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    dy, dx = (int(v) for v in torch.randint(0, 9, (2,), generator=gen))
    return F.pad(x, (4, 4, 4, 4), mode="reflect")[:, :, dy : dy + 64, dx : dx + 64]


def train_classifier(
    images: np.ndarray, labels: np.ndarray, epochs: int = 6, batch: int = 128, lr: float = 3e-3, seed: int = 0
) -> AttributeNet:
    """Multi-task cross-entropy, AdamW with a one-cycle schedule, bf16 autocast on the CPU."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AttributeNet().to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = max(1, len(images) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    y = torch.from_numpy(labels)
    t0 = time.time()
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=gen)
        losses = []
        for s in range(steps_per_epoch):
            idx = perm[s * batch : (s + 1) * batch]
            x = augment(to_input(images[idx.numpy()]), gen)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
            loss = sum(F.cross_entropy(out[k].float(), y[idx, j]) for j, k in enumerate(ATTRS))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        print(
            f"classifier epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f} ({time.time() - t0:.0f} s)", flush=True
        )
    return model.eval()


@torch.no_grad()
def predict(model: AttributeNet, images: np.ndarray, batch: int = 500) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(class probabilities per attribute, penultimate features) for uint8 NHWC images."""
    probs: dict[str, list[np.ndarray]] = {k: [] for k in ATTRS}
    feats = []
    model.eval()
    for i in range(0, len(images), batch):
        x = to_input(images[i : i + batch])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f = model.features(x).float()
        feats.append(f.numpy())
        for k, h in model.heads.items():
            probs[k].append(torch.softmax(h(f), dim=1).numpy())
    return {k: np.concatenate(v) for k, v in probs.items()}, np.concatenate(feats)


def save_classifier(model: AttributeNet, path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)


def load_classifier(path: Path) -> AttributeNet:
    model = AttributeNet()
    model.load_state_dict(load_file(str(path)))
    return model.to(memory_format=torch.channels_last).eval()


def generated(model, n: int, truncation: float, seed0: int = 10_000, batch: int = 100) -> np.ndarray:
    """`n` faces for seeds seed0.. at truncation ψ, as (n, H, W, 3) uint8 (same seeds for every ψ)."""
    out = []
    for s in range(seed0, seed0 + n, batch):
        out += [np.asarray(im) for im in model.generate(min(batch, seed0 + n - s), seed=s, truncation=truncation)]
    return np.stack(out)


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"
