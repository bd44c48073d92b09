"""App start-up and latency: seconds from `python app.py` to the first page, and p50/p95 of requests.

python bench/app.py                      # start-up (3 runs) + 50 face requests + 10 text requests
python bench/app.py --concurrency 8      # also N users at once (errors are counted)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port: int) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                if r.status == 200 and r.read():
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
        if time.perf_counter() - t0 > 60:
            proc.kill()
            raise RuntimeError("app did not start in 60 s")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--faces", type=int, default=50)
    p.add_argument("--texts", type=int, default=10)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    from gradio_client import Client

    starts = []
    for _ in range(args.runs):
        port = free_port()
        proc, s = start(port)
        starts.append(s)
        proc.terminate()
        proc.wait()
    print(f"start-up to first page: {', '.join(f'{s:.2f}' for s in starts)} s (median {statistics.median(starts):.2f})")

    port = free_port()
    proc, _ = start(port)
    try:
        c = Client(f"http://127.0.0.1:{port}/", verbose=False)
        c.predict("faces", 0, 1, 1.0, 64, "nearest", api_name="/faces")  # first call loads the model
        lat = []
        for i in range(args.faces):
            t = time.perf_counter()
            c.predict("faces", i, 1, 1.0, 64, "nearest", api_name="/faces")
            lat.append(time.perf_counter() - t)
        print(
            f"one face via gradio_client: p50 {1e3 * pct(lat, 0.5):.0f} ms, p95 {1e3 * pct(lat, 0.95):.0f} ms "
            f"({len(lat)} requests)"
        )

        def one(i: int) -> tuple[float, bool]:
            t = time.perf_counter()
            try:
                Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
                    "faces", 1000 + i, 4, 0.7, 128, "nearest", api_name="/faces"
                )
                return time.perf_counter() - t, True
            except Exception:
                return time.perf_counter() - t, False

        n = args.concurrency * 4
        with ThreadPoolExecutor(args.concurrency) as pool:
            res = list(pool.map(one, range(n)))
        ok = [t for t, good in res if good]
        print(
            f"{args.concurrency} concurrent users, {n} requests of 4 faces: {n - len(ok)} errors, "
            f"p50 {1e3 * pct(ok, 0.5):.0f} ms, p95 {1e3 * pct(ok, 0.95):.0f} ms"
        )
        if args.texts:
            try:
                lat = []
                for i in range(args.texts):
                    t = time.perf_counter()
                    c.predict("stories", "Once upon a time", False, 32, 0.8, 0.95, 50, i, api_name="/text")
                    lat.append(time.perf_counter() - t)
                print(
                    f"32-token story via gradio_client: p50 {1e3 * pct(lat, 0.5):.0f} ms, "
                    f"p95 {1e3 * pct(lat, 0.95):.0f} ms"
                )
            except Exception as e:  # the story model may not be trained yet
                print(f"text: {type(e).__name__}: {e}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
