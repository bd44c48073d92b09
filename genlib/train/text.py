"""Train genlib's small stories model: a byte-level BPE tokenizer and a llama-type transformer on TinyStories, on CPU.

    python -m genlib.train.text --out weights/stories-gpt --minutes 60 --run-dir ~/genlib-runs/stories

Data: tinystories.txt and tinystories_more.txt of --data-dir; the last --holdout-frac of tinystories.txt (cut at a
blank line) is never trained on and gives the held-out loss and bits per byte. Resumable: rerun the same command
and it continues from the run dir's checkpoint (safetensors + JSON, no pickle). --minutes is the wall-clock budget
of training steps and periodic evaluations, summed over resumes; the final evaluation and saving come after it.
The model folder is written from the checkpoint with the best held-out loss.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from huggingface_hub import EvalResult
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer as HFTokenizer

from genlib.models.transformer import Transformer, TransformerConfig
from genlib.textgen import evaluate_bits_per_byte
from genlib.tokenizer import Tokenizer
from genlib.train.cards import write_card
from genlib.train.checkpoint import load_checkpoint, save_checkpoint
from genlib.train.common import add_bf16_argument, cpu_name, log, use_bf16

EOT = "<|endoftext|>"
SAMPLE_PROMPTS = ("Once upon a time", "One day, a little boy named Tom", "Lily and her mom went to the park")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m genlib.train.text", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data/text"))
    p.add_argument("--out", type=Path, default=Path("weights/stories-gpt"), help="model folder written at the end")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=Path("~/genlib-runs/stories").expanduser(),
        help="tokenizer, checkpoints and log (outside the repo)",
    )
    p.add_argument("--minutes", type=float, default=60.0, help="training budget (wall clock), summed over resumes")
    p.add_argument("--holdout-frac", type=float, default=0.05, help="tail of tinystories.txt kept out of training")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--d-model", type=int, default=288)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=6)
    p.add_argument("--d-ff", type=int, default=768)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=32, help="sequences per step")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine decays to lr * this at the end of the budget")
    p.add_argument("--warmup-steps", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    add_bf16_argument(p)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--eval-minutes", type=float, default=5.0, help="held-out loss and a checkpoint this often")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time budget only)")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- data


def load_texts(data_dir: Path, holdout_frac: float) -> tuple[list[str], str]:
    """Training documents and the held-out text (the tail of tinystories.txt, starting at a paragraph)."""
    stories = (data_dir / "tinystories.txt").read_text(encoding="utf-8")
    cut = stories.find("\n\n", int(len(stories) * (1 - holdout_frac)))
    if cut < 0:
        raise SystemExit("tinystories.txt has no blank line in its tail to cut the held-out slice at")
    train, held = stories[:cut], stories[cut + 2 :]
    docs = [train]
    more = data_dir / "tinystories_more.txt"
    if (
        more.is_file()
    ):  # one paragraph a line, stories ended by <|endoftext|> lines: match tinystories.txt's blank lines
        for story in more.read_text(encoding="utf-8").split(EOT):
            paras = [p.strip() for p in story.split("\n") if p.strip()]
            if paras:
                docs.append("\n\n".join(paras))
    return docs, held


def train_tokenizer(docs: list[str], vocab: int) -> HFTokenizer:
    """Byte-level BPE (GPT-2 style) with <|endoftext|> as its one special token."""
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    eot = tok.token_to_id(EOT)  # prompts start after <|endoftext|>, as every training document does
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B", special_tokens=[(EOT, eot)]
    )
    return tok


def encode_docs(tok: Tokenizer, docs: list[str]) -> torch.Tensor:
    """One token stream: documents separated by <|endoftext|>."""
    eot = tok.token_id(EOT)
    ids: list[int] = []
    for enc in tok.tok.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eot)
    return torch.tensor(ids, dtype=torch.int32)


# ----------------------------------------------------------------------------- training


def lr_at(step: int, progress: float, args: argparse.Namespace) -> float:
    """Linear warm-up over steps, then cosine by the fraction of the time budget used."""
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * cos)


@torch.no_grad()
def heldout_loss(model: Transformer, ids: torch.Tensor, ctx: int, bf16: bool, batch: int = 16) -> float:
    """Mean loss over non-overlapping context windows of the held-out tokens (quick; the final score slides)."""
    model.eval()
    n = (len(ids) - 1) // ctx
    x = ids[: n * ctx].view(n, ctx).long()
    y = ids[1 : n * ctx + 1].view(n, ctx).long()
    total = 0.0
    for i in range(0, n, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            total += model(x[i : i + batch], y[i : i + batch]).item() * len(x[i : i + batch])
    model.train()
    return total / n


def write_model_card(args: argparse.Namespace, info: dict, samples: list[tuple[str, str]]) -> None:
    """README.md with Hub metadata: data, intended use, limitations, misuse, training run and held-out scores."""
    name = args.out.name
    bpb, loss = info["heldout_bits_per_byte"], info["heldout_loss"]
    sample_md = "\n\n".join(
        "\n".join(f"> {line}" if line else ">" for line in f"**{p}**{s}".strip().split("\n")) for p, s in samples
    )
    dataset = {
        "dataset_type": "roneneldan/TinyStories",
        "dataset_name": "TinyStories (held-out tail of genlib's sample)",
    }
    metadata = {
        "license": "cdla-sharing-1.0",
        "library_name": "genlib",
        "pipeline_tag": "text-generation",
        "language": ["en"],
        "tags": ["genlib", "text-generation", "llama", "tinystories", "cpu-trained"],
        "datasets": ["roneneldan/TinyStories"],
        "metrics": ["perplexity"],
        "model_name": name,
        "eval_results": [
            EvalResult(
                task_type="text-generation",
                metric_type="bits_per_byte",
                metric_value=round(bpb, 4),
                metric_name="held-out bits per byte",
                **dataset,
            ),
            EvalResult(
                task_type="text-generation",
                metric_type="loss",
                metric_value=round(loss, 4),
                metric_name="held-out cross-entropy (nats per token)",
                **dataset,
            ),
        ],
    }
    body = f"""# {name}

A {info["parameters"] / 1e6:.1f}M-parameter llama-type decoder (RoPE, RMSNorm, SwiGLU) with a {info["vocab"]}-token
byte-level BPE tokenizer, trained from scratch on the CPU by `genlib.train.text` to write very short, simple
children's stories in English. It loads with `genlib.load` and with transformers' `AutoModelForCausalLM`.

## Training data
A 2.6 MB sample of TinyStories (Eldan & Li, 2023; CDLA-Sharing-1.0): stories generated by GPT-3.5/GPT-4 in the
vocabulary of a 3-4 year old. `tinystories.txt` (first stories of the train split, then of the validation split)
and `tinystories_more.txt` (1,271 more train-split stories), see shared/data/SOURCES.md. The last
{args.holdout_frac:.0%} of tinystories.txt ({info["heldout_bytes"]:,} bytes, validation-split stories) was held out.

## Intended use
Demos of genlib (the Gradio app's text tab), tests, and teaching: a model small enough to train in an hour on two
CPU cores. Prompt it with the start of a story ("Once upon a time").

## Limitations
Tiny model, tiny data: stories drift, contradict themselves and repeat; anything outside simple children's stories
(facts, code, other languages, instructions) is nonsense. No chat template, no instruction tuning. English only.
The data was machine-generated and carries the biases of the models that wrote it.

## Misuse
Do not present its text as facts or as written by a person, and do not use it for anything that affects people.
The output is not filtered for safety.

## Training
- Command: `{info["command"]}`
- Steps: {info["steps"]:,} (batch {args.batch} x {args.context} tokens, {info["tokens_seen"] / 1e6:.1f}M tokens,
  {info["epochs"]:.1f} epochs of {info["train_tokens"]:,} training tokens); best held-out loss at step {info["best_step"]:,}
- Time: {info["train_minutes"]:.1f} minutes; hardware: {info["hardware"]}
- AdamW (lr {args.lr}, cosine to {args.min_lr_frac} x by the time budget, weight decay {args.weight_decay}), dropout
  {args.dropout}, bf16 autocast: {use_bf16(args)}, seed {args.seed}
- Architecture: {args.layers} layers, d_model {args.d_model}, {args.heads} heads ({args.kv_heads} KV heads),
  SwiGLU width {args.d_ff}, context {args.context}, tied embeddings

## Evaluation (held-out slice)
| metric | value |
|---|---|
| bits per byte | {bpb:.4f} |
| loss (nats per token) | {loss:.4f} |
| tokens / bytes | {info["heldout_tokens"]:,} / {info["heldout_bytes"]:,} |

Scored by `genlib.textgen.evaluate_bits_per_byte` (every token, sliding window with stride {args.context // 2}).

## Samples (uncurated: temperature 0.8, top-p 0.95, seeds 0, 1, 2, first try)
{sample_md}
"""
    write_card(args.out, metadata=metadata, body=body)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir = args.run_dir.expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m genlib.train.text " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    docs, held = load_texts(args.data_dir, args.holdout_frac)
    tok_path = run_dir / "tokenizer.json"
    if not tok_path.is_file():
        t0 = time.time()
        train_tokenizer(docs, args.vocab).save(str(tok_path))
        log(run_dir, f"trained a {args.vocab}-token BPE tokenizer in {time.time() - t0:.1f}s")
    specials = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "model_max_length": args.context}
    tok = Tokenizer(HFTokenizer.from_file(str(tok_path)), specials)
    train_ids = encode_docs(tok, docs)
    held_ids = torch.tensor(tok.encode(held, add_special_tokens=False), dtype=torch.int32)
    n_bytes = sum(len(d.encode()) for d in docs)
    log(
        run_dir,
        f"data: {len(docs)} documents, {n_bytes:,} bytes -> {len(train_ids):,} tokens "
        f"({n_bytes / len(train_ids):.2f} bytes/token); held-out {len(held.encode()):,} bytes, {len(held_ids):,} tokens",
    )

    eot = tok.token_id(EOT)
    cfg = TransformerConfig(
        arch="llama",
        vocab_size=tok.vocab_size,
        context=args.context,
        d_model=args.d_model,
        n_layer=args.layers,
        n_head=args.heads,
        n_kv_head=args.kv_heads,
        head_dim=args.d_model // args.heads,
        d_ff=args.d_ff,
        norm_eps=1e-5,
        tie_embeddings=True,
        dropout=args.dropout,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )
    torch.manual_seed(args.seed)
    model = Transformer(cfg)
    model.tokenizer = tok
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        fused=False,
    )
    ckpt = run_dir / "checkpoint"
    meta = load_checkpoint(ckpt, {"model": model}, {"opt": opt})
    if meta is not None and meta.get("config") != asdict(cfg):
        raise SystemExit(f"{ckpt}.json was trained with another model config; use a new --run-dir")
    meta = meta or {"step": 0, "train_seconds": 0.0, "best_val": float("inf"), "best_step": 0, "config": asdict(cfg)}
    step, train_s = meta["step"], meta["train_seconds"]
    if step:
        log(
            run_dir,
            f"resumed at step {step} ({train_s / 60:.1f} min trained, best held-out loss {meta['best_val']:.4f})",
        )
    log(run_dir, f"model: {model.num_parameters() / 1e6:.2f}M parameters, {cfg.n_layer} layers, d_model {cfg.d_model}")
    torch.manual_seed(args.seed + step)
    gen = torch.Generator().manual_seed(args.seed + step)
    bf16 = use_bf16(args)
    budget = args.minutes * 60
    best_path = run_dir / "best.safetensors"

    def evaluate_and_checkpoint() -> None:
        val = heldout_loss(model, held_ids, cfg.context, bf16)
        if val < meta["best_val"]:
            meta["best_val"], meta["best_step"] = val, step
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(best_path))
        meta.update(step=step, train_seconds=train_s)
        save_checkpoint(ckpt, {"model": model}, {"opt": opt}, meta)
        bpb = val / math.log(2) * len(held_ids) / len(held.encode())
        log(
            run_dir,
            f"step {step} min {train_s / 60:.1f} val_loss {val:.4f} val_bpb~{bpb:.3f} (best {meta['best_val']:.4f} @ {meta['best_step']})",
        )

    model.train()
    last_eval, tick, tick_step, losses = train_s, time.time(), step, []
    while train_s < budget and not (args.max_steps and step >= args.max_steps):
        t_step = time.time()
        lr = lr_at(step, train_s / budget, args)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(train_ids) - cfg.context - 1, (args.batch,), generator=gen)
        x = torch.stack([train_ids[i : i + cfg.context] for i in idx.tolist()]).long()
        y = torch.stack([train_ids[i + 1 : i + cfg.context + 1] for i in idx.tolist()]).long()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        losses.append(loss.item())
        train_s += time.time() - t_step
        if step % 25 == 0:
            rate = (step - tick_step) * args.batch * cfg.context / (time.time() - tick)
            log(
                run_dir,
                f"step {step} min {train_s / 60:.1f} loss {sum(losses) / len(losses):.4f} lr {lr:.2e} {rate:,.0f} tok/s",
            )
            tick, tick_step, losses = time.time(), step, []
        if train_s - last_eval > args.eval_minutes * 60:
            t_eval = time.time()
            evaluate_and_checkpoint()
            train_s += time.time() - t_eval
            last_eval = train_s
            tick, tick_step = time.time(), step
    evaluate_and_checkpoint()

    # Final model: the best held-out checkpoint, scored with the sliding-window evaluator.
    model.load_state_dict(load_file(str(best_path)))
    model.eval()
    final = evaluate_bits_per_byte(model, held)
    samples = [
        (p, model.generate(p, max_new_tokens=160, temperature=0.8, top_p=0.95, seed=i))
        for i, p in enumerate(SAMPLE_PROMPTS)
    ]
    info = {
        "command": command,
        "steps": step,
        "best_step": meta["best_step"],
        "tokens_seen": step * args.batch * cfg.context,
        "train_tokens": len(train_ids),
        "epochs": step * args.batch * cfg.context / len(train_ids),
        "train_minutes": train_s / 60,
        "parameters": model.num_parameters(),
        "vocab": cfg.vocab_size,
        "heldout_loss": final["loss"],
        "heldout_bits_per_byte": final["bits_per_byte"],
        "heldout_tokens": final["tokens"],
        "heldout_bytes": final["bytes"],
        "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    model.save_pretrained(args.out)
    write_model_card(args, info, samples)
    (run_dir / "train_info.json").write_text(json.dumps(info, indent=1))
    log(
        run_dir,
        f"held-out: {final['bits_per_byte']:.4f} bits/byte, loss {final['loss']:.4f} over {final['tokens']:,} tokens",
    )
    for p, s in samples:
        log(run_dir, f"sample: {p}{s[:200]!r}")
    log(run_dir, f"model written to {args.out}")


if __name__ == "__main__":
    main()
