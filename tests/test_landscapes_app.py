"""The landscapes tab end to end through the app's HTTP API (gradio_client) on a tiny VAE saved to a folder: samples,
direction sliders, a photo's reconstruction and variations, interpolation, and bad uploads."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlib.images import read_png_info
from genlib.models.vae import VAE, VAEConfig
from genlib.service import LocalService


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = VAE(VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3))
    g = torch.Generator().manual_seed(0)
    m.set_prior(torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g))
    d = tmp_path_factory.mktemp("app-vae")
    m.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("photo") / "wide.jpg"
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(p)
    return p


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    import app

    demo = app.build()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    demo.close()


def _path(item) -> str:
    img = item["image"] if isinstance(item, dict) and "image" in item else item
    return img if isinstance(img, str) else img["path"]


def test_samples_say_what_made_them(client, vae_dir):
    out = client.predict(str(vae_dir), 5, 3, 0.8, 64, "nearest", api_name="/landscapes")
    assert len(out) == 3
    im = Image.open(_path(out[2]))
    assert im.size == (64, 64)
    assert im.text["seed"] == "7" and im.text["temperature"] == "0.8" and im.text["ai_generated"] == "true"
    assert "seed 7" in out[2]["caption"] and "AI-generated" in out[2]["caption"]


def test_same_request_same_bytes(client, vae_dir):
    a = client.predict(str(vae_dir), 1, 2, 1.0, 64, "nearest", api_name="/landscapes")
    b = client.predict(str(vae_dir), 1, 2, 1.0, 64, "nearest", api_name="/landscapes")
    assert [Path(_path(x)).read_bytes() for x in a] == [Path(_path(x)).read_bytes() for x in b]


def test_direction_sliders(client, vae_dir):
    def steer(*amounts):
        p = client.predict(str(vae_dir), 4, 1.0, 64, "nearest", *amounts, api_name="/landscapes_steer")
        return Image.open(_path(p)).tobytes()

    plain = client.predict(str(vae_dir), 4, 1, 1.0, 64, "nearest", api_name="/landscapes")
    assert steer(0, 0, 0, 0, 0, 0) == Image.open(_path(plain[0])).tobytes()  # all 0: the sample itself
    assert steer(2, 0, 0, 0, 0, 0) != steer(0, 0, 0, 0, 0, 0)
    assert steer(0, 0, -2, 0, 0, 0) != steer(0, 0, 0, 0, 0, 0)
    with pytest.raises(Exception, match="this model has 3 directions"):  # slider 5 on a 3-direction model
        steer(0, 0, 0, 0, 1, 0)


def test_photo_reconstruction_and_variations(client, vae_dir, photo_path):
    from gradio_client import handle_file

    seen, recon, variations = client.predict(
        str(vae_dir), handle_file(str(photo_path)), 3, 0.5, 0, 64, "nearest", api_name="/landscapes_photo"
    )
    seen_im, recon_im = Image.open(_path(seen)), Image.open(_path(recon))
    assert seen_im.size == recon_im.size == (64, 64)
    assert "ai_generated" not in seen_im.text  # the user's own pixels are not labelled as generated
    assert recon_im.text["ai_generated"] == "true" and "uploaded photo" in recon_im.text["source"]
    assert len(variations) == 3
    assert len({Image.open(_path(v)).tobytes() for v in variations}) == 3


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"hello, not an image", "not an image genlib can read"),
        ("empty.png", b"", "empty"),
        ("cut.png", None, "could not be decoded"),
    ],
)
def test_bad_uploads_get_one_line_and_the_app_goes_on(client, vae_dir, tmp_path, name, data, message, photo_path):
    from gradio_client import handle_file

    if data is None:  # a truncated PNG
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), "green").save(buf, format="PNG")
        data = buf.getvalue()[:-40]
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(Exception, match=message):
        client.predict(str(vae_dir), handle_file(str(p)), 1, 0.5, 0, 64, "nearest", api_name="/landscapes_photo")
    ok = client.predict(
        str(vae_dir), handle_file(str(photo_path)), 0, 0.5, 0, 64, "nearest", api_name="/landscapes_photo"
    )
    assert Image.open(_path(ok[1])).size == (64, 64)


def test_interpolation_between_a_seed_and_a_photo(client, vae_dir, photo_path):
    from gradio_client import handle_file

    gif, files = client.predict(
        str(vae_dir),
        3,
        9,
        None,
        handle_file(str(photo_path)),
        5,
        1.0,
        64,
        "nearest",
        api_name="/landscapes_interpolate",
    )
    assert Image.open(_path(gif)).format == "GIF"
    frames = [f for f in files if str(f).endswith(".png")]
    assert len(frames) == 5
    first = Image.open(frames[0])
    assert first.text["start"] == "seed 3" and first.text["end"] == "uploaded photo"
    sample = client.predict(str(vae_dir), 3, 1, 1.0, 64, "nearest", api_name="/landscapes")
    assert first.tobytes() == Image.open(_path(sample[0])).tobytes()  # the seed end is that seed's sample


def test_service_refuses_bad_numbers(vae_dir, tmp_path):
    from genlib.errors import BadInput

    svc = LocalService(out_dir=tmp_path)
    for kwargs, message in [
        (dict(seed=1.5, n=1, temperature=1.0), "seed must be a whole number"),
        (dict(seed=0, n=65, temperature=1.0), "at most 64 landscapes"),
        (dict(seed=0, n=0, temperature=1.0), "n must be an integer in"),
        (dict(seed=-1, n=1, temperature=1.0), "seed must be an integer in"),
        (dict(seed=0, n=1, temperature=-0.1), "temperature must be a number in"),
        (dict(seed=0, n=1, temperature=float("nan")), "temperature must be a number in"),
    ]:
        with pytest.raises(BadInput, match=message):
            svc.landscapes(str(vae_dir), **kwargs)
    with pytest.raises(BadInput, match="upload a photo first"):
        svc.landscape_photo(str(vae_dir), None)
    paths = svc.landscapes(str(vae_dir), 0, 2, 1.0, 16)
    assert [read_png_info(p)["seed"] for p in paths] == ["0", "1"]
