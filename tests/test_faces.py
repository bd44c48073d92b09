"""The faces GAN's generation API: determinism, truncation, interpolation, provenance, bad input."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genlib
from genlib.errors import BadInput
from genlib.images import DIGITAL_SOURCE_TYPE, provenance, read_png_info, save_png
from genlib.models.gan import GANConfig, Generator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    g = Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8))
    g.w_avg.normal_()  # a w_avg away from 0 makes the ψ=0 test meaningful
    d = tmp_path_factory.mktemp("gan")
    g.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def gan(gan_dir) -> Generator:
    return genlib.load(str(gan_dir))


def png_bytes(im: Image.Image, tmp_path: Path, name: str, **settings) -> bytes:
    return save_png(im, tmp_path / name, {"seed": "0", **settings}).read_bytes()


def test_same_seed_same_png(gan, tmp_path):
    a = [png_bytes(im, tmp_path, f"a{i}.png") for i, im in enumerate(gan.generate(4, seed=7))]
    b = [png_bytes(im, tmp_path, f"b{i}.png") for i, im in enumerate(gan.generate(4, seed=7))]
    assert a == b
    assert len(set(a)) == 4  # four different faces


def test_a_seed_gives_the_same_face_in_any_batch(gan):
    alone = gan.generate(1, seed=9)[0]
    in_batch = gan.generate(5, seed=5)[4]  # seeds 5..9
    diff = np.abs(np.asarray(alone, dtype=int) - np.asarray(in_batch, dtype=int)).max()
    assert diff <= 1  # same latent; at most a rounding step from a different batch size


def test_truncation_zero_gives_the_mean_face_for_every_seed(gan):
    faces = gan.generate(3, seed=0, truncation=0.0) + gan.generate(1, seed=123456, truncation=0.0)
    assert all(f.tobytes() == faces[0].tobytes() for f in faces)
    with torch.no_grad():
        mean = gan.synthesis(gan.w_avg[None])
    from genlib.models.gan import tensor_to_pil

    assert tensor_to_pil(mean)[0].tobytes() == faces[0].tobytes()
    assert gan.generate(1, seed=0, truncation=1.0)[0].tobytes() != faces[0].tobytes()


def test_interpolation_endpoints_are_the_two_seeds(gan):
    frames = gan.interpolate(3, 11, frames=6)
    assert len(frames) == 6
    assert frames[0].tobytes() == gan.generate(1, seed=3)[0].tobytes()
    assert frames[-1].tobytes() == gan.generate(1, seed=11)[0].tobytes()
    assert frames[2].tobytes() != frames[0].tobytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n": 0},
        {"n": -3},
        {"n": 10_000},
        {"n": 2.5},
        {"seed": -1},
        {"seed": 1.5},
        {"seed": "7"},
        {"seed": 2**70},
        {"truncation": -0.1},
        {"truncation": 1.5},
        {"truncation": float("nan")},
    ],
)
def test_bad_generate_arguments_are_refused_clearly(gan, kwargs):
    args = {"n": 1, "seed": 0, "truncation": 1.0, **kwargs}
    with pytest.raises(BadInput, match=next(iter(kwargs))):
        gan.generate(**args)


def test_png_carries_provenance(gan, tmp_path):
    im = gan.generate(1, seed=42, truncation=0.5)[0]
    path = save_png(im, tmp_path / "x.png", provenance(gan, seed=42, truncation=0.5))
    info = read_png_info(path)
    assert info["ai_generated"] == "true"
    assert info["seed"] == "42" and info["truncation"] == "0.5"
    assert info["revision"] == gan.source.revision and info["revision"].startswith("sha256:")
    assert DIGITAL_SOURCE_TYPE in info["XML:com.adobe.xmp"]
    assert Image.open(path).tobytes() == im.tobytes()  # lossless


def test_cli_generate_face_is_byte_identical_on_rerun(gan_dir, tmp_path):
    outs = []
    for run in ("a", "b"):
        cmd = [
            sys.executable,
            "-m",
            "genlib",
            "generate",
            "face",
            "--model",
            str(gan_dir),
            "--n",
            "3",
            "--seed",
            "5",
            "--out",
            str(tmp_path / run),
        ]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        outs.append([hashlib.sha256((tmp_path / run / f"{i:06d}.png").read_bytes()).hexdigest() for i in range(3)])
    assert outs[0] == outs[1]
    assert read_png_info(tmp_path / "a" / "000002.png")["seed"] == "7"


def test_embedded_faces_model_generates_64_identical_faces_offline(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    for run in ("a", "b"):
        cmd = [
            sys.executable,
            "-m",
            "genlib",
            "generate",
            "face",
            "--n",
            "64",
            "--seed",
            "0",
            "--out",
            str(tmp_path / run),
        ]
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, env=env)
    a = sorted((tmp_path / "a").iterdir())
    assert len(a) == 64
    assert all(p.read_bytes() == (tmp_path / "b" / p.name).read_bytes() for p in a)
