"""Sampling, stop strings, streaming, cancellation, chat templates, bits per byte and bad input on a tiny real model.

The model is a small random llama saved by genlib with a byte-level BPE tokenizer trained here, so multi-byte
characters are split over several tokens and generated text contains incomplete UTF-8 sequences.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import EOT, byte_level_tokenizer  # noqa: E402
from conftest import TINY_TEXT as TEXT  # noqa: E402

import genlib
from genlib.errors import BadConfig, BadInput
from genlib.models.transformer import Transformer
from genlib.sampling import MAX_NEW_TOKENS, SamplingParams, TextAssembler
from genlib.textgen import evaluate_bits_per_byte
from genlib.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def folder(tiny_text_folder) -> Path:
    return tiny_text_folder


@pytest.fixture(scope="module")
def model(folder) -> Transformer:
    return genlib.load(str(folder), device="cpu")


def test_loaded_folder_has_tokenizer_and_template(folder, model):
    assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= {p.name for p in folder.iterdir()}
    assert model.has_chat_template and model.eos_token_ids() == []


def test_generation_ends_at_eos(folder):
    m = genlib.load(str(folder), device="cpu")
    first = m.generate("Tom liked", max_new_tokens=1, temperature=0)
    m.config.eos_token_id = m.tokenizer.encode(first, add_special_tokens=False)[0]  # the token greedy picks first
    s = m.stream("Tom liked", max_new_tokens=20, temperature=0)
    assert list(s) == [] and s.finish_reason == "eos" and s.tokens == 1
    assert m.generate(["Tom liked", "Tom liked"], max_new_tokens=20, temperature=0) == ["", ""]


def test_same_seed_same_text_other_seed_other_text(model):
    a = model.generate("Once upon a time", max_new_tokens=40, temperature=1.0, seed=7)
    b = model.generate("Once upon a time", max_new_tokens=40, temperature=1.0, seed=7)
    c = model.generate("Once upon a time", max_new_tokens=40, temperature=1.0, seed=8)
    assert a == b and a != c


def test_greedy_ignores_the_seed_and_filters_at_their_limits_are_greedy(model):
    greedy = model.generate("Tom liked", max_new_tokens=30, temperature=0, seed=1)
    assert model.generate("Tom liked", max_new_tokens=30, temperature=0, seed=2) == greedy
    assert model.generate("Tom liked", max_new_tokens=30, temperature=1.0, top_k=1, seed=3) == greedy
    assert model.generate("Tom liked", max_new_tokens=30, temperature=1.0, top_p=1e-9, seed=4) == greedy
    assert model.generate("Tom liked", max_new_tokens=30, temperature=1.0, min_p=1.0, seed=5) == greedy


def generated_ids(model: Transformer, prompt: str, **kw) -> list[int]:
    return [t for (t,) in model.generate_ids([model.tokenizer.encode(prompt)], SamplingParams.make(**kw))]


def test_no_repeat_ngram_and_repetition_penalty(model):
    prompt = "Tom liked to nap"
    ids = model.tokenizer.encode(prompt) + generated_ids(
        model, prompt, max_new_tokens=60, temperature=0, no_repeat_ngram_size=2
    )
    bigrams = list(zip(ids, ids[1:], strict=False))
    assert len(bigrams) == len(set(bigrams))
    plain = generated_ids(model, prompt, max_new_tokens=40, temperature=0)
    assert len(set(plain)) < len(plain)  # greedy on this model repeats itself ...
    penalized = generated_ids(model, prompt, max_new_tokens=40, temperature=0, repetition_penalty=100.0)
    assert len(set(penalized)) == len(penalized)  # ... a huge penalty never picks a token twice
    assert not set(penalized) & set(model.tokenizer.encode(prompt))


def test_stop_string_across_a_token_boundary_is_cut_and_not_included(model):
    kw = {"max_new_tokens": 60, "temperature": 1.0, "seed": 11}
    ids = generated_ids(model, "Once upon", **kw)
    text = model.generate("Once upon", **kw)
    pieces = [model.tokenizer.decode([t]) for t in ids]
    # a stop string made of the end of one token and the start of the next
    i = next(
        i
        for i in range(1, len(pieces) - 1)
        if len(pieces[i].strip()) >= 2
        and len(pieces[i + 1].strip()) >= 2
        and pieces[i].isascii()
        and pieces[i + 1].isascii()
    )
    stop = pieces[i][-2:] + pieces[i + 1][:2]
    assert stop in text
    cut = model.generate("Once upon", stop=["zzzz-not-there", stop], **kw)
    assert cut == text[: text.index(stop)]
    s = model.stream("Once upon", stop=stop, **kw)
    assert "".join(s) == cut and s.finish_reason == "stop"


def test_stream_concatenation_equals_generate_and_pieces_are_valid(model):
    for seed in range(4):
        kw = {"max_new_tokens": 50, "temperature": 1.2, "seed": seed}
        s = model.stream("A café 🎈", **kw)
        pieces = list(s)
        text = model.generate("A café 🎈", **kw)
        assert "".join(pieces) == text
        assert all(p and isinstance(p, str) for p in pieces)
        for p in pieces:
            p.encode("utf-8")  # no lone surrogates
        assert s.tokens == 50 and s.finish_reason == "length"


def test_assembler_holds_back_split_characters():
    tok = Tokenizer(byte_level_tokenizer())
    text = "café 🎈 naïve ✓ ok"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # the multi-byte characters are split over tokens
    asm = TextAssembler(tok)
    pieces = [asm.add(i) for i in ids] + [asm.finish()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)


def test_assembler_holds_back_a_possible_stop_string():
    tok = Tokenizer(byte_level_tokenizer())
    asm = TextAssembler(tok, ["the end"])
    out = [asm.add(i) for i in tok.encode("he said the en")]
    assert "".join(out) == "he said "  # "the en" may still become the stop string
    out += [asm.add(i) for i in tok.encode("d of it")]
    assert "".join(out) == "he said " and asm.stopped


def test_stop_event_stops_within_one_token(model):
    ev = threading.Event()
    s = model.stream("Once upon a time", max_new_tokens=200, temperature=1.0, seed=3, stop_event=ev)
    next(s)
    ev.set()
    at_set = s.tokens
    list(s)
    assert s.tokens <= at_set + 1 and s.finish_reason == "cancelled"
    calls = []
    s = model.stream("Once", max_new_tokens=200, temperature=1.0, seed=3, stop_event=lambda: len(calls) > 0)
    calls.append(next(s))
    at_set = s.tokens
    list(s)
    assert s.tokens <= at_set + 1 and s.finish_reason == "cancelled"
    ev2 = threading.Event()
    ev2.set()
    s = model.stream("Once", max_new_tokens=200, stop_event=ev2)
    assert list(s) == [] and s.tokens == 0


def test_stop_event_from_another_thread(model):
    ev = threading.Event()
    s = model.stream("Once upon a time", max_new_tokens=2000, temperature=1.0, seed=3, stop_event=ev)
    got: list[str] = []
    t = threading.Thread(target=lambda: got.extend(s))
    t.start()
    time.sleep(0.01)
    ev.set()
    t.join(timeout=10)
    assert not t.is_alive() and s.finish_reason in ("cancelled", "length")


def test_batch_generation_matches_single_prompts(model):
    prompts = ["Once upon a time", "Tom", "The big red ball and the sea"]
    batch = model.generate(prompts, max_new_tokens=25, temperature=0)
    assert isinstance(batch, list) and batch == [model.generate(p, max_new_tokens=25, temperature=0) for p in prompts]
    seeded = model.generate(prompts, max_new_tokens=25, temperature=1.0, seed=5, stop=["e"])
    assert all("e" not in t for t in seeded)


def test_context_limit_caps_generation(model):
    ids = model.tokenizer.encode("Tom " * 40)
    n = len(ids)
    assert n < model.config.context
    steps = list(model.generate_ids([ids], SamplingParams.make(max_new_tokens=500, temperature=0)))
    assert len(steps) == model.config.context - n


def test_control_characters_are_stripped(model):
    kw = {"max_new_tokens": 10, "temperature": 0}
    assert model.generate("Tom\x00 liked\x1b\r\nthe sun", **kw) == model.generate("Tom liked\nthe sun", **kw)


BAD = [
    ("", {}, "empty"),
    ("  \n\t ", {}, "empty"),
    ("\x00\x01", {}, "empty"),
    ("Tom \ud800", {}, "UTF-8"),
    (b"\xff\xfe", {}, "UTF-8"),
    (123, {}, "string"),
    ("Tom " * 200, {}, "context"),
    ("Tom", {"max_new_tokens": 0}, "max_new_tokens"),
    ("Tom", {"max_new_tokens": -5}, "max_new_tokens"),
    ("Tom", {"max_new_tokens": MAX_NEW_TOKENS + 1}, "max_new_tokens"),
    ("Tom", {"max_new_tokens": 2.5}, "max_new_tokens"),
    ("Tom", {"max_new_tokens": True}, "max_new_tokens"),
    ("Tom", {"temperature": -0.1}, "temperature"),
    ("Tom", {"temperature": float("nan")}, "temperature"),
    ("Tom", {"temperature": "hot"}, "temperature"),
    ("Tom", {"top_p": 0}, "top_p"),
    ("Tom", {"top_p": 1.5}, "top_p"),
    ("Tom", {"top_k": -1}, "top_k"),
    ("Tom", {"min_p": 1.5}, "min_p"),
    ("Tom", {"repetition_penalty": 0}, "repetition_penalty"),
    ("Tom", {"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ("Tom", {"stop": ""}, "stop"),
    ("Tom", {"stop": ["ok", ""]}, "stop"),
    ("Tom", {"stop": [1]}, "stop"),
    ("Tom", {"seed": -1}, "seed"),
    ("Tom", {"seed": 1.5}, "seed"),
    ("Tom", {"temprature": 1.0}, "temprature"),
]


@pytest.mark.parametrize("prompt, kwargs, words", BAD)
def test_bad_input_is_refused_with_a_clear_message(model, prompt, kwargs, words):
    with pytest.raises(BadInput, match=words):
        model.generate(prompt, **kwargs)
    with pytest.raises(BadInput, match=words):
        model.stream(prompt, **kwargs)  # refused at the call, not at the first next()


def test_bad_batches_and_stop_events(model):
    with pytest.raises(BadInput):
        model.generate([])
    with pytest.raises(BadInput, match="empty"):
        model.generate(["Tom", ""])
    with pytest.raises(BadInput, match="stop_event"):
        model.stream("Tom", stop_event=42)


def test_chat_template_is_rendered_and_sandboxed(model, tmp_path):
    msgs = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi!"}]
    assert (
        model.apply_chat_template(msgs)
        == "<|endoftext|>system: Be nice.\n<|endoftext|>user: Hi!\n<|endoftext|>assistant:"
    )
    reply = model.chat(msgs, max_new_tokens=8, temperature=0)
    assert reply == "".join(model.stream_chat(msgs, max_new_tokens=8, temperature=0))
    for bad in ([], [{"role": "wizard", "content": "x"}], [{"role": "user", "content": ""}], "hello"):
        with pytest.raises(BadInput):
            model.apply_chat_template(bad)
    evil = Tokenizer(model.tokenizer.tok, chat_template="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(BadConfig):
        evil.apply_chat_template(msgs)
    refusing = Tokenizer(model.tokenizer.tok, chat_template="{{ raise_exception('roles must alternate') }}")
    with pytest.raises(BadInput, match="alternate"):
        refusing.apply_chat_template(msgs)
    plain = Tokenizer(model.tokenizer.tok)
    with pytest.raises(BadInput, match="no chat template"):
        plain.apply_chat_template(msgs)


def test_bits_per_byte_scores_every_token_once(model):
    text = "Tom liked to nap in the sun. " * 3
    r = evaluate_bits_per_byte(model, text)
    ids = [model.tokenizer.token_id(EOT), *model.tokenizer.encode(text, add_special_tokens=False)]
    assert r["tokens"] == len(ids) - 1 and r["bytes"] == len(text.encode())
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))
    nll = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[1:]), reduction="sum").item()
    assert math.isclose(r["bits_per_byte"], nll / math.log(2) / len(text.encode()), rel_tol=1e-5)
    assert set(r) >= {"bits_per_byte", "tokens", "bytes", "seconds", "tokens_per_s"}


def test_bits_per_byte_slides_past_the_context(model):
    text = TEXT[:1500]
    ids = [model.tokenizer.token_id(EOT), *model.tokenizer.encode(text, add_special_tokens=False)]
    ctx = model.config.context
    assert len(ids) > 3 * ctx
    r = evaluate_bits_per_byte(model, text, stride=ctx // 2)
    assert r["tokens"] == len(ids) - 1
    # brute force: token j (1-based) scored in the first window [b, b + ctx) with b a multiple of the stride
    stride, total = ctx // 2, 0.0
    with torch.no_grad():
        for j in range(1, len(ids)):
            b = 0 if j <= ctx else ((j - ctx - 1) // stride + 1) * stride
            logits = model(torch.tensor([ids[b:j]]))[0, -1]
            total -= torch.log_softmax(logits, -1)[ids[j]].item()
    assert math.isclose(r["bits_per_byte"], total / math.log(2) / len(text.encode()), rel_tol=1e-4)
    short = evaluate_bits_per_byte(model, text, stride=ctx)  # less context per token scores worse
    assert short["bits_per_byte"] != r["bits_per_byte"]
