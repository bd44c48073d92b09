"""Convert a llama-architecture GGUF file (llama.cpp) into a Hub-layout folder genlib and transformers both load.

The `gguf` package reads and dequantizes the tensors; llama.cpp's Q/K row permutation is undone so the weights are in
Hugging Face's rotate-half layout again. The tokenizer (GPT-2 style byte-level BPE: tokens + merges) is rebuilt as a
`tokenizers` tokenizer.json, and the chat template is kept in tokenizer_config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from genlib.errors import BadConfig, BadWeights, GenlibError, ModelNotFound
from genlib.models.transformer import parse_config

# GGUF tensor name (after "blk.N.") -> Hugging Face name (after "model.layers.N.")
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# llama.cpp pre-tokenizer names this converter can rebuild (all byte-level BPE).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = ("default", "gpt2", "smollm", "llama-bpe")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _gguf() -> Any:
    try:
        import gguf
    except ImportError as e:
        raise GenlibError("converting GGUF files needs the gguf package: pip install gguf") from e
    return gguf


def _fields(reader: Any) -> dict[str, Any]:
    out = {}
    for name, f in reader.fields.items():
        try:
            out[name] = f.contents()
        except Exception:  # a field type contents() cannot render is not one we need
            continue
    return out


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's permute of q/k rows (interleaved RoPE pairs -> rotate-half halves)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's permute (Hugging Face -> GGUF), the inverse of `unpermute`."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_config(meta: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face llama config.json from GGUF metadata."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise BadConfig(f"GGUF architecture {arch!r} is not supported (only llama)")

    def get(key: str, default: Any = None) -> Any:
        v = meta.get(f"llama.{key}", default)
        if v is None:
            raise BadConfig(f"GGUF metadata lacks llama.{key}")
        return v

    if meta.get("llama.rope.scaling.type", "none") not in ("none", None):
        raise BadConfig("GGUF uses RoPE scaling, which genlib does not support")
    hidden, n_head = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(meta.get("llama.attention.key_length", meta.get("llama.rope.dimension_count", hidden // n_head)))
    tokens = meta.get("tokenizer.ggml.tokens") or []
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(meta.get("llama.vocab_size", len(tokens))),
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(meta.get("llama.attention.head_count_kv", n_head)),
        "head_dim": head_dim,
        "max_position_embeddings": int(get("context_length")),
        "rms_norm_eps": float(str(np.float32(get("attention.layer_norm_rms_epsilon")))),  # 9.99e-06 -> 1e-05
        "rope_theta": float(str(np.float32(meta.get("llama.rope.freq_base", 10000.0)))),
        "rope_scaling": None,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
    }
    for key in ("bos", "eos", "padding"):
        v = meta.get(f"tokenizer.ggml.{key}_token_id")
        if v is not None:
            cfg["pad_token_id" if key == "padding" else f"{key}_token_id"] = int(v)
    return cfg


def build_tokenizer(meta: dict[str, Any]) -> Any:
    """A `tokenizers.Tokenizer` from GGUF's GPT-2 style BPE metadata (tokens, merges, token types)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    if meta.get("tokenizer.ggml.model") != "gpt2":
        raise BadConfig(f"GGUF tokenizer {meta.get('tokenizer.ggml.model')!r} is not supported (only gpt2-style BPE)")
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in PRE_TOKENIZERS:
        raise BadConfig(f"GGUF pre-tokenizer {pre!r} is not supported ({', '.join(PRE_TOKENIZERS)})")
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "llama-bpe")
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre == "llama-bpe":
        split = pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False)
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    # token types: 3 = control (special), 4 = user-defined (added but not special)
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t, k in zip(tokens, types, strict=True) if k == 4]
    )
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types, strict=True) if k == 3]
    )
    bos = meta.get("tokenizer.ggml.bos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and bos is not None:
        b = tokens[int(bos)]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{b} $A", pair=f"{b} $A {b} $B", special_tokens=[(b, int(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _tokenizer_config(meta: dict[str, Any], context: int) -> dict[str, Any]:
    tokens = meta["tokenizer.ggml.tokens"]
    tc: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": context,
        "add_bos_token": bool(meta.get("tokenizer.ggml.add_bos_token", False)),
    }
    for key, name in (("bos", "bos_token"), ("eos", "eos_token"), ("unknown", "unk_token"), ("padding", "pad_token")):
        i = meta.get(f"tokenizer.ggml.{key}_token_id")
        if i is not None and 0 <= int(i) < len(tokens):
            tc[name] = tokens[int(i)]
    if isinstance(meta.get("tokenizer.chat_template"), str):
        tc["chat_template"] = meta["tokenizer.chat_template"]
    return tc


def _model_card(meta: dict[str, Any], source: Path, n_tensors: int, qtypes: list[str]) -> str:
    name = meta.get("general.name", source.stem)
    lic = meta.get("general.license", "other")
    return (
        f"---\nlicense: {lic}\nlibrary_name: genlib\npipeline_tag: text-generation\ntags:\n- gguf-converted\n- llama\n---\n\n"
        f"# {name}\n\nConverted by `genlib.gguf.convert_gguf` from `{source.name}` ({n_tensors} tensors, "
        f"GGUF types {', '.join(sorted(set(qtypes)))}). Quantized weights were dequantized, so this folder is as "
        "accurate as the GGUF, not the original checkpoint. Check the original model's license and card before use.\n"
    )


def convert_gguf(path: str | Path, out_dir: str | Path, *, dtype: str = "float32") -> Path:
    """Write config.json, model.safetensors, tokenizer.json, tokenizer_config.json, generation_config.json and
    README.md for the llama GGUF at `path` into `out_dir`; returns the folder."""
    gguf = _gguf()
    path, out = Path(path), Path(out_dir)
    if not path.is_file():
        raise ModelNotFound(f"no GGUF file at {path}")
    if dtype not in _DTYPES:
        raise BadConfig(f"dtype must be one of {', '.join(_DTYPES)}")
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError) as e:
        raise BadWeights(f"{path.name} is not a readable GGUF file: {e}") from e
    meta = _fields(reader)
    cfg_dict = hf_config(meta)
    cfg = parse_config(cfg_dict)
    tensors: dict[str, torch.Tensor] = {}
    qtypes = []
    for t in reader.tensors:
        if t.name.startswith("blk."):
            _, layer, rest = t.name.split(".", 2)
            if rest not in _LAYER_NAMES or not layer.isdigit():
                raise BadWeights(f"{path.name}: unexpected tensor {t.name}")
            name = f"model.layers.{layer}.{_LAYER_NAMES[rest]}"
        elif t.name in _GLOBAL_NAMES:
            name = _GLOBAL_NAMES[t.name]
        else:
            raise BadWeights(f"{path.name}: unexpected tensor {t.name} (rope scaling or another architecture?)")
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape([int(x) for x in reversed(t.shape.tolist())])
        if name.endswith("self_attn.q_proj.weight"):
            w = unpermute(w, cfg.n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            w = unpermute(w, cfg.n_kv_head)
        tensors[name] = torch.from_numpy(np.array(w, order="C")).to(_DTYPES[dtype])
        qtypes.append(t.tensor_type.name)
    cfg_dict["tie_word_embeddings"] = "lm_head.weight" not in tensors
    cfg_dict["torch_dtype"] = dtype
    parse_config(cfg_dict)  # the written config must be one genlib accepts
    tok = build_tokenizer(meta)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))
    tc = _tokenizer_config(meta, cfg.context)
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    gen = {k: cfg_dict[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in cfg_dict}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    (out / "README.md").write_text(_model_card(meta, path, len(reader.tensors), qtypes))
    return out
