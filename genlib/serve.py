"""Ray Serve deployments of genlib's three model families, and RayService: the app's service over Serve handles.

    ray start --head
    python -m genlib serve --replicas 2 --cpus-per-replica 1    # the deployments, on the running cluster
    python app.py --ray auto                                      # the same UI; models run on the cluster

Each replica runs genlib.service.LocalService (a model is loaded once per replica, in its ModelStore) and sends
back the files it wrote as bytes; RayService writes them on the app's side, so the same seeds give the same PNG
bytes as in-process. Face requests from many users are batched (@serve.batch) into one forward pass per model;
text streams piece by piece and stops when the stream is cancelled. A genlib error raised in a replica reaches
the caller as the same genlib exception; a call whose replica died is retried (Serve restarts the replica).
Needs `pip install -r requirements-ray.txt`; nothing else in genlib imports this module.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError

from genlib.errors import BadInput, GenlibError
from genlib.service import FaceRequest, LocalService

APPS = {"faces": "genlib-faces", "landscapes": "genlib-landscapes", "text": "genlib-text"}
RETRYABLE = (RayActorError, WorkerCrashedError, ReplicaUnavailableError, DeploymentUnavailableError)
FORWARDED_ENV = ("GENLIB_", "HF_")  # the deployer's policy and Hub settings, passed on to every replica
ROOT = Path(__file__).resolve().parent.parent


class ServeUnavailable(GenlibError):
    """The Ray cluster or the genlib Serve deployments cannot be reached (not started, or replicas keep dying)."""


@dataclass
class File:
    """One file a replica wrote: its name and bytes."""

    name: str
    data: bytes


def _packed(result: Any) -> Any:
    """Paths in a (nested) result -> File objects; their folders on this replica are removed."""
    dirs: set[Path] = set()

    def walk(x: Any) -> Any:
        if isinstance(x, Path):
            dirs.add(x.parent)
            return File(x.name, x.read_bytes())
        if isinstance(x, (list, tuple)):
            return type(x)(walk(v) for v in x)
        return x

    out = walk(result)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    return out


# ----- deployments (replica side) -----
class _Replica:
    """A LocalService in this replica with `threads` torch threads; results come back as File bytes."""

    def __init__(self, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.service = LocalService(out_dir=tempfile.mkdtemp(prefix="genlib-replica-"))

    def load(self, ref: str, task: str) -> str:
        return self.service.load(ref, task)


@serve.deployment(name="Faces")
class Faces(_Replica):
    """Faces GAN; concurrent requests are batched into one forward pass per model."""

    def __init__(self, threads: int = 1, max_batch: int = 16, batch_wait_s: float = 0.01) -> None:
        super().__init__(threads)
        self._batch.set_max_batch_size(max_batch)
        self._batch.set_batch_wait_timeout_s(batch_wait_s)
        self.sizes: deque[int] = deque(maxlen=1000)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _batch(self, requests: list[FaceRequest]) -> list[Any]:
        return await asyncio.to_thread(self._run_batch, requests)

    def _run_batch(self, requests: list[FaceRequest]) -> list[Any]:
        """Each request's Files, or its error: a bad request or model fails only the requests that asked for it."""
        self.sizes.append(len(requests))
        out: list[Any] = [self.service.check_face_request(r) for r in requests]
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            if out[i] is None:
                by_model.setdefault(r.model, []).append(i)
        for idxs in by_model.values():
            try:
                for i, paths in zip(idxs, self.service.faces([requests[i] for i in idxs]), strict=True):
                    out[i] = _packed(paths)
            except GenlibError as e:
                for i in idxs:
                    out[i] = e
        return out

    async def faces(self, request: FaceRequest) -> list[File]:
        out = await self._batch(request)
        if isinstance(out, Exception):
            raise out
        return out

    def face_interpolation(self, *args: Any) -> Any:
        return _packed(self.service.face_interpolation(*args))

    def batch_sizes(self) -> list[int]:
        """How many requests each recent batch of this replica held (for tests and benchmarks)."""
        return list(self.sizes)


@serve.deployment(name="Landscapes")
class Landscapes(_Replica):
    """Landscapes VAE: samples, photo reconstruction and variations, interpolation, directions.

    Not batched: on a CPU the VAE decodes one latent at a time anyway (bit-identical whatever the batch), so
    concurrency comes from replicas and concurrent requests per replica."""

    def landscapes(self, *args: Any, **kw: Any) -> Any:
        return _packed(self.service.landscapes(*args, **kw))

    def landscape_photo(self, *args: Any) -> Any:
        return _packed(self.service.landscape_photo(*args))

    def landscape_interpolation(self, *args: Any) -> Any:
        return _packed(self.service.landscape_interpolation(*args))

    def landscape_directions(self, ref: str) -> int:
        return self.service.landscape_directions(ref)


@serve.deployment(name="Text")
class Text(_Replica):
    """Text models; `stream` yields pieces as decoded and stops within one token when the stream is cancelled."""

    async def stream(self, ref: str, prompt: str, chat: bool, settings: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def work() -> None:
            try:
                for piece in self.service.text_stream(ref, prompt, chat=chat, stop=stop.is_set, **settings):
                    loop.call_soon_threadsafe(queue.put_nowait, ("piece", piece))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except Exception as e:  # noqa: BLE001 - re-raised in the replica's event loop below
                loop.call_soon_threadsafe(queue.put_nowait, ("error", e))

        worker = loop.run_in_executor(None, work)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    break
                if kind == "error":
                    raise value
                yield value
        finally:  # finished, failed or cancelled (the client stopped): end generation within one token
            stop.set()
            await asyncio.shield(worker)


def application(
    task: str,
    replicas: int = 1,
    cpus_per_replica: float = 1.0,
    max_batch: int = 16,
    gpus_per_replica: float = 0.0,
    batch_wait_s: float = 0.01,
) -> Any:
    """The Serve application of one model family ("faces", "landscapes" or "text"), bound and ready to run."""
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    actor = {
        "num_cpus": float(cpus_per_replica),
        "num_gpus": float(gpus_per_replica),
        "runtime_env": {"env_vars": {**env, "PYTHONPATH": pythonpath}},  # genlib importable where it is installed
    }
    threads = max(1, round(float(cpus_per_replica)))
    opts = dict(num_replicas=int(replicas), ray_actor_options=actor)
    if task == "faces":
        batch = int(max_batch)
        return Faces.options(**opts, max_ongoing_requests=max(8, 2 * batch)).bind(threads, batch, float(batch_wait_s))
    if task == "landscapes":
        return Landscapes.options(**opts, max_ongoing_requests=8).bind(threads)
    if task == "text":
        return Text.options(**opts, max_ongoing_requests=8).bind(threads)
    raise BadInput(f"task must be one of {', '.join(APPS)}, got {task!r}")


def app_builder(args: dict[str, Any]) -> Any:
    """For Serve config files (`serve deploy`, KubeRay serveConfigV2): import_path genlib.serve:app_builder,
    args {task: faces, replicas: 2, cpus_per_replica: 1, max_batch: 16}."""
    return application(**args)


def deploy(
    replicas: int = 1,
    cpus_per_replica: float = 1.0,
    max_batch: int = 16,
    gpus_per_replica: float = 0.0,
    batch_wait_s: float = 0.01,
    tasks: tuple[str, ...] = tuple(APPS),
) -> dict[str, Any]:
    """Run the deployments of `tasks` (one Serve application each, handles only, no HTTP) on the connected cluster."""
    serve.start(proxy_location="Disabled")
    apps = {t: application(t, replicas, cpus_per_replica, max_batch, gpus_per_replica, batch_wait_s) for t in tasks}
    targets = [serve.RunTarget(app, name=APPS[task], route_prefix=None) for task, app in apps.items()]
    return dict(zip(apps, serve.run_many(targets), strict=True))  # started together, ready when this returns


# ----- the app's side -----
def connect(address: str) -> None:
    """ray.init(address); a one-line ServeUnavailable at once if HOST:PORT does not answer (Ray would retry for
    minutes) or no cluster is found."""
    hostport = address.removeprefix("ray://")
    if address != "auto" and ":" in hostport:
        host, _, port = hostport.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as e:
            raise ServeUnavailable(
                f"no Ray cluster answers at {address} ({e}); start one with `ray start --head`"
            ) from e
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ServeUnavailable(f"no Ray cluster at {address!r} ({e}); start one with `ray start --head`") from e


class RayService:
    """The methods of genlib.service.LocalService that app.py calls, run by the Serve deployments.

    `address` is what ray.init takes: "auto" (a node of the cluster), "HOST:6379", or "ray://HOST:10001".
    Calls whose replica died are retried up to `retries` times; text streams resume after the pieces already
    sent (the same seed gives the same pieces)."""

    check_face_request = staticmethod(LocalService.check_face_request)

    def __init__(
        self, address: str | None = "auto", out_dir: str | Path | None = None, retries: int = 5, timeout_s: float = 300
    ) -> None:
        if not ray.is_initialized():
            connect(address or "auto")
        try:
            running = set(serve.status().applications)
        except Exception as e:  # noqa: BLE001 - Serve raises several types when it is not running
            running, why = set(), f" ({e})"
        else:
            why = ""
        self.handles = {task: serve.get_app_handle(name) for task, name in APPS.items() if name in running}
        if not self.handles:
            raise ServeUnavailable(
                f"the genlib deployments are not running on this cluster{why}; start them with `python -m genlib serve`"
            )
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="genlib-"))
        self.retries, self.timeout_s, self.retried = retries, timeout_s, 0
        self._counter = 0
        self._lock = threading.Lock()

    def _handle(self, task: str) -> Any:
        if task not in self.handles:
            raise ServeUnavailable(
                f"{APPS[task]} is not deployed on this cluster (`python -m genlib serve` runs all three)"
            )
        return self.handles[task]

    def _new_dir(self, kind: str) -> Path:
        with self._lock:
            self._counter += 1
            d = self.out_dir / f"{kind}-{int(time.time())}-{self._counter:06d}"
        d.mkdir(parents=True)
        return d

    def _unpacked(self, x: Any, d: Path) -> Any:
        """File objects in a (nested) result -> Paths written under `d`."""
        if isinstance(x, File):
            path = d / x.name
            path.write_bytes(x.data)
            return path
        if isinstance(x, (list, tuple)):
            return type(x)(self._unpacked(v, d) for v in x)
        return x

    def _backoff(self, task: str, attempt: int, e: Exception) -> None:
        if attempt >= self.retries:
            raise ServeUnavailable(f"{APPS[task]}: no replica answered after {attempt + 1} tries ({type(e).__name__})")
        self.retried += 1
        time.sleep(min(0.25 * 2**attempt, 4.0))

    def _call_many(self, task: str, method: str, calls: list[tuple[tuple, dict]]) -> list[Any]:
        """Send every call at once (so a replica can batch them), then wait; retried calls go one by one."""
        h = getattr(self._handle(task), method)
        responses = [h.remote(*a, **kw) for a, kw in calls]
        out = []
        for (a, kw), resp in zip(calls, responses, strict=True):
            for attempt in range(self.retries + 1):
                try:
                    out.append(resp.result(timeout_s=self.timeout_s))
                    break
                except RayTaskError as e:
                    if isinstance(e.cause, GenlibError):
                        raise e.cause from None
                    if not isinstance(e.cause, RETRYABLE):
                        raise
                    self._backoff(task, attempt, e)
                except RETRYABLE as e:
                    self._backoff(task, attempt, e)
                except TimeoutError as e:
                    raise ServeUnavailable(f"{APPS[task]}.{method}: no answer in {self.timeout_s:g} s") from e
                resp = h.remote(*a, **kw)
        return out

    def _call(self, task: str, method: str, *args: Any, **kw: Any) -> Any:
        return self._call_many(task, method, [(args, kw)])[0]

    # ----- the interface app.py uses (see LocalService for what each returns) -----
    def load(self, ref: str, task: str, tqdm_class: type | None = None) -> str:
        """Load a model on one replica (others load it on first use); its one-line description."""
        return self._call(task, "load", ref, task)

    def faces(self, requests: list[FaceRequest]) -> list[list[Path]]:
        results = self._call_many("faces", "faces", [((r,), {}) for r in requests])
        return [self._unpacked(files, self._new_dir("faces")) for files in results]

    def face_interpolation(self, *args: Any) -> tuple[Path, list[Path]]:
        return self._unpacked(self._call("faces", "face_interpolation", *args), self._new_dir("interp"))

    def landscapes(self, *args: Any, **kw: Any) -> list[Path]:
        return self._unpacked(self._call("landscapes", "landscapes", *args, **kw), self._new_dir("landscapes"))

    def landscape_photo(self, ref: str, upload: Any, *args: Any) -> tuple[Path, Path, list[Path]]:
        result = self._call("landscapes", "landscape_photo", ref, _upload_bytes(upload), *args)
        return self._unpacked(result, self._new_dir("photo"))

    def landscape_interpolation(self, ref: str, a: Any, b: Any, *args: Any) -> tuple[Path, list[Path]]:
        result = self._call("landscapes", "landscape_interpolation", ref, _upload_bytes(a), _upload_bytes(b), *args)
        return self._unpacked(result, self._new_dir("interp"))

    def landscape_directions(self, ref: str) -> int:
        return self._call("landscapes", "landscape_directions", ref)

    def text_stream(
        self, ref: str, prompt: str, *, chat: bool = False, stop: Callable[[], bool] | None = None, **settings: Any
    ) -> Iterator[str]:
        """Pieces as the replica decodes them; `stop()` returning True cancels the stream (the replica stops
        within one token). If the replica dies, the stream restarts elsewhere and skips the pieces already sent."""
        sent = 0
        for attempt in range(self.retries + 1):
            gen = self._handle("text").options(stream=True).stream.remote(ref, prompt, chat, settings)
            done = False
            try:
                for k, piece in enumerate(gen):
                    if stop is not None and stop():
                        return
                    if k >= sent:
                        sent += 1
                        yield piece
                done = True
                return
            except RayTaskError as e:
                done = True
                if isinstance(e.cause, GenlibError):
                    raise e.cause from None
                if not isinstance(e.cause, RETRYABLE):
                    raise
                self._backoff("text", attempt, e)
            except RETRYABLE as e:
                done = True
                self._backoff("text", attempt, e)
            finally:
                if not done:
                    gen.cancel()


def _upload_bytes(upload: Any) -> Any:
    """A file path on the app's machine -> its bytes (replicas may run elsewhere); seeds, bytes and None as they are."""
    if isinstance(upload, (str, os.PathLike)):
        from genlib.uploads import MAX_BYTES, _read

        try:
            return _read(upload, MAX_BYTES)
        except BadInput:  # missing or too big: the replica refuses the path with the in-process error, in order
            return str(upload)
    return upload


def main(address: str, replicas: int, cpus_per_replica: float, max_batch: int, gpus_per_replica: float = 0.0) -> None:
    """`python -m genlib serve`: start the deployments on the cluster at `address` and block until Ctrl-C."""
    if replicas < 1 or max_batch < 1 or cpus_per_replica <= 0 or gpus_per_replica < 0:
        raise BadInput("--replicas and --max-batch must be >= 1, --cpus-per-replica > 0, --gpus-per-replica >= 0")
    connect(address)
    need, have = len(APPS) * replicas * cpus_per_replica, ray.cluster_resources().get("CPU", 0)
    if need > have:
        raise BadInput(
            f"{len(APPS)} deployments x {replicas} replica(s) x {cpus_per_replica:g} CPU need {need:g} CPUs; the cluster "
            f"has {have:g} (lower --cpus-per-replica, or `ray start --head --num-cpus N`)"
        )
    t = time.time()
    deploy(replicas, cpus_per_replica, max_batch, gpus_per_replica)
    print(
        f"genlib: {', '.join(APPS.values())} running ({replicas} replica(s) each, {cpus_per_replica:g} CPU(s) per "
        f"replica, face batches up to {max_batch}) after {time.time() - t:.0f} s.\n"
        f"Start the app with:  python app.py --ray {address}    (or GENLIB_RAY_ADDRESS={address} python app.py)\n"
        "Ctrl-C removes the deployments.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for name in APPS.values():
            serve.delete(name)
        print("genlib: deployments removed", flush=True)
