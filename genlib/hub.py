"""Model references: embedded names, local folders and Hub repos, all resolved to a local folder.

Every network and cache operation goes through huggingface_hub (`snapshot_download`), so its cache,
`HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN` work as they do for any Hugging Face library.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import get_session, validate_repo_id

from genlib.errors import BadWeights, GatedModel, HubUnavailable, ModelNotFound, NotAllowed, NotSafetensors

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# Embedded default models: short name -> folder under weights/.
EMBEDDED: dict[str, str] = {
    "faces": "faces-gan64",
    "landscapes": "landscapes-vae64",
    "stories": "stories-gpt",
}

# The only files genlib ever downloads: never code, never pickles.
ALLOW_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "generation_config.json",
    "directions.safetensors",
    "README.md",
]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_PICKLE_MESSAGE = (
    "genlib loads safetensors only: pickle-based weights can run arbitrary code when loaded. "
    "Convert them (e.g. with the Hub's safetensors converter) and push model.safetensors"
)
MAX_REF_CHARS = 1024  # a folder path or owner/name@revision; longer references are refused unread
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _http_error_types() -> tuple[type[BaseException], ...]:
    """The HTTP client errors huggingface_hub can let through: httpx2 (huggingface_hub >= 2) or httpx (1.x)."""
    types = []
    for name in ("httpx2", "httpx"):
        try:
            types.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


_HTTP_ERRORS = _http_error_types()


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files came from; `revision` is what provenance records."""

    ref: str
    kind: str  # "embedded", "local" or "hub"
    path: Path
    repo_id: str
    revision: str  # a 40-hex commit SHA for Hub models, "sha256:<12 hex>" of the weights otherwise


def max_model_bytes() -> int | None:
    """The deployment's limit on a non-embedded model's weights (GENLIB_MAX_MODEL_BYTES, e.g. 2e9), or None."""
    v = os.environ.get("GENLIB_MAX_MODEL_BYTES", "").strip()
    if not v:
        return None
    try:
        return int(float(v))
    except ValueError:
        raise NotAllowed(f"GENLIB_MAX_MODEL_BYTES must be a number of bytes, got {v!r}") from None


def _refuse_size(ref: str, size: int, limit: int, where: str) -> None:
    if size > limit:
        raise NotAllowed(
            f"{ref}: its weights are {size:,} bytes ({where}), over this deployment's limit of "
            f"{limit:,} bytes (GENLIB_MAX_MODEL_BYTES)"
        )


def _check_remote_size(ref: str, repo_id: str, revision: str | None, token: str | bool | None, limit: int) -> None:
    """Refuse a Hub model over the limit from its safetensors headers (a few KB read), before any download.
    If the headers cannot be read (offline, no such repo), the download that follows reports why, and the
    downloaded files are checked instead."""
    try:
        meta = HfApi().get_safetensors_metadata(repo_id, revision=revision, token=token)
    except Exception:
        return
    size = sum(t.data_offsets[1] - t.data_offsets[0] for f in meta.files_metadata.values() for t in f.tensors.values())
    _refuse_size(ref, size, limit, "from the Hub's safetensors headers, nothing downloaded")


def _tensor_bytes(file: Path) -> int:
    """Bytes of tensor data a safetensors file declares (its header's data offsets; the file size if unreadable)."""
    try:
        with open(file, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 0 < n <= 100_000_000 else None
        return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return file.stat().st_size


def _check_local_size(ref: str, folder: Path, limit: int | None) -> None:
    if limit is not None:
        size = sum(_tensor_bytes(f) for f in folder.glob("*.safetensors"))
        _refuse_size(ref, size, limit, "on disk")


def parse_ref(ref: str) -> tuple[str, str | None]:
    """Split `owner/name@rev` into (repo id, revision or None)."""
    repo_id, _, rev = ref.partition("@")
    return repo_id, (rev or None)


def _content_revision(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:12]


def _check_local_folder(folder: Path, ref: str) -> None:
    if not (folder / "config.json").is_file() and not any(folder.glob("*.safetensors")):
        raise ModelNotFound(f"{ref}: folder has no config.json or model.safetensors")
    if not any(folder.glob("*.safetensors")):
        if any(f.suffix in PICKLE_SUFFIXES for f in folder.iterdir()):
            raise NotSafetensors(f"{ref}: only pickle weights found. {_PICKLE_MESSAGE}")


def resolve(
    ref: str,
    *,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    tqdm_class: type | None = None,
) -> ModelSource:
    """Resolve a reference to a local folder, downloading Hub files into the cache if needed."""
    if ref is not None and not isinstance(ref, str):
        raise ModelNotFound(f"a model reference is a string, got {type(ref).__name__}")
    if not ref or not ref.strip():
        raise ModelNotFound("empty model reference")
    ref = ref.strip()
    if len(ref) > MAX_REF_CHARS:
        raise ModelNotFound(f"model reference is {len(ref):,} characters; at most {MAX_REF_CHARS:,}")
    if ref in EMBEDDED:
        folder = WEIGHTS_DIR / EMBEDDED[ref]
        if not (folder / "model.safetensors").is_file():
            raise ModelNotFound(f"embedded model '{ref}' has not been trained and committed yet")
        return ModelSource(ref, "embedded", folder, f"genlib/{EMBEDDED[ref]}", _content_revision(folder))
    path = Path(ref).expanduser()
    limit = max_model_bytes()
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a folder
        is_dir = False
    if is_dir:
        _check_local_folder(path, ref)
        _check_local_size(ref, path, limit)
        return ModelSource(ref, "local", path.resolve(), path.name, _content_revision(path))
    repo_id, revision = parse_ref(ref)
    if not _REPO_RE.match(repo_id):
        known = ", ".join(EMBEDDED)
        raise ModelNotFound(
            f"'{ref}' is not an embedded model ({known}), an existing folder or a Hub repo id 'owner/name[@rev]'"
        )
    try:
        validate_repo_id(repo_id)  # the Hub's own rules: at most 96 characters, no '--' or '..'
    except HFValidationError as e:
        raise ModelNotFound(f"'{ref}' is not a valid Hub repo id: {e}") from e
    if limit is not None and not local_files_only and not constants.HF_HUB_OFFLINE:
        with _bounded_hub_calls():
            _check_remote_size(ref, repo_id, revision, token, limit)
    src = _resolve_hub(
        ref, repo_id, revision, local_files_only=bool(local_files_only), token=token, tqdm_class=tqdm_class
    )
    _check_local_size(ref, src.path, limit)
    return src


def _resolve_hub(
    ref: str,
    repo_id: str,
    revision: str | None,
    *,
    local_files_only: bool,
    token: str | bool | None,
    tqdm_class: type | None,
) -> ModelSource:
    with _bounded_hub_calls():
        return _resolve_hub_bounded(
            ref, repo_id, revision, local_files_only=local_files_only, token=token, tqdm_class=tqdm_class
        )


# huggingface_hub sends some requests with no timeout at all (model info and the file listing, i.e. the
# first calls of snapshot_download): a Hub or proxy that accepts the connection and never answers would
# hang genlib forever. While genlib talks to the Hub, a request hook gives those requests a finite timeout
# (the larger of HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT); requests that have one keep it, and
# requests made outside genlib's calls (this thread's context) are untouched.
_TIMEOUT_FOR_UNBOUNDED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "genlib_hub_timeout", default=None
)


def _bound_timeouts(request: Any) -> None:
    limit = _TIMEOUT_FOR_UNBOUNDED.get()
    if limit is None:
        return
    t = request.extensions.get("timeout")
    if t is None:
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), limit)
    elif isinstance(t, dict) and None in t.values():
        request.extensions["timeout"] = {k: (limit if v is None else v) for k, v in t.items()}


@contextmanager
def _bounded_hub_calls() -> Iterator[None]:
    try:
        client = get_session()
        hooks = client.event_hooks
        if _bound_timeouts not in hooks.get("request", []):
            client.event_hooks = {**hooks, "request": [*hooks.get("request", []), _bound_timeouts]}
    except Exception:  # an exotic client factory: keep huggingface_hub's behaviour
        pass
    limit = float(max(constants.HF_HUB_ETAG_TIMEOUT, constants.HF_HUB_DOWNLOAD_TIMEOUT))
    reset = _TIMEOUT_FOR_UNBOUNDED.set(limit)
    try:
        yield
    finally:
        _TIMEOUT_FOR_UNBOUNDED.reset(reset)


def _unreachable_reason(e: BaseException) -> str:
    """Why the Hub could not be used, from the exception chain huggingface_hub raised."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OfflineModeIsEnabled) or "HF_HUB_OFFLINE" in str(seen):
            return "offline mode (HF_HUB_OFFLINE) is on"
        status = getattr(getattr(seen, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"the Hub answered HTTP {status}"
        if "timeout" in type(seen).__name__.lower() or "timed out" in str(seen).lower():
            return "the Hub did not answer in time (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT)"
        if _HTTP_ERRORS and isinstance(seen, _HTTP_ERRORS):
            return f"the Hub cannot be reached ({type(seen).__name__}: {seen})"
        seen = seen.__cause__ or seen.__context__
    return "the Hub cannot be reached"


def _verify_new_blobs(folder: Path, known_blobs: set[str], ref: str) -> None:
    """Check weights downloaded by this call against the sha256 the Hub gave as their ETag.

    huggingface_hub checks only the size of a download; a file corrupted in transit (or by a proxy)
    would otherwise be cached and loaded. A mismatching blob is removed so that the next call downloads
    it again. Blobs that were already in the cache were checked when they arrived.
    """
    for f in sorted(folder.glob("*.safetensors")):
        blob = f.resolve()
        if blob.name in known_blobs or not _SHA256_RE.match(blob.name):
            continue
        h = hashlib.sha256()
        with open(blob, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        if h.hexdigest() != blob.name:
            blob.unlink(missing_ok=True)
            f.unlink(missing_ok=True)
            raise BadWeights(
                f"{ref}: the downloaded {f.name} is corrupt (sha256 {h.hexdigest()[:12]}..., the Hub says "
                f"{blob.name[:12]}...); it was removed from the cache, try again"
            )


def _resolve_hub_bounded(
    ref: str,
    repo_id: str,
    revision: str | None,
    *,
    local_files_only: bool,
    token: str | bool | None,
    tqdm_class: type | None,
) -> ModelSource:
    kwargs = {"tqdm_class": tqdm_class} if tqdm_class is not None else {}
    blobs_dir = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "blobs"
    known_blobs = {p.name for p in blobs_dir.iterdir()} if blobs_dir.is_dir() else set()
    try:
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=ALLOW_PATTERNS,
                local_files_only=local_files_only,
                token=token,
                library_name="genlib",
                **kwargs,
            )
        )
    except GatedRepoError as e:
        raise GatedModel(f"{repo_id} is gated: accept its terms on the Hub and set HF_TOKEN") from e
    except RepositoryNotFoundError as e:
        raise ModelNotFound(f"no Hub repo '{repo_id}' (or it is private: set HF_TOKEN)") from e
    except RevisionNotFoundError as e:
        raise ModelNotFound(f"{repo_id} has no revision '{revision}'") from e
    except HFValidationError as e:  # e.g. a name over 96 characters or with '--'
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelNotFound(f"'{ref}' is not a valid Hub repo id: {reason}") from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        reason = "local_files_only is set" if local_files_only else _unreachable_reason(e)
        raise HubUnavailable(f"{ref} is not (fully) in the local cache and {reason}") from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubUnavailable(f"the Hub answered HTTP {status} for {ref}; try again later") from e
    except (*_HTTP_ERRORS, OSError) as e:
        raise HubUnavailable(f"could not download {ref}: {type(e).__name__}: {e}") from e
    _verify_new_blobs(folder, known_blobs, ref)
    sha = folder.name
    if not any(folder.glob("*.safetensors")):
        _raise_missing_weights(ref, repo_id, sha, token, local_files_only)
    return ModelSource(ref, "hub", folder, repo_id, sha)


def _raise_missing_weights(ref: str, repo_id: str, sha: str, token: str | bool | None, offline: bool) -> None:
    files: list[str] = []
    if not offline:
        try:
            files = HfApi().list_repo_files(repo_id, revision=sha, token=token)
        except Exception:  # the listing only improves the message
            files = []
    if any(f.endswith(PICKLE_SUFFIXES) for f in files):
        raise NotSafetensors(
            f"{ref} has only pickle weights ({', '.join(f for f in files if f.endswith(PICKLE_SUFFIXES))}). {_PICKLE_MESSAGE}"
        )
    raise ModelNotFound(f"{ref} has no model.safetensors")
