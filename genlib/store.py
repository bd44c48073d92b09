"""Loaded models kept in memory, bounded by bytes (least recently used goes first), with a load policy.

This is the one interface the app calls models through (`ModelStore.get`), so a deployment can
restrict which models strangers may load (`GENLIB_ALLOWED_MODELS`, `GENLIB_MAX_MODEL_BYTES`).
"""

from __future__ import annotations

import fnmatch
import os
import threading
from collections import OrderedDict

import torch

from genlib.errors import ModelNotFound, NotAllowed, WrongTask
from genlib.hub import EMBEDDED
from genlib.loading import load
from genlib.models.base import GenlibModel


def model_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


class ModelStore:
    """Thread-safe LRU cache of loaded models keyed by (reference, dtype, device)."""

    def __init__(self, max_bytes: int | None = None, allowed: list[str] | None = None) -> None:
        env_bytes = os.environ.get("GENLIB_CACHE_BYTES")
        self.max_bytes = max_bytes if max_bytes is not None else int(float(env_bytes or 4e9))
        env_allowed = os.environ.get("GENLIB_ALLOWED_MODELS")
        self.allowed = (
            allowed
            if allowed is not None
            else ([p.strip() for p in env_allowed.split(",") if p.strip()] if env_allowed else None)
        )
        self._models: OrderedDict[tuple[str, str, str], GenlibModel] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def check_allowed(self, ref: str) -> None:
        """Embedded models are always allowed; others must match a GENLIB_ALLOWED_MODELS pattern if it is set."""
        if self.allowed is None or ref in EMBEDDED:
            return
        if not any(fnmatch.fnmatch(ref, pat) or fnmatch.fnmatch(ref.split("@")[0], pat) for pat in self.allowed):
            raise NotAllowed(f"{ref} is not in this deployment's allowed models ({', '.join(self.allowed)})")

    def get(
        self,
        ref: str,
        task: str | None = None,
        dtype: str = "float32",
        device: str | None = None,
        tqdm_class: type | None = None,
    ) -> GenlibModel:
        """The loaded model for `ref`, loading it on first use; WrongTask if it is not a `task` model."""
        if not isinstance(ref, str):
            raise ModelNotFound(f"a model reference is a string, got {type(ref).__name__}")
        ref = ref.strip()
        self.check_allowed(ref)
        key = (ref, dtype, device or "auto")
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._check_task(self._models[key], ref, task)
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:  # one load per key at a time; others wait for it
            with self._lock:
                if key in self._models:
                    return self._check_task(self._models[key], ref, task)
            model = load(ref, dtype=dtype, device=device, tqdm_class=tqdm_class)
            self._check_task(model, ref, task)
            with self._lock:
                self._models[key] = model
                self._evict()
        return model

    def _evict(self) -> None:
        while len(self._models) > 1 and sum(model_bytes(m) for m in self._models.values()) > self.max_bytes:
            self._models.popitem(last=False)

    @staticmethod
    def _check_task(model: GenlibModel, ref: str, task: str | None) -> GenlibModel:
        if task is not None and model.task != task:
            raise WrongTask(f"{ref} is a {model.task} model ({model.model_type}), not a {task} model")
        return model
