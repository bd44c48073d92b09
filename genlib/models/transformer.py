"""A decoder-only transformer that reads Hugging Face `gpt2` and `llama` checkpoints (config.json + model.safetensors).

One class serves both architectures: GPT-2 is learned positions, LayerNorm and a GELU MLP with biases; Llama is RoPE,
RMSNorm and SwiGLU with grouped-query attention. Weights are kept in nn.Linear layout ([out, in]) with q/k/v and
gate/up fused, so one decode step is a few large matrix-vector products; the KV cache is preallocated.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from genlib.errors import BadConfig, BadInput
from genlib.models.base import GenlibModel
from genlib.sampling import (
    MAX_BATCH,
    Sampler,
    SamplingParams,
    TextAssembler,
    TextStream,
    clean_prompt,
    make_stop_check,
)
from genlib.tokenizer import Tokenizer

ARCHS = ("gpt2", "llama")
MAX_LAYERS = 512
MAX_HIDDEN = 65536
MAX_VOCAB = 2_000_000
MAX_CONTEXT = 1 << 20


@dataclass
class TransformerConfig:
    """Architecture of a gpt2- or llama-type decoder (genlib names; `parse_config` maps Hugging Face's)."""

    arch: str = "llama"  # config.json's model_type: "gpt2" or "llama"
    vocab_size: int = 4096
    context: int = 256  # n_positions / max_position_embeddings
    d_model: int = 256
    n_layer: int = 6
    n_head: int = 8
    n_kv_head: int = 8  # < n_head: grouped-query attention (llama only)
    head_dim: int = 32
    d_ff: int = 768  # MLP hidden size (per branch for SwiGLU)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0  # llama only
    tie_embeddings: bool = True
    attn_bias: bool = False  # biases on q/k/v/o (always on for gpt2)
    mlp_bias: bool = False  # biases on the MLP (always on for gpt2)
    activation: str = "silu"  # gpt2: gelu_new (tanh approximation) or gelu
    dropout: float = 0.0  # training only
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other config.json fields, written back unchanged


# ----------------------------------------------------------------------------- config.json parsing


def _field(
    d: dict[str, Any], key: str, kind: type, default: Any = None, *, lo: float | None = None, hi: float | None = None
) -> Any:
    """d[key] checked for type and range; BadConfig names the field."""
    v = d.get(key, default)
    if v is None:
        if default is None:
            raise BadConfig(f"config.json: {key} is missing")
        v = default
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if isinstance(v, bool) != (kind is bool) or not isinstance(v, kind):
        raise BadConfig(f"config.json: {key} must be {kind.__name__}, got {v!r}")
    if kind is float and not math.isfinite(v):
        raise BadConfig(f"config.json: {key} must be finite, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadConfig(f"config.json: {key}={v} is out of range [{lo}, {hi}]")
    return v


def _token_id(d: dict[str, Any], key: str, vocab: int) -> int | list[int] | None:
    v = d.get(key)
    ids = v if isinstance(v, list) else [v]
    if v is None or v == []:
        return None
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < vocab:
            raise BadConfig(f"config.json: {key}={v!r} is not a token id below vocab_size={vocab}")
    return v


def _refuse(d: dict[str, Any], key: str, ok: Callable[[Any], bool], why: str) -> None:
    if key in d and not ok(d[key]):
        raise BadConfig(f"config.json: {key}={d[key]!r} is not supported ({why})")


def _rope_theta(d: dict[str, Any]) -> float:
    params = d.get("rope_parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise BadConfig("config.json: rope_parameters must be an object")
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise BadConfig(f"config.json: rope_parameters.rope_type={kind!r} is not supported (only default RoPE)")
        return _field(params, "rope_theta", float, d.get("rope_theta", 10000.0), lo=1.0, hi=1e12)
    _refuse(d, "rope_scaling", lambda v: v is None, "only default RoPE")
    return _field(d, "rope_theta", float, 10000.0, lo=1.0, hi=1e12)


_GPT2_KEYS = {
    "vocab_size",
    "n_positions",
    "n_ctx",
    "n_embd",
    "n_layer",
    "n_head",
    "n_inner",
    "activation_function",
    "layer_norm_epsilon",
    "tie_word_embeddings",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx",
    "reorder_and_upcast_attn",
    "add_cross_attention",
    "model_type",
    "architectures",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
}
_LLAMA_KEYS = {
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "tie_word_embeddings",
    "hidden_act",
    "attention_bias",
    "mlp_bias",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "model_type",
    "architectures",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "attention_dropout",
    "pretraining_tp",
}


def parse_config(d: dict[str, Any]) -> TransformerConfig:
    """Validate a Hugging Face gpt2/llama config.json dict; BadConfig names the offending field."""
    arch = d.get("model_type")
    if arch not in ARCHS:
        raise BadConfig(f"config.json: model_type={arch!r} is not a transformer genlib reads ({', '.join(ARCHS)})")
    vocab = _field(d, "vocab_size", int, lo=2, hi=MAX_VOCAB)
    if arch == "gpt2":
        d_model = _field(d, "n_embd", int, lo=1, hi=MAX_HIDDEN)
        n_head = _field(d, "n_head", int, lo=1, hi=1024)
        if d_model % n_head:
            raise BadConfig(f"config.json: n_embd={d_model} is not a multiple of n_head={n_head}")
        act = d.get("activation_function", "gelu_new")
        if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu", "gelu_fast"):
            raise BadConfig(f"config.json: activation_function={act!r} is not supported (gelu_new, gelu)")
        _refuse(d, "scale_attn_weights", lambda v: v is True, "unscaled attention")
        _refuse(d, "scale_attn_by_inverse_layer_idx", lambda v: v is False, "per-layer attention scaling")
        _refuse(d, "reorder_and_upcast_attn", lambda v: v is False, "reordered attention")
        _refuse(d, "add_cross_attention", lambda v: v is False, "cross-attention")
        cfg = TransformerConfig(
            arch=arch,
            vocab_size=vocab,
            context=_field(d, "n_positions", int, d.get("n_ctx", 1024), lo=1, hi=MAX_CONTEXT),
            d_model=d_model,
            n_layer=_field(d, "n_layer", int, lo=1, hi=MAX_LAYERS),
            n_head=n_head,
            n_kv_head=n_head,
            head_dim=d_model // n_head,
            d_ff=_field(d, "n_inner", int, 4 * d_model, lo=1, hi=4 * MAX_HIDDEN),
            norm_eps=_field(d, "layer_norm_epsilon", float, 1e-5, lo=0.0, hi=1.0),
            tie_embeddings=_field(d, "tie_word_embeddings", bool, True),
            attn_bias=True,
            mlp_bias=True,
            activation="gelu" if act == "gelu" else "gelu_new",
        )
        known = _GPT2_KEYS
    else:
        d_model = _field(d, "hidden_size", int, lo=1, hi=MAX_HIDDEN)
        n_head = _field(d, "num_attention_heads", int, lo=1, hi=1024)
        n_kv = _field(d, "num_key_value_heads", int, n_head, lo=1, hi=1024)
        if n_head % n_kv:
            raise BadConfig(
                f"config.json: num_attention_heads={n_head} is not a multiple of num_key_value_heads={n_kv}"
            )
        if "head_dim" not in d and d_model % n_head:
            raise BadConfig(f"config.json: hidden_size={d_model} is not a multiple of num_attention_heads={n_head}")
        head_dim = _field(d, "head_dim", int, d_model // n_head, lo=2, hi=1024)
        if head_dim % 2:
            raise BadConfig(f"config.json: head_dim={head_dim} must be even for RoPE")
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise BadConfig(f"config.json: hidden_act={act!r} is not supported (silu)")
        _refuse(d, "pretraining_tp", lambda v: v in (None, 1), "tensor-parallel slicing")
        cfg = TransformerConfig(
            arch=arch,
            vocab_size=vocab,
            context=_field(d, "max_position_embeddings", int, 2048, lo=1, hi=MAX_CONTEXT),
            d_model=d_model,
            n_layer=_field(d, "num_hidden_layers", int, lo=1, hi=MAX_LAYERS),
            n_head=n_head,
            n_kv_head=n_kv,
            head_dim=head_dim,
            d_ff=_field(d, "intermediate_size", int, lo=1, hi=4 * MAX_HIDDEN),
            norm_eps=_field(d, "rms_norm_eps", float, 1e-6, lo=0.0, hi=1.0),
            rope_theta=_rope_theta(d),
            tie_embeddings=_field(d, "tie_word_embeddings", bool, False),
            attn_bias=_field(d, "attention_bias", bool, False),
            mlp_bias=_field(d, "mlp_bias", bool, False),
            activation="silu",
        )
        known = _LLAMA_KEYS
    cfg.bos_token_id = _token_id(d, "bos_token_id", vocab)  # type: ignore[assignment]
    cfg.eos_token_id = _token_id(d, "eos_token_id", vocab)
    cfg.pad_token_id = _token_id(d, "pad_token_id", vocab)  # type: ignore[assignment]
    if isinstance(cfg.bos_token_id, list) or isinstance(cfg.pad_token_id, list):
        raise BadConfig("config.json: bos_token_id and pad_token_id must be single token ids")
    cfg.extra = {k: v for k, v in d.items() if k not in known}
    return cfg


def config_to_hf(cfg: TransformerConfig, dtype: torch.dtype) -> dict[str, Any]:
    """The config.json transformers writes for this architecture (so transformers loads what genlib saves)."""
    dt = str(dtype).removeprefix("torch.")
    ids = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id}
    if cfg.arch == "gpt2":
        d = {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": cfg.vocab_size,
            "n_positions": cfg.context,
            "n_ctx": cfg.context,
            "n_embd": cfg.d_model,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_inner": cfg.d_ff,
            "activation_function": cfg.activation,
            "layer_norm_epsilon": cfg.norm_eps,
            "tie_word_embeddings": cfg.tie_embeddings,
            "resid_pdrop": cfg.dropout,
            "embd_pdrop": cfg.dropout,
            "attn_pdrop": cfg.dropout,
            "scale_attn_weights": True,
            **ids,
            "torch_dtype": dt,
        }
    else:
        d = {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.d_ff,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_kv_head,
            "head_dim": cfg.head_dim,
            "max_position_embeddings": cfg.context,
            "rms_norm_eps": cfg.norm_eps,
            "rope_theta": cfg.rope_theta,
            "rope_scaling": None,
            "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
            "tie_word_embeddings": cfg.tie_embeddings,
            "hidden_act": "silu",
            "attention_bias": cfg.attn_bias,
            "mlp_bias": cfg.mlp_bias,
            "attention_dropout": cfg.dropout,
            **ids,
            "torch_dtype": dt,
        }
    return {**cfg.extra, **d}


# ----------------------------------------------------------------------------- model


def rope_tables(cfg: TransformerConfig, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin tables [context, head_dim] for Hugging Face's rotate-half layout (sin negated on the first half)."""
    inv_freq = 1.0 / (
        cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.int64, device=device).float() / cfg.head_dim)
    )
    freqs = torch.outer(torch.arange(cfg.context, device=device, dtype=torch.float32), inv_freq)
    return torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-freqs.sin(), freqs.sin()), dim=-1)


class KVCache:
    """Preallocated keys and values for every layer: [n_layer, batch, n_kv_head, length, head_dim] each."""

    def __init__(
        self, cfg: TransformerConfig, batch: int, length: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        shape = (cfg.n_layer, batch, cfg.n_kv_head, length, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.length = length
        self.pos = 0  # number of positions filled


_PACK = os.environ.get("GENLIB_PACK", "1") != "0" and torch.backends.mkldnn.is_available()


def pack_linear(lin: Any, weight: torch.Tensor | None = None) -> bool:
    """Give `lin` a oneDNN-blocked copy of its weight for CPU inference (about 2x faster batch-1 matmuls in bf16).

    The copy is redone when the weight changed (data pointer or in-place version); False if packing is unavailable.
    """
    w = lin.weight if weight is None else weight
    try:
        version = w._version
    except RuntimeError:  # inference tensors have no version counter
        version = -1
    key = (w.data_ptr(), version, w.dtype)
    if getattr(lin, "packed_key", None) == key:
        return True
    try:
        lin.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1)
    except (RuntimeError, AttributeError):
        return False
    lin.packed_key = key
    return True


def linear(x: torch.Tensor, lin: Any, packed: bool) -> torch.Tensor:
    """lin(x), through the packed weight when the caller checked it is fresh (inference on CPU)."""
    if packed:
        return torch.ops.mkldnn._linear_pointwise(x, lin.packed, getattr(lin, "bias", None), "none", [], "")
    return F.linear(x, lin.weight, lin.bias)


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 whatever the input dtype, then scaled in the input dtype (as Llama's reference
    and transformers do). PyTorch's nn.RMSNorm on bf16 input lost enough precision on an AVX2 CPU (no AVX-512 BF16)
    to change SmolLM2's greedy answers."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(cfg: TransformerConfig) -> nn.Module:
    """LayerNorm for GPT-2, RMSNorm for Llama."""
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps) if cfg.arch == "gpt2" else RMSNorm(cfg.d_model, cfg.norm_eps)


class Block(nn.Module):
    """Pre-norm attention + MLP with residuals."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=cfg.attn_bias)
        self.proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=cfg.attn_bias)
        self.gated = cfg.arch == "llama"  # SwiGLU: `up` holds [gate; up]
        self.up = nn.Linear(cfg.d_model, (2 if self.gated else 1) * cfg.d_ff, bias=cfg.mlp_bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.mlp_bias)
        self.gelu = "none" if cfg.activation == "gelu" else "tanh"
        self.dropout = cfg.dropout

    def linears(self) -> tuple[nn.Linear, ...]:
        return (self.qkv, self.proj, self.up, self.down)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        pos: int = 0,
        mask: torch.Tensor | None = None,
        packed: bool = False,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV, hd = self.n_head, self.n_kv, self.head_dim
        qkv = linear(self.norm1(x), self.qkv, packed).view(B, T, H + 2 * KV, hd).transpose(1, 2)  # [B, heads, T, hd]
        qk, v = qkv[:, : H + KV], qkv[:, H + KV :]
        if rope is not None:  # rotate q and k together: rotate_half(x) * sin == roll(x) * (sign * sin)
            cos, signed_sin = rope
            if cos.dtype != qk.dtype:  # bf16 autocast while training
                cos, signed_sin = cos.to(qk.dtype), signed_sin.to(qk.dtype)
            qk = torch.addcmul(qk * cos, qk.roll(hd // 2, dims=-1), signed_sin)
        q, k = qk[:, :H], qk[:, H:]
        if kv is not None:  # write this step into the cache, attend over everything so far
            kv[0][:, :, pos : pos + T] = k
            kv[1][:, :, pos : pos + T] = v
            k, v = kv[0][:, :, : pos + T], kv[1][:, :, : pos + T]
        if T == 1 and kv is not None:  # decode: fold the query heads of a group into the query axis (no repeat of k/v)
            y = F.scaled_dot_product_attention(q.reshape(B, KV, H // KV, hd), k, v, attn_mask=mask)
        else:
            # no attention dropout: on the CPU it forces the slow unfused attention path (dropout is on residuals)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=KV != H)
            y = y.transpose(1, 2)
        y = linear(y.reshape(B, T, H * hd), self.proj, packed)
        if self.training and self.dropout:
            y = F.dropout(y, self.dropout)
        x = x + y
        h = linear(self.norm2(x), self.up, packed)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate=self.gelu)
        h = linear(h, self.down, packed)
        if self.training and self.dropout:
            h = F.dropout(h, self.dropout)
        return x + h


_GPT2_BUFFER = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(masked_)?bias$")
_GPT2_ROOTS = ("h.", "wte.", "wpe.", "ln_f.")


class Transformer(GenlibModel):
    """Decoder-only transformer for text: Hugging Face gpt2 and llama checkpoints, or genlib's own stories model."""

    model_type: ClassVar[str] = "llama"
    task: ClassVar[str] = "text"
    config_class: ClassVar[type] = TransformerConfig

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.context, c.d_model) if c.arch == "gpt2" else None
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.norm_f = make_norm(c)
        self.lm_head = None if c.tie_embeddings else nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.arch == "llama":
            cos, sin = rope_tables(c)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)  # signed: see rope_tables
        else:
            self.rope_cos = self.rope_sin = None
        self.tokenizer: Tokenizer | None = None
        self._head_pack = SimpleNamespace(bias=None)  # holds the packed copy of the (maybe tied) output head
        self.apply(self._init_weights)
        for blk in self.blocks:  # GPT-2 style: scale residual projections by depth
            for lin in (blk.proj, blk.down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    # ----- config -----
    @classmethod
    def config_from_dict(cls, d: dict[str, Any]) -> TransformerConfig:
        """Validate a Hugging Face gpt2/llama config.json."""
        return parse_config(d)

    def config_to_dict(self) -> dict[str, Any]:
        """Hugging Face format, loadable by transformers' AutoModelForCausalLM."""
        return config_to_hf(self.config, self.dtype)

    # ----- weights: Hugging Face names <-> fused internal layout -----
    def _hf_layout(self) -> list[tuple[str, list[tuple[str, int]], bool]]:
        """(internal name, [(HF name, rows)] concatenated on dim 0, whether HF stores it transposed (GPT-2 Conv1D))."""
        c = self.config
        out: list[tuple[str, list[tuple[str, int]], bool]] = []

        def add(internal: str, parts: list[tuple[str, int]], transposed: bool = False) -> None:
            out.append((internal, parts, transposed))

        q, kv = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
        if c.arch == "gpt2":
            add("tok_emb.weight", [("transformer.wte.weight", c.vocab_size)])
            add("pos_emb.weight", [("transformer.wpe.weight", c.context)])
            for i in range(c.n_layer):
                p, b = f"transformer.h.{i}.", f"blocks.{i}."
                for ours, theirs, rows in (("norm1", "ln_1", c.d_model), ("norm2", "ln_2", c.d_model)):
                    add(b + ours + ".weight", [(p + theirs + ".weight", rows)])
                    add(b + ours + ".bias", [(p + theirs + ".bias", rows)])
                for ours, theirs, rows in (
                    ("qkv", "attn.c_attn", 3 * q),
                    ("proj", "attn.c_proj", c.d_model),
                    ("up", "mlp.c_fc", c.d_ff),
                    ("down", "mlp.c_proj", c.d_model),
                ):
                    add(b + ours + ".weight", [(p + theirs + ".weight", rows)], transposed=True)
                    add(b + ours + ".bias", [(p + theirs + ".bias", rows)])
            add("norm_f.weight", [("transformer.ln_f.weight", c.d_model)])
            add("norm_f.bias", [("transformer.ln_f.bias", c.d_model)])
        else:
            add("tok_emb.weight", [("model.embed_tokens.weight", c.vocab_size)])
            for i in range(c.n_layer):
                p, b = f"model.layers.{i}.", f"blocks.{i}."
                add(b + "norm1.weight", [(p + "input_layernorm.weight", c.d_model)])
                add(b + "norm2.weight", [(p + "post_attention_layernorm.weight", c.d_model)])
                attn = p + "self_attn."
                suffixes = (".weight", ".bias") if c.attn_bias else (".weight",)
                for s in suffixes:
                    add(b + "qkv" + s, [(attn + "q_proj" + s, q), (attn + "k_proj" + s, kv), (attn + "v_proj" + s, kv)])
                    add(b + "proj" + s, [(attn + "o_proj" + s, c.d_model)])
                for s in (".weight", ".bias") if c.mlp_bias else (".weight",):
                    add(b + "up" + s, [(p + "mlp.gate_proj" + s, c.d_ff), (p + "mlp.up_proj" + s, c.d_ff)])
                    add(b + "down" + s, [(p + "mlp.down_proj" + s, c.d_model)])
            add("norm_f.weight", [("model.norm.weight", c.d_model)])
        if not c.tie_embeddings:
            add("lm_head.weight", [("lm_head.weight", c.vocab_size)])
        return out

    def file_tensor_name(self, name: str) -> str | None:
        """Map a tensor name found in a checkpoint to ours: GPT-2 files without `transformer.`; None skips mask buffers."""
        if self.config.arch == "gpt2":
            if _GPT2_BUFFER.match(name):
                return None
            if name.startswith(_GPT2_ROOTS):
                name = "transformer." + name
        if name == "lm_head.weight" and self.config.tie_embeddings:
            return None  # some tied checkpoints also store the head; like transformers, the embedding wins
        return name

    def expected_tensors(self) -> dict[str, tuple[int, ...]]:
        """Hugging Face tensor names and shapes (GPT-2 weights in Conv1D [in, out] layout)."""
        shapes = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        out: dict[str, tuple[int, ...]] = {}
        for internal, parts, transposed in self._hf_layout():
            rest = shapes[internal][1:]
            for name, rows in parts:
                out[name] = (rest[0], rows) if transposed else (rows, *rest)
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Fuse q/k/v and gate/up, transpose GPT-2's Conv1D weights, then assign (the model may be on meta)."""
        tensors = {n: t for k, t in tensors.items() if (n := self.file_tensor_name(k)) is not None}
        sd = {}
        for internal, parts, transposed in self._hf_layout():
            ts = [tensors[name] for name, _ in parts]
            t = ts[0] if len(ts) == 1 else torch.cat(ts, dim=0)
            sd[internal] = t.t().contiguous() if transposed else t
        self.load_state_dict(sd, strict=True, assign=True)

    def tensors_to_save(self) -> dict[str, torch.Tensor]:
        """Split the fused tensors back into Hugging Face names and layout."""
        sd = self.state_dict()
        out = {}
        for internal, parts, transposed in self._hf_layout():
            t = sd[internal].detach().cpu()
            for (name, _), piece in zip(parts, t.split([rows for _, rows in parts], dim=0), strict=True):
                out[name] = (piece.t() if transposed else piece).contiguous()
        return out

    def init_non_persistent_buffers(self) -> None:
        """Recompute the RoPE tables on the parameters' device and dtype (after a meta-device build)."""
        if self.config.arch == "llama":
            cos, sin = rope_tables(self.config, device=self.tok_emb.weight.device)
            self.register_buffer("rope_cos", cos.to(self.dtype), persistent=False)
            self.register_buffer("rope_sin", sin.to(self.dtype), persistent=False)

    def post_load(self, folder: Path) -> None:
        """Read tokenizer.json, tokenizer_config.json and generation_config.json when the folder has them."""
        self.tokenizer = Tokenizer.from_folder(folder, config_to_hf(self.config, self.dtype))
        with torch.no_grad():  # pack the CPU matmul weights now, so the first request does not pay for it
            self._packed()

    def extra_files(self) -> dict[str, bytes]:
        """tokenizer.json, tokenizer_config.json and generation_config.json for save_pretrained."""
        files = self.tokenizer.files() if self.tokenizer is not None else {}
        eos = self.eos_token_ids()
        gen = {
            "bos_token_id": self.config.bos_token_id,
            "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
            "pad_token_id": self.config.pad_token_id,
        }
        files["generation_config.json"] = (
            json.dumps({k: v for k, v in gen.items() if v is not None}, indent=2) + "\n"
        ).encode()
        return files

    # ----- forward -----
    @property
    def head_weight(self) -> torch.Tensor:
        return self.tok_emb.weight if self.lm_head is None else self.lm_head.weight

    def _packed(self) -> bool:
        """Pack (or re-pack changed) linear weights for oneDNN for inference on the CPU (bf16 or fp32).

        Measured on a 2-core EPYC: a batch-1 fp32 matmul through the packed weight reads memory about twice as
        fast as F.linear (the lm_head of SmolLM2: 17 vs 9 GB/s), at the cost of a second copy of the weights."""
        w = self.tok_emb.weight
        if not _PACK or torch.is_grad_enabled() or torch.is_autocast_enabled("cpu") or w.device.type != "cpu":
            return False
        if w.dtype not in (torch.bfloat16, torch.float32):
            return False
        ok = pack_linear(self._head_pack, self.head_weight)
        for blk in self.blocks:
            for lin in blk.linears():
                ok = pack_linear(lin) and ok
        return ok

    def _head(self, x: torch.Tensor, packed: bool) -> torch.Tensor:
        return linear(x, self._head_pack, True) if packed else F.linear(x, self.head_weight)

    def _embed(
        self, idx: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            return x + self.pos_emb(positions), None
        return x, (self.rope_cos[positions].unsqueeze(-3), self.rope_sin[positions].unsqueeze(-3))

    def hidden(self, idx: torch.Tensor, packed: bool | None = None) -> torch.Tensor:
        """Final-norm hidden states [B, T, d_model] for a batch of token ids (no cache)."""
        T = idx.shape[1]
        if T > self.config.context:
            raise BadInput(f"sequence of {T} tokens is longer than the context ({self.config.context})")
        packed = self._packed() if packed is None else packed
        x, rope = self._embed(idx, torch.arange(T, device=idx.device))
        if self.training and self.config.dropout:
            x = F.dropout(x, self.config.dropout)
        for blk in self.blocks:
            x = blk(x, rope, packed=packed)
        return self.norm_f(x)

    def logits(self, h: torch.Tensor, packed: bool | None = None) -> torch.Tensor:
        """Output-head logits of hidden states."""
        return self._head(h, self._packed() if packed is None else packed)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, T, vocab] for a batch of token ids (no cache); with targets, the mean cross-entropy loss."""
        packed = self._packed()
        logits = self._head(self.hidden(idx, packed), packed)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

    def new_cache(self, batch: int, length: int) -> KVCache:
        return KVCache(self.config, batch, length, self.dtype, self.device)

    def step(
        self,
        idx: torch.Tensor,
        cache: KVCache,
        positions: torch.Tensor,
        mask: torch.Tensor | None = None,
        all_logits: bool = False,
        packed: bool | None = None,
    ) -> torch.Tensor:
        """Run `idx` [B, T] at cache position `cache.pos`; logits of the last position [B, vocab] (or all, [B, T, vocab]).

        `packed` says the caller already ran `_packed()` for this generation (None: check now)."""
        T, pos = idx.shape[1], cache.pos
        if pos + T > cache.length:
            raise BadInput(f"KV cache holds {cache.length} positions, asked for {pos + T}")
        packed = self._packed() if packed is None else packed
        x, rope = self._embed(idx, positions)
        for i, blk in enumerate(self.blocks):
            x = blk(x, rope, (cache.k[i], cache.v[i]), pos, mask, packed)
        cache.pos = pos + T
        if not all_logits:
            x = x[:, -1]
        return self._head(self.norm_f(x), packed)

    # ----- generation -----
    def eos_token_ids(self) -> list[int]:
        """Every id that ends a generation: config.json, generation_config.json and the tokenizer's EOS."""
        ids = self.config.eos_token_id
        out = list(ids) if isinstance(ids, list) else ([] if ids is None else [ids])
        if self.tokenizer is not None:
            out += [i for i in self.tokenizer.eos_ids if i not in out]
        return out

    def check_prompts(self, prompts: Sequence[Sequence[int]]) -> None:
        """BadInput unless 1..MAX_BATCH non-empty id lists that fit the context with room for one new token."""
        if not 1 <= len(prompts) <= MAX_BATCH:
            raise BadInput(f"batch of {len(prompts)} prompts; genlib takes 1 to {MAX_BATCH}")
        V, ctx = self.config.vocab_size, self.config.context
        for p in prompts:
            if len(p) < 1:
                raise BadInput("a prompt has no tokens")
            if len(p) >= ctx:
                raise BadInput(
                    f"prompt is {len(p)} tokens; this model's context is {ctx} tokens (at most {ctx - 1} for the prompt)"
                )
            if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < V for t in p):
                raise BadInput(f"prompt token ids must be integers in [0, {V})")

    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        should_stop: Callable[[], bool] | None = None,
        done: list[bool] | None = None,
    ) -> Iterator[list[int]]:
        """Yield the next token of every row per decode step (left-padded batch, preallocated KV cache).

        A row ends at EOS or when the caller sets its `done` flag (read after each step); finished rows get the pad
        id. Generation ends when all rows are done, at max_new_tokens or the context, or when `should_stop()` is true.
        """
        self.check_prompts(prompts)
        return self._decode_loop([list(p) for p in prompts], params, should_stop, done or [False] * len(prompts))

    @torch.inference_mode()
    def _decode_loop(
        self, prompts: list[list[int]], params: SamplingParams, should_stop: Callable[[], bool] | None, done: list[bool]
    ) -> Iterator[list[int]]:
        B, lens = len(prompts), [len(p) for p in prompts]
        L, dev = max(lens), self.device
        n_new = min(params.max_new_tokens, self.config.context - L)
        eos = set(self.eos_token_ids())
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else (min(eos) if eos else 0)
        ids = torch.tensor([[pad] * (L - n) + p for p, n in zip(prompts, lens, strict=True)], device=dev)
        cache = self.new_cache(B, L + n_new)
        valid = torch.zeros(B, L + n_new, dtype=torch.bool, device=dev)  # real (not padding) key positions
        for b, n in enumerate(lens):
            valid[b, L - n :] = True
        padded = min(lens) != L
        positions = (valid[:, :L].long().cumsum(-1) - 1).clamp(min=0)
        mask = None
        if padded:  # causal and real keys; every query also sees itself so padding rows stay finite
            causal = torch.ones(L, L, dtype=torch.bool, device=dev).tril()
            mask = ((causal & valid[:, None, :L]) | torch.eye(L, dtype=torch.bool, device=dev))[:, None]
        packed = self._packed()  # once per generation, not per token
        logits = self.step(ids, cache, positions, mask, packed=packed)
        sampler = Sampler(params, prompts, self.config.vocab_size, dev)
        positions = positions[:, -1:]
        for t in range(n_new):
            tokens = sampler(logits)
            for b in range(B):
                if done[b]:
                    tokens[b] = pad
                else:
                    sampler.record(b, tokens[b])
            yield tokens
            for b in range(B):
                done[b] = done[b] or tokens[b] in eos
            if all(done) or t == n_new - 1 or (should_stop is not None and should_stop()):
                return
            positions = positions + 1
            step_mask = valid[:, None, None, : cache.pos + 1] if padded else None
            logits = self.step(torch.tensor(tokens, device=dev)[:, None], cache, positions, step_mask, packed=packed)

    def _tokenizer(self) -> Tokenizer:
        if self.tokenizer is None:
            raise BadConfig("this model folder has no tokenizer.json: it can only generate token ids (generate_ids)")
        return self.tokenizer

    def _prompt_ids(self, prompt: Any) -> list[int]:
        return self._tokenizer().encode(clean_prompt(prompt))

    def _stream_ids(self, ids: list[int], params: SamplingParams, stop_event: Any) -> TextStream:
        tok = self._tokenizer()
        should_stop = make_stop_check(stop_event)
        done = [False]
        steps = self.generate_ids([ids], params, should_stop, done)  # checks the prompt now, runs lazily
        eos = set(self.eos_token_ids())
        stream = TextStream()

        def pieces() -> Iterator[str]:
            asm = TextAssembler(tok, params.stop)
            if should_stop is not None and should_stop():
                stream.finish_reason = "cancelled"
                return
            for (token,) in steps:
                stream.tokens += 1
                if token in eos:
                    stream.finish_reason = "eos"
                    break
                piece = asm.add(token)
                if piece:
                    yield piece
                if asm.stopped:
                    stream.finish_reason = "stop"
                    break
            else:
                cancelled = should_stop is not None and should_stop()
                stream.finish_reason = "cancelled" if cancelled else "length"
            tail = asm.finish()
            if tail:
                yield tail

        stream.start(pieces())
        return stream

    def generate(self, prompt: str | list[str], **kwargs: Any) -> str | list[str]:
        """Continue a prompt (or a batch of prompts, left-padded); see SamplingParams for the arguments."""
        params = SamplingParams.make(**kwargs)
        if isinstance(prompt, str | bytes | bytearray):
            return "".join(self._stream_ids(self._prompt_ids(prompt), params, None))
        if not isinstance(prompt, list | tuple) or not prompt:
            raise BadInput("prompt must be a string or a non-empty list of strings")
        return self.generate_batch([self._prompt_ids(p) for p in prompt], params)

    def generate_batch(self, batch: list[list[int]], params: SamplingParams) -> list[str]:
        """Generate for token-id prompts in one left-padded batch; each row stops at EOS or a stop string."""
        tok = self._tokenizer()
        self.check_prompts(batch)
        asms = [TextAssembler(tok, params.stop) for _ in batch]
        texts = [""] * len(batch)
        done = [False] * len(batch)
        eos = set(self.eos_token_ids())
        for tokens in self.generate_ids(batch, params, None, done):
            for b, t in enumerate(tokens):
                if done[b] or t in eos:
                    continue
                texts[b] += asms[b].add(t)
                done[b] = asms[b].stopped
        return [text + asm.finish() for text, asm in zip(texts, asms, strict=True)]

    def stream(self, prompt: str | bytes, *, stop_event: Any = None, **kwargs: Any) -> TextStream:
        """Iterate over text pieces as they are decoded; `stop_event` (threading.Event or callable) ends it within a token."""
        params = SamplingParams.make(**kwargs)
        return self._stream_ids(self._prompt_ids(prompt), params, stop_event)

    # ----- chat -----
    @property
    def has_chat_template(self) -> bool:
        return self.tokenizer is not None and self.tokenizer.chat_template is not None

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text the model's chat template makes of `messages` ([{"role": ..., "content": ...}])."""
        return self._tokenizer().apply_chat_template(messages, add_generation_prompt=add_generation_prompt)

    def _chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.apply_chat_template(messages)
        return self._tokenizer().encode(text, add_special_tokens=False)  # the template already holds the specials

    def chat(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        """The assistant's reply to a conversation, through the model's chat template."""
        params = SamplingParams.make(**kwargs)
        return "".join(self._stream_ids(self._chat_ids(messages), params, None))

    def stream_chat(self, messages: list[dict[str, str]], *, stop_event: Any = None, **kwargs: Any) -> TextStream:
        """`chat`, streamed like `stream`."""
        params = SamplingParams.make(**kwargs)
        return self._stream_ids(self._chat_ids(messages), params, stop_event)
