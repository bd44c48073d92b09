"""The base class every genlib architecture derives from.

Saving and pushing come from huggingface_hub's ModelHubMixin (config.json, model card, upload);
loading goes through genlib's own validated loader (see `genlib.loading`), because the mixin's
default loader takes no `owner/name@rev` reference and would fall back to pickle files.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import ModelHubMixin
from safetensors.torch import save_file
from torch import nn

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_type | default("genlib model", true) }}

A genlib model in Hub layout (config.json + model.safetensors). Load it with
`genlib.load("owner/name@revision")` or pick it in the genlib app; genlib loads safetensors only.

## Training data
[Describe the data set, its licence and terms, and the held-out split.]

## Intended use
[What the model is for, and for whom.]

## Limitations
[What it gets wrong, with measured numbers.]

## Misuse
[Foreseeable misuse (e.g. deceptive media) and how outputs are marked.]
"""


class GenlibModel(
    nn.Module,
    ModelHubMixin,
    library_name="genlib",
    repo_url="https://github.com/genlib/genlib",
    model_card_template=MODEL_CARD_TEMPLATE,
    tags=["genlib", "safetensors"],
):
    """A torch module with a config dataclass, Hub-layout saving and genlib loading.

    Subclasses set `model_type` (the `model_type` field of config.json), `task`
    ("faces", "landscapes" or "text") and `config_class`, and implement `config_from_dict`.
    """

    model_type: ClassVar[str] = ""
    task: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    # Filled in by the loader: where the weights came from (see genlib.hub.ModelSource).
    source: Any = None

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    # ----- config -----
    @classmethod
    def config_from_dict(cls, d: dict[str, Any]) -> Any:
        """Build and validate the config from a config.json dict; raise BadConfig naming the field."""
        raise NotImplementedError

    def config_to_dict(self) -> dict[str, Any]:
        """The config.json content (must include `model_type`)."""
        return {"model_type": self.model_type, **asdict(self.config)}

    # ----- weights -----
    def expected_tensors(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor model.safetensors must hold (works on the meta device)."""
        return {k: tuple(v.shape) for k, v in self.state_dict().items()}

    def file_tensor_name(self, name: str) -> str | None:
        """The `expected_tensors` name of a tensor stored as `name` in model.safetensors; None skips it."""
        return name

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take already-validated tensors (the model was built on the meta device)."""
        self.load_state_dict(tensors, strict=True, assign=True)

    def init_non_persistent_buffers(self) -> None:
        """Recompute buffers that are not saved (e.g. RoPE tables) after a meta-device build."""

    def post_load(self, folder: Path) -> None:
        """Read extra files of the model folder (e.g. tokenizer.json) after the weights are loaded."""

    def tensors_to_save(self) -> dict[str, torch.Tensor]:
        """The tensors written to model.safetensors (same names as `expected_tensors`)."""
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

    def extra_files(self) -> dict[str, bytes]:
        """Other files of the model folder (e.g. tokenizer.json), name -> bytes."""
        return {}

    # ----- ModelHubMixin hooks -----
    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """The mixin's card, with this model's type, task and pipeline tag filled in."""
        card = super().generate_model_card(*args, model_type=self.model_type, **kwargs)
        pipeline = {
            "faces": "unconditional-image-generation",
            "landscapes": "unconditional-image-generation",
            "text": "text-generation",
        }.get(self.task)
        if pipeline:
            card.data.pipeline_tag = pipeline
        card.data.tags = sorted(set((card.data.tags or []) + [self.task]))
        return card

    def _save_pretrained(self, save_directory: Path) -> None:
        tensors = self.tensors_to_save()
        save_file(tensors, str(save_directory / "model.safetensors"), metadata={"format": "pt"})
        (save_directory / "config.json").write_text(json.dumps(self.config_to_dict(), indent=2) + "\n")
        for name, data in self.extra_files().items():
            (save_directory / name).write_bytes(data)

    @classmethod
    def from_pretrained(cls, ref: str | Path, **kwargs: Any) -> GenlibModel:  # type: ignore[override]
        """Load `ref` (embedded name, folder, or `owner/name@rev`) and check it is of this class."""
        from genlib.loading import load

        model = load(str(ref), **kwargs)
        if not isinstance(model, cls):
            from genlib.errors import WrongTask

            raise WrongTask(f"{ref} is a {type(model).__name__}, not a {cls.__name__}")
        return model

    # ----- info -----
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
