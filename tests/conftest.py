"""Shared fixtures: a local Hub (tests/hubserver.py), a tiny real model, and a runner for genlib calls.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_HUB_*_TIMEOUT and HF_HUB_DISABLE_XET when
it is imported, so every genlib call that touches the Hub runs in a fresh process whose environment is
set before genlib (and huggingface_hub) are imported. To keep that cheap, a "zygote" process imports the
environment-independent heavy modules (torch, safetensors, PIL) once, then forks one child per call; the
child sets the environment, imports genlib, runs the call and reports the result, or the genlib error
class and message, as JSON. The zygote kills a child that runs past its time limit, so a hang shows up as
a failed test (`Outcome.timed_out`), never as a stuck test run.

The pytest process itself never imports huggingface_hub's constants with test values; it only uses genlib
to build the tiny model and never talks to the Hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from hubserver import HubServer  # noqa: E402

CLIENT_TIMEOUT_S = 2  # HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT in the children
JOB_TIMEOUT_S = 90.0  # a child still running after this is killed and reported as hung
_ENV_PREFIXES = ("HF_", "HUGGINGFACE_", "GENLIB_", "TRANSFORMERS_")


# --------------------------------------------------------------------------------------------------
# Child side: the calls that run in a forked process with the test's environment.
# --------------------------------------------------------------------------------------------------
def tensor_digest(t: Any) -> str:
    """sha256 of a tensor's float32 bytes: what 'identical tensors' compares."""
    import torch

    return hashlib.sha256(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def _source(src: Any) -> dict[str, str]:
    return {"ref": src.ref, "kind": src.kind, "path": str(src.path), "repo_id": src.repo_id, "revision": src.revision}


def _job_load(ref: str, **kwargs: Any) -> dict[str, Any]:
    import genlib

    model = genlib.load(ref, **kwargs)
    return {
        "class": type(model).__name__,
        "source": _source(model.source),
        "files": sorted(p.name for p in Path(model.source.path).iterdir()),
        "tensors": {k: tensor_digest(v) for k, v in model.state_dict().items()},
    }


def _job_resolve(ref: str, embedded: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
    """genlib.hub.resolve; `embedded` adds embedded names (name -> folder under weights/) first."""
    from genlib import hub

    hub.EMBEDDED.update(embedded or {})
    src = hub.resolve(ref, **kwargs)
    return {"source": _source(src), "files": sorted(p.name for p in Path(src.path).iterdir())}


def _job_push(folder: str, repo_id: str, **kwargs: Any) -> dict[str, Any]:
    """Load a saved folder with genlib and push it with the model's own push_to_hub (ModelHubMixin)."""
    import genlib

    model = genlib.load(folder, device="cpu")
    commit = model.push_to_hub(repo_id, **kwargs)
    return {"commit": getattr(commit, "oid", None), "url": str(commit)}


JOBS = {"load": _job_load, "resolve": _job_resolve, "push": _job_push}


def _run_child(job: dict[str, Any]) -> None:
    """In the forked child: set the environment, run one job, write its outcome as JSON."""
    import resource
    import traceback

    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.clear()
    os.environ.update(job["env"])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    out: dict[str, Any]
    try:
        out = {"ok": True, "value": JOBS[job["func"]](*job["args"], **job["kwargs"])}
    except BaseException as e:  # report everything, the test decides
        genlib_errors = sys.modules.get("genlib.errors")
        is_genlib = genlib_errors is not None and isinstance(e, genlib_errors.GenlibError)
        out = {
            "ok": False,
            "error": type(e).__name__,
            "error_module": type(e).__module__,
            "genlib_error": is_genlib,
            "message": str(e),
            "traceback": traceback.format_exc(),
        }
    out["seconds"] = time.monotonic() - t0
    out["maxrss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    tmp = job["result"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f)
    os.replace(tmp, job["result"])


def zygote_main() -> None:
    """Import the heavy, environment-independent modules once; then fork one child per job line on stdin."""
    import importlib

    import torch

    # Modules that read no HF_* variable: imported once here rather than in every child.
    for name in (
        "numpy",
        "PIL.Image",
        "safetensors.torch",
        "httpx2",
        "httpx",
        "anyio",
        "h11",
        "filelock",
        "packaging.version",
        "tqdm.auto",
        "yaml",
        "rich.console",
        "click",
        "tokenizers",
    ):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    torch.set_num_threads(1)
    assert not any(m.startswith(("huggingface_hub", "genlib")) for m in sys.modules), "zygote must stay env-free"
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run_child(job)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + job["timeout"]
        timed_out = False
        while True:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
        print(json.dumps({"timed_out": timed_out}), flush=True)


# --------------------------------------------------------------------------------------------------
# pytest side
# --------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What a genlib call in a child process did: a value, or the exception it raised."""

    ok: bool
    value: Any = None
    error: str | None = None  # exception class name
    error_module: str | None = None
    genlib_error: bool = False
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    maxrss_growth_kb: int = 0
    timed_out: bool = False
    log: str = ""

    def __repr__(self) -> str:
        if self.timed_out:
            return f"Outcome(HUNG, killed after the job limit; log tail:\n{self.log[-3000:]})"
        if self.ok:
            return f"Outcome(ok in {self.seconds:.1f}s: {self.value!r})"
        return (
            f"Outcome({self.error_module}.{self.error} in {self.seconds:.1f}s: {self.message}\n"
            f"{self.traceback[-4000:]}\nlog tail:\n{self.log[-2000:]})"
        )

    def raised(self, error: str, *fragments: str) -> bool:
        """The call raised genlib's `error` and its message contains every fragment (case-insensitive)."""
        msg = self.message.lower()
        return not self.ok and self.genlib_error and self.error == error and all(f.lower() in msg for f in fragments)


class Zygote:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(TESTS_DIR), env.get("PYTHONPATH", "")])
        # One thread each (no BLAS/OpenMP pool is running when the zygote forks); the CPUs are shared.
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import conftest; conftest.zygote_main()"],
            cwd=str(TESTS_DIR),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not ready:
            raise RuntimeError("the genlib zygote process did not start")

    def run(self, func: str, env: dict[str, str], *args: Any, timeout: float = JOB_TIMEOUT_S, **kwargs: Any) -> Outcome:
        self.count += 1
        result = self.workdir / f"job{self.count}.json"
        log = self.workdir / f"job{self.count}.log"
        job = {
            "func": func,
            "args": list(args),
            "kwargs": kwargs,
            "env": env,
            "timeout": timeout,
            "result": str(result),
            "log": str(log),
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the genlib zygote process died")
        log_text = log.read_text(errors="replace") if log.exists() else ""
        if json.loads(reply)["timed_out"]:
            return Outcome(ok=False, timed_out=True, error="Hung", seconds=timeout, log=log_text)
        if not result.exists():
            return Outcome(ok=False, error="ChildCrashed", message="no result written", log=log_text)
        return Outcome(**json.loads(result.read_text()), log=log_text)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Genlib:
    """genlib, called in a child process with `env` (the test's huggingface_hub environment)."""

    zygote: Zygote = field(repr=False)
    env: dict[str, str] = field(repr=False)
    hf_home: Path

    @property
    def cache(self) -> Path:
        return self.hf_home / "hub"

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {**self.env, **(extra or {})}

    def load(
        self, ref: str, *, env: dict[str, str] | None = None, timeout: float = JOB_TIMEOUT_S, **kw: Any
    ) -> Outcome:
        return self.zygote.run("load", self._env(env), ref, timeout=timeout, **kw)

    def resolve(
        self, ref: str, *, env: dict[str, str] | None = None, timeout: float = JOB_TIMEOUT_S, **kw: Any
    ) -> Outcome:
        return self.zygote.run("resolve", self._env(env), ref, timeout=timeout, **kw)

    def push(self, folder: Path, repo_id: str, *, env: dict[str, str] | None = None, **kw: Any) -> Outcome:
        return self.zygote.run("push", self._env(env), str(folder), repo_id, **kw)

    def cached_files(self) -> list[str]:
        """Every file and link under the hub cache, relative to it."""
        if not self.cache.exists():
            return []
        return sorted(p.relative_to(self.cache).as_posix() for p in self.cache.rglob("*") if not p.is_dir())


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory):
    z = Zygote(tmp_path_factory.mktemp("genlib-jobs"))
    yield z
    z.close()


@pytest.fixture
def hub():
    """A fresh local Hub on 127.0.0.1 and a free port, stopped after the test."""
    server = HubServer().start()
    yield server
    server.stop()


@pytest.fixture
def gl(zygote: Zygote, hub: HubServer, tmp_path: Path) -> Genlib:
    """genlib pointed at the local hub, with an empty HF_HOME of its own and short client timeouts."""
    hf_home = tmp_path / "hf_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_ETAG_TIMEOUT=str(CLIENT_TIMEOUT_S),
        HF_HUB_DOWNLOAD_TIMEOUT=str(CLIENT_TIMEOUT_S),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_SYMLINKS_WARNING="1",
        HF_HUB_OFFLINE="0",
        NO_PROXY="127.0.0.1,localhost",
    )
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(k, None)
    return Genlib(zygote, env, hf_home)


# --------------------------------------------------------------------------------------------------
# A tiny real model and broken variants of it
# --------------------------------------------------------------------------------------------------
@dataclass
class TinyModel:
    """A saved faces GAN generator (resolution 16): its folder, files and tensor digests."""

    folder: Path
    files: dict[str, bytes] = field(default_factory=dict, repr=False)
    digests: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def save(cls, folder: Path, seed: int) -> TinyModel:
        import torch
        from safetensors.torch import load_file

        from genlib.models.gan import GANConfig, Generator

        torch.manual_seed(seed)
        Generator(GANConfig(resolution=16, z_dim=8, w_dim=8, channels=8)).save_pretrained(folder)
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        digests = {k: tensor_digest(v) for k, v in load_file(str(folder / "model.safetensors")).items()}
        return cls(folder, files, digests)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.files["config.json"])

    def tensors(self) -> dict[str, Any]:
        from safetensors.torch import load

        return load(self.files["model.safetensors"])

    def header(self) -> tuple[dict[str, Any], bytes]:
        """(header dict, data bytes) of model.safetensors."""
        raw = self.files["model.safetensors"]
        (n,) = struct.unpack("<Q", raw[:8])
        return json.loads(raw[8 : 8 + n]), raw[8 + n :]

    @staticmethod
    def safetensors_bytes(header: dict[str, Any], data: bytes) -> bytes:
        """A safetensors file built by hand: 8-byte little-endian header length, JSON header, data."""
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + data

    def with_files(self, drop: tuple[str, ...] = (), **files: bytes) -> dict[str, bytes]:
        """The model's files, minus `drop`, with `files` added or replaced (keys use _ for .: model_safetensors)."""
        out = {k: v for k, v in self.files.items() if k not in drop}
        out.update({k.replace("_safetensors", ".safetensors").replace("_json", ".json"): v for k, v in files.items()})
        return out

    def with_config(self, **changes: Any) -> dict[str, bytes]:
        cfg = {**self.config, **changes}
        return self.with_files(config_json=json.dumps(cfg, indent=2).encode())

    def with_tensors(self, tensors: dict[str, Any]) -> dict[str, bytes]:
        from safetensors.torch import save

        return self.with_files(model_safetensors=save(tensors, metadata={"format": "pt"}))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return TinyModel.save(tmp_path_factory.mktemp("tiny-gan"), seed=0)


@pytest.fixture(scope="session")
def tiny2(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """Same architecture as `tiny`, other weights."""
    return TinyModel.save(tmp_path_factory.mktemp("tiny-gan-2"), seed=1)


# ----- a tiny real text model (random llama + byte-level BPE trained here), shared by text and app tests -----
EOT = "<|endoftext|>"
TINY_TEXT = (
    "Once upon a time, a little cat named Tom lived in a café near the sea. Tom liked to nap in the sun. "
    'One day he saw a big red ball 🎈 and said: "Naïve me, I want to play!" The end. '
) * 10
TINY_CHAT = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant:{% endif %}"
)


def byte_level_tokenizer(vocab: int = 320):  # noqa: ANN201
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[EOT],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TINY_TEXT], trainer=trainer)
    return tok


@pytest.fixture(scope="session")
def tiny_text_folder(tmp_path_factory) -> Path:
    """A tiny random llama with a tokenizer and chat template, written by genlib's save_pretrained.

    It has no EOS token, so every call generates exactly max_new_tokens (up to the context)."""
    import torch

    from genlib.models.transformer import Transformer, TransformerConfig
    from genlib.tokenizer import Tokenizer

    hf_tok = byte_level_tokenizer()
    cfg = TransformerConfig(
        arch="llama",
        vocab_size=hf_tok.get_vocab_size(),
        context=96,
        d_model=48,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        head_dim=12,
        d_ff=96,
        tie_embeddings=False,
    )
    torch.manual_seed(0)
    model = Transformer(cfg)
    with torch.no_grad():  # spread the logits so samples vary and greedy is decisive
        model.lm_head.weight.mul_(20)
    model.tokenizer = Tokenizer(hf_tok, {"bos_token": EOT}, chat_template=TINY_CHAT)
    out = tmp_path_factory.mktemp("tiny-text")
    model.save_pretrained(out)
    return out
