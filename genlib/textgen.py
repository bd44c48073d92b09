"""Scoring text with a language model: bits per byte over a whole text, sliding windows past the context."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F

from genlib.errors import BadInput, WrongTask

MAX_TOKENS_PER_FORWARD = 16384  # rows of a batch x window length
LOGIT_CHUNK = 1024  # positions per output-head call (a 50k vocabulary makes 200 MB of fp32 logits per chunk)


def _start_token(model: Any) -> int | None:
    """The token the text is scored after: <|endoftext|> when the vocabulary has it, else BOS, else EOS."""
    tok = model.tokenizer
    for name in ("<|endoftext|>", tok.bos_token, tok.eos_token):
        if name and (i := tok.token_id(name)) is not None:
            return i
    return model.config.bos_token_id


@torch.inference_mode()
def evaluate_bits_per_byte(
    model: Any, text: str, *, stride: int | None = None, batch_size: int = 8
) -> dict[str, float]:
    """Bits per UTF-8 byte of `text` under `model`: every token scored with as much context as fits.

    The text is scored after a start token (see `_start_token`), so its first token counts too. Past the context,
    windows of `context` tokens advance by `stride` (default half the context) and each token is scored once, in the
    first window where it has at least context - stride tokens before it.
    """
    if getattr(model, "task", None) != "text" or getattr(model, "tokenizer", None) is None:
        raise WrongTask("bits per byte needs a text model with a tokenizer")
    if not isinstance(text, str) or not text:
        raise BadInput("text to score is empty")
    ctx = model.config.context
    stride = stride or max(1, ctx // 2)
    if not 1 <= stride <= ctx:
        raise BadInput(f"stride must be in [1, {ctx}]")
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    start = _start_token(model)
    if start is not None:
        ids = [start, *ids]
    n_scored = len(ids) - 1
    if n_scored < 1:
        raise BadInput("text is too short to score")
    t0 = time.perf_counter()
    # windows: (first input position, number of inputs, number of scored targets at the end)
    windows: list[tuple[int, int, int]] = []
    scored_to = 0  # targets ids[1 : scored_to + 1] are done
    begin = 0
    while scored_to < n_scored:
        end = min(begin + ctx, n_scored)  # inputs ids[begin:end] predict ids[begin + 1 : end + 1]
        windows.append((begin, end - begin, end - scored_to))
        scored_to = end
        begin += stride
    data = torch.tensor(ids, dtype=torch.long)
    nll = 0.0
    device = model.device
    by_len: dict[int, list[tuple[int, int, int]]] = {}
    for w in windows:
        by_len.setdefault(w[1], []).append(w)
    for length, group in by_len.items():
        rows = max(1, min(batch_size, MAX_TOKENS_PER_FORWARD // length))
        for i in range(0, len(group), rows):
            ws = group[i : i + rows]
            x = torch.stack([data[b : b + length] for b, _, _ in ws]).to(device)
            h = model.hidden(x)
            for row, (b, _, n) in enumerate(ws):  # logits only where tokens are scored, a chunk at a time
                for lo in range(length - n, length, LOGIT_CHUNK):
                    hi = min(lo + LOGIT_CHUNK, length)
                    logits = model.logits(h[row, lo:hi]).float()
                    target = data[b + lo + 1 : b + hi + 1].to(device)
                    nll += F.cross_entropy(logits, target, reduction="sum").item()
    seconds = time.perf_counter() - t0
    n_bytes = len(text.encode("utf-8"))
    return {
        "bits_per_byte": nll / math.log(2) / n_bytes,
        "loss": nll / n_scored,
        "tokens": n_scored,
        "bytes": n_bytes,
        "seconds": seconds,
        "tokens_per_s": n_scored / seconds if seconds > 0 else float("inf"),
    }
