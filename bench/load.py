"""Load: concurrent gradio_client users against the app on the embedded models, on loopback.

    python bench/load.py                  # 16 users, 200 mixed requests; then faces batched vs unbatched

Phase 1: `--users` clients (threads, each its own gradio_client.Client) send `--requests` requests in all,
mixed: faces (1-4 per request), landscapes (1-4) and short stories (16 new tokens). Reports throughput,
p50/p95 latency per kind and the error count (0 required).
Phase 2: the same users each ask for single faces, against the app started with GENLIB_FACE_BATCH=16 (the
default: queued requests run in one forward pass) and with GENLIB_FACE_BATCH=1; reports faces/s of each.
Bounded: at most --requests requests per phase and a --deadline in seconds per phase.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 60:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the app did not start in 60 s")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def request(client, kind: str, i: int) -> None:  # noqa: ANN001
    rng = random.Random(i)
    if kind == "faces":
        client.predict("faces", i, rng.randint(1, 4), 0.7, 64, "nearest", api_name="/faces")
    elif kind == "landscapes":
        client.predict("landscapes", i, rng.randint(1, 4), 1.0, 64, "nearest", api_name="/landscapes")
    else:
        client.predict("stories", "Once upon a time", False, 16, 0.8, 0.95, 50, i, api_name="/text")


def one_face(client, kind: str, i: int) -> None:  # noqa: ANN001
    client.predict("faces", i, 1, 0.7, 64, "nearest", api_name="/faces")


def run_phase(
    url: str,
    users: int,
    jobs: list[tuple[str, int]],
    deadline: float,
    send=request,  # noqa: ANN001
) -> tuple[dict, float, int]:
    """Run `jobs` from `users` threads; returns ({kind: latencies}, seconds, errors)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(users)]
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    lock = threading.Lock()
    t_end = time.perf_counter() + deadline

    def user(u: int) -> None:
        for kind, i in jobs[u::users]:
            if time.perf_counter() > t_end:
                with lock:
                    errors.append("deadline")
                continue
            t = time.perf_counter()
            try:
                send(clients[u], kind, i)
                with lock:
                    lat[kind].append(time.perf_counter() - t)
            except Exception as e:  # counted, and shown below
                with lock:
                    errors.append(f"{kind}: {type(e).__name__}: {str(e)[:120]}")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    secs = time.perf_counter() - t0
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    return lat, secs, len(errors)


def warm(url: str) -> None:
    from gradio_client import Client

    c = Client(url, verbose=False)
    for kind in ("faces", "landscapes", "text"):
        request(c, kind, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=16)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--face-requests", type=int, default=160, help="single-face requests per phase-2 run")
    p.add_argument("--deadline", type=float, default=600, help="seconds per phase at most")
    args = p.parse_args()

    rng = random.Random(0)
    kinds = rng.choices(["faces", "landscapes", "text"], weights=[2, 1, 1], k=args.requests)
    jobs = [(k, 10_000 + i) for i, k in enumerate(kinds)]
    proc, url = start_app({})
    try:
        warm(url)
        lat, secs, errors = run_phase(url, args.users, jobs, args.deadline)
        done = sum(len(v) for v in lat.values())
        print(
            f"mixed: {args.users} users, {len(jobs)} requests in {secs:.1f} s: {done / secs:.2f} requests/s, "
            f"{errors} errors"
        )
        for kind, xs in sorted(lat.items()):
            print(
                f"  {kind:10s} {len(xs):4d} requests  p50 {1e3 * pct(xs, 0.5):6.0f} ms  p95 {1e3 * pct(xs, 0.95):6.0f} ms"
            )
    finally:
        proc.terminate()
        proc.wait()

    face_jobs = [("faces1", i) for i in range(args.face_requests)]
    for batch in ("16", "1"):
        proc, url = start_app({"GENLIB_FACE_BATCH": batch})
        try:
            warm(url)
            lat, secs, errors = run_phase(url, args.users, face_jobs, args.deadline, send=one_face)
            xs = lat["faces1"]
            print(
                f"single faces, GENLIB_FACE_BATCH={batch:>2}: {len(xs) / secs:.1f} faces/s, p50 "
                f"{1e3 * pct(xs, 0.5):.0f} ms, p95 {1e3 * pct(xs, 0.95):.0f} ms, {errors} errors"
            )
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
