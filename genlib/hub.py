"""Model references: embedded names, local folders and Hub repos, all resolved to a local folder.

Every network and cache operation goes through huggingface_hub (`snapshot_download`), so its cache,
`HF_HUB_OFFLINE`, `HF_ENDPOINT` and `HF_TOKEN` work as they do for any Hugging Face library.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from genlib.errors import GatedModel, HubUnavailable, ModelNotFound, NotSafetensors

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
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files came from; `revision` is what provenance records."""

    ref: str
    kind: str  # "embedded", "local" or "hub"
    path: Path
    repo_id: str
    revision: str  # a 40-hex commit SHA for Hub models, "sha256:<12 hex>" of the weights otherwise


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
    if not ref or not ref.strip():
        raise ModelNotFound("empty model reference")
    ref = ref.strip()
    if ref in EMBEDDED:
        folder = WEIGHTS_DIR / EMBEDDED[ref]
        if not (folder / "model.safetensors").is_file():
            raise ModelNotFound(f"embedded model '{ref}' has not been trained and committed yet")
        return ModelSource(ref, "embedded", folder, f"genlib/{EMBEDDED[ref]}", _content_revision(folder))
    path = Path(ref).expanduser()
    if path.is_dir():
        _check_local_folder(path, ref)
        return ModelSource(ref, "local", path.resolve(), path.name, _content_revision(path))
    repo_id, revision = parse_ref(ref)
    if not _REPO_RE.match(repo_id):
        known = ", ".join(EMBEDDED)
        raise ModelNotFound(
            f"'{ref}' is not an embedded model ({known}), an existing folder or a Hub repo id 'owner/name[@rev]'"
        )
    return _resolve_hub(ref, repo_id, revision, local_files_only=bool(local_files_only), token=token, tqdm_class=tqdm_class)


def _resolve_hub(
    ref: str,
    repo_id: str,
    revision: str | None,
    *,
    local_files_only: bool,
    token: str | bool | None,
    tqdm_class: type | None,
) -> ModelSource:
    kwargs = {"tqdm_class": tqdm_class} if tqdm_class is not None else {}
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
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise HubUnavailable(f"{ref} is not in the local cache and the Hub cannot be reached (offline)") from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubUnavailable(f"the Hub answered HTTP {status} for {ref}; try again later") from e
    except (httpx.HTTPError, OSError) as e:
        raise HubUnavailable(f"could not download {ref}: {type(e).__name__}: {e}") from e
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
        raise NotSafetensors(f"{ref} has only pickle weights ({', '.join(f for f in files if f.endswith(PICKLE_SUFFIXES))}). {_PICKLE_MESSAGE}")
    raise ModelNotFound(f"{ref} has no model.safetensors")
