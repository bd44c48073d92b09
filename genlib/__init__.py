"""genlib: a small inference library for generative models stored as safetensors on the Hugging Face Hub."""

from genlib.errors import GenlibError
from genlib.loading import load

__version__ = "0.1.0"
__all__ = ["GenlibError", "load", "__version__"]
