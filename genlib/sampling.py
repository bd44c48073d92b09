"""Sampling for text generation: checked arguments, logit processors, seeded choice and incremental detokenization.

Prompt text policy: a prompt must be a `str` (or UTF-8 `bytes`) without lone surrogates (refused as not valid UTF-8);
CR/CRLF become LF and other control characters (C0 except tab/newline, DEL, C1) are stripped silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from genlib.errors import BadInput

MAX_NEW_TOKENS = 2048
MAX_BATCH = 64
MAX_PROMPT_CHARS = 200_000
MAX_STOPS = 16
MAX_STOP_CHARS = 256
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_prompt(text: Any, what: str = "prompt") -> str:
    """Check a prompt and strip control characters (see the module docstring); BadInput if unusable."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"{what} is not valid UTF-8 (byte {e.start})") from e
    if not isinstance(text, str):
        raise BadInput(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise BadInput(f"{what} is {len(text):,} characters; genlib takes at most {MAX_PROMPT_CHARS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadInput(f"{what} is not valid UTF-8 (lone surrogate at character {e.start})") from e
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise BadInput(f"{what} is empty")
    return text


def _number(name: str, v: Any, kind: type, lo: float, hi: float, *, lo_open: bool = False) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float) or (kind is int and not isinstance(v, int)):
        raise BadInput(f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}")
    if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v > hi:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise BadInput(f"{name}={v!r} is out of range {interval}")
    return kind(v)


@dataclass(frozen=True)
class SamplingParams:
    """Generation arguments. temperature 0 is greedy; top_k 0, top_p 1 and min_p 0 switch those filters off."""

    max_new_tokens: int = 128
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def make(cls, **kwargs: Any) -> SamplingParams:
        """Checked parameters from keyword arguments (None means the default); BadInput names the bad one."""
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise BadInput(f"unknown generation argument(s): {', '.join(sorted(unknown))}")
        d = {k: v for k, v in kwargs.items() if v is not None or k == "seed"}
        p = cls()
        stop = d.get("stop", ())
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            raise BadInput("stop must be a string or a list of strings")
        if len(stop) > MAX_STOPS:
            raise BadInput(f"at most {MAX_STOPS} stop strings")
        for s in stop:
            if not s:
                raise BadInput("a stop string is empty")
            if len(s) > MAX_STOP_CHARS:
                raise BadInput(f"stop strings are at most {MAX_STOP_CHARS} characters")
        seed = d.get("seed")
        return cls(
            max_new_tokens=_number("max_new_tokens", d.get("max_new_tokens", p.max_new_tokens), int, 1, MAX_NEW_TOKENS),
            temperature=_number("temperature", d.get("temperature", p.temperature), float, 0.0, 100.0),
            top_k=_number("top_k", d.get("top_k", p.top_k), int, 0, 1 << 31),
            top_p=_number("top_p", d.get("top_p", p.top_p), float, 0.0, 1.0, lo_open=True),
            min_p=_number("min_p", d.get("min_p", p.min_p), float, 0.0, 1.0),
            repetition_penalty=_number(
                "repetition_penalty", d.get("repetition_penalty", p.repetition_penalty), float, 0.0, 100.0, lo_open=True
            ),
            no_repeat_ngram_size=_number(
                "no_repeat_ngram_size", d.get("no_repeat_ngram_size", p.no_repeat_ngram_size), int, 0, 64
            ),
            stop=tuple(stop),
            seed=None if seed is None else _number("seed", seed, int, 0, (1 << 63) - 1),
        )


class Sampler:
    """Picks each row's next token: repetition penalty and n-gram bans, then greedy or seeded temperature sampling."""

    def __init__(
        self, params: SamplingParams, prompts: Sequence[Sequence[int]], vocab_size: int, device: torch.device
    ) -> None:
        self.p = params
        B = len(prompts)
        self.history = [list(x) for x in prompts]
        self.seen: torch.Tensor | None = None
        if params.repetition_penalty != 1.0:
            self.seen = torch.zeros(B, vocab_size, dtype=torch.bool, device=device)
            for b, x in enumerate(prompts):
                self.seen[b, torch.tensor(list(x), dtype=torch.long, device=device)] = True
        n = params.no_repeat_ngram_size
        self.banned: list[dict[tuple[int, ...], set[int]]] = [{} for _ in range(B)]
        if n:
            for b, x in enumerate(self.history):
                for i in range(len(x) - n + 1):
                    self.banned[b].setdefault(tuple(x[i : i + n - 1]), set()).add(x[i + n - 1])
        self.gen = torch.Generator()
        if params.seed is not None:
            self.gen.manual_seed(params.seed)
        else:
            self.gen.seed()

    def record(self, b: int, token: int) -> None:
        """Add a generated token to row b's history."""
        x = self.history[b]
        x.append(token)
        if self.seen is not None:
            self.seen[b, token] = True
        n = self.p.no_repeat_ngram_size
        if n and len(x) >= n:
            self.banned[b].setdefault(tuple(x[len(x) - n : -1]), set()).add(token)

    def __call__(self, logits: torch.Tensor) -> list[int]:
        """Next token id per row from logits [B, vocab]."""
        p = self.p
        logits = logits.float()
        if self.seen is not None:
            penalized = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(self.seen, penalized, logits)
        n = p.no_repeat_ngram_size
        if n:
            for b, x in enumerate(self.history):
                if len(x) >= n - 1:
                    ban = self.banned[b].get(tuple(x[len(x) - n + 1 :]) if n > 1 else ())
                    if ban:
                        logits[b, list(ban)] = -math.inf
        if p.temperature == 0.0:
            return logits.argmax(-1).tolist()
        logits = logits / p.temperature
        if 0 < p.top_k < logits.size(-1):
            kth = torch.topk(logits, p.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if p.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > p.top_p  # keeps the smallest prefix whose mass reaches top_p
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, -math.inf))
        if p.min_p > 0.0:
            probs = logits.softmax(-1)
            logits = logits.masked_fill(probs < p.min_p * probs.amax(-1, keepdim=True), -math.inf)
        probs = logits.softmax(-1).cpu()
        return torch.multinomial(probs, 1, generator=self.gen)[:, 0].tolist()


class Decoder(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class TextAssembler:
    """Token ids in, text pieces out: only complete UTF-8 characters, stop strings cut (not included) even across
    token boundaries, and text that might begin a stop string held back until it cannot."""

    def __init__(self, tokenizer: Decoder, stop: Sequence[str] = ()) -> None:
        self.tok = tokenizer
        self.stops = tuple(stop)
        self.ids: list[int] = []
        self.prefix_offset = 0  # ids[prefix_offset:read_offset] decoded to the tail of self.text
        self.read_offset = 0
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _decode_new(self, final: bool) -> None:
        prefix = self.tok.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.tok.decode(self.ids[self.prefix_offset :])
        if final:
            full = full.rstrip("\ufffd")  # an incomplete byte sequence at the very end is dropped
        if len(full) > len(prefix) and (final or not full.endswith("\ufffd")):
            self.text += full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)

    def _release(self, final: bool) -> str:
        start = self.emitted
        cut = min((i for s in self.stops if (i := self.text.find(s, start)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            end = cut
        else:
            end = len(self.text)
            if not final:  # hold back the longest tail that could still grow into a stop string
                pending = self.text[start:]
                for k in range(min(len(pending), max((len(s) for s in self.stops), default=1) - 1), 0, -1):
                    if any(s.startswith(pending[-k:]) for s in self.stops):
                        end -= k
                        break
        self.emitted = end
        return self.text[start:end]

    def add(self, token: int) -> str:
        """Feed one generated token; returns the text that became final (maybe empty)."""
        if self.stopped:
            return ""
        self.ids.append(token)
        self._decode_new(final=False)
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the text once generation ended."""
        if self.stopped:
            return ""
        self._decode_new(final=True)
        return self._release(final=True)


class TextStream:
    """An iterator of text pieces; `tokens` counts generated tokens, `finish_reason` is eos/stop/length/cancelled."""

    def __init__(self) -> None:
        self.tokens = 0
        self.finish_reason: str | None = None
        self._it: Iterator[str] = iter(())

    def start(self, it: Iterator[str]) -> None:
        self._it = it

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        return next(self._it)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def make_stop_check(stop_event: Any) -> Callable[[], bool] | None:
    """A no-argument check from a threading.Event (is_set) or a callable; None for none."""
    if stop_event is None:
        return None
    if callable(getattr(stop_event, "is_set", None)):
        return stop_event.is_set
    if callable(stop_event):
        return lambda: bool(stop_event())
    raise BadInput("stop_event must be a threading.Event or a callable returning bool")
