"""genlib's architectures, by the `model_type` their config.json names."""

from genlib.models.base import GenlibModel
from genlib.models.gan import Generator
from genlib.models.transformer import Transformer
from genlib.models.vae import VAE

# model_type -> class. Filled explicitly: the architecture is the code, no plugin system.
MODEL_TYPES: dict[str, type[GenlibModel]] = {
    Generator.model_type: Generator,
    "gpt2": Transformer,
    "llama": Transformer,
    VAE.model_type: VAE,
}

__all__ = ["GenlibModel", "MODEL_TYPES"]
