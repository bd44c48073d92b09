"""The landscapes VAE: generation, encoding, interpolation, variations and directions on a tiny random model saved
with save_pretrained and loaded with genlib.load; bad arguments; and the trainer end to end on a tiny zip."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import genlib
from genlib.errors import BadConfig, BadInput
from genlib.hub import EMBEDDED, WEIGHTS_DIR
from genlib.images import read_png_info
from genlib.models import MODEL_TYPES
from genlib.models.vae import VAE, VAEConfig, latent_pca

ROOT = Path(__file__).resolve().parent.parent
CFG = VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3)


def photo(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A smooth random picture (gradients plus noise), so crops and resizes change it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / max(w, 1) * 255, yy / max(h, 1) * 255, (xx + yy) % 256], axis=2)
    a = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB").convert(mode)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = VAE(CFG)
    # The prior and directions as the trainer fits them, to latents with a known, correlated spread.
    g = torch.Generator().manual_seed(0)
    m.set_prior(torch.randn(2000, 8, generator=g) @ torch.randn(8, 8, generator=g) + torch.randn(8, generator=g))
    d = tmp_path_factory.mktemp("vae")
    m.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vae(vae_dir) -> VAE:
    return genlib.load(str(vae_dir), device="cpu")


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


def test_registered_and_loaded_as_a_landscapes_model(vae, vae_dir):
    assert MODEL_TYPES["genlib-vae"] is VAE
    assert isinstance(vae, VAE) and vae.task == "landscapes"
    assert json.loads((vae_dir / "config.json").read_text())["model_type"] == "genlib-vae"
    tensors = load_file(str(vae_dir / "model.safetensors"))
    assert tensors["directions"].shape == (3, 8) and tensors["direction_scales"].shape == (3,)
    assert tensors["prior_mean"].shape == (8,) and tensors["prior_factor"].shape == (8, 8)
    assert torch.equal(vae.directions, tensors["directions"])
    assert not any(k.startswith(("d.", "disc")) for k in tensors)  # no discriminator shipped


def test_same_seed_same_png_bytes_and_seeds_differ(vae, tmp_path):
    from genlib.images import provenance, save_png

    def pngs(tag: str) -> list[bytes]:
        ims = vae.generate(4, seed=7, temperature=0.8)
        return [
            save_png(im, tmp_path / f"{tag}{i}.png", provenance(vae, seed=7 + i)).read_bytes()
            for i, im in enumerate(ims)
        ]

    a, b = pngs("a"), pngs("b")
    assert a == b and len(set(a)) == 4
    assert read_png_info(tmp_path / "a1.png")["seed"] == "8"


def test_a_seed_gives_the_same_image_in_any_batch(vae):
    assert same(vae.generate(1, seed=9)[0], vae.generate(5, seed=5)[4])


def test_temperature_scales_the_prior_noise(vae):
    zero = vae.generate(3, seed=0, temperature=0.0) + vae.generate(1, seed=999, temperature=0)
    assert all(same(im, zero[0]) for im in zero)
    assert same(zero[0], vae.decode(vae.prior_mean))
    assert not same(vae.generate(1, seed=0, temperature=1.0)[0], vae.generate(1, seed=0, temperature=0.5)[0])


def test_encode_any_size_then_decode_shape_and_range(vae):
    for im in (photo(37, 23), photo(300, 100, mode="L"), photo(16, 16).convert("RGBA"), photo(5, 90, mode="P")):
        z = vae.encode(im)
        assert z.shape == (8,) and z.dtype == torch.float32 and torch.isfinite(z).all()
        out = vae.decode(z)
        assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (16, 16)
        a = np.asarray(out)
        assert a.dtype == np.uint8 and a.shape == (16, 16, 3) and 0 <= a.min() <= a.max() <= 255
    many = vae.decode(torch.stack([vae.encode(photo(20, 20, seed=s)) for s in range(3)]))
    assert isinstance(many, list) and len(many) == 3


def test_encode_centre_crops_then_lanczos_resizes(vae):
    wide = photo(48, 16)
    assert torch.equal(vae.encode(wide), vae.encode(wide.crop((16, 0, 32, 16))))  # centre square, no resize
    big = photo(64, 64)
    assert torch.equal(vae.encode(big), vae.encode(big.resize((16, 16), Image.Resampling.LANCZOS)))
    assert not torch.equal(vae.encode(big), vae.encode(big.resize((16, 16), Image.Resampling.NEAREST)))
    tall = photo(16, 40)
    assert torch.equal(vae.encode(tall), vae.encode(tall.crop((0, 12, 16, 28))))
    batch = vae.encode_images([wide, big, tall])
    assert torch.equal(batch[1], vae.encode(big))  # a photo's latent does not depend on the batch


def test_reconstruct_is_decode_of_encode(vae):
    im = photo(30, 30, seed=3)
    assert same(vae.reconstruct(im), vae.decode(vae.encode(im)))


def test_interpolation_endpoints_are_exact(vae):
    frames = vae.interpolate(3, 11, frames=6)
    assert len(frames) == 6
    assert same(frames[0], vae.generate(1, seed=3)[0]) and same(frames[-1], vae.generate(1, seed=11)[0])
    assert not same(frames[2], frames[0]) and not same(frames[2], frames[-1])
    a, b = photo(40, 30, seed=1), photo(25, 25, seed=2)
    frames = vae.interpolate(a, b, frames=4)
    assert same(frames[0], vae.reconstruct(a)) and same(frames[-1], vae.reconstruct(b))
    flat = vae.interpolate(5, 6, frames=3, temperature=0.0)  # both ends are the prior's mean
    assert all(same(f, vae.decode(vae.prior_mean)) for f in flat)
    frames = vae.interpolate(5, a, frames=3, temperature=0.7)
    assert same(frames[0], vae.generate(1, seed=5, temperature=0.7)[0]) and same(frames[-1], vae.reconstruct(a))


def test_variations_go_from_the_reconstruction_to_the_seeds_samples(vae):
    im = photo(50, 40, seed=4)
    rec = vae.reconstruct(im)
    assert all(same(v, rec) for v in vae.variations(im, n=3, strength=0.0, seed=0))
    assert all(same(v, s) for v, s in zip(vae.variations(im, 3, 1.0, seed=20), vae.generate(3, seed=20), strict=True))
    half = vae.variations(im, n=3, strength=0.5, seed=0)
    assert len({v.tobytes() for v in half}) == 3 and not any(same(v, rec) for v in half)
    assert all(same(a, b) for a, b in zip(half, vae.variations(im, n=3, strength=0.5, seed=0), strict=True))


def test_directions_change_the_image_and_zero_leaves_it_unchanged(vae):
    base = vae.generate(2, seed=1)
    assert all(same(a, b) for a, b in zip(base, vae.generate(2, seed=1, directions=[0, 0.0, 0]), strict=True))
    z = vae.latents([1, 2])
    assert torch.equal(vae.move(z, [0.0, 0.0, 0.0]), z) and torch.equal(vae.move(z, []), z)
    for i in range(3):
        amounts = [0.0] * 3
        amounts[i] = 2.0
        moved = vae.generate(2, seed=1, directions=amounts)
        assert not same(moved[0], base[0]) and not same(moved[1], base[1])
        step = vae.move(z, amounts) - z
        assert torch.allclose(step, (2.0 * vae.direction_scales[i] * vae.directions[i]).expand_as(z), atol=1e-5)
    assert same(vae.decode(vae.move(z[0], [1.5])), vae.generate(1, seed=1, directions=[1.5])[0])


def test_latent_pca_finds_the_principal_axes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 6, generator=g) * torch.tensor([1.0, 5.0, 0.5, 3.0, 0.2, 0.1]) + 7.0
    mean, vecs, stds = latent_pca(x)
    assert torch.allclose(mean, torch.full((6,), 7.0), atol=0.2)
    assert torch.allclose(vecs @ vecs.T, torch.eye(6), atol=1e-5)
    assert torch.allclose(vecs[:2].abs(), torch.eye(6)[[1, 3]], atol=0.03)
    assert (vecs.gather(1, vecs.abs().argmax(1, keepdim=True)) > 0).all()  # sign fixed
    assert abs(stds[0] - 5) < 0.2 and abs(stds[1] - 3) < 0.15 and (stds[:-1] >= stds[1:]).all()


def test_the_fitted_prior_matches_the_latents(vae):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2000, 8, generator=g) @ torch.randn(8, 8, generator=g) + torch.randn(8, generator=g)
    z = vae.latents(list(range(3000)))
    assert torch.allclose(z.mean(0), target.mean(0), atol=0.25)
    assert torch.allclose(torch.cov(z.T), torch.cov(target.T), rtol=0.15, atol=0.3)
    assert torch.allclose(vae.prior_factor[:, :3].T, vae.directions * vae.direction_scales[:, None], atol=1e-6)
    assert torch.allclose(vae.latents([5], temperature=0.0)[0], vae.prior_mean)


def test_a_mixture_prior_samples_its_components_by_weight(tmp_path):
    from genlib.train.vae import fit_mixture

    torch.manual_seed(0)
    m = VAE(VAEConfig(**{**CFG.__dict__, "prior_components": 3}))
    # Three well-separated clusters of latents, 20% / 30% / 50% of them; EM must find them.
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[-6.0] * 8, [0.0] * 8, [6.0] * 8])
    labels = torch.tensor([0] * 400 + [1] * 600 + [2] * 1000)
    latents = centres[labels] + 0.5 * torch.randn(2000, 8, generator=g)
    m.set_prior(latents)
    m.set_mixture(*fit_mixture(latents, 3, seed=0))
    m.save_pretrained(tmp_path)
    vae3 = genlib.load(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["prior_components"] == 3
    order = torch.argsort(vae3.mixture_means[:, 0])
    assert torch.allclose(vae3.mixture_weights[order], torch.tensor([0.2, 0.3, 0.5]), atol=1e-3)
    assert torch.allclose(vae3.mixture_means[order], centres, atol=0.1)
    z = vae3.latents(list(range(4000)))
    nearest = torch.cdist(z, centres).argmin(1)
    assert torch.allclose(torch.bincount(nearest, minlength=3) / 4000.0, torch.tensor([0.2, 0.3, 0.5]), atol=0.03)
    assert (torch.cdist(z, centres).min(1).values < 4).all()  # every sample inside a cluster, none between
    # Per seed, whatever the batch; temperature 0 is the seed's component mean.
    assert torch.equal(vae3.latents([7])[0], z[7]) and torch.equal(vae3.latents([3, 7])[1], z[7])
    assert torch.allclose(vae3.latents([7], temperature=0.0)[0], vae3.mixture_means[order][nearest[7]], atol=1e-6)
    assert same(vae3.generate(1, seed=7)[0], vae3.decode(z[7]))
    with pytest.raises(ValueError, match="one Gaussian"):
        VAE(CFG).set_mixture(*fit_mixture(latents, 3, seed=0))


@pytest.mark.parametrize("k", [0, 257, 2.5])
def test_bad_prior_components_are_refused_by_name(tmp_path, vae_dir, k):
    config = json.loads((vae_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "prior_components": k}))
    (tmp_path / "model.safetensors").write_bytes((vae_dir / "model.safetensors").read_bytes())
    with pytest.raises(BadConfig, match="prior_components"):
        genlib.load(str(tmp_path))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.generate(0), "n"),
        (lambda m: m.generate(2.5), "n"),
        (lambda m: m.generate(10_000), "n"),
        (lambda m: m.generate(1, seed=-1), "seed"),
        (lambda m: m.generate(1, seed="7"), "seed"),
        (lambda m: m.generate(1, seed=2**70), "seed"),
        (lambda m: m.generate(1, temperature=-0.1), "temperature"),
        (lambda m: m.generate(1, temperature=3.0), "temperature"),
        (lambda m: m.generate(1, temperature=float("nan")), "temperature"),
        (lambda m: m.generate(1, temperature="1"), "temperature"),
        (lambda m: m.generate(1, directions=[1, 2, 3, 4]), "directions"),
        (lambda m: m.generate(1, directions=[float("nan")]), "directions"),
        (lambda m: m.generate(1, directions=[100.0]), "directions"),
        (lambda m: m.generate(1, directions="up"), "directions"),
        (lambda m: m.move(torch.zeros(8), [True]), "directions"),
        (lambda m: m.interpolate(0, 1, frames=1), "frames"),
        (lambda m: m.interpolate(0, 1, frames="4"), "frames"),
        (lambda m: m.interpolate(0, "a.png"), "seed"),
        (lambda m: m.interpolate(-1, 1), "seed"),
        (lambda m: m.encode("photo.jpg"), "PIL image"),
        (lambda m: m.encode(None), "PIL image"),
        (lambda m: m.decode(torch.zeros(7)), "latent"),
        (lambda m: m.decode(torch.zeros(2, 2, 8)), "latent"),
        (lambda m: m.decode([0.0] * 8), "latent"),
        (lambda m: m.decode(torch.full((8,), float("nan"))), "nan"),
        (lambda m: m.variations(photo(8, 8), strength=1.5), "strength"),
        (lambda m: m.variations(photo(8, 8), strength=float("nan")), "strength"),
        (lambda m: m.variations(photo(8, 8), n=0), "n"),
    ],
)
def test_bad_arguments_are_refused_clearly(vae, call, match):
    with pytest.raises(BadInput, match=match):
        call(vae)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"n_directions": 9}, "n_directions"),
        ({"n_directions": 0}, "n_directions"),
        ({"resolution": 12}, "resolution"),
        ({"latent_dim": "8"}, "latent_dim"),
        ({"channels": 0}, "channels"),
    ],
)
def test_bad_config_names_the_field(vae_dir, tmp_path, change, field):
    for f in vae_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    cfg = {**json.loads((vae_dir / "config.json").read_text()), **change}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BadConfig, match=field):
        genlib.load(str(tmp_path), device="cpu")


def test_loads_in_bfloat16(vae_dir):
    m = genlib.load(str(vae_dir), device="cpu", dtype="bfloat16")
    assert m.dtype == torch.bfloat16
    im = m.generate(1, seed=0)[0]
    assert im.size == (16, 16) and m.encode(photo(20, 10)).shape == (8,)


def test_cli_generate_landscape_writes_the_models_pixels(vae, vae_dir, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "genlib",
        "generate",
        "landscape",
        "--model",
        str(vae_dir),
        "--n",
        "2",
        "--seed",
        "4",
        "--temperature",
        "0.9",
        "--out",
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    for i, im in enumerate(vae.generate(2, seed=4, temperature=0.9)):
        assert same(Image.open(tmp_path / f"{i:06d}.png").convert("RGB"), im)
    assert read_png_info(tmp_path / "000001.png")["temperature"] == "0.9"


# ----- the trainer, end to end on a tiny zip -----
def tiny_zip(path: Path, n: int = 24) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            buf = io.BytesIO()
            photo(16, 16, seed=i).save(buf, format="JPEG", quality=95)
            z.writestr(f"{i:06d}.jpg", buf.getvalue())
    return path


def tiny_args(data: Path, run: Path, out: Path, latent_dim: int = 8) -> list[str]:
    """Trainer arguments for a 16 px model that trains in seconds."""
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--run-dir",
        str(run),
        "--resolution",
        "16",
        "--latent-dim",
        str(latent_dim),
        "--channels",
        "8",
        "--max-channels",
        "16",
        "--d-channels",
        "8",
        "--directions",
        "3",
        "--batch",
        "4",
        "--holdout",
        "4",
        "--adv-start",
        "1",
        "--adapt-every",
        "1",
        "--r1-every",
        "1",
        "--log-every",
        "1",
        "--threads",
        "1",
        "--prior-components",
        "2",
    ]


@pytest.mark.parametrize("plain", [False, True])
def test_trainer_runs_resumes_and_writes_a_loadable_model(tmp_path, plain):
    from genlib.train.vae import main

    data = tiny_zip(tmp_path / "train.zip")
    run, out = tmp_path / "run", tmp_path / "model"
    args = tiny_args(data, run, out) + (["--plain"] if plain else [])
    main(args + ["--max-steps", "3"])
    main(args + ["--max-steps", "5"])  # resumes from the checkpoint
    log = (run / "log.txt").read_text()
    assert "training on 20, holding out 4" in log and "resumed at step 3" in log and "step 5 " in log
    assert ("loss_d" in log) != plain
    assert [np.load(p).shape[0] for p in run.glob("images-*.npy")] == [20]  # the held-out 4 never decoded
    m = genlib.load(str(out), device="cpu")
    assert isinstance(m, VAE) and m.generate(1, seed=0)[0].size == (16, 16)
    assert (m.direction_scales > 0).all() and torch.allclose(m.directions @ m.directions.T, torch.eye(3), atol=1e-4)
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: other") and "pipeline_tag: unconditional-image-generation" in card
    for section in ("## Training data", "## Intended use", "## Limitations", "## Misuse", "<!-- bench:begin -->"):
        assert section in card
    assert "--max-steps 5" in card and "Steps: 5 " in card
    info = json.loads((run / "train_info.json").read_text())
    assert info["steps"] == 5 and info["sessions"] == 2 and math.isfinite(info["final_losses"]["l1"])
    assert (run / "samples" / "0000005.png").is_file() and (run / "samples" / "0000005-recon.png").is_file()


@pytest.mark.skipif(not (WEIGHTS_DIR / EMBEDDED["landscapes"] / "model.safetensors").exists(), reason="not trained yet")
def test_embedded_landscapes_model_is_deterministic_and_has_directions():
    m = genlib.load("landscapes", device="cpu")
    assert isinstance(m, VAE) and m.config.resolution == 64
    a, b = m.generate(16, seed=0), m.generate(16, seed=0)
    assert all(same(x, y) for x, y in zip(a, b, strict=True)) and len({x.tobytes() for x in a}) == 16
    s = m.direction_scales
    assert (s > 0).all() and (s[:-1] >= s[1:]).all()
    assert torch.allclose(m.directions @ m.directions.T, torch.eye(len(s)), atol=1e-4)
    card = (WEIGHTS_DIR / EMBEDDED["landscapes"] / "README.md").read_text()
    assert "license: other" in card and "## Training data" in card


def test_trainer_init_from_starts_at_the_given_model(tmp_path):
    from genlib.train.vae import main

    data = tiny_zip(tmp_path / "train.zip")
    first = tmp_path / "first"
    main(tiny_args(data, tmp_path / "run1", first) + ["--max-steps", "3"])
    # No training steps: the new model is the first one, re-saved (its prior refitted from the same weights).
    second = tmp_path / "second"
    main(tiny_args(data, tmp_path / "run2", second) + ["--init-from", str(first), "--minutes", "0"])
    a, b = genlib.load(str(first)), genlib.load(str(second))
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(ta, tb, atol=1e-5), name
    assert "initialised the encoder + decoder" in (tmp_path / "run2" / "log.txt").read_text()
    card = (second / "README.md").read_text()
    assert f"Initialised from `{first}`" in card and "trained from scratch" not in card
    # Another architecture is refused by name, before any training.
    with pytest.raises(SystemExit, match="latent_dim"):
        main(tiny_args(data, tmp_path / "run3", tmp_path / "third", latent_dim=4) + ["--init-from", str(first)])


def test_trainers_take_bf16_on_off_or_auto():
    from genlib.train import gan, text, vae
    from genlib.train.common import cpu_has_bf16, use_bf16

    for module in (gan, text, vae):
        assert use_bf16(module.parse_args(["--no-bf16"])) is False
        assert use_bf16(module.parse_args(["--bf16"])) is True
        assert use_bf16(module.parse_args([])) is cpu_has_bf16()  # auto: bf16 only where the CPU has it
