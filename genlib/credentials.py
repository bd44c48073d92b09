"""C2PA content credentials: a signed manifest inside every PNG genlib writes, and a checker for it.

The manifest says the image was created by a trained algorithm (`c2pa.actions`, `c2pa.created`,
`digitalSourceType` trainedAlgorithmicMedia) and carries genlib's provenance (generator, model, revision,
seed) in an `org.genlib.provenance` assertion. Its hard binding is a hash over the whole file except the
manifest chunk, so any changed pixel (or text chunk) breaks it.

Configuration: `GENLIB_C2PA_CERT` (PEM chain, signer first) and `GENLIB_C2PA_KEY` (PEM private key). With
neither set nothing is signed. `GENLIB_C2PA_TRUST` (PEM roots) adds trust anchors for verification; the
chain from `python -m genlib make-cert` is otherwise verifiable but not from a trusted signer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genlib.errors import GenlibError

ENV_CERT, ENV_KEY, ENV_TRUST = "GENLIB_C2PA_CERT", "GENLIB_C2PA_KEY", "GENLIB_C2PA_TRUST"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PROVENANCE_LABEL = "org.genlib.provenance"
PROVENANCE_FIELDS = ("generator", "model", "model_type", "revision", "seed")
UNTRUSTED = "signingCredential.untrusted"  # the only failure a valid but self-signed chain reports
_OID_C2PA_CLAIM_SIGNING = "1.3.6.1.4.1.62558.2.1"  # id-kp-c2pa-claimSigning (C2PA trust list EKU)


class CredentialsError(GenlibError):
    """Content credentials are misconfigured (one env var without the other, unreadable PEM) or signing failed."""


@dataclass
class Verification:
    """What `verify` found: status is 'valid', 'invalid' or 'none' (no manifest)."""

    status: str
    trusted: bool = False
    reason: str = ""
    validation_state: str | None = None
    codes: list[str] = field(default_factory=list)
    digital_source_type: str | None = None
    provenance: dict[str, str] = field(default_factory=dict)
    signer: str | None = None

    def summary(self) -> str:
        """One line for people: valid (trusted or not) / invalid (why) / none."""
        if self.status == "valid":
            return f"valid, signed by {self.signer} " + (
                "(trusted signer)" if self.trusted else "(not a trusted signer)"
            )
        if self.status == "invalid":
            return f"invalid: {self.reason}"
        return "none: no C2PA manifest"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields plus the summary line."""
        return {**asdict(self), "summary": self.summary()}


def configured() -> tuple[Path, Path] | None:
    """(cert, key) from the environment, or None when credentials are off."""
    cert, key = os.environ.get(ENV_CERT, ""), os.environ.get(ENV_KEY, "")
    if not cert and not key:
        return None
    if not cert or not key:
        raise CredentialsError(f"set both {ENV_CERT} and {ENV_KEY} (PEM files), or neither")
    return Path(cert), Path(key)


def credentials_status() -> str:
    """One line for the app: are images being signed, and with what."""
    try:
        paths = configured()
        if paths is None:
            return (
                f"Content credentials: off (set {ENV_CERT} and {ENV_KEY}; images still carry provenance text and XMP)"
            )
        return f"Content credentials: on, C2PA-signed by {_subject(_read(paths[0], 'certificate chain'))}"
    except CredentialsError as e:
        return f"Content credentials: misconfigured ({e})"


def _subject(chain_pem: bytes) -> str:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(chain_pem)[0].subject.rfc4514_string()
    except ValueError as e:
        raise CredentialsError(f"not a PEM certificate chain: {e}") from e


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CredentialsError(f"cannot read the C2PA {what} {path}: {e}") from e


def signer_from_files(cert: str | Path, key: str | Path) -> Any:
    """A c2pa ES256 Signer from a PEM chain (signer first, then its CA) and a PEM private key."""
    import c2pa

    chain, pkey = _read(Path(cert), "certificate chain"), _read(Path(key), "key")
    try:
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain, pkey, None))
    except c2pa.C2paError as e:
        raise CredentialsError(f"cannot make a C2PA signer from {cert} and {key}: {e}") from e


def manifest_definition(info: dict[str, str]) -> dict[str, Any]:
    """The C2PA manifest for one generated image: a created action and genlib's provenance."""
    from genlib import __version__

    agent = {"name": "genlib", "version": __version__}
    action = {"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE, "softwareAgent": agent}
    prov = {k: info[k] for k in PROVENANCE_FIELDS if k in info}
    return {
        "claim_generator_info": [agent],
        "title": f"AI-generated image ({info.get('model', 'unknown model')})",
        "format": "image/png",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [action]}},
            {"label": PROVENANCE_LABEL, "data": prov},
        ],
    }


def _context(trust: Path | None = None) -> Any:
    import c2pa

    settings: dict[str, Any] = {
        "builder": {"thumbnail": {"enabled": False}},
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
    }
    if trust is not None:
        settings["trust"] = {"user_anchors": _read(trust, "trust anchors").decode()}
    return c2pa.Context.from_dict(settings)


def sign_png(path: str | Path, info: dict[str, str], cert: str | Path, key: str | Path) -> Path:
    """Embed a signed C2PA manifest in the finished PNG at `path` (in place; its other chunks are kept)."""
    import c2pa

    path = Path(path)
    signer = signer_from_files(cert, key)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        with _context() as ctx, c2pa.Builder(manifest_definition(info), ctx) as builder:
            with open(path, "rb") as src, open(tmp, "w+b") as dst:
                builder.sign(signer, "image/png", src, dst)
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))  # keep the PNG's permissions, not mkstemp's 0600
        os.replace(tmp, path)
    except c2pa.C2paError as e:
        raise CredentialsError(f"C2PA signing of {path} failed: {e}") from e
    finally:
        signer.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def sign_if_configured(path: str | Path, info: dict[str, str]) -> bool:
    """Sign `path` when GENLIB_C2PA_CERT/KEY are set; False (file untouched) when credentials are off."""
    paths = configured()
    if paths is None:
        return False
    sign_png(path, info, *paths)
    return True


def verify(path: str | Path, trust: str | Path | None = None) -> Verification:
    """Read the C2PA manifest of `path` back and check its signature, hashes and (separately) trust.

    'valid' means the claim signature and every hash (the pixels included) check out; `trusted` says whether
    the signer chains to a known anchor (C2PA's list, plus `trust` or GENLIB_C2PA_TRUST)."""
    import c2pa

    trust = trust or os.environ.get(ENV_TRUST) or None
    try:
        with _context(Path(trust) if trust else None) as ctx, open(path, "rb") as f:
            reader = c2pa.Reader.try_create("image/png", f, None, ctx)
            if reader is None:
                return Verification("none", reason="no C2PA manifest")
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError as e:
        return Verification("invalid", reason=f"unreadable manifest: {e}")
    return _judge(store)


def _judge(store: dict[str, Any]) -> Verification:
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failed = results.get("failure", [])
    codes = [s.get("code", "?") for s in results.get("success", [])] + [f.get("code", "?") for f in failed]
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest", ""), {})
    assertions = {a.get("label"): a.get("data", {}) for a in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    created = next((a for a in actions if a.get("action") == "c2pa.created"), {})
    sig = manifest.get("signature_info") or {}
    # An untrusted signer alone is not tampering: the signature and hashes can still all check out.
    broken = [f"{f.get('code')} ({f.get('explanation', '')})" for f in failed if f.get("code") != UNTRUSTED]
    if not manifest:
        broken.append("no active manifest in the manifest store")
    return Verification(
        status="invalid" if broken else "valid",
        trusted="signingCredential.trusted" in codes and not broken,
        reason="; ".join(broken),
        validation_state=store.get("validation_state"),
        codes=codes,
        digital_source_type=created.get("digitalSourceType"),
        provenance={k: str(v) for k, v in assertions.get(PROVENANCE_LABEL, {}).items()},
        signer=sig.get("common_name") or sig.get("issuer"),
    )


def make_cert(
    out_dir: str | Path, name: str = "genlib local demo signer", overwrite: bool = False
) -> tuple[Path, Path, Path]:
    """A local self-signed chain for C2PA: writes cert.pem (signer, then root), key.pem and root.pem.

    The signer is an ES256 (P-256) end-entity cert: digitalSignature key usage (critical), the
    emailProtection, documentSigning and C2PA claimSigning EKUs, not a CA. The root is only for verifying."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    out = Path(out_dir)
    if (out / "key.pem").exists() and not overwrite:
        raise CredentialsError(f"{out / 'key.pem'} exists; pass overwrite=True (--force) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "genlib local demo root CA (untrusted)")])
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "genlib"), x509.NameAttribute(NameOID.COMMON_NAME, name)]
    )

    def usage(**on: bool) -> x509.KeyUsage:
        flags = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
        flags += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
        return x509.KeyUsage(**{f: on.get(f, False) for f in flags})

    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    ekus = [ExtendedKeyUsageOID.EMAIL_PROTECTION, ObjectIdentifier("1.3.6.1.5.5.7.3.36")]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([*ekus, ObjectIdentifier(_OID_C2PA_CLAIM_SIGNING)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    cert_path, key_path, root_path = out / "cert.pem", out / "key.pem", out / "root.pem"
    cert_path.write_bytes(leaf.public_bytes(pem) + root.public_bytes(pem))
    root_path.write_bytes(root.public_bytes(pem))
    key_bytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    return cert_path, key_path, root_path
