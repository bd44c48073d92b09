"""Training checkpoints as safetensors + JSON: modules, optimizers and counters, no pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for k, v in state.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{prefix}.{idx}.{k}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def _unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], groups: Any) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        if name.startswith(prefix + "."):
            idx, k = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(idx), {})[k] = t
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer], meta: dict
) -> None:
    """Write `path`.safetensors and `path`.json atomically (temp file, then rename)."""
    tensors: dict[str, torch.Tensor] = {}
    groups = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"{name}/{k}"] = v.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        t, g = _flatten_optimizer(f"opt:{name}", opt)
        tensors.update(t)
        groups[name] = g
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file(tensors, str(tmp))
    tmp_json = path.with_suffix(".tmp.json")
    tmp_json.write_text(json.dumps({"meta": meta, "param_groups": groups}, indent=1))
    tmp.replace(path.with_suffix(".safetensors"))
    tmp_json.replace(path.with_suffix(".json"))


def load_checkpoint(
    path: Path, modules: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer]
) -> dict | None:
    """Restore modules and optimizers in place; returns the saved meta, or None if there is no checkpoint."""
    st, js = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not (st.exists() and js.exists()):
        return None
    tensors = load_file(str(st))
    info = json.loads(js.read_text())
    for name, m in modules.items():
        pre = name + "/"
        m.load_state_dict({k[len(pre) :]: v for k, v in tensors.items() if k.startswith(pre)})
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(f"opt:{name}", tensors, info["param_groups"][name]))
    return info["meta"]
