"""Write weights/faces-gan64/README.md from the training info and bench/faces.py's JSON output.

    python bench/faces.py --grid weights/faces-gan64 --json /tmp/faces-bench.json
    python bench/faces_card.py --bench /tmp/faces-bench.json --train-info ~/genlib-runs/faces/train_info.json

The bias-audit and memorisation sections (between `<!-- NAME:start -->` / `<!-- NAME:end -->` markers, filled
by `bench/bias.py --card` and `bench/memorisation.py --card`) are carried over from the existing card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from card import read_section, section  # noqa: E402

from genlib.train.cards import write_card  # noqa: E402

AUDITS = ("bias-audit", "memorisation")

INTENDED_USE = """## Intended use
A teaching and demo model: show what a GAN is, how seeds, truncation and interpolation behave, and
what generated faces get wrong; and research on generative models and on auditing them (the bias and
memorisation sections below). Non-commercial only (see Data licences).

## Out-of-scope use
- Impersonation, fake profiles or accounts, or passing an output off as a photograph of a real person:
  the outputs are not photographs and show no one (and the memorisation check says how close they come to
  the training faces).
- Using outputs as real people's photos anywhere a real photo is expected: identity documents, dating or
  social profiles, news, evidence, testimonials.
- Identifying, recognising or describing real people, or inferring anyone's age, gender, race or any other
  attribute; and drawing conclusions about groups of people from what the model draws.
- Commercial use (the training data's terms forbid it), and removing or forging the AI-generated marks and
  content credentials."""

LICENCES = """## Data licences
- **UTKFace** (Zhang, Song and Qi, CVPR 2017): "available for non-commercial research purposes only"; the
  copyright of the images stays with their original owners. 21,975 training crops, from the files committed in
  `mattans/AgeProgression` (no licence file).
- **CelebA** (Liu et al., ICCV 2015, MMLAB CUHK): "available for non-commercial research purposes only"; the
  images come from the web and CUHK does not own their copyright; no redistribution for commercial use. 9,707
  training crops, from `karthikSingireddy/cs389-hw4` (no licence file).
- So these weights and their outputs are for **non-commercial research and demos only** (`license: other`,
  `non-commercial-research` above); genlib's Apache-2.0 licence covers its code, not this model.
  `closest-pairs.png` (written by the memorisation check) shows 8 training faces, under the same terms.

## Verifying an image's credentials
Every PNG genlib writes from this model carries text chunks (model, revision, seed, `ai_generated`) and
IPTC `DigitalSourceType = trainedAlgorithmicMedia` in XMP. With a signing key configured it also carries a
signed C2PA manifest (`c2pa.created`, `trainedAlgorithmicMedia`, and the generator, model, revision and seed),
whose hash covers the pixels:

```bash
python -m genlib make-cert certs/     # a local demo chain; prints the two export lines
export GENLIB_C2PA_CERT=$PWD/certs/cert.pem GENLIB_C2PA_KEY=$PWD/certs/key.pem
python -m genlib generate face --n 4 --seed 0 --out faces/
python -m genlib info-image faces/000000.png   # "content_credentials": valid / invalid (why) / none
```

Any edit to the pixels makes it `invalid`. A make-cert chain is verifiable but not from a trusted signer
(`"trusted": false`; `GENLIB_C2PA_TRUST=certs/root.pem` trusts your own root on your machine). Any C2PA
reader can check the same manifest. A missing credential proves nothing: marks and manifests can be
stripped, so an unmarked face is not thereby a photograph."""


def audit_sections(readme: Path) -> str:
    """The audit sections of the existing card (or placeholders), with their markers."""
    text = readme.read_text() if readme.exists() else ""
    titles = {"bias-audit": "## Bias audit (perceived attributes)", "memorisation": "## Memorisation check"}
    parts = []
    for name in AUDITS:
        content = read_section(text, name)
        parts.append(f"{titles[name]}\n{section(name, content) if content else section(name)}")
    return "\n\n".join(parts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bench", type=Path, required=True)
    p.add_argument("--train-info", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("weights/faces-gan64"))
    p.add_argument(
        "--command",
        default="python -m genlib.train.gan --data ../shared/data/faces/train.zip "
        "--out weights/faces-gan64 --run-dir ~/genlib-runs/faces --minutes 100",
    )
    args = p.parse_args()
    b, t = json.loads(args.bench.read_text()), json.loads(args.train_info.read_text())
    floor = b["floor_swd"]["mean"]
    rows = []
    for k, v in b.items():
        if k.startswith("psi="):
            rows.append(
                f"| generated, {k.replace('psi', 'ψ')} | {v['swd']['mean']:.2f} ({v['swd']['mean'] / floor:.2f}x) | "
                f"{v['face_rate']:.3f} ({v['face_rate'] / b['real_face_rate']:.2f}x) |"
            )
    psi1 = b["psi=1.0"]
    metadata = {
        "license": "other",
        "license_name": "non-commercial-research",
        "library_name": "genlib",
        "pipeline_tag": "unconditional-image-generation",
        "tags": ["gan", "faces", "genlib", "ai-generated", "safetensors"],
        "datasets": ["UTKFace", "CelebA"],
        "metrics": ["sliced-wasserstein-distance", "haar-face-detection-rate"],
        "model-index": [
            {
                "name": "faces-gan64",
                "results": [
                    {
                        "task": {"type": "unconditional-image-generation"},
                        "dataset": {"name": "UTKFace + CelebA, 1,000 held-out 64x64 faces", "type": "faces"},
                        "metrics": [
                            {"type": "swd", "name": "SWD x1e3 (ψ=1)", "value": round(psi1["swd"]["mean"], 2)},
                            {"type": "swd-floor", "name": "SWD x1e3 real vs real", "value": round(floor, 2)},
                            {"type": "face-rate", "name": "Haar face rate (ψ=1)", "value": round(psi1["face_rate"], 3)},
                        ],
                    }
                ],
            }
        ],
    }
    body = f"""
# faces-gan64: a 64x64 face GAN trained on a CPU

![uncurated samples, seeds 0-63, ψ=1](samples.png)

A small GAN that draws 64x64 faces of **people who do not exist**. It is genlib's embedded `faces`
model; every PNG genlib writes from it carries the model, revision, seed and an AI-generated marker.
Above: seeds 0-63, ψ = 1.0, not curated; `samples-psi0.7.png` is the same seeds at ψ = 0.7.

## Architecture
Generator ({t.get("generator_parameters", 1_539_651):,} parameters): z (128) → pixel norm → 2-layer mapping MLP → w (128)
→ 4x4x256 → four (nearest 2x upsample, 3x3 conv, pixel norm, leaky ReLU) blocks → 3x3 conv → tanh.
Pixel norm instead of batch norm makes each image independent of its batch. Truncation ψ pulls w toward
the mean w of 20,000 latents (ψ = 0 is the same "average face" for every seed). Discriminator (training
only): strided convs, minibatch standard deviation, linear head. See `genlib/models/gan.py`.

## Training
- Data: `faces/train.zip` from the shared set: 31,682 64x64 crops of UTKFace (21,975) and CelebA (9,707);
  the last 1,000 files by name are held out and were never trained on ({t["train_images"]:,} trained on).
  Both datasets are for **non-commercial research only**; so is this model.
- Command: `{args.command}`
- Recipe: non-saturating logistic loss, lazy R1 penalty (γ = 1, every 8 steps), Adam (lr 2e-4, β = (0, 0.99)),
  batch {t["batch"]}, random horizontal flips, EMA of the generator (decay 0.999) is what ships, bf16 autocast.
- Steps: {t["steps"]:,} ({t["images_seen"]:,} images, {t["images_seen"] / t["train_images"]:.1f} epochs) in {t["train_minutes"]} minutes.
- Hardware: {t["hardware"]} (2 cores, no GPU).

## Measured quality
`python bench/faces.py --grid weights/faces-gan64 --json ...` on the 1,000 held-out faces. SWD: multi-scale
Laplacian-pyramid sliced Wasserstein distance (Karras et al. 2018), x1e3, mean over the 64/32/16 px levels;
the floor compares 1,000 training faces with the same held-out set. Face rate: OpenCV's Haar cascade
(`haarcascade_frontalface_default.xml`) on images upscaled to 128 px (bicubic).

| set | SWD x1e3 (vs floor) | Haar face rate (vs real) |
|---|---|---|
| real vs real (floor) | {floor:.2f} | {b["real_face_rate"]:.3f} (held-out real) |
{chr(10).join(rows)}

Speed on this CPU (fp32): {b["images_per_s"]["batch1"]:.0f} images/s at batch 1, {b["images_per_s"]["batch64"]:.0f} images/s at batch 64.

{INTENDED_USE}

{audit_sections(args.out / "README.md")}

## Limitations
- 64x64 only; at this size and training budget faces are recognisable but often distorted (asymmetric
  eyes, smeared backgrounds and hair, warped glasses); the numbers above say how far from real they are.
- It reproduces the biases of UTKFace and CelebA (age, gender and skin-tone mix, poses, lighting, web
  celebrity photos); the bias audit above measures how a classifier perceives what it draws.
- Truncation (ψ < 1) trades variety for cleaner faces and narrows the range of people it draws.

## Misuse
Generated faces can be used for fake profiles, impersonation and misinformation. genlib marks every
PNG (text chunks, and IPTC `DigitalSourceType = trainedAlgorithmicMedia` in XMP) and the app labels
every output as AI-generated; do not strip these marks or present outputs as photographs of real people.

{LICENCES}
"""
    print(write_card(args.out, metadata=metadata, body=body))


if __name__ == "__main__":
    main()
