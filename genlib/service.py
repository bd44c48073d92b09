"""What the app asks of models, in one small interface: load, generate faces (batched) and landscapes, stream text.

`app.py` calls only this class, so a deployment can point it somewhere else (e.g. Ray Serve) without
touching the UI. Every image it returns is a PNG path with provenance (see genlib.images).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlib.errors import BadInput
from genlib.images import check_upscale, provenance, save_gif, save_png, upscale

MAX_FACES_PER_REQUEST = 64
MAX_LANDSCAPES_PER_REQUEST = 64
MAX_FRAMES = 64


def whole(v: Any, name: str) -> int:
    """`v` as an int when it is one (JSON clients send 3.0 for 3); BadInput for 2.5, "3", None or True."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise BadInput(f"{name} must be a whole number, got {v!r}")


@dataclass
class FaceRequest:
    model: str
    seed: int
    n: int
    truncation: float
    size: int = 128
    method: str = "nearest"


class LocalService:
    """Runs models in this process, cached in a bounded ModelStore; writes outputs under `out_dir`."""

    def __init__(self, store: Any = None, out_dir: str | Path | None = None) -> None:
        self._store = store
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="genlib-"))
        self._counter = 0
        self._lock = threading.Lock()

    @property
    def store(self) -> Any:
        """The ModelStore, created on first use: importing torch waits until a model is needed."""
        if self._store is None:
            from genlib.store import ModelStore

            self._store = ModelStore()
        return self._store

    def _new_dir(self, kind: str) -> Path:
        with self._lock:
            self._counter += 1
            d = self.out_dir / f"{kind}-{int(time.time())}-{self._counter:06d}"
        d.mkdir(parents=True)
        return d

    def load(self, ref: str, task: str, tqdm_class: type | None = None) -> str:
        """Load (or find in memory) a model for a tab; returns a one-line description of it."""
        m = self.store.get(ref, task=task, tqdm_class=tqdm_class)
        src = m.source
        return (
            f"{src.repo_id} @ {src.revision} — {m.model_type}, {m.num_parameters() / 1e6:.1f}M parameters ({src.kind})"
        )

    @staticmethod
    def check_face_request(r: FaceRequest) -> BadInput | None:
        """The error this request would raise, or None; numbers that are whole floats count as integers."""
        from genlib.models.gan import check_generate_args

        try:
            for name in ("seed", "n", "size"):
                v = getattr(r, name)
                if isinstance(v, float) and v.is_integer():
                    setattr(r, name, int(v))
            if isinstance(r.n, int) and r.n > MAX_FACES_PER_REQUEST:
                raise BadInput(f"at most {MAX_FACES_PER_REQUEST} faces per request, got {r.n}")
            check_generate_args(r.n, r.seed, r.truncation)
            check_upscale(r.size, r.method)
        except BadInput as e:
            return e
        return None

    def faces(self, requests: list[FaceRequest]) -> list[list[Path]]:
        """Many users' face requests, one forward pass per model; returns each request's PNG paths."""
        for r in requests:
            if (err := self.check_face_request(r)) is not None:
                raise err
        results: list[list[Path]] = [[] for _ in requests]
        by_model: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_model.setdefault(r.model, []).append(i)
        for ref, idxs in by_model.items():
            model = self.store.get(ref, task="faces")
            seeds = [s for i in idxs for s in range(requests[i].seed, requests[i].seed + requests[i].n)]
            truncs = [float(requests[i].truncation) for i in idxs for _ in range(requests[i].n)]
            z = model.latents(seeds)
            images = model.images_from_latents(z, truncs)
            k = 0
            for i in idxs:
                r = requests[i]
                d = self._new_dir("faces")
                for j in range(r.n):
                    info = provenance(model, seed=r.seed + j, truncation=r.truncation)
                    results[i].append(
                        save_png(upscale(images[k], r.size, r.method), d / f"face-seed{r.seed + j}.png", info)
                    )
                    k += 1
        return results

    def face_interpolation(
        self,
        ref: str,
        seed_a: int,
        seed_b: int,
        frames: int,
        truncation: float,
        size: int = 128,
        method: str = "nearest",
    ) -> tuple[Path, list[Path]]:
        """A looping GIF and the PNG frames of a slerp walk between two seeds."""
        check_upscale(size, method)
        if not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
            raise BadInput(f"frames must be an integer in [2, {MAX_FRAMES}], got {frames!r}")
        model = self.store.get(ref, task="faces")
        images = [upscale(im, size, method) for im in model.interpolate(seed_a, seed_b, frames, truncation)]
        d = self._new_dir("interp")
        info = provenance(
            model, seed_a=seed_a, seed_b=seed_b, frames=frames, truncation=truncation, interpolation="slerp"
        )
        paths = [save_png(im, d / f"frame{i:03d}.png", info) for i, im in enumerate(images)]
        return save_gif(images, d / f"interp-{seed_a}-{seed_b}.gif", info=info), paths

    # ----- landscapes -----
    def landscapes(
        self,
        ref: str,
        seed: int,
        n: int,
        temperature: float,
        size: int = 128,
        method: str = "nearest",
        directions: list[float] | None = None,
    ) -> list[Path]:
        """`n` prior samples for seeds seed.. (optionally moved along the latent directions) as PNG paths."""
        seed, n, size = whole(seed, "seed"), whole(n, "n"), whole(size, "display size")
        if n > MAX_LANDSCAPES_PER_REQUEST:
            raise BadInput(f"at most {MAX_LANDSCAPES_PER_REQUEST} landscapes per request, got {n}")
        check_upscale(size, method)
        model = self.store.get(ref, task="landscapes")
        amounts = _trim(directions)
        images = model.generate(n, seed=seed, temperature=temperature, directions=amounts)
        d = self._new_dir("landscapes")
        extra = {"directions": ",".join(f"{a:g}" for a in amounts)} if amounts else {}
        return [
            save_png(
                upscale(im, size, method),
                d / f"landscape-seed{seed + i}.png",
                provenance(model, seed=seed + i, temperature=temperature, **extra),
            )
            for i, im in enumerate(images)
        ]

    def landscape_photo(
        self,
        ref: str,
        upload: Any,
        n: int = 4,
        strength: float = 0.5,
        seed: int = 0,
        size: int = 128,
        method: str = "nearest",
    ) -> tuple[Path, Path, list[Path]]:
        """An uploaded photo -> (what the model sees: its centre crop at the model's resolution, the
        reconstruction, `n` variations); the last two are AI-generated PNGs with provenance."""
        from genlib.uploads import open_upload

        n, seed, size = whole(n, "variations"), whole(seed, "seed"), whole(size, "display size")
        if not 0 <= n <= MAX_LANDSCAPES_PER_REQUEST:
            raise BadInput(f"variations must be in [0, {MAX_LANDSCAPES_PER_REQUEST}], got {n}")
        check_upscale(size, method)
        if upload is None:
            raise BadInput("upload a photo first")
        photo = open_upload(upload)
        model = self.store.get(ref, task="landscapes")
        d = self._new_dir("photo")
        seen = upscale(model.model_view(photo), size, method)
        seen_path = d / "model-input.png"
        seen.save(seen_path, format="PNG")  # the user's own pixels, cropped: not AI-generated, no AI label
        info = provenance(model, source="reconstruction of an uploaded photo")
        recon = save_png(upscale(model.reconstruct(photo), size, method), d / "reconstruction.png", info)
        variations = model.variations(photo, n, strength=strength, seed=seed) if n else []
        var_paths = [
            save_png(
                upscale(im, size, method),
                d / f"variation-seed{seed + i}.png",
                provenance(model, source="variation of an uploaded photo", seed=seed + i, strength=strength),
            )
            for i, im in enumerate(variations)
        ]
        return seen_path, recon, var_paths

    def landscape_interpolation(
        self,
        ref: str,
        a: Any,
        b: Any,
        frames: int,
        temperature: float = 1.0,
        size: int = 128,
        method: str = "nearest",
    ) -> tuple[Path, list[Path]]:
        """A looping GIF and PNG frames between two ends, each a seed (int) or an uploaded photo (path/bytes)."""
        from genlib.uploads import open_upload

        frames, size = whole(frames, "frames"), whole(size, "display size")
        check_upscale(size, method)
        if not 2 <= frames <= MAX_FRAMES:
            raise BadInput(f"frames must be an integer in [2, {MAX_FRAMES}], got {frames}")
        ends = [whole(e, "seed") if isinstance(e, (int, float)) else open_upload(e) for e in (a, b)]
        model = self.store.get(ref, task="landscapes")
        images = [upscale(im, size, method) for im in model.interpolate(ends[0], ends[1], frames, temperature)]
        names = [f"seed {e}" if isinstance(e, int) else "uploaded photo" for e in ends]
        info = provenance(model, start=names[0], end=names[1], frames=frames, temperature=temperature)
        d = self._new_dir("interp")
        paths = [save_png(im, d / f"frame{i:03d}.png", info) for i, im in enumerate(images)]
        return save_gif(images, d / "interpolation.gif", info=info), paths

    def landscape_directions(self, ref: str) -> int:
        """How many latent directions the model stores (the sliders it can use)."""
        return self.store.get(ref, task="landscapes").config.n_directions

    def text_stream(
        self, ref: str, prompt: str, *, chat: bool = False, stop: Callable[[], bool] | None = None, **settings: Any
    ) -> Iterator[str]:
        """Text pieces as they are decoded; `stop()` returning True ends generation within one token."""
        model = self.store.get(ref, task="text")
        if chat:
            prompt = model.apply_chat_template([{"role": "user", "content": prompt}])
        yield from model.stream(prompt, stop_event=stop, **settings)


def _trim(amounts: list[float] | None) -> list[float]:
    """Slider amounts without the trailing zeros (a model with fewer directions accepts them)."""
    out = [float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else a for a in amounts or []]
    while out and out[-1] == 0:
        out.pop()
    return out
