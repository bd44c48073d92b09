"""The app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no browser download).

For each tab: click Generate and check what a person sees (images of the expected pixel size, text that streams and
grows, Stop stopping it), change a control and see the effect, upload a photo, and trigger a bad input to see the
error toast. With GENLIB_SCREENSHOTS=<dir> set, each tab is saved as <dir>/<tab>.png after generating (the README's
screenshots come from `GENLIB_SCREENSHOTS=docs python -m pytest tests/test_browser.py`); CI leaves it unset.

Models: the embedded faces model when it is committed (else a tiny random GAN); a tiny random VAE and a tiny random
text model picked through each tab's Model dropdown (a folder path is a model reference), unless the embedded
landscapes / stories models exist, which are then used for the screenshots.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from appserver import running_app
from PIL import Image

from genlib.hub import EMBEDDED, WEIGHTS_DIR

pytestmark = pytest.mark.slow
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (see requirements-dev.txt)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT_MS = 60_000  # first clicks load torch and a model on a shared CPU
ROOT = Path(__file__).resolve().parent.parent


def embedded(name: str) -> bool:
    return (WEIGHTS_DIR / EMBEDDED[name] / "model.safetensors").is_file()


# ----- fixtures -----
@pytest.fixture(scope="module")
def app_url():
    with running_app() as running:
        yield running.url


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(app_url)
    pg.get_by_role("tab", name="Faces").wait_for()
    yield pg
    context.close()


@pytest.fixture(scope="module")
def gan_ref(tmp_path_factory) -> str:
    if embedded("faces"):
        return "faces"
    from genlib.models.gan import GANConfig, Generator

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("browser-gan")
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(d)
    return str(d)


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    from genlib.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    m = VAE(VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3))
    g = torch.Generator().manual_seed(0)
    m.set_prior(torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g))
    d = tmp_path_factory.mktemp("browser-vae")
    m.save_pretrained(d)
    return d


@pytest.fixture
def slow_text(monkeypatch):
    """Text streams at most 20 pieces a second, so a person (here: Playwright) can press Stop mid-way; Stop still
    goes through the real path: the app's per-session stop flag, checked by the model between tokens."""
    import app

    real = app.service.text_stream

    def throttled(*args, **kwargs):
        for piece in real(*args, **kwargs):
            time.sleep(0.05)
            yield piece

    monkeypatch.setattr(app.service, "text_stream", throttled)


# ----- helpers -----
def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()
    panel = page.get_by_role("tabpanel")  # role queries skip hidden elements: the open tab's panel
    panel.wait_for()
    return panel


def block(panel, label: str):
    """The component whose label reads exactly `label`: the innermost block holding that label (an accordion
    around it is a block too, and comes first in document order)."""
    label_el = panel.page.get_by_test_id("block-label").get_by_text(label, exact=True)
    return panel.locator(".block").filter(has=label_el).last


def set_model(panel, ref: str) -> None:
    box = panel.get_by_label("Model", exact=True)
    box.fill(ref)
    box.press("Enter")
    box.blur()


def set_number(panel, label: str, value: float) -> None:
    """A slider's number box or a gr.Number, as a person types into it."""
    box = panel.get_by_label(f"number input for {label}", exact=True)
    if not box.count():
        box = panel.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    box.blur()


def images(locator) -> list[dict]:
    """The generated images (served files, not icons) under `locator`, once each has loaded."""
    return locator.locator("img").evaluate_all(
        """imgs => imgs.filter(i => i.src.includes('/file=')).map(i => (
            {src: i.src, w: i.naturalWidth, h: i.naturalHeight, done: i.complete && i.naturalWidth > 0}))"""
    )


def wait_images(locator, n: int, other_than: set[str] = frozenset(), timeout: float = TIMEOUT_MS / 1000) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ims = images(locator)
        if len(ims) == n and all(i["done"] for i in ims) and not {i["src"] for i in ims} & set(other_than):
            return ims
        time.sleep(0.1)
    raise AssertionError(f"expected {n} new loaded images, have {images(locator)}")


def fetch_png(page, src: str) -> Image.Image:
    r = page.request.get(src)
    assert r.ok, r.status
    im = Image.open(io.BytesIO(r.body()))
    im.load()
    return im


def error_toast(page, timeout: float = TIMEOUT_MS / 1000, containing: str | None = None) -> str:
    """The one line of the newest error toast (the newest holding `containing`: an earlier toast may still be
    fading out when the next one appears)."""
    toast = page.locator(".toast-body.error")
    toast = (toast.filter(has_text=containing) if containing else toast).last
    toast.wait_for(timeout=timeout * 1000)
    lines = [ln.strip() for ln in toast.inner_text().splitlines() if ln.strip() not in ("", "×", "Error")]
    assert len(lines) == 1, lines
    return lines[0]


def close_toasts(page) -> None:
    for close in page.locator(".toast-body .toast-close").all():
        if close.is_visible():
            close.click()


def screenshot(page, name: str) -> None:
    """docs-sized: a full-page PNG reduced to a 256-colour palette (< 300 KB)."""
    out = os.environ.get("GENLIB_SCREENSHOTS")
    if not out:
        return
    time.sleep(0.5)  # let the gallery settle
    im = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    path = (ROOT / out / f"{name}.png") if not Path(out).is_absolute() else Path(out) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    assert path.stat().st_size < 300_000, f"{path} is {path.stat().st_size:,} bytes"


# ----- faces -----
def test_faces_generate_then_change_controls(page, gan_ref):
    panel = open_tab(page, "Faces")
    set_model(panel, gan_ref)
    set_number(panel, "Number of faces", 4)
    set_number(panel, "Seed", 0)
    gallery = block(panel, "AI-generated faces")
    panel.get_by_role("button", name="Generate faces").click()
    first = wait_images(gallery, 4)
    assert all((i["w"], i["h"]) == (128, 128) for i in first)  # display size 128 (the model's 64 px, upscaled)
    png = fetch_png(page, first[0]["src"])
    assert png.size == (128, 128) and png.text["seed"] == "0" and png.text["ai_generated"] == "true"
    screenshot(page, "faces")

    # Another seed and fewer faces: different people, and as many as asked for.
    set_number(panel, "Seed", 7)
    set_number(panel, "Number of faces", 2)
    panel.get_by_role("button", name="Generate faces").click()
    second = wait_images(gallery, 2, other_than={i["src"] for i in first})
    png7 = fetch_png(page, second[0]["src"])
    assert png7.text["seed"] == "7"
    assert png7.convert("RGB").tobytes() != png.convert("RGB").tobytes()

    # Display size 64: the model's own pixels.
    panel.get_by_label("Display size (px)", exact=True).click()
    page.get_by_role("option", name="64", exact=True).click()
    panel.get_by_role("button", name="Generate faces").click()
    third = wait_images(gallery, 2, other_than={i["src"] for i in second})
    assert all((i["w"], i["h"]) == (64, 64) for i in third)


def test_faces_bad_input_shows_one_line_and_the_tab_still_works(page, gan_ref):
    panel = open_tab(page, "Faces")
    set_model(panel, "nobody/none")  # not cached, and the Hub is offline in these tests
    set_number(panel, "Number of faces", 1)
    panel.get_by_role("button", name="Generate faces").click()
    message = error_toast(page)
    assert message.startswith("HubUnavailable: nobody/none") and "offline" in message
    close_toasts(page)

    set_model(panel, gan_ref)
    set_number(panel, "Seed", -5)
    panel.get_by_role("button", name="Generate faces").click()
    assert "less than minimum value 0" in error_toast(page, containing="less than minimum value 0")
    close_toasts(page)

    set_number(panel, "Seed", 3)
    panel.get_by_role("button", name="Generate faces").click()
    ims = wait_images(block(panel, "AI-generated faces"), 1)
    assert fetch_png(page, ims[0]["src"]).text["seed"] == "3"


# ----- landscapes -----
def photo_file(tmp_path: Path) -> Path:
    """A 300x200 RGB photo-like picture (gradients and noise)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:200, 0:300]
    a = np.stack([xx / 300 * 255, yy / 200 * 255, np.full_like(xx, 120)], axis=2) + rng.normal(0, 20, (200, 300, 3))
    p = tmp_path / "holiday.jpg"
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(p, quality=90)
    return p


def test_landscapes_generate_upload_and_a_bad_upload(page, vae_dir, tmp_path):
    panel = open_tab(page, "Landscapes")
    set_model(panel, str(vae_dir))
    set_number(panel, "Number of landscapes", 3)
    gallery = block(panel, "AI-generated landscapes")
    panel.get_by_role("button", name="Generate landscapes").click()
    samples = wait_images(gallery, 3)
    assert all((i["w"], i["h"]) == (128, 128) for i in samples)
    assert fetch_png(page, samples[2]["src"]).text["seed"] == "2"

    # Temperature 0: every seed gives the mean landscape.
    set_number(panel, "Temperature", 0)
    panel.get_by_role("button", name="Generate landscapes").click()
    means = wait_images(gallery, 3, other_than={i["src"] for i in samples})
    pix = [fetch_png(page, i["src"]).convert("RGB").tobytes() for i in means]
    assert pix[0] == pix[1] == pix[2]

    # Your photo: what the model sees, its reconstruction and variations.
    panel.get_by_role("button", name="Reconstruct and vary").scroll_into_view_if_needed()
    photo = block(panel, "Your photo")
    photo.locator("input[type=file]").set_input_files(str(photo_file(tmp_path)))
    photo.locator(".file-preview").get_by_text("holiday").wait_for()
    panel.get_by_role("button", name="Reconstruct and vary").click()
    seen = wait_images(block(panel, "What the model sees (centre crop, resized)"), 1)
    recon = wait_images(block(panel, "Reconstruction (AI-generated)"), 1)
    assert (seen[0]["w"], seen[0]["h"]) == (recon[0]["w"], recon[0]["h"]) == (128, 128)
    wait_images(block(panel, "Variations (AI-generated)"), 4)
    if not embedded("landscapes"):
        screenshot(page, "landscapes")

    # A text file named .png: one line, and the tab still works.
    fake = tmp_path / "not-a-photo.png"
    fake.write_text("name,age\nalice,31\n")
    photo.get_by_role("button", name="Clear").click()
    photo.locator("input[type=file]").set_input_files(str(fake))
    photo.locator(".file-preview").get_by_text("not-a-photo").wait_for()
    panel.get_by_role("button", name="Reconstruct and vary").click()
    message = error_toast(page)
    assert message.startswith("BadInput: not an image genlib can read"), message
    close_toasts(page)
    set_number(panel, "Temperature", 1)
    panel.get_by_role("button", name="Generate landscapes").click()
    wait_images(gallery, 3, other_than={i["src"] for i in means})


def test_landscapes_steer_with_a_direction_slider(page, vae_dir):
    panel = open_tab(page, "Landscapes")
    set_model(panel, str(vae_dir))
    panel.get_by_text("Steer with latent directions").click()
    steered = block(panel, "AI-generated steered landscape")
    slider = panel.get_by_label("range slider for Direction 1", exact=True)
    slider.scroll_into_view_if_needed()
    box = slider.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)  # a click is a release
    first = wait_images(steered, 1)
    info = fetch_png(page, first[0]["src"]).text
    assert info.get("directions", "").startswith("2"), info  # -3..3 in 0.25 steps: 90 % of the way is ~2.4
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] / 2)
    second = wait_images(steered, 1, other_than={first[0]["src"]})
    assert fetch_png(page, second[0]["src"]).text["directions"].startswith("-2")


# ----- text -----
def output_text(panel) -> str:
    return panel.get_by_label("Output (AI-generated text)", exact=True).input_value()


def test_text_streams_grows_and_stop_stops_it(page, tiny_text_folder, slow_text):
    import genlib

    panel = open_tab(page, "Text")
    set_model(panel, str(tiny_text_folder))
    panel.get_by_label("Prompt", exact=True).fill("Once upon")
    set_number(panel, "Max new tokens", 80)
    set_number(panel, "Temperature", 0)
    panel.get_by_role("button", name="Generate", exact=True).click()
    lengths: list[int] = []
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while len(set(lengths)) < 4 and time.monotonic() < deadline:
        lengths.append(len(output_text(panel)))
        time.sleep(0.1)
    grew = sorted(set(lengths))
    assert len(grew) >= 4 and grew[0] < grew[-1], lengths  # it streams: the box fills piece by piece
    assert lengths == sorted(lengths)  # and only grows

    panel.get_by_role("button", name="Stop", exact=True).click()
    stopped, deadline = output_text(panel), time.monotonic() + 10
    while time.monotonic() < deadline:  # the last pieces in flight arrive; then nothing more
        time.sleep(0.3)
        now = output_text(panel)
        if now == stopped:
            break
        stopped = now
    time.sleep(1.5)  # 30 more pieces' worth of time
    assert output_text(panel) == stopped, "text kept growing after Stop"
    full = genlib.load(str(tiny_text_folder)).generate("Once upon", max_new_tokens=80, temperature=0.0)
    assert stopped and full.startswith(stopped) and len(stopped) < len(full)
    assert "tokens/s" in panel.inner_text()
    if not embedded("stories"):
        screenshot(page, "text")


def test_text_empty_prompt_is_refused_in_place(page, tiny_text_folder):
    panel = open_tab(page, "Text")
    set_model(panel, str(tiny_text_folder))
    panel.get_by_label("Prompt", exact=True).fill("   ")
    panel.get_by_role("button", name="Generate", exact=True).click()
    panel.get_by_text("enter a prompt of 1 to 4000 characters").first.wait_for()
    assert output_text(panel) == ""


# ----- screenshots of the embedded models (only when asked for, and only for models that exist) -----
@pytest.mark.skipif(not os.environ.get("GENLIB_SCREENSHOTS"), reason="screenshots only with GENLIB_SCREENSHOTS set")
def test_screenshots_with_the_embedded_models(page):
    if embedded("landscapes"):
        panel = open_tab(page, "Landscapes")
        panel.get_by_role("button", name="Generate landscapes").click()
        wait_images(block(panel, "AI-generated landscapes"), 8)
        screenshot(page, "landscapes")
    if embedded("stories"):
        panel = open_tab(page, "Text")
        set_number(panel, "Max new tokens", 120)
        panel.get_by_role("button", name="Generate", exact=True).click()
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        previous = None
        while time.monotonic() < deadline:  # until the text stops changing
            current = output_text(panel)
            if current and current == previous:
                break
            previous = current
            time.sleep(1.0)
        screenshot(page, "text")


# ----- content credentials through the browser -----
def test_a_face_downloaded_through_the_browser_carries_valid_credentials(page, gan_ref, tmp_path, monkeypatch):
    """With a signing key configured, the PNG a person downloads from the gallery validates with
    `python -m genlib info-image`; the same file with one pixel changed does not."""
    import json
    import subprocess
    import sys

    from test_credentials import tamper_pixel

    from genlib import credentials

    cert, key, _root = credentials.make_cert(tmp_path / "chain")
    monkeypatch.setenv(credentials.ENV_CERT, str(cert))  # the app runs in this process: it signs from now on
    monkeypatch.setenv(credentials.ENV_KEY, str(key))
    panel = open_tab(page, "Faces")
    set_model(panel, gan_ref)
    set_number(panel, "Number of faces", 1)
    set_number(panel, "Seed", 11)
    panel.get_by_role("button", name="Generate faces").click()
    (shown,) = wait_images(block(panel, "AI-generated faces"), 1)
    r = page.request.get(shown["src"])  # the bytes the browser downloads
    assert r.ok, r.status
    (tmp_path / "face.png").write_bytes(r.body())
    tamper_pixel(tmp_path / "face.png", tmp_path / "tampered.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENLIB_C2PA_")}

    def info_image(name: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "genlib", "info-image", str(tmp_path / name)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    good, bad = info_image("face.png"), info_image("tampered.png")
    assert good["content_credentials"]["status"] == "valid", good
    assert good["content_credentials"]["provenance"]["seed"] == "11"
    assert bad["content_credentials"]["status"] == "invalid"
    assert "dataHash.mismatch" in bad["content_credentials"]["summary"]
