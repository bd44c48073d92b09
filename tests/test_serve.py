"""genlib on Ray Serve (genlib/serve.py): the same bytes, text and errors as in-process, batching, the app over
Serve, and a replica killed mid-request. One local Ray (2 CPUs, no dashboard) and one set of deployments are shared
by the module. The tests marked `ray` skip without Ray (`pip install -r requirements-ray.txt`); CI installs it."""

from __future__ import annotations

import io
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from genlib.errors import GenlibError
from genlib.service import FaceRequest, LocalService

ROOT = Path(__file__).resolve().parent.parent
NO_RAY = "import sys; sys.modules['ray'] = None; "  # Python refuses `import ray` after this


def run_without_ray(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_RAY + code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_app_ray_flag_without_ray_is_one_line_and_exit_2():
    r = run_without_ray("sys.argv = ['app.py', '--ray', 'auto']; import app; app.main()")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "pip install -r requirements-ray.txt" in r.stderr


def test_cli_serve_without_ray_is_one_line_and_exit_2():
    r = run_without_ray("from genlib.__main__ import main; sys.exit(main(['serve']))")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "requirements-ray.txt" in r.stderr


# ----- with Ray -----
@dataclass
class Models:
    gan: str
    vae: str
    text: str
    photo: Path
    not_image: Path


@pytest.fixture(scope="module")
def models(tiny, tiny_text_folder, tmp_path_factory) -> Models:
    from genlib.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    vae = VAE(VAEConfig(resolution=16, latent_dim=8, channels=8, max_channels=16, n_directions=3))
    g = torch.Generator().manual_seed(0)
    vae.set_prior(torch.randn(500, 8, generator=g) @ torch.randn(8, 8, generator=g))
    d = tmp_path_factory.mktemp("serve-models")
    vae.save_pretrained(d / "vae")
    photo = d / "wide.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo)
    (d / "notes.png").write_bytes(b"hello, not an image")
    return Models(str(tiny.folder), str(d / "vae"), str(tiny_text_folder), photo, d / "notes.png")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> LocalService:
    return LocalService(out_dir=tmp_path_factory.mktemp("local-out"))


@pytest.fixture(scope="module")
def rs(tmp_path_factory):
    """RayService over deployments on a fresh local Ray (1 replica each, 0.5 CPU, face batches wait 0.5 s)."""
    ray = pytest.importorskip("ray")
    from ray import serve

    from genlib.serve import RayService, deploy

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        _node_ip_address="127.0.0.1",
    )
    try:
        deploy(replicas=1, cpus_per_replica=0.5, max_batch=8, batch_wait_s=0.5)
        yield RayService(None, out_dir=tmp_path_factory.mktemp("ray-out"))
    finally:
        serve.shutdown()
        ray.shutdown()


def paths_in(result: Any) -> list[Path]:
    """Every Path in a (nested) service result, in order."""
    if isinstance(result, Path):
        return [result]
    return [p for x in result for p in paths_in(x)]


def same_files(a: list[Path], b: list[Path]) -> bool:
    return [p.name for p in a] == [p.name for p in b] and [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


@pytest.mark.ray
def test_faces_are_byte_identical_and_concurrent_requests_share_a_batch(rs, local, models):
    reqs = [FaceRequest(models.gan, 3, 2, 0.7, 64, "nearest"), FaceRequest(models.gan, 9, 1, 1.0, 32, "lanczos")]
    reqs += [FaceRequest("faces", 0, 2, 0.7, 64, "nearest")]  # the embedded model too
    for got, want in zip(rs.faces(reqs), local.faces(reqs), strict=True):
        assert same_files(got, want)
    assert Image.open(got[0]).text["ai_generated"] == "true"
    assert max(rs.handles["faces"].batch_sizes.remote().result()) >= 2  # sent together, run in one batch


@pytest.mark.ray
def test_concurrent_users_each_get_their_own_faces(rs, models):
    def ask(seed: int) -> str:
        return Image.open(rs.faces([FaceRequest(models.gan, seed, 1, 1.0, 16, "nearest")])[0][0]).text["seed"]

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(ask, range(4))) == ["0", "1", "2", "3"]


@pytest.mark.ray
def test_interpolations_and_landscapes_are_byte_identical(rs, local, models):
    calls = [
        ("face_interpolation", (models.gan, 0, 1, 4, 0.7, 32, "nearest"), {}),
        ("landscapes", (models.vae, 5, 3, 0.8, 32, "nearest"), {}),
        ("landscapes", (models.vae, 4, 1, 1.0, 32, "nearest"), {"directions": [0, 2.0, 0, 0]}),
        ("landscape_photo", (models.vae, str(models.photo), 2, 0.5, 7, 32, "nearest"), {}),
        ("landscape_interpolation", (models.vae, 3, str(models.photo), 4, 1.0, 32, "lanczos"), {}),
    ]
    for method, args, kw in calls:
        got, want = getattr(rs, method)(*args, **kw), getattr(local, method)(*args, **kw)
        assert same_files(paths_in(got), paths_in(want)), method
    assert rs.landscape_directions(models.vae) == local.landscape_directions(models.vae) == 3


@pytest.mark.ray
@pytest.mark.parametrize(
    "settings",
    [dict(max_new_tokens=20, temperature=0.8, top_p=0.95, top_k=50, seed=3), dict(max_new_tokens=12, temperature=0)],
)
@pytest.mark.parametrize("chat", [False, True])
def test_text_streams_the_same_pieces(rs, local, models, settings, chat):
    got = list(rs.text_stream(models.text, "Once upon a time", chat=chat, **settings))
    want = list(local.text_stream(models.text, "Once upon a time", chat=chat, **settings))
    assert got == want and len(got) > 1
    assert rs.load(models.text, "text") == local.load(models.text, "text")


@pytest.mark.ray
def test_stop_ends_the_stream(rs, models):
    pieces: list[str] = []
    full = list(rs.text_stream(models.text, "Once", max_new_tokens=40, temperature=0.8, seed=1))
    for p in rs.text_stream(models.text, "Once", stop=lambda: len(pieces) >= 3, max_new_tokens=40, seed=1):
        pieces.append(p)
    assert pieces == full[:3]


def _bad_calls(m: Models) -> dict[str, Any]:
    return {
        "truncation": lambda s: s.faces([FaceRequest(m.gan, 0, 1, 2.0)]),
        "too many faces": lambda s: s.faces([FaceRequest(m.gan, 0, 65, 1.0)]),
        "no such model": lambda s: s.load("/definitely/not/here", "faces"),
        "wrong task": lambda s: s.load(m.gan, "text"),
        "faces model for text": lambda s: list(s.text_stream(m.gan, "hi", max_new_tokens=2)),
        "bad sampling": lambda s: list(s.text_stream(m.text, "hi", max_new_tokens=2, temperature=-1.0)),
        "frames": lambda s: s.face_interpolation(m.gan, 0, 1, 1, 0.7),
        "too many landscapes": lambda s: s.landscapes(m.vae, 0, 65, 1.0),
        "fifth direction": lambda s: s.landscapes(m.vae, 0, 1, 1.0, directions=[0, 0, 0, 0, 1.0]),
        "no photo": lambda s: s.landscape_photo(m.vae, None),
        "missing photo": lambda s: s.landscape_photo(m.vae, "/no/such/photo.png"),
        "not an image": lambda s: s.landscape_photo(m.vae, str(m.not_image)),
        "photo end not an image": lambda s: s.landscape_interpolation(m.vae, 0, str(m.not_image), 4),
    }


@pytest.mark.ray
def test_bad_inputs_get_the_same_one_line_errors(rs, local, models):
    def error(call, service) -> tuple[str, str]:  # noqa: ANN001
        with pytest.raises(GenlibError) as e:
            call(service)
        return type(e.value).__name__, re.sub(r"0x[0-9a-f]+", "0x…", str(e.value))

    for name, call in _bad_calls(models).items():
        got, want = error(call, rs), error(call, local)
        assert got == want, name
        assert "\n" not in got[1] and "Ray" not in got[1], name


@pytest.mark.ray
def test_the_app_over_ray_serves_all_three_tabs(rs, local, models):
    from gradio_client import Client, handle_file

    import app

    saved, app.service = app.service, rs
    try:
        demo = app.build()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        c = Client(f"http://127.0.0.1:{port}/", verbose=False)
        faces = c.predict(models.gan, 4, 2, 0.7, 64, "nearest", api_name="/faces")
        want = local.faces([FaceRequest(models.gan, 4, 2, 0.7, 64, "nearest")])[0]
        assert [
            Path(f["image"] if isinstance(f["image"], str) else f["image"]["path"]).read_bytes() for f in faces
        ] == [p.read_bytes() for p in want]
        seen, recon, _ = c.predict(
            models.vae, handle_file(str(models.photo)), 1, 0.5, 0, 64, "nearest", api_name="/landscapes_photo"
        )
        assert Image.open(recon if isinstance(recon, str) else recon["path"]).text["ai_generated"] == "true"
        text, _ = c.predict(models.text, "Once upon a time", False, 10, 0.8, 0.95, 50, 2, api_name="/text")
        settings = dict(max_new_tokens=10, temperature=0.8, top_p=0.95, top_k=50, seed=2)
        assert text == "".join(local.text_stream(models.text, "Once upon a time", **settings))
        with pytest.raises(Exception, match="ModelNotFound"):
            c.predict("/definitely/not/here", 0, 1, 1.0, 64, "nearest", api_name="/faces")
        demo.close()
    finally:
        app.service = saved


@pytest.mark.ray
def test_a_replica_killed_mid_request_is_retried_and_comes_back(rs, local, models):
    """Kill the faces replica while a request waits in its batch queue: the call is retried and answered, and
    Serve starts a new replica (the deployment is healthy again with one running replica)."""
    import ray
    from ray import serve

    def replica() -> Any:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
        return ray.get_actor(next(n for n in names if n.startswith("SERVE_REPLICA::genlib-faces#")), namespace="serve")

    req = FaceRequest(models.gan, 21, 2, 0.7, 32, "nearest")
    out: dict[str, Any] = {}
    before = rs.retried
    t = threading.Thread(target=lambda: out.update(paths=rs.faces([req])[0]))
    t.start()
    time.sleep(0.25)  # in the replica's 0.5 s batch window
    ray.kill(replica(), no_restart=True)
    t.join(120)
    assert same_files(out["paths"], local.faces([req])[0])
    assert rs.retried > before
    deadline = time.time() + 90
    while time.time() < deadline:
        d = serve.status().applications["genlib-faces"].deployments["Faces"]
        if d.status == "HEALTHY" and d.replica_states.get("RUNNING") == 1:
            break
        time.sleep(0.5)
    assert d.status == "HEALTHY" and d.replica_states.get("RUNNING") == 1
    assert same_files(rs.faces([req])[0], out["paths"])


def test_photo_bytes_helper_keeps_paths_it_cannot_read(tmp_path):
    pytest.importorskip("ray")
    from genlib.serve import _upload_bytes

    p = tmp_path / "a.png"
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    p.write_bytes(buf.getvalue())
    assert _upload_bytes(str(p)) == buf.getvalue()
    assert _upload_bytes("/no/such/file.png") == "/no/such/file.png"  # the replica refuses it as in-process
    assert _upload_bytes(3) == 3 and _upload_bytes(None) is None


def test_serve_config_builder_takes_string_args():
    pytest.importorskip("ray")
    from genlib.errors import BadInput
    from genlib.serve import app_builder

    d = app_builder({"task": "faces", "replicas": "2", "cpus_per_replica": "1", "max_batch": "8"})._bound_deployment
    assert (d.name, d.num_replicas, d.ray_actor_options["num_cpus"], d.init_args) == ("Faces", 2, 1.0, (1, 8, 0.01))
    with pytest.raises(BadInput, match="task must be one of faces, landscapes, text"):
        app_builder({"task": "music"})
