"""The Gradio app through its real HTTP API (gradio_client): faces, provenance, errors, batching."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from PIL import Image

from genlib.models.gan import GANConfig, Generator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("app-gan")
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(d)
    return d


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
    img = item["image"]
    return img if isinstance(img, str) else img["path"]


def test_downloaded_face_png_keeps_its_provenance(client, gan_dir):
    out = client.predict(str(gan_dir), 11, 2, 0.7, 64, "nearest", api_name="/faces")
    assert len(out) == 2
    im = Image.open(_path(out[1]))
    assert im.format == "PNG" and im.size == (64, 64)
    assert im.text["ai_generated"] == "true"
    assert im.text["seed"] == "12" and im.text["truncation"] == "0.7"
    assert im.text["revision"].startswith("sha256:")
    assert "trainedAlgorithmicMedia" in im.text["XML:com.adobe.xmp"]


def test_concurrent_users_get_their_own_faces(client, gan_dir):
    def ask(seed):
        return client.predict(str(gan_dir), seed, 1, 1.0, 64, "nearest", api_name="/faces")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, range(6)))
    seeds = [Image.open(_path(r[0])).text["seed"] for r in results]
    assert seeds == [str(s) for s in range(6)]


def test_model_errors_reach_the_user_as_one_line(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="ModelNotFound") as e:
        client.predict("/definitely/not/here", 0, 1, 1.0, 64, "nearest", api_name="/faces")
    assert "\n" not in str(e.value)


def test_a_face_model_in_the_text_tab_is_refused_by_name(client, gan_dir):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="WrongTask: .* is a faces model"):
        client.predict(str(gan_dir), "hi", False, 5, 0.0, 1.0, 0, 0, api_name="/text")


def test_interpolation_returns_gif_and_frames(client, gan_dir):
    gif, files = client.predict(str(gan_dir), 1, 2, 5, 1.0, 64, "nearest", api_name="/faces_interpolate")
    assert Image.open(gif).format == "GIF"
    assert len(files) == 6


def test_text_streams_and_matches_the_library(client, tiny_text_folder):
    import genlib

    job = client.submit(str(tiny_text_folder), "Once upon", False, 40, 0.0, 1.0, 0, 0, api_name="/text")
    outputs = list(job)
    final_text, speed = job.result()
    assert len(outputs) > 1  # streamed in pieces
    assert "tokens/s" in speed
    expected = genlib.load(str(tiny_text_folder)).generate("Once upon", max_new_tokens=40, temperature=0.0)
    assert final_text == expected


def test_text_bad_input_is_refused_before_running(client, tiny_text_folder):
    from gradio_client.exceptions import ValidationError

    with pytest.raises(ValidationError, match="prompt"):
        client.predict(str(tiny_text_folder), "   ", False, 40, 0.8, 0.9, 0, 0, api_name="/text")
    with pytest.raises(Exception):  # noqa: B017  (out of the slider's range: Gradio refuses it before the queue)
        client.predict(str(tiny_text_folder), "Once", False, 40, 0.8, 1.5, 0, 0, api_name="/text")
