"""Hub references through the real huggingface_hub code path, against the local hub of tests/hubserver.py.

Every genlib call runs in a child process with HF_ENDPOINT pointing at the local hub, its own HF_HOME
and short client timeouts (see conftest.py); each test ends in a correct load or in the right genlib error.
"""

from __future__ import annotations

import hashlib

import pytest
from hubserver import git_blob_oid

REPO = "owner/faces"
MODEL_FILES = ["README.md", "config.json", "model.safetensors"]


def weights_blob(model) -> str:
    """The cache blob path (named by the Hub's ETag, i.e. the sha256) of a model's model.safetensors."""
    return "models--owner--faces/blobs/" + hashlib.sha256(model.files["model.safetensors"]).hexdigest()


def assert_loads(outcome, model, revision: str | None = None) -> None:
    assert outcome.ok, outcome
    assert outcome.value["class"] == "Generator"
    assert outcome.value["tensors"] == model.digests, "loaded tensors differ from the saved ones"
    if revision is not None:
        assert outcome.value["source"]["revision"] == revision


# ----- downloads and the cache -----
def test_first_download_loads_the_model_and_reports_the_commit(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.folder)  # the save_pretrained folder, placed as a repo
    r = gl.load(REPO)
    assert_loads(r, tiny, revision=sha)
    src = r.value["source"]
    assert (src["kind"], src["repo_id"], src["ref"]) == ("hub", REPO, REPO)
    assert r.value["files"] == MODEL_FILES
    assert src["path"].startswith(str(gl.cache)), "the files must live in huggingface_hub's cache"
    assert len(hub.downloads("model.safetensors")) == 1
    assert weights_blob(tiny) in gl.cached_files()


def test_second_load_comes_from_the_cache_with_the_server_stopped(hub, gl, tiny, tiny2):
    sha = hub.add_repo(REPO, tiny.files)
    assert_loads(gl.load(REPO), tiny, revision=sha)
    hub.stop()
    r = gl.load(REPO)
    assert_loads(r, tiny, revision=sha)
    assert r.seconds < 15
    hub.start()  # back on the same port, with a new commit
    new = hub.commit(REPO, tiny2.files, replace=True)
    assert_loads(gl.load(REPO), tiny2, revision=new)


def test_offline_mode_loads_cached_models_without_a_request(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    assert_loads(gl.load(REPO), tiny, revision=sha)
    hub.requests.clear()
    for ref in (REPO, f"{REPO}@main", f"{REPO}@{sha}"):
        assert_loads(gl.load(ref, env={"HF_HUB_OFFLINE": "1"}), tiny, revision=sha)
    assert hub.requests == [], "offline mode must not contact the Hub"


def test_offline_mode_without_cache_is_hub_unavailable(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    r = gl.load(REPO, env={"HF_HUB_OFFLINE": "1"})
    assert r.raised("HubUnavailable", REPO, "offline"), r
    assert hub.requests == []


def test_local_files_only_uses_the_cache_alone(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    r = gl.load(REPO, local_files_only=True)
    assert r.raised("HubUnavailable", REPO, "local_files_only"), r
    assert hub.requests == []
    assert_loads(gl.load(REPO), tiny, revision=sha)
    hub.requests.clear()
    assert_loads(gl.load(REPO, local_files_only=True), tiny, revision=sha)
    assert hub.requests == []


def test_stopped_server_without_cache_is_hub_unavailable(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    hub.stop()
    r = gl.load(REPO)
    assert r.raised("HubUnavailable", REPO), r
    assert r.seconds < 15


# ----- revisions -----
def test_revision_pinned_by_sha_and_by_branch(hub, gl, tiny, tiny2):
    old = hub.add_repo(REPO, tiny.files)
    new = hub.commit(REPO, tiny2.files, replace=True)  # main moves on, with other weights
    stable = hub.commit(REPO, tiny.files, branch="stable", replace=True)
    assert len({old, new, stable}) == 3
    assert_loads(gl.load(f"{REPO}@{old}"), tiny, revision=old)
    assert_loads(gl.load(REPO), tiny2, revision=new)
    assert_loads(gl.load(f"{REPO}@main"), tiny2, revision=new)
    assert_loads(gl.load(f"{REPO}@stable"), tiny, revision=stable)


def test_a_moved_branch_is_followed_online_and_remembered_offline(hub, gl, tiny, tiny2):
    first = hub.add_repo(REPO, tiny.files)
    assert_loads(gl.load(REPO), tiny, revision=first)
    second = hub.commit(REPO, tiny2.files, replace=True)
    assert_loads(gl.load(REPO), tiny2, revision=second)
    assert_loads(gl.load(REPO, env={"HF_HUB_OFFLINE": "1"}), tiny2, revision=second)
    assert_loads(gl.load(f"{REPO}@{first}", env={"HF_HUB_OFFLINE": "1"}), tiny, revision=first)


def test_unknown_repo_is_model_not_found(hub, gl):
    r = gl.load("owner/no-such-model")
    assert r.raised("ModelNotFound", "owner/no-such-model"), r


@pytest.mark.parametrize("rev", ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"])
def test_unknown_revision_is_model_not_found(hub, gl, tiny, rev):
    hub.add_repo(REPO, tiny.files)
    r = gl.load(f"{REPO}@{rev}")
    assert r.raised("ModelNotFound", REPO, "revision"), r


def test_repo_without_model_safetensors_is_model_not_found(hub, gl, tiny):
    hub.add_repo(REPO, tiny.with_files(drop=("model.safetensors",)))
    r = gl.load(REPO)
    assert r.raised("ModelNotFound", REPO, "model.safetensors"), r


def test_invalid_reference_is_model_not_found_without_a_request(hub, gl):
    r = gl.load("not a model ref!")
    assert r.raised("ModelNotFound", "owner/name"), r
    assert hub.requests == []


# ----- access -----
def test_gated_repo_is_gated_model(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files, gated=True, tokens={"hf_granted"})
    r = gl.load(REPO)
    assert r.raised("GatedModel", REPO, "HF_TOKEN"), r
    r = gl.load(REPO, env={"HF_TOKEN": "hf_not_granted"})
    assert r.raised("GatedModel", REPO), r
    assert_loads(gl.load(REPO, env={"HF_TOKEN": "hf_granted"}), tiny)


def test_private_repo_looks_missing_without_a_token(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files, private=True, tokens={"hf_granted"})
    r = gl.load(REPO)
    assert r.raised("ModelNotFound", REPO, "HF_TOKEN"), r
    assert_loads(gl.load(REPO, token="hf_granted"), tiny)


# ----- a misbehaving server -----
def test_server_error_is_hub_unavailable(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    hub.misbehave("error500")
    r = gl.load(REPO)
    assert r.raised("HubUnavailable", REPO, "500"), r


def test_server_error_falls_back_to_the_cache(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    assert_loads(gl.load(REPO), tiny, revision=sha)
    hub.misbehave("error500")
    assert_loads(gl.load(REPO), tiny, revision=sha)


def test_dropped_connection_is_an_error_and_never_leaves_a_half_file(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    hub.misbehave("drop")  # every download of model.safetensors is cut in the middle
    r = gl.load(REPO)
    assert r.raised("HubUnavailable", REPO), r
    cached = gl.cached_files()
    assert not any(f.startswith(weights_blob(tiny)) or f.endswith(".incomplete") for f in cached), cached
    assert f"models--owner--faces/snapshots/{sha}/model.safetensors" not in cached
    r = gl.load(REPO, env={"HF_HUB_OFFLINE": "1"})  # the partial snapshot is not usable offline
    assert r.raised("HubUnavailable", REPO), r
    hub.heal()
    assert_loads(gl.load(REPO), tiny, revision=sha)


def test_one_dropped_connection_is_resumed(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    hub.misbehave("drop", times=1)
    assert_loads(gl.load(REPO), tiny, revision=sha)
    assert len(hub.downloads("model.safetensors")) == 2, "expected one cut download and one resumed download"


def test_truncated_download_is_refused_and_not_cached(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    hub.misbehave("truncate")
    r = gl.load(REPO)
    assert r.raised("HubUnavailable", REPO), r
    assert not any(f.startswith(weights_blob(tiny)) for f in gl.cached_files())
    hub.heal()
    assert_loads(gl.load(REPO), tiny, revision=sha)


def test_corrupted_download_is_detected_and_evicted_from_the_cache(hub, gl, tiny):
    sha = hub.add_repo(REPO, tiny.files)
    hub.misbehave("corrupt")  # same size, other bytes: only a checksum can tell
    r = gl.load(REPO)
    assert r.raised("BadWeights", "corrupt", "model.safetensors"), r
    assert not any(f.startswith(weights_blob(tiny)) for f in gl.cached_files())
    hub.heal()
    assert_loads(gl.load(REPO), tiny, revision=sha)


def test_slow_server_times_out_instead_of_hanging(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    hub.misbehave("slow", delay=60)  # every answer comes after far longer than the 2 s client timeout
    r = gl.load(REPO, timeout=45)
    assert not r.timed_out, "genlib hung on a slow Hub"
    assert r.raised("HubUnavailable", REPO, "in time"), r
    assert r.seconds < 20


# ----- what is downloaded -----
def test_only_allowed_files_are_downloaded(hub, gl, tiny):
    extra = {
        "evil.py": b"import os; os.system('echo pwned')\n",
        "pytorch_model.bin": b"PK\x03\x04 not a real pickle",
        "tf_model.h5": b"\x89HDF\r\n",
        "sub/evil.py": b"print('pwned')\n",
    }
    hub.add_repo(REPO, {**tiny.files, **extra})
    r = gl.load(REPO)
    assert_loads(r, tiny)
    assert r.value["files"] == MODEL_FILES
    requested = {p.rsplit("/", 1)[-1] for m, p in hub.requests if "/resolve/" in p}
    assert requested == set(MODEL_FILES), requested


# ----- embedded names -----
def test_embedded_name_without_weights_is_model_not_found(hub, gl):
    r = gl.resolve("future", embedded={"future": "not-trained-yet"})
    assert r.raised("ModelNotFound", "future", "not been trained"), r
    assert hub.requests == []


@pytest.mark.parametrize("name", ["faces", "landscapes", "stories"])
def test_embedded_names_resolve_to_weights_or_say_they_are_missing(hub, gl, name):
    from genlib.hub import EMBEDDED, WEIGHTS_DIR

    r = gl.resolve(name)
    if (WEIGHTS_DIR / EMBEDDED[name] / "model.safetensors").is_file():
        assert r.ok, r
        assert r.value["source"]["kind"] == "embedded"
        assert r.value["source"]["revision"].startswith("sha256:")
    else:
        assert r.raised("ModelNotFound", name), r
    assert hub.requests == [], "embedded models never touch the Hub"


# ----- round trips -----
def test_push_to_hub_then_load_gives_identical_tensors(hub, gl, tiny):
    pushed = gl.push(tiny.folder, "owner/pushed", token="hf_writer")
    assert pushed.ok, pushed
    files = hub.files("owner/pushed")
    assert {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert git_blob_oid(files["model.safetensors"]) == git_blob_oid(tiny.files["model.safetensors"])
    r = gl.load("owner/pushed")
    assert_loads(r, tiny, revision=pushed.value["commit"])


# ----- deployment size limit (GENLIB_MAX_MODEL_BYTES) -----
def test_size_limit_refuses_from_the_header_before_downloading(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    size = sum(e - s for s, e in (t["data_offsets"] for k, t in tiny.header()[0].items() if k != "__metadata__"))
    r = gl.load(REPO, env={"GENLIB_MAX_MODEL_BYTES": str(size - 1)})
    assert r.raised("NotAllowed", "GENLIB_MAX_MODEL_BYTES", "nothing downloaded"), r
    assert weights_blob(tiny) not in gl.cached_files(), "only the header may be read, nothing cached"
    assert_loads(gl.load(REPO, env={"GENLIB_MAX_MODEL_BYTES": str(size + 1000)}), tiny)


def test_size_limit_applies_to_cached_and_local_models_too(hub, gl, tiny):
    hub.add_repo(REPO, tiny.files)
    assert_loads(gl.load(REPO), tiny)
    r = gl.load(REPO, env={"GENLIB_MAX_MODEL_BYTES": "100", "HF_HUB_OFFLINE": "1"})
    assert r.raised("NotAllowed", "on disk"), r
    r = gl.load(str(tiny.folder), env={"GENLIB_MAX_MODEL_BYTES": "100"})
    assert r.raised("NotAllowed", "over this deployment's limit"), r
    r = gl.load(REPO, env={"GENLIB_MAX_MODEL_BYTES": "lots"})
    assert r.raised("NotAllowed", "must be a number of bytes"), r
