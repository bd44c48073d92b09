"""Validated, memory-mapped loading of a model folder: config first, header second, tensors last."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from genlib.errors import BadConfig, BadInput, BadWeights
from genlib.hub import ModelSource, resolve
from genlib.models import MODEL_TYPES
from genlib.models.base import GenlibModel

# Refuse models whose config asks for more parameters than this (override with GENLIB_MAX_PARAMS).
MAX_PARAMS = int(float(os.environ.get("GENLIB_MAX_PARAMS", "4e9")))
MAX_CONFIG_BYTES = 1 << 20  # real configs are a few KB; a huge one is refused unread
_FLOAT_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(device: str | torch.device | None) -> torch.device:
    """A torch device that exists here (None: CUDA when available, else the CPU); BadInput otherwise."""
    if device is None:
        return default_device()
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise BadInput(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from e
    if d.type == "cuda" and (not torch.cuda.is_available() or (d.index or 0) >= torch.cuda.device_count()):
        raise BadInput(f"device {device!r} is not available here (CUDA GPUs: {torch.cuda.device_count()})")
    return d


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """'float32' / 'bfloat16' / 'float16' (or a torch dtype) -> torch dtype; None means float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise BadConfig(f"unknown dtype '{dtype}' (use float32 or bfloat16)")
    return names[dtype]


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise BadConfig(f"{folder.name}: no config.json")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise BadConfig(f"config.json is {size:,} bytes; genlib reads at most {MAX_CONFIG_BYTES:,}")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadConfig(f"config.json is not valid JSON: {e}") from e
    except RecursionError as e:
        raise BadConfig("config.json is nested too deeply to be a model config") from e
    if not isinstance(cfg, dict):
        raise BadConfig("config.json must hold a JSON object")
    return cfg


def model_class(cfg: dict[str, Any]) -> type[GenlibModel]:
    """The architecture class named by config.json's `model_type` (or `architecture`)."""
    name = cfg.get("model_type") or cfg.get("architecture")
    if name not in MODEL_TYPES:
        known = ", ".join(sorted(MODEL_TYPES))
        raise BadConfig(f"config.json: unknown architecture model_type={name!r} (genlib knows: {known})")
    return MODEL_TYPES[name]


def build_meta(folder: Path) -> GenlibModel:
    """Validate config.json and build the model on the meta device (no memory allocated)."""
    cfg = read_config(folder)
    cls = model_class(cfg)
    config = cls.config_from_dict(cfg)
    with torch.device("meta"):
        model = cls(config)
    n = model.num_parameters()
    if n > MAX_PARAMS:
        raise BadConfig(
            f"config.json asks for {n:,} parameters, over genlib's limit of {MAX_PARAMS:,} (GENLIB_MAX_PARAMS)"
        )
    return model


def check_weights(model: GenlibModel, weights: Path) -> None:
    """Compare the safetensors header with what the model expects; name every mismatch."""
    expected = model.expected_tensors()
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {}
            for k in f.keys():
                name = model.file_tensor_name(k)  # e.g. GPT-2 files without the `transformer.` prefix
                if name is None:  # a buffer the model rebuilds itself
                    continue
                if name in found:
                    raise BadWeights(f"{weights.name} holds tensor {name} twice (under two names)")
                found[name] = (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise BadWeights(f"{weights.name} is not a valid safetensors file: {e}") from e
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        raise BadWeights(
            f"{weights.name} lacks tensor(s): {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    if extra:
        raise BadWeights(
            f"{weights.name} has unexpected tensor(s): {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
        )
    for name, shape in expected.items():
        got, dtype = found[name]
        if got != shape:
            raise BadWeights(f"tensor {name} has shape {list(got)}, config says {list(shape)}")
        if dtype not in _FLOAT_DTYPES:
            raise BadWeights(f"tensor {name} has dtype {dtype}; genlib expects F32, F16 or BF16")


def load_folder(
    folder: Path,
    *,
    source: ModelSource | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> GenlibModel:
    """Load a Hub-layout folder after validating config and weights."""
    folder = Path(folder)
    model = build_meta(folder)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BadWeights(f"{folder.name}: no model.safetensors")
    check_weights(model, weights)
    target = parse_device(device)
    torch_dtype = parse_dtype(dtype)
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:  # memory-mapped
            tensors = {
                name: f.get_tensor(k).to(torch_dtype)
                for k in f.keys()
                if (name := model.file_tensor_name(k)) is not None
            }
    except (SafetensorError, OSError, RuntimeError) as e:
        raise BadWeights(f"{weights.name} could not be read: {e}") from e
    model.load_tensors(tensors)
    model.init_non_persistent_buffers()
    model.to(target)
    model.eval()
    model.requires_grad_(False)
    model.source = source or ModelSource(str(folder), "local", folder, folder.name, "unknown")
    model.post_load(folder)
    return model


def load(
    ref: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    local_files_only: bool | None = None,
    token: str | bool | None = None,
    tqdm_class: type | None = None,
) -> GenlibModel:
    """Load a model from an embedded name, a folder, or a Hub repo `owner/name[@revision]`."""
    parse_device(device)  # a bad device is refused before anything is downloaded
    source = resolve(ref, local_files_only=local_files_only, token=token, tqdm_class=tqdm_class)
    try:
        return load_folder(source.path, source=source, device=device, dtype=dtype)
    except (BadConfig, BadWeights) as e:
        # A Hub snapshot folder is named by its commit sha: say which model is broken instead.
        if source.kind != "hub" or source.repo_id in str(e):
            raise
        raise type(e)(f"{source.ref}: {e}") from e
