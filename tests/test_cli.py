"""`python -m genlib`: info JSON, exit codes, one-line errors, info-image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genlib.models.gan import GANConfig, Generator

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genlib", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    d = tmp_path_factory.mktemp("cli-gan")
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(d)
    return d


def test_info_prints_architecture_size_and_revision(gan_dir):
    r = cli("info", str(gan_dir))
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["architecture"] == "genlib-gan" and info["task"] == "faces"
    assert info["parameters"] == Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).num_parameters()
    assert info["dtype"] == "F32" and info["size_bytes"] > 0
    assert info["revision"].startswith("sha256:")
    assert info["card"]["metadata"]["library_name"] == "genlib"


def test_model_error_is_one_line_with_exit_code_1(tmp_path):
    r = cli("info", str(tmp_path / "missing"))
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path):
    r = cli("--debug", "info", str(tmp_path / "missing"))
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_usage_errors_exit_2(gan_dir, tmp_path):
    assert cli("generate", "face").returncode == 2  # --out missing
    assert cli("generate", "face", "--n", "many", "--out", str(tmp_path)).returncode == 2
    r = cli("generate", "face", "--model", str(gan_dir), "--n", "-1", "--out", str(tmp_path))
    assert r.returncode == 2 and "n must be" in r.stderr


def test_help_lists_the_commands():
    r = cli("--help")
    assert r.returncode == 0
    for cmd in ("info", "pull", "generate", "info-image", "convert-gguf", "eval-text"):
        assert cmd in r.stdout


def test_info_image_reads_provenance_back(gan_dir, tmp_path):
    assert (
        cli("generate", "face", "--model", str(gan_dir), "--n", "1", "--seed", "9", "--out", str(tmp_path)).returncode
        == 0
    )
    r = cli("info-image", str(tmp_path / "000000.png"))
    info = json.loads(r.stdout)
    assert info["ai_generated"] is True
    assert info["fields"]["seed"] == "9"
    assert info["digital_source_type"].endswith("trainedAlgorithmicMedia")


def test_info_image_on_a_non_image_is_a_clear_error(tmp_path):
    (tmp_path / "x.png").write_text("not a png")
    r = cli("info-image", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "not a readable image" in r.stderr


def test_a_text_kind_on_a_face_model_names_the_mismatch(gan_dir):
    r = cli("generate", "text", "--model", str(gan_dir), "--prompt", "hi")
    assert r.returncode == 1 and "faces model" in r.stderr


def test_info_answers_for_the_embedded_faces_model():
    r = cli("info", "faces", env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["source"] == "embedded" and info["architecture"] == "genlib-gan"
    assert info["card"]["metadata"]["pipeline_tag"] == "unconditional-image-generation"
    assert "do not exist" in info["card"]["summary"]
