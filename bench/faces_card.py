"""Write weights/faces-gan64/README.md from the training info and bench/faces.py's JSON output.

    python bench/faces.py --grid weights/faces-gan64 --json /tmp/faces-bench.json
    python bench/faces_card.py --bench /tmp/faces-bench.json --train-info ~/genlib-runs/faces/train_info.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from genlib.train.cards import write_card  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--train-info", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("weights/faces-gan64"))
    p.add_argument("--command", default="python -m genlib.train.gan --data ../shared/data/faces/train.zip "
                   "--out weights/faces-gan64 --run-dir ~/genlib-runs/faces --minutes 55")
    args = p.parse_args()
    b, t = json.loads(args.bench.read_text()), json.loads(args.train_info.read_text())
    floor = b["floor_swd"]["mean"]
    rows = []
    for k, v in b.items():
        if k.startswith("psi="):
            rows.append(f"| generated, {k.replace('psi', 'ψ')} | {v['swd']['mean']:.2f} ({v['swd']['mean'] / floor:.2f}x) | "
                        f"{v['face_rate']:.3f} ({v['face_rate'] / b['real_face_rate']:.2f}x) |")
    psi1 = b["psi=1.0"]
    metadata = {
        "license": "other",
        "license_name": "non-commercial-research",
        "library_name": "genlib",
        "pipeline_tag": "unconditional-image-generation",
        "tags": ["gan", "faces", "genlib", "ai-generated", "safetensors"],
        "datasets": ["UTKFace", "CelebA"],
        "metrics": ["sliced-wasserstein-distance", "haar-face-detection-rate"],
        "model-index": [{"name": "faces-gan64", "results": [{
            "task": {"type": "unconditional-image-generation"},
            "dataset": {"name": "UTKFace + CelebA, 1,000 held-out 64x64 faces", "type": "faces"},
            "metrics": [
                {"type": "swd", "name": "SWD x1e3 (ψ=1)", "value": round(psi1["swd"]["mean"], 2)},
                {"type": "swd-floor", "name": "SWD x1e3 real vs real", "value": round(floor, 2)},
                {"type": "face-rate", "name": "Haar face rate (ψ=1)", "value": round(psi1["face_rate"], 3)},
            ]}]}],
    }
    body = f"""
# faces-gan64: a 64x64 face GAN trained on a CPU

![uncurated samples, seeds 0-63, ψ=1](samples.png)

A small GAN that draws 64x64 faces of **people who do not exist**. It is genlib's embedded `faces`
model; every PNG genlib writes from it carries the model, revision, seed and an AI-generated marker.
Above: seeds 0-63, ψ = 1.0, not curated; `samples-psi0.7.png` is the same seeds at ψ = 0.7.

## Architecture
Generator ({t.get('generator_parameters', 1_539_651):,} parameters): z (128) → pixel norm → 2-layer mapping MLP → w (128)
→ 4x4x256 → four (nearest 2x upsample, 3x3 conv, pixel norm, leaky ReLU) blocks → 3x3 conv → tanh.
Pixel norm instead of batch norm makes each image independent of its batch. Truncation ψ pulls w toward
the mean w of 20,000 latents (ψ = 0 is the same "average face" for every seed). Discriminator (training
only): strided convs, minibatch standard deviation, linear head. See `genlib/models/gan.py`.

## Training
- Data: `faces/train.zip` from the shared set: 31,682 64x64 crops of UTKFace (21,975) and CelebA (9,707);
  the last 1,000 files by name are held out and were never trained on ({t['train_images']:,} trained on).
  Both datasets are for **non-commercial research only**; so is this model.
- Command: `{args.command}`
- Recipe: non-saturating logistic loss, lazy R1 penalty (γ = 1, every 8 steps), Adam (lr 2e-4, β = (0, 0.99)),
  batch {t['batch']}, random horizontal flips, EMA of the generator (decay 0.999) is what ships, bf16 autocast.
- Steps: {t['steps']:,} ({t['images_seen']:,} images, {t['images_seen'] / t['train_images']:.1f} epochs) in {t['train_minutes']} minutes.
- Hardware: {t['hardware']} (2 cores, no GPU).

## Measured quality
`python bench/faces.py --grid weights/faces-gan64 --json ...` on the 1,000 held-out faces. SWD: multi-scale
Laplacian-pyramid sliced Wasserstein distance (Karras et al. 2018), x1e3, mean over the 64/32/16 px levels;
the floor compares 1,000 training faces with the same held-out set. Face rate: OpenCV's Haar cascade
(`haarcascade_frontalface_default.xml`) on images upscaled to 128 px (bicubic).

| set | SWD x1e3 (vs floor) | Haar face rate (vs real) |
|---|---|---|
| real vs real (floor) | {floor:.2f} | {b['real_face_rate']:.3f} (held-out real) |
{chr(10).join(rows)}

Speed on this CPU (fp32): {b['images_per_s']['batch1']:.0f} images/s at batch 1, {b['images_per_s']['batch64']:.0f} images/s at batch 64.

## Intended use
A teaching and demo model: show what a GAN is, how seeds, truncation and interpolation behave, and
what generated faces get wrong. Not for identifying, describing or making claims about real people.

## Limitations
- 64x64 only; at this size and training budget faces are recognisable but often distorted (asymmetric
  eyes, smeared backgrounds and hair, warped glasses); the numbers above say how far from real they are.
- It reproduces the biases of UTKFace and CelebA (age, gender and skin-tone mix, poses, lighting, web
  celebrity photos); an attribute audit is planned, not yet done.
- Truncation (ψ < 1) trades variety for cleaner faces and narrows the range of people it draws.

## Misuse
Generated faces can be used for fake profiles, impersonation and misinformation. genlib marks every
PNG (text chunks, and IPTC `DigitalSourceType = trainedAlgorithmicMedia` in XMP) and the app labels
every output as AI-generated; do not strip these marks or present outputs as photographs of real people.
"""
    print(write_card(args.out, metadata=metadata, body=body))


if __name__ == "__main__":
    main()
