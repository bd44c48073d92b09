"""C2PA content credentials: signing save_png's PNGs, verifying them, tampering, stripping, make-cert, info-image."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from PIL import Image

from genlib import credentials
from genlib.credentials import DIGITAL_SOURCE_TYPE, PROVENANCE_LABEL, UNTRUSTED, CredentialsError, verify
from genlib.images import read_png_info, save_png

ROOT = Path(__file__).resolve().parent.parent
INFO = {
    "ai_generated": "true",
    "generator": "genlib 0.1.0",
    "model": "someone/faces",
    "model_type": "genlib-gan",
    "revision": "0123456789abcdef0123456789abcdef01234567",
    "seed": "7",
    "truncation": "0.7",
}
ENV = (credentials.ENV_CERT, credentials.ENV_KEY, credentials.ENV_TRUST)


def image() -> Image.Image:
    im = Image.new("RGB", (16, 16))
    im.putdata([(x * 16, y * 16, 128) for y in range(16) for x in range(16)])
    return im


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """A PNG's chunks as (type, payload), in order."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def build(parts: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(struct.pack(">I", len(p)) + t + p + struct.pack(">I", zlib.crc32(t + p)) for t, p in parts)
    return b"\x89PNG\r\n\x1a\n" + body


def tamper_pixel(src: Path, dst: Path) -> None:
    """Change one pixel by one level, keeping every other chunk (the C2PA one included) as it was."""
    with Image.open(src) as im:
        im = im.convert("RGB")
    r, g, b = im.getpixel((3, 4))
    im.putpixel((3, 4), (r ^ 1, g, b))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    idat = [c for c in chunks(buf.getvalue()) if c[0] == b"IDAT"]
    out: list[tuple[bytes, bytes]] = []
    for c in chunks(src.read_bytes()):
        if c[0] != b"IDAT":
            out.append(c)
        elif idat:
            out.extend(idat)
            idat = []
    dst.write_bytes(build(out))


def strip_manifest(src: Path, dst: Path) -> None:
    dst.write_bytes(build([c for c in chunks(src.read_bytes()) if c[0] != b"caBX"]))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> tuple[Path, Path, Path]:
    return credentials.make_cert(tmp_path_factory.mktemp("c2pa-chain"))


@pytest.fixture
def signing(chain, monkeypatch) -> tuple[Path, Path, Path]:
    """GENLIB_C2PA_CERT/KEY set to the local chain; no trust anchors."""
    monkeypatch.setenv(credentials.ENV_CERT, str(chain[0]))
    monkeypatch.setenv(credentials.ENV_KEY, str(chain[1]))
    monkeypatch.delenv(credentials.ENV_TRUST, raising=False)
    return chain


@pytest.fixture
def unsigned_env(monkeypatch) -> None:
    for k in ENV:
        monkeypatch.delenv(k, raising=False)


def test_save_png_signs_and_the_manifest_validates_with_the_provenance(signing, tmp_path):
    p = save_png(image(), tmp_path / "a.png", INFO)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask  # signing in place keeps the new file's permissions
    assert b"caBX" in [c[0] for c in chunks(p.read_bytes())]
    v = verify(p)
    assert v.status == "valid", v.reason
    assert v.trusted is False and v.validation_state == "Valid"
    assert {"claimSignature.validated", "assertion.dataHash.match", UNTRUSTED} <= set(v.codes)
    assert v.digital_source_type == DIGITAL_SOURCE_TYPE
    assert v.provenance == {k: INFO[k] for k in ("generator", "model", "model_type", "revision", "seed")}
    assert v.signer == "genlib local demo signer"
    assert "not a trusted signer" in v.summary()
    # the text chunks and XMP written before signing survive, and the pixels are untouched
    text = read_png_info(p)
    assert {k: text[k] for k in INFO} == INFO and DIGITAL_SOURCE_TYPE in text["XML:com.adobe.xmp"]
    with Image.open(p) as im:
        assert im.convert("RGB").tobytes() == image().tobytes()
    assert "on, C2PA-signed by" in credentials.credentials_status()


def test_the_local_root_as_trust_anchor_makes_the_signer_trusted(signing, tmp_path, monkeypatch):
    p = save_png(image(), tmp_path / "a.png", INFO)
    v = verify(p, trust=signing[2])
    assert v.status == "valid" and v.trusted and v.validation_state == "Trusted"
    assert "signingCredential.trusted" in v.codes and UNTRUSTED not in v.codes
    monkeypatch.setenv(credentials.ENV_TRUST, str(signing[2]))
    assert verify(p).trusted


def test_a_tampered_pixel_fails_validation(signing, tmp_path):
    p = save_png(image(), tmp_path / "a.png", INFO)
    tamper_pixel(p, tmp_path / "t.png")
    v = verify(tmp_path / "t.png")
    assert v.status == "invalid" and not v.trusted
    assert "assertion.dataHash.mismatch" in v.codes and "assertion.dataHash.mismatch" in v.reason
    assert v.summary().startswith("invalid: ")


def test_an_edited_text_chunk_also_fails_validation(signing, tmp_path):
    p = save_png(image(), tmp_path / "a.png", INFO)
    edited = [(t, d.replace(b"seed\x007", b"seed\x008")) for t, d in chunks(p.read_bytes())]
    (tmp_path / "e.png").write_bytes(build(edited))
    assert read_png_info(tmp_path / "e.png")["seed"] == "8"
    assert verify(tmp_path / "e.png").status == "invalid"


def test_a_stripped_manifest_reads_as_none(signing, tmp_path):
    p = save_png(image(), tmp_path / "a.png", INFO)
    strip_manifest(p, tmp_path / "s.png")
    v = verify(tmp_path / "s.png")
    assert v.status == "none" and v.summary() == "none: no C2PA manifest"
    assert read_png_info(tmp_path / "s.png")["seed"] == "7"  # the text chunks are still there


def test_no_key_configured_leaves_the_png_unsigned_and_deterministic(unsigned_env, tmp_path):
    a = save_png(image(), tmp_path / "a.png", INFO).read_bytes()
    b = save_png(image(), tmp_path / "b.png", INFO).read_bytes()
    assert a == b and b"caBX" not in [c[0] for c in chunks(a)]
    assert verify(tmp_path / "a.png").status == "none"
    assert credentials.sign_if_configured(tmp_path / "a.png", INFO) is False
    assert credentials.credentials_status().startswith("Content credentials: off")


def test_half_a_configuration_is_a_clear_error(unsigned_env, chain, tmp_path, monkeypatch):
    monkeypatch.setenv(credentials.ENV_CERT, str(chain[0]))
    with pytest.raises(CredentialsError, match="set both"):
        save_png(image(), tmp_path / "a.png", INFO)
    assert "misconfigured" in credentials.credentials_status()
    monkeypatch.setenv(credentials.ENV_KEY, str(tmp_path / "missing.pem"))
    monkeypatch.setenv(credentials.ENV_CERT, str(tmp_path / "missing-cert.pem"))
    assert "misconfigured" in credentials.credentials_status()
    monkeypatch.setenv(credentials.ENV_CERT, str(chain[0]))
    with pytest.raises(CredentialsError, match="cannot read"):
        save_png(image(), tmp_path / "a.png", INFO)


def test_make_cert_writes_a_c2pa_shaped_es256_chain(chain):
    cert, key, root = chain
    leaf, ca = x509.load_pem_x509_certificates(cert.read_bytes())
    assert ca == x509.load_pem_x509_certificate(root.read_bytes()) and leaf.issuer == ca.subject
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) and leaf.public_key().curve.name == "secp256r1"
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_the_manifest_says_created_by_a_trained_algorithm():
    actions, prov = credentials.manifest_definition(INFO)["assertions"]
    assert actions["label"] == "c2pa.actions" and prov["label"] == PROVENANCE_LABEL
    assert actions["data"]["actions"][0] | {"softwareAgent": None} == {
        "action": "c2pa.created",
        "digitalSourceType": DIGITAL_SOURCE_TYPE,
        "softwareAgent": None,
    }
    assert prov["data"]["revision"] == INFO["revision"] and "truncation" not in prov["data"]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "genlib", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_make_cert_then_info_image_verdicts(unsigned_env, tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENLIB_C2PA_")}
    r = cli("make-cert", str(tmp_path / "chain"), env=base)
    assert r.returncode == 0, r.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in r.stdout.splitlines())
    assert set(exports) == {credentials.ENV_CERT, credentials.ENV_KEY} and "not from a trusted signer" in r.stderr
    assert cli("make-cert", str(tmp_path / "chain"), env=base).returncode == 1  # no silent key overwrite

    credentials.sign_png(save_png(image(), tmp_path / "a.png", INFO), INFO, *exports.values())
    tamper_pixel(tmp_path / "a.png", tmp_path / "t.png")
    strip_manifest(tmp_path / "a.png", tmp_path / "s.png")
    trust = {**base, credentials.ENV_TRUST: str(tmp_path / "chain" / "root.pem")}

    def check(name: str, env: dict[str, str]) -> dict:
        r = cli("info-image", str(tmp_path / name), env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)["content_credentials"]

    valid, trusted, tampered, none = (
        check("a.png", base),
        check("a.png", trust),
        check("t.png", base),
        check("s.png", base),
    )
    assert valid["status"] == "valid" and not valid["trusted"] and "not a trusted signer" in valid["summary"]
    assert valid["provenance"]["seed"] == "7" and valid["digital_source_type"] == DIGITAL_SOURCE_TYPE
    assert trusted["status"] == "valid" and trusted["trusted"] and "(trusted signer)" in trusted["summary"]
    assert tampered["status"] == "invalid" and "assertion.dataHash.mismatch" in tampered["summary"]
    assert none["status"] == "none"


def test_a_face_from_the_cli_validates_and_a_tampered_copy_does_not(unsigned_env, chain, tmp_path):
    import torch

    from genlib.models.gan import GANConfig, Generator

    torch.manual_seed(0)
    Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(tmp_path / "gan")
    base = {k: v for k, v in os.environ.items() if not k.startswith("GENLIB_C2PA_")}
    signing = {**base, credentials.ENV_CERT: str(chain[0]), credentials.ENV_KEY: str(chain[1])}
    r = cli(
        "generate",
        "face",
        "--model",
        str(tmp_path / "gan"),
        "--n",
        "2",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "out"),
        env=signing,
    )
    assert r.returncode == 0, r.stderr
    tamper_pixel(tmp_path / "out" / "000001.png", tmp_path / "t.png")
    for name, status, seed in [
        ("out/000000.png", "valid", "5"),
        ("out/000001.png", "valid", "6"),
        ("t.png", "invalid", "6"),
    ]:
        r = cli("info-image", str(tmp_path / name), env=base)
        assert r.returncode == 0, r.stderr
        cc = json.loads(r.stdout)["content_credentials"]
        assert cc["status"] == status, cc
        assert cc["provenance"]["seed"] == seed
