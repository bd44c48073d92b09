"""The bad-input matrix: one parametrized row per hostile or mistaken input, across the library, the Hub path,
the CLI and the app's API. Every row asserts a clear one-line error naming what is wrong, and that the same
library / app then serves the next good request.

Surfaces:
- library: genlib.load refs and folders, model.generate / interpolate / stream arguments, genlib.uploads.open_upload
  (in this process; huggingface_hub is in offline mode so no row can reach the network);
- hub: references resolved against the local Hub of tests/hubserver.py (conftest's `gl`, a child process);
- cli: `python -m genlib ...` in a subprocess: exit code 2 (usage/bad input) or 1 (model error), one `error:`
  line on stderr, never a traceback;
- api: gradio_client against the running app, the next good request answered after each error.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import torch
from appserver import running_app
from PIL import Image

import genlib
from genlib.errors import GenlibError
from genlib.models.gan import GANConfig, Generator
from genlib.models.vae import VAE, VAEConfig
from genlib.uploads import open_upload

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Shared inputs
# --------------------------------------------------------------------------------------------------
def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 8-bit RGB pixels, with one tiny IDAT: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


GOOD_PNG = png_bytes(Image.new("RGB", (40, 30), (90, 140, 200)))
TRUNCATED_PNG = png_bytes(Image.effect_noise((64, 64), 60).convert("RGB"))[:300]
BOMB_PNG = png_header_only(30_000, 30_000)  # 900 megapixels declared in a few bytes
NOT_AN_IMAGE = b"name,age\nalice,31\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> SimpleNamespace:
    """Tiny real models (GAN, VAE) and broken model folders built from them."""
    root = tmp_path_factory.mktemp("bad-inputs")
    torch.manual_seed(0)
    gan = root / "gan"
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(gan)
    vae = root / "vae"
    VAE(VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3)).save_pretrained(vae)
    cfg = json.loads((gan / "config.json").read_text())

    def folder(name: str, files: dict[str, bytes]) -> Path:
        d = root / name
        d.mkdir()
        for k, v in files.items():
            (d / k).write_bytes(v)
        return d

    config = (gan / "config.json").read_bytes()
    weights = (gan / "model.safetensors").read_bytes()
    huge = json.dumps({**cfg, "padding": "x" * (3 << 20)}).encode()
    return SimpleNamespace(
        root=root,
        gan=gan,
        vae=vae,
        pickle=folder("pickle", {"config.json": config, "pytorch_model.bin": b"\x80\x04\x95 never unpickled"}),
        huge_config=folder("huge-config", {"config.json": huge, "model.safetensors": weights}),
        deep_config=folder(
            "deep-config", {"config.json": b"[" * 100_000 + b"]" * 100_000, "model.safetensors": weights}
        ),
        absurd_config=folder(
            "absurd-config",
            {"config.json": json.dumps({**cfg, "channels": 10**9}).encode(), "model.safetensors": weights},
        ),
        not_json=folder("not-json", {"config.json": b"\xff\xfe{nope", "model.safetensors": weights}),
        bad_weights=folder(
            "bad-weights", {"config.json": config, "model.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{"}
        ),
        text_png=folder("upload", {"photo.png": NOT_AN_IMAGE}) / "photo.png",
    )


@pytest.fixture(scope="module")
def models(dirs, tiny_text_folder) -> SimpleNamespace:
    return SimpleNamespace(
        gan=genlib.load(str(dirs.gan), device="cpu"),
        vae=genlib.load(str(dirs.vae), device="cpu"),
        lm=genlib.load(str(tiny_text_folder), device="cpu"),
    )


@pytest.fixture
def offline(monkeypatch):
    """No row can reach the real Hub: huggingface_hub reads this constant at call time."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def assert_one_line(message: str, *fragments: str) -> None:
    assert message.strip(), "empty error message"
    assert "\n" not in message.strip(), f"not one line: {message!r}"
    assert "Traceback" not in message
    for f in fragments:
        assert f.lower() in message.lower(), f"{f!r} not in {message!r}"


# --------------------------------------------------------------------------------------------------
# Library: genlib.load, generate, stream, open_upload (in this process)
# --------------------------------------------------------------------------------------------------
@dataclass
class Row:
    id: str
    call: Callable[[SimpleNamespace, SimpleNamespace], Any]  # (dirs, models) -> raises
    error: str  # genlib error class name
    fragments: tuple[str, ...]
    next: str  # what must still work afterwards: load | faces | landscapes | text | upload


def _load(ref: Any, **kw: Any) -> Callable[[SimpleNamespace, SimpleNamespace], Any]:
    return lambda d, m: genlib.load(ref(d) if callable(ref) else ref, **kw)


LIBRARY_ROWS = [
    # ----- model references -----
    Row("ref-empty", _load(""), "ModelNotFound", ("empty",), "load"),
    Row("ref-blank", _load("   \t"), "ModelNotFound", ("empty",), "load"),
    Row("ref-none", _load(None), "ModelNotFound", ("empty",), "load"),
    Row("ref-not-a-string", _load(12345), "ModelNotFound", ("string", "int"), "load"),
    Row("ref-path-traversal", _load("../../etc/passwd"), "ModelNotFound", ("owner/name",), "load"),
    Row("ref-url", _load("http://evil.example/x"), "ModelNotFound", ("owner/name",), "load"),
    Row("ref-spaces", _load("a b/c"), "ModelNotFound", ("owner/name",), "load"),
    Row("ref-unicode", _load("ö/ü"), "ModelNotFound", ("owner/name",), "load"),
    Row("ref-unicode-lookalike", _load("оwner/name"), "ModelNotFound", ("owner/name",), "load"),  # Cyrillic о
    Row("ref-nul-byte", _load("owner/na\x00me"), "ModelNotFound", ("owner/name",), "load"),
    Row("ref-double-dash", _load("owner/a--b"), "ModelNotFound", ("not a valid hub repo id",), "load"),
    Row("ref-name-too-long", _load("owner/" + "n" * 300), "ModelNotFound", ("not a valid hub repo id",), "load"),
    Row("ref-huge-string", _load("x" * 100_000), "ModelNotFound", ("100,000 characters",), "load"),
    Row("ref-uncached-offline", _load("nobody/none"), "HubUnavailable", ("nobody/none", "offline"), "load"),
    Row("ref-revision-offline", _load("nobody/none@v9.9"), "HubUnavailable", ("nobody/none@v9.9",), "load"),
    # ----- model folders -----
    Row("folder-pickle-only", _load(lambda d: str(d.pickle)), "NotSafetensors", ("safetensors only",), "load"),
    Row("folder-huge-config", _load(lambda d: str(d.huge_config)), "BadConfig", ("bytes", "at most"), "load"),
    Row("folder-deep-config", _load(lambda d: str(d.deep_config)), "BadConfig", ("nested",), "load"),
    Row("folder-absurd-config", _load(lambda d: str(d.absurd_config)), "BadConfig", ("channels",), "load"),
    Row("folder-config-not-json", _load(lambda d: str(d.not_json)), "BadConfig", ("not valid json",), "load"),
    Row("folder-bad-weights", _load(lambda d: str(d.bad_weights)), "BadWeights", ("model.safetensors",), "load"),
    Row("folder-empty", _load(lambda d: str(d.root)), "ModelNotFound", ("no config.json",), "load"),
    Row("load-bad-dtype", _load(lambda d: str(d.gan), dtype="int8"), "BadConfig", ("dtype",), "load"),
    Row("load-bad-device", _load(lambda d: str(d.gan), device="nonsense"), "BadInput", ("device",), "load"),
    Row("load-absent-gpu", _load(lambda d: str(d.gan), device="cuda:7"), "BadInput", ("not available",), "load"),
    # ----- faces GAN -----
    Row("faces-n-zero", lambda d, m: m.gan.generate(0), "BadInput", ("n must be",), "faces"),
    Row("faces-n-huge", lambda d, m: m.gan.generate(10**6), "BadInput", ("n must be",), "faces"),
    Row("faces-n-string", lambda d, m: m.gan.generate("3"), "BadInput", ("n must be",), "faces"),
    Row("faces-n-bool", lambda d, m: m.gan.generate(True), "BadInput", ("n must be",), "faces"),
    Row("faces-seed-negative", lambda d, m: m.gan.generate(1, seed=-1), "BadInput", ("seed",), "faces"),
    Row("faces-seed-overflow", lambda d, m: m.gan.generate(2, seed=2**63 - 1), "BadInput", ("seed",), "faces"),
    Row("faces-seed-float", lambda d, m: m.gan.generate(1, seed=1.5), "BadInput", ("seed",), "faces"),
    Row(
        "faces-truncation-nan", lambda d, m: m.gan.generate(1, truncation=float("nan")), "BadInput", ("trunc",), "faces"
    ),
    Row("faces-truncation-2", lambda d, m: m.gan.generate(1, truncation=2.0), "BadInput", ("truncation",), "faces"),
    Row("faces-truncation-str", lambda d, m: m.gan.generate(1, truncation="0.5"), "BadInput", ("truncation",), "faces"),
    Row("faces-interp-frames-1", lambda d, m: m.gan.interpolate(0, 1, frames=1), "BadInput", ("frames",), "faces"),
    # ----- landscapes VAE -----
    Row(
        "vae-temperature-negative", lambda d, m: m.vae.generate(1, temperature=-1), "BadInput", ("temp",), "landscapes"
    ),
    Row(
        "vae-temperature-inf",
        lambda d, m: m.vae.generate(1, temperature=float("inf")),
        "BadInput",
        ("temp",),
        "landscapes",
    ),
    Row(
        "vae-directions-too-many",
        lambda d, m: m.vae.generate(1, directions=[1] * 9),
        "BadInput",
        ("3 directions",),
        "landscapes",
    ),
    Row(
        "vae-direction-nan",
        lambda d, m: m.vae.generate(1, directions=[float("nan")]),
        "BadInput",
        ("amount",),
        "landscapes",
    ),
    Row("vae-encode-not-an-image", lambda d, m: m.vae.encode("photo.jpg"), "BadInput", ("pil image",), "landscapes"),
    Row(
        "vae-variation-strength-2",
        lambda d, m: m.vae.variations(Image.new("RGB", (20, 20)), 2, strength=2),
        "BadInput",
        ("strength",),
        "landscapes",
    ),
    # ----- text sampling -----
    Row("text-prompt-empty", lambda d, m: m.lm.generate("", max_new_tokens=2), "BadInput", ("empty",), "text"),
    Row(
        "text-prompt-controls-only",
        lambda d, m: m.lm.generate("\x00\x07\x1b", max_new_tokens=2),
        "BadInput",
        ("empty",),
        "text",
    ),
    Row("text-prompt-not-str", lambda d, m: m.lm.generate(42, max_new_tokens=2), "BadInput", ("string",), "text"),
    Row(
        "text-prompt-huge",
        lambda d, m: m.lm.generate("a" * 200_001, max_new_tokens=2),
        "BadInput",
        ("at most",),
        "text",
    ),
    Row(
        "text-prompt-surrogate",
        lambda d, m: m.lm.generate("hi \ud800", max_new_tokens=2),
        "BadInput",
        ("utf-8",),
        "text",
    ),
    Row(
        "text-prompt-bad-utf8",
        lambda d, m: m.lm.generate(b"\xff\xfe", max_new_tokens=2),
        "BadInput",
        ("utf-8",),
        "text",
    ),
    Row(
        "text-max-new-tokens-0",
        lambda d, m: m.lm.generate("hi", max_new_tokens=0),
        "BadInput",
        ("max_new_tokens",),
        "text",
    ),
    Row(
        "text-max-new-tokens-huge",
        lambda d, m: m.lm.generate("hi", max_new_tokens=10**9),
        "BadInput",
        ("max_new_tokens",),
        "text",
    ),
    Row(
        "text-temperature-negative",
        lambda d, m: m.lm.generate("hi", temperature=-0.5),
        "BadInput",
        ("temperature",),
        "text",
    ),
    Row(
        "text-temperature-nan",
        lambda d, m: m.lm.generate("hi", temperature=float("nan")),
        "BadInput",
        ("temperature",),
        "text",
    ),
    Row(
        "text-temperature-str",
        lambda d, m: m.lm.generate("hi", temperature="hot"),
        "BadInput",
        ("temperature",),
        "text",
    ),
    Row("text-top-p-zero", lambda d, m: m.lm.generate("hi", top_p=0.0), "BadInput", ("top_p",), "text"),
    Row("text-top-k-negative", lambda d, m: m.lm.generate("hi", top_k=-1), "BadInput", ("top_k",), "text"),
    Row("text-seed-negative", lambda d, m: m.lm.generate("hi", seed=-1), "BadInput", ("seed",), "text"),
    Row("text-unknown-argument", lambda d, m: m.lm.generate("hi", temprature=0.5), "BadInput", ("temprature",), "text"),
    Row("text-stop-empty", lambda d, m: m.lm.generate("hi", stop=[""]), "BadInput", ("stop",), "text"),
    Row(
        "text-repetition-penalty-0",
        lambda d, m: m.lm.generate("hi", repetition_penalty=0),
        "BadInput",
        ("repetition",),
        "text",
    ),
    # ----- uploads -----
    Row("upload-empty", lambda d, m: open_upload(b""), "BadInput", ("empty",), "upload"),
    Row("upload-not-an-image", lambda d, m: open_upload(NOT_AN_IMAGE), "BadInput", ("not an image",), "upload"),
    Row("upload-wrong-extension", lambda d, m: open_upload(d.text_png), "BadInput", ("not an image",), "upload"),
    Row(
        "upload-truncated-png", lambda d, m: open_upload(TRUNCATED_PNG), "BadInput", ("could not be decoded",), "upload"
    ),
    Row("upload-decompression-bomb", lambda d, m: open_upload(BOMB_PNG), "BadInput", ("pixels",), "upload"),
    Row("upload-over-byte-limit", lambda d, m: open_upload(GOOD_PNG, max_bytes=100), "BadInput", ("limit",), "upload"),
    Row("upload-missing-file", lambda d, m: open_upload(d.root / "nope.png"), "BadInput", ("no such file",), "upload"),
    Row("upload-wrong-type", lambda d, m: open_upload(12345), "BadInput", ("expected a file path",), "upload"),
]


def still_serves(kind: str, d: SimpleNamespace, m: SimpleNamespace) -> None:
    if kind == "load":
        assert genlib.load(str(d.gan), device="cpu").generate(1, seed=3)[0].size == (16, 16)
    elif kind == "faces":
        assert len(m.gan.generate(2, seed=0, truncation=0.7)) == 2
    elif kind == "landscapes":
        assert m.vae.generate(1, seed=0, temperature=0.5)[0].size == (16, 16)
    elif kind == "text":
        assert isinstance(m.lm.generate("Once", max_new_tokens=3, temperature=0.0), str)
    else:
        assert open_upload(GOOD_PNG).size == (40, 30)


@pytest.mark.parametrize("row", LIBRARY_ROWS, ids=[r.id for r in LIBRARY_ROWS])
def test_library(row: Row, dirs, models, offline):
    with pytest.raises(GenlibError) as e:
        row.call(dirs, models)
    assert type(e.value).__name__ == row.error, f"{type(e.value).__name__}: {e.value}"
    assert_one_line(str(e.value), *row.fragments)
    still_serves(row.next, dirs, models)


# --------------------------------------------------------------------------------------------------
# Hub: references against the local Hub (a child process per call, see conftest.py)
# --------------------------------------------------------------------------------------------------
REPO = "owner/faces"
HUB_ROWS = [
    ("hub-unknown-repo", "nobody/none", {}, "ModelNotFound", ("nobody/none",)),
    ("hub-unknown-branch", f"{REPO}@no-such-branch", {}, "ModelNotFound", ("revision",)),
    ("hub-unknown-commit", f"{REPO}@{'0' * 40}", {}, "ModelNotFound", ("revision",)),
    ("hub-revision-traversal", f"{REPO}@../../../etc", {}, "ModelNotFound", ("revision",)),
    ("hub-unicode-name", "owner/ünïcode", {}, "ModelNotFound", ("ünïcode",)),
    ("hub-pickle-repo", "owner/pickle", {}, "NotSafetensors", ("pytorch_model.bin", "safetensors only")),
    ("hub-huge-config", "owner/huge-config", {}, "BadConfig", ("owner/huge-config", "at most")),
    ("hub-offline-uncached", REPO, {"HF_HUB_OFFLINE": "1"}, "HubUnavailable", ("offline",)),
]


@pytest.mark.parametrize(("ref", "env", "error", "fragments"), [r[1:] for r in HUB_ROWS], ids=[r[0] for r in HUB_ROWS])
def test_hub(ref, env, error, fragments, hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    pickle_files = tiny.with_files(drop=("model.safetensors",))
    pickle_files["pytorch_model.bin"] = b"\x80\x04\x95 never unpickled"
    hub.add_repo("owner/pickle", pickle_files)
    hub.add_repo("owner/huge-config", tiny.with_files(config_json=b" " * (2 << 20) + tiny.files["config.json"]))
    r = gl.load(ref, env=env)
    assert r.raised(error, *fragments), r
    assert_one_line(r.message)
    assert not hub.downloads("*.bin"), "a pickle file must never be downloaded"
    ok = gl.load(REPO)  # the next request: the good model, from the same Hub and cache
    assert ok.ok and ok.value["tensors"] == tiny.digests, ok


# --------------------------------------------------------------------------------------------------
# CLI: python -m genlib in a subprocess
# --------------------------------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GENLIB_"))}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "genlib", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )


# (id, args with {gan} {text} {pickle} {out} {notpng} {blank} placeholders, exit code, stderr fragment)
CLI_ROWS = [
    ("cli-n-not-a-number", "generate face --model {gan} --n many --out {out}", 2, "invalid int value"),
    ("cli-n-zero", "generate face --model {gan} --n 0 --out {out}", 2, "n must be"),
    ("cli-seed-negative", "generate face --model {gan} --n 1 --seed -5 --out {out}", 2, "seed"),
    ("cli-truncation-5", "generate face --model {gan} --n 1 --truncation 5 --out {out}", 2, "truncation"),
    ("cli-bad-dtype", "generate face --model {gan} --dtype int8 --out {out}", 2, "invalid choice"),
    ("cli-bad-device", "generate face --model {gan} --n 1 --device nonsense --out {out}", 2, "unknown device"),
    ("cli-ref-traversal", "info ../../etc/passwd", 1, "owner/name"),
    ("cli-ref-url", "info http://evil.example/x", 1, "owner/name"),
    ("cli-ref-uncached-offline", "info nobody/none@v1", 1, "offline"),
    ("cli-pickle-folder", "info {pickle}", 1, "safetensors only"),
    ("cli-text-empty-prompt", "generate text --model {text} --prompt {blank} --max-new-tokens 2", 2, "empty"),
    ("cli-text-max-new-tokens-0", "generate text --model {text} --prompt hi --max-new-tokens 0", 2, "max_new_tokens"),
    ("cli-text-top-p-2", "generate text --model {text} --prompt hi --top-p 2", 2, "top_p"),
    ("cli-info-image-not-png", "info-image {notpng}", 2, "not a readable image"),
]


@pytest.fixture(scope="module")
def cli_runs(dirs, tiny_text_folder, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every CLI row's subprocess, run a few at a time up front (each pays for an interpreter and torch)."""
    out = tmp_path_factory.mktemp("cli-out")
    fields = dict(gan=dirs.gan, text=tiny_text_folder, pickle=dirs.pickle, out=out, notpng=dirs.text_png, blank="  ")
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        runs = {row[0]: pool.submit(cli, *(a.format(**fields) for a in row[1].split())) for row in CLI_ROWS}
    return {k: f.result() for k, f in runs.items()}


@pytest.mark.parametrize(
    ("row_id", "code", "fragment"), [(r[0], *r[2:]) for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS]
)
def test_cli(row_id, code, fragment, cli_runs, dirs, tmp_path):
    from genlib.__main__ import main

    r = cli_runs[row_id]
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stderr
    assert_one_line(errors[0], fragment)
    if code == 1:  # a model error is exactly one line, starting with "error: "
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    # The next request: the same command line, corrected, works (here in-process, no second interpreter).
    assert main(["generate", "face", "--model", str(dirs.gan), "--n", "1", "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "000000.png").is_file()


# --------------------------------------------------------------------------------------------------
# API: gradio_client against the running app
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api():
    with running_app() as running:
        yield running.client()


def api_error(fn: Callable[[], Any]) -> str:
    """The one message a client gets for a refused request: the app's error, the validator's, or the HTTP detail."""
    from gradio_client.exceptions import AppError, ValidationError

    try:
        fn()
    except AppError as e:
        return str(e)
    except ValidationError as e:  # "1 parameter(s) failed validation:\n- prompt: <message>"
        lines = str(e).splitlines()
        assert len(lines) == 2 and lines[0].startswith("1 parameter"), str(e)
        return lines[1]
    except httpx.HTTPStatusError as e:  # refused when queued (an event with a validator): the detail says why
        assert e.response.status_code in (400, 422)
        return e.response.json()["detail"]
    raise AssertionError("the request was not refused")


def _faces(ref: Any, seed: Any = 0, n: Any = 1, psi: Any = 0.7, size: Any = 64, method: Any = "nearest"):
    return lambda c, d: c.predict(ref(d) if callable(ref) else ref, seed, n, psi, size, method, api_name="/faces")


def _text(ref: Any, prompt: Any = "Once", max_new: Any = 4, temp: Any = 0.0, top_p: Any = 1.0, top_k: Any = 0, seed=0):
    return lambda c, d: c.predict(
        ref(d) if callable(ref) else ref, prompt, False, max_new, temp, top_p, top_k, seed, api_name="/text"
    )


def _photo(path: Callable[[SimpleNamespace], Any]):
    from gradio_client import handle_file

    def call(c, d):
        p = path(d)
        return c.predict(
            str(d.vae), handle_file(str(p)) if p else None, 1, 0.4, 0, 64, "nearest", api_name="/landscapes_photo"
        )

    return call


def _upload(d: SimpleNamespace, name: str, data: bytes) -> Path:
    p = d.root / "api-uploads" / name
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    return p


def _gan(d):
    return str(d.gan)


API_ROWS = [
    ("api-faces-n-zero", _faces(_gan, n=0), "less than minimum value 1"),
    ("api-faces-n-17", _faces(_gan, n=17), "greater than maximum value 16"),
    ("api-faces-n-fraction", _faces(_gan, n=1.5), "n must be an integer"),
    ("api-faces-seed-negative", _faces(_gan, seed=-1), "less than minimum value 0"),
    ("api-faces-seed-2-to-the-70", _faces(_gan, seed=2**70), "seed must be an integer"),
    ("api-faces-seed-null", _faces(_gan, seed=None), "seed must be an integer"),
    ("api-faces-seed-string", _faces(_gan, seed="abc"), "error"),  # Gradio's own (generic) one-line message
    ("api-faces-truncation-5", _faces(_gan, psi=5.0), "greater than maximum value 1"),
    ("api-faces-size-100", _faces(_gan, size=100), "not in the list of choices"),
    ("api-faces-method-bicubic", _faces(_gan, method="bicubic"), "not in the list of choices"),
    ("api-faces-ref-empty", _faces(""), "ModelNotFound: empty"),
    ("api-faces-ref-traversal", _faces("../../etc"), "ModelNotFound"),
    ("api-faces-ref-url", _faces("http://evil.example/x"), "ModelNotFound"),
    ("api-faces-ref-huge", _faces("x" * 100_000), "ModelNotFound: model reference is 100,000 characters"),
    ("api-faces-ref-offline", _faces("nobody/none"), "HubUnavailable: nobody/none"),
    ("api-faces-ref-text-model", _faces(lambda d: str(d.text)), "WrongTask"),
    (
        "api-interpolate-frames-1",
        lambda c, d: c.predict(str(d.gan), 0, 1, 1, 1.0, 64, "nearest", api_name="/faces_interpolate"),
        "less than minimum value 2",
    ),
    ("api-load-faces-pickle", lambda c, d: c.predict(str(d.pickle), api_name="/load_faces_model"), "NotSafetensors"),
    (
        "api-load-faces-huge-config",
        lambda c, d: c.predict(str(d.huge_config), api_name="/load_faces_model"),
        "BadConfig",
    ),
    ("api-load-landscapes-unicode", lambda c, d: c.predict("ö/ü", api_name="/load_landscapes_model"), "ModelNotFound"),
    ("api-load-landscapes-faces", lambda c, d: c.predict(str(d.gan), api_name="/load_landscapes_model"), "WrongTask"),
    ("api-load-text-spaces", lambda c, d: c.predict("a b/c", api_name="/load_text_model"), "ModelNotFound"),
    ("api-text-empty-prompt", _text(lambda d: str(d.text), prompt=""), "enter a prompt"),
    ("api-text-huge-prompt", _text(lambda d: str(d.text), prompt="x" * 5000), "enter a prompt"),
    ("api-text-max-new-tokens-5000", _text(lambda d: str(d.text), max_new=5000), "greater than maximum value 512"),
    ("api-text-temperature-negative", _text(lambda d: str(d.text), temp=-1), "less than minimum value 0"),
    ("api-text-faces-model", _text(_gan), "WrongTask"),
    ("api-text-revision-offline", _text("nobody/none@no-such-rev"), "HubUnavailable"),
    (
        "api-landscapes-temperature-5",
        lambda c, d: c.predict(str(d.vae), 0, 1, 5.0, 64, "nearest", api_name="/landscapes"),
        "greater than maximum value",
    ),
    (
        "api-steer-direction-10",
        lambda c, d: c.predict(str(d.vae), 0, 1.0, 64, "nearest", 10, 0, 0, 0, 0, 0, api_name="/landscapes_steer"),
        "greater than maximum value 3",
    ),
    ("api-photo-missing", _photo(lambda d: None), "upload a photo first"),
    ("api-photo-text-as-png", _photo(lambda d: _upload(d, "photo.png", NOT_AN_IMAGE)), "not an image"),
    ("api-photo-truncated-png", _photo(lambda d: _upload(d, "cut.png", TRUNCATED_PNG)), "could not be decoded"),
    ("api-photo-bomb", _photo(lambda d: _upload(d, "bomb.png", BOMB_PNG)), "pixels"),
    ("api-photo-empty-file", _photo(lambda d: _upload(d, "empty.png", b"")), "empty"),
    ("api-photo-txt-extension", _photo(lambda d: _upload(d, "notes.txt", b"hello")), "invalid file type"),
]


@pytest.mark.parametrize(("call", "fragment"), [r[1:] for r in API_ROWS], ids=[r[0] for r in API_ROWS])
def test_api(call, fragment, api, dirs, tiny_text_folder):
    d = SimpleNamespace(**vars(dirs), text=tiny_text_folder)
    message = api_error(lambda: call(api, d))
    print(message)
    assert_one_line(message, fragment)
    good = api.predict(str(dirs.gan), 5, 2, 0.7, 64, "nearest", api_name="/faces")  # the next request
    assert len(good) == 2


# --------------------------------------------------------------------------------------------------
# Concurrent requests to a model that is being loaded
# --------------------------------------------------------------------------------------------------
def test_api_concurrent_requests_while_the_model_loads(api, dirs, tmp_path):
    """Six users ask for a model nobody has loaded yet, at once: one load, six correct answers."""
    fresh = tmp_path / "fresh-gan"
    torch.manual_seed(7)
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(fresh)
    start = threading.Barrier(6)

    def ask(seed: int):
        start.wait()
        return api.predict(str(fresh), seed, 1, 1.0, 64, "nearest", api_name="/faces")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(ask, range(6)))
    seeds = [
        Image.open(r[0]["image"] if isinstance(r[0]["image"], str) else r[0]["image"]["path"]).text["seed"]
        for r in results
    ]
    assert seeds == [str(s) for s in range(6)]


def test_api_concurrent_requests_to_a_broken_model_all_get_the_error(api, dirs):
    """Six users ask at once for a model whose config is refused: each gets the same one line, then all is well."""
    start = threading.Barrier(6)

    def ask(_: int) -> str:
        start.wait()
        return api_error(lambda: api.predict(str(dirs.absurd_config), 0, 1, 1.0, 64, "nearest", api_name="/faces"))

    with ThreadPoolExecutor(6) as pool:
        messages = list(pool.map(ask, range(6)))
    assert len(set(messages)) == 1
    assert_one_line(messages[0], "BadConfig", "channels")
    assert len(api.predict(str(dirs.gan), 0, 1, 1.0, 64, "nearest", api_name="/faces")) == 1
