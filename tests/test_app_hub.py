"""The app loading a Hub model on first use, against the local hub of tests/hubserver.py: the user sees the
download's progress while it runs, then one line naming the repo and the commit; a second load is instant."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from hubserver import HubServer

from genlib.models.gan import GANConfig, Generator

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub_and_app(tmp_path):
    torch.manual_seed(0)
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(tmp_path / "gan")
    with HubServer() as hub:
        sha = hub.add_repo("owner/faces", tmp_path / "gan")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GENLIB_"))}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1", NO_PROXY="127.0.0.1")
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(url, timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("the app did not start") from None
                    time.sleep(0.2)
            yield hub, sha, url
        finally:
            proc.terminate()
            proc.wait(20)


def test_first_load_shows_download_progress_then_names_the_commit(hub_and_app):
    from gradio_client import Client

    hub, sha, url = hub_and_app
    hub.misbehave("slow", path="*/resolve/*/model.safetensors", delay=3.0, times=1)  # a download that takes a while
    client = Client(url, verbose=False)
    job = client.submit("owner/faces", api_name="/load_faces_model")
    seen: list[str] = []
    while not job.done():
        for p in job.status().progress_data or []:
            seen.append(f"{p.desc} {p.index}/{p.length} {p.unit}")
        time.sleep(0.05)
    line = job.result()
    assert line.startswith("Loaded: owner/faces @ " + sha) and "genlib-gan" in line, line
    assert any("Fetching" in s and "files" in s for s in seen), seen  # huggingface_hub's download bar, tracked
    t = time.monotonic()
    assert client.predict("owner/faces", api_name="/load_faces_model") == line  # in memory now
    assert time.monotonic() - t < 5
    faces = client.predict("owner/faces", 3, 1, 0.7, 64, "nearest", api_name="/faces")
    assert len(faces) == 1
