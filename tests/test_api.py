"""Every public endpoint of the app, through gradio_client against the running app: a good call and a bad one.

`test_every_public_endpoint_is_covered` fails when the app gains an endpoint that no test here calls. The
bad-input matrix (tests/test_bad_inputs.py) holds many more refused inputs; here each endpoint gets one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from appserver import running_app
from PIL import Image

from genlib.hub import EMBEDDED, WEIGHTS_DIR
from genlib.models.gan import GANConfig, Generator
from genlib.models.vae import VAE, VAEConfig

ENDPOINTS = {
    "/load_faces_model",
    "/faces",
    "/faces_interpolate",
    "/load_landscapes_model",
    "/landscapes",
    "/landscapes_steer",
    "/landscapes_photo",
    "/landscapes_interpolate",
    "/load_text_model",
    "/text",
    "/stop_text",
}


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("api-gan")
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = VAE(VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3))
    g = torch.Generator().manual_seed(0)
    m.set_prior(torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g))
    d = tmp_path_factory.mktemp("api-vae")
    m.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("api-photo") / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(p)
    return p


@pytest.fixture(scope="module")
def client():
    with running_app() as running:
        yield running.client()


def path_of(item) -> str:
    """A file path from a gradio_client output: a str, a FileData dict, or a gallery item {'image': ...}."""
    if isinstance(item, dict) and "image" in item:
        item = item["image"]
    return item if isinstance(item, str) else item["path"]


def pixels(item) -> bytes:
    return Image.open(path_of(item)).convert("RGB").tobytes()


def refused(fn, match: str) -> str:
    from gradio_client.exceptions import AppError, ValidationError

    with pytest.raises((AppError, ValidationError)) as e:
        fn()
    message = str(e.value)
    assert match.lower() in message.lower(), message
    assert "Traceback" not in message
    return message


def test_every_public_endpoint_is_covered(client):
    info = client.view_api(return_format="dict", print_info=False)
    assert set(info["named_endpoints"]) == ENDPOINTS
    assert not info["unnamed_endpoints"], "every public event should have a readable api_name"


# ----- faces -----
def test_load_faces_model(client, gan_dir):
    out = client.predict(str(gan_dir), api_name="/load_faces_model")
    assert out.startswith("Loaded: ") and "genlib-gan" in out and "(local)" in out
    if (WEIGHTS_DIR / EMBEDDED["faces"] / "model.safetensors").is_file():
        assert "(embedded)" in client.predict("faces", api_name="/load_faces_model")
    refused(lambda: client.predict(str(gan_dir / "missing"), api_name="/load_faces_model"), "ModelNotFound")


def test_faces(client, gan_dir):
    out = client.predict(str(gan_dir), 3, 3, 0.7, 64, "nearest", api_name="/faces")
    assert len(out) == 3
    ims = [Image.open(path_of(x)) for x in out]
    assert all(im.format == "PNG" and im.size == (64, 64) for im in ims)
    assert [im.text["seed"] for im in ims] == ["3", "4", "5"]
    assert "seed 3" in out[0]["caption"]
    smooth = client.predict(str(gan_dir), 3, 1, 0.7, 64, "lanczos", api_name="/faces")
    assert pixels(smooth[0]) != pixels(out[0])  # the upscaling control has an effect
    big = client.predict(str(gan_dir), 3, 1, 0.7, 256, "nearest", api_name="/faces")
    assert Image.open(path_of(big[0])).size == (256, 256)
    refused(lambda: client.predict(str(gan_dir), 0, 0, 0.7, 64, "nearest", api_name="/faces"), "minimum value 1")


def test_faces_interpolate(client, gan_dir):
    gif, files = client.predict(str(gan_dir), 1, 2, 4, 1.0, 64, "nearest", api_name="/faces_interpolate")
    anim = Image.open(path_of(gif))
    assert anim.format == "GIF" and anim.n_frames == 4 + 2 and anim.size == (64, 64)  # forth and back
    assert len(files) == 5 and sum(str(path_of(f)).endswith(".png") for f in files) == 4
    refused(
        lambda: client.predict(str(gan_dir), 1, 2, 65, 1.0, 64, "nearest", api_name="/faces_interpolate"),
        "maximum value 64",
    )


# ----- landscapes -----
def test_load_landscapes_model(client, vae_dir, gan_dir):
    out = client.predict(str(vae_dir), api_name="/load_landscapes_model")
    assert out.startswith("Loaded: ") and "genlib-vae" in out
    refused(lambda: client.predict(str(gan_dir), api_name="/load_landscapes_model"), "WrongTask")


def test_landscapes(client, vae_dir):
    out = client.predict(str(vae_dir), 0, 2, 1.0, 64, "nearest", api_name="/landscapes")
    assert len(out) == 2 and Image.open(path_of(out[0])).size == (64, 64)
    assert pixels(out[0]) != pixels(out[1])
    mean = client.predict(str(vae_dir), 0, 2, 0.0, 64, "nearest", api_name="/landscapes")
    assert pixels(mean[0]) == pixels(mean[1])  # temperature 0: the mean landscape for every seed
    refused(lambda: client.predict(str(vae_dir), 0, 0, 1.0, 64, "nearest", api_name="/landscapes"), "minimum value 1")


def test_landscapes_steer(client, vae_dir):
    def steer(*amounts):
        return client.predict(str(vae_dir), 2, 1.0, 64, "nearest", *amounts, api_name="/landscapes_steer")

    plain = client.predict(str(vae_dir), 2, 1, 1.0, 64, "nearest", api_name="/landscapes")
    assert pixels(steer(0, 0, 0, 0, 0, 0)) == pixels(plain[0])
    assert pixels(steer(2, 0, 0, 0, 0, 0)) != pixels(plain[0])
    refused(lambda: steer(-4, 0, 0, 0, 0, 0), "minimum value -3")


def test_landscapes_photo(client, vae_dir, photo, tmp_path):
    from gradio_client import handle_file

    seen, recon, variations = client.predict(
        str(vae_dir), handle_file(str(photo)), 2, 0.4, 0, 64, "nearest", api_name="/landscapes_photo"
    )
    assert Image.open(path_of(seen)).size == Image.open(path_of(recon)).size == (64, 64)
    assert Image.open(path_of(recon)).text["ai_generated"] == "true"
    assert len(variations) == 2
    fake = tmp_path / "photo.png"
    fake.write_text("not a photo")
    refused(
        lambda: client.predict(
            str(vae_dir), handle_file(str(fake)), 2, 0.4, 0, 64, "nearest", api_name="/landscapes_photo"
        ),
        "BadInput: not an image",
    )


def test_landscapes_interpolate(client, vae_dir, photo):
    from gradio_client import handle_file

    gif, files = client.predict(
        str(vae_dir), 0, 1, None, None, 3, 1.0, 64, "nearest", api_name="/landscapes_interpolate"
    )
    assert Image.open(path_of(gif)).n_frames == 3 + 1 and len(files) == 4  # the GIF loops forth and back
    gif, files = client.predict(
        str(vae_dir), 0, 1, handle_file(str(photo)), None, 3, 1.0, 64, "nearest", api_name="/landscapes_interpolate"
    )
    first = [f for f in files if str(path_of(f)).endswith(".png")][0]
    assert Image.open(path_of(first)).text["start"] == "uploaded photo"
    refused(
        lambda: client.predict(
            str(vae_dir), 0, 1, None, None, 1, 1.0, 64, "nearest", api_name="/landscapes_interpolate"
        ),
        "minimum value 2",
    )


# ----- text -----
def test_load_text_model(client, tiny_text_folder):
    out = client.predict(str(tiny_text_folder), api_name="/load_text_model")
    assert out.startswith("Loaded: ") and "llama" in out
    refused(lambda: client.predict("nobody/none", api_name="/load_text_model"), "HubUnavailable: nobody/none")


def test_text(client, tiny_text_folder):
    import genlib

    job = client.submit(str(tiny_text_folder), "Once upon", False, 30, 0.0, 1.0, 0, 0, api_name="/text")
    final, speed = job.result()
    assert len(job.outputs()) > 1 and "tokens/s" in speed
    assert final == genlib.load(str(tiny_text_folder)).generate("Once upon", max_new_tokens=30, temperature=0.0)
    sampled = client.predict(str(tiny_text_folder), "Once upon", False, 30, 1.0, 1.0, 0, 1, api_name="/text")[0]
    assert sampled != final  # temperature and seed have an effect
    refused(
        lambda: client.predict(str(tiny_text_folder), "", False, 30, 0.0, 1.0, 0, 0, api_name="/text"),
        "enter a prompt",
    )


@pytest.fixture
def slow_text(monkeypatch):
    """Text streams 20 pieces a second (the tiny model would finish before a Stop arrives); Stop still goes
    through the real path: the app's stop flag, checked by the model between tokens."""
    import app

    real = app.service.text_stream

    def throttled(*args, **kwargs):
        for piece in real(*args, **kwargs):
            time.sleep(0.05)
            yield piece

    monkeypatch.setattr(app.service, "text_stream", throttled)


def test_stop_text(client, tiny_text_folder, slow_text):
    import genlib

    full = genlib.load(str(tiny_text_folder)).generate("Once upon", max_new_tokens=80, temperature=0.0)
    job = client.submit(str(tiny_text_folder), "Once upon", False, 80, 0.0, 1.0, 0, 0, api_name="/text")
    deadline = time.monotonic() + 60
    while len(job.outputs()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.predict(api_name="/stop_text") == ()
    final, _ = job.result(timeout=60)
    assert final and full.startswith(final) and len(final) < len(full)
    # Stop with nothing running does nothing; the next generation runs to the end.
    client.predict(api_name="/stop_text")
    again = client.predict(str(tiny_text_folder), "Once upon", False, 10, 0.0, 1.0, 0, 0, api_name="/text")[0]
    assert again == genlib.load(str(tiny_text_folder)).generate("Once upon", max_new_tokens=10, temperature=0.0)
