"""One exception hierarchy for genlib; the CLI and the app print these as one line."""


class GenlibError(Exception):
    """Base class of every error genlib raises on purpose."""


class ModelNotFound(GenlibError):
    """The reference names no embedded model, local folder or Hub repo (or revision, or file)."""


class NotSafetensors(GenlibError):
    """The model has weights only in a pickle-based format (.bin/.pt/.ckpt/.pth)."""


class BadConfig(GenlibError):
    """config.json is missing, unreadable, of an unknown architecture or has an unsafe value."""


class BadWeights(GenlibError):
    """model.safetensors is corrupt or does not match the config (missing, extra or misshapen tensors)."""


class HubUnavailable(GenlibError):
    """The Hub could not be reached (offline, server error, timeout) and the model is not cached."""


class GatedModel(GenlibError):
    """The Hub repo exists but needs accepted terms or a token (HF_TOKEN)."""


class NotAllowed(GenlibError):
    """The model is refused by this deployment's policy (allow-list or size limit)."""


class WrongTask(GenlibError):
    """The model loaded fine but is not of the kind this caller needs (e.g. a text model in the faces tab)."""


class BadInput(GenlibError, ValueError):
    """A generation argument is out of range or of the wrong type."""
