"""genlib: a small inference library for generative models stored as safetensors on the Hugging Face Hub."""

from typing import Any

from genlib.errors import GenlibError


def load(ref: str, **kwargs: Any) -> Any:
    """Load a model from an embedded name, a folder, or a Hub repo `owner/name[@revision]` (see genlib.loading.load).

    Imported lazily so that `import genlib` (and the app's first page) does not wait for torch."""
    from genlib.loading import load as _load

    return _load(ref, **kwargs)


__version__ = "0.1.0"
__all__ = ["GenlibError", "load", "__version__"]
