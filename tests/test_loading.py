"""Validated loading: broken repos, built from a valid tiny model by editing its files, served by the local
hub and loaded through the real huggingface_hub path; each ends in the right genlib error (or a load)."""

from __future__ import annotations

import json
import struct

import pytest
import torch

REPO = "owner/broken"


def load_repo(hub, gl, files, **kw):
    hub.add_repo(REPO, files)
    return gl.load(REPO, **kw)


# ----- round trip -----
def test_save_pretrained_then_load_folder_gives_identical_tensors(gl, tiny):
    r = gl.load(str(tiny.folder))
    assert r.ok, r
    assert r.value["tensors"] == tiny.digests
    assert r.value["source"]["kind"] == "local"
    assert r.value["source"]["revision"].startswith("sha256:")


def test_hub_copy_of_a_saved_folder_loads_identical_tensors(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.folder)
    assert r.ok, r
    assert r.value["tensors"] == tiny.digests


# ----- weights format -----
def test_pickle_only_repo_is_refused(hub, gl, tiny):
    files = tiny.with_files(drop=("model.safetensors",))
    files["pytorch_model.bin"] = b"\x80\x04\x95 never unpickled: only its name matters"
    r = load_repo(hub, gl, files)
    assert r.raised("NotSafetensors", "safetensors only", "pytorch_model.bin"), r
    assert not hub.downloads("*.bin"), "a pickle file must never be downloaded"


def test_pickle_only_folder_is_refused(gl, tiny, tmp_path):
    (tmp_path / "config.json").write_bytes(tiny.files["config.json"])
    (tmp_path / "model.pt").write_bytes(b"\x80\x04 not a pickle")
    r = gl.load(str(tmp_path))
    assert r.raised("NotSafetensors", "safetensors only"), r


def test_corrupted_safetensors_header_is_bad_weights(hub, gl, tiny):
    _, data = tiny.header()
    garbage = b'{"to_rgb.weight": {"dtype": "F32", "shape": [3, 8, 3, 3], "data_offsets": [0, '  # cut JSON
    raw = struct.pack("<Q", len(garbage)) + garbage + data
    r = load_repo(hub, gl, tiny.with_files(model_safetensors=raw))
    assert r.raised("BadWeights", "model.safetensors"), r


def test_truncated_safetensors_file_is_bad_weights(hub, gl, tiny):
    raw = tiny.files["model.safetensors"]
    r = load_repo(hub, gl, tiny.with_files(model_safetensors=raw[: len(raw) // 2]))
    assert r.raised("BadWeights", "model.safetensors"), r


def _huge_header_size(tiny):
    raw = tiny.files["model.safetensors"]
    return struct.pack("<Q", 2**62) + raw[8:]


def _huge_tensor(tiny):
    header, data = tiny.header()
    header["to_rgb.weight"] = {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}
    return tiny.safetensors_bytes(header, data)


@pytest.mark.parametrize("make", [_huge_header_size, _huge_tensor], ids=["header-length", "tensor-size"])
def test_header_claiming_a_huge_size_is_bad_weights_without_allocating(hub, gl, tiny, make):
    r = load_repo(hub, gl, tiny.with_files(model_safetensors=make(tiny)))
    assert r.raised("BadWeights", "model.safetensors"), r
    assert r.maxrss_growth_kb < 200_000, f"the load grew the process by {r.maxrss_growth_kb} kB"
    assert r.seconds < 20


def test_wrong_tensor_shape_is_bad_weights_naming_the_tensor(hub, gl, tiny):
    t = tiny.tensors()
    t["to_rgb.weight"] = torch.zeros(3, 8, 5, 5)
    r = load_repo(hub, gl, tiny.with_tensors(t))
    assert r.raised("BadWeights", "to_rgb.weight", "[3, 8, 5, 5]", "[3, 8, 3, 3]"), r


def test_missing_tensor_is_bad_weights_naming_it(hub, gl, tiny):
    t = tiny.tensors()
    del t["stem.bias"]
    r = load_repo(hub, gl, tiny.with_tensors(t))
    assert r.raised("BadWeights", REPO, "lacks", "stem.bias"), r


def test_unexpected_tensor_is_bad_weights_naming_it(hub, gl, tiny):
    t = tiny.tensors()
    t["backdoor.weight"] = torch.zeros(4)
    r = load_repo(hub, gl, tiny.with_tensors(t))
    assert r.raised("BadWeights", "unexpected", "backdoor.weight"), r


def test_integer_tensor_is_bad_weights(hub, gl, tiny):
    t = tiny.tensors()
    t["stem.bias"] = torch.zeros(512, dtype=torch.int32)
    r = load_repo(hub, gl, tiny.with_tensors(t))
    assert r.raised("BadWeights", "stem.bias", "dtype"), r


# ----- config -----
def test_unknown_architecture_is_bad_config(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.with_config(model_type="llama-9000"))
    assert r.raised("BadConfig", "unknown architecture", "llama-9000", "genlib-gan"), r


@pytest.mark.parametrize(
    ("field", "value"),
    [("channels", 10**9), ("resolution", 17), ("z_dim", 0), ("channels", "8"), ("mapping_layers", True)],
)
def test_absurd_config_is_bad_config_naming_the_field(hub, gl, tiny, field, value):
    r = load_repo(hub, gl, tiny.with_config(**{field: value}))
    assert r.raised("BadConfig", field), r


def test_config_over_the_parameter_limit_is_bad_config(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.files, env={"GENLIB_MAX_PARAMS": "1000"})
    assert r.raised("BadConfig", "parameters", "GENLIB_MAX_PARAMS"), r


def test_config_that_is_not_json_is_bad_config(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.with_files(config_json=b"{model_type: genlib-gan"))
    assert r.raised("BadConfig", "config.json"), r


def test_config_that_is_not_an_object_is_bad_config(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.with_files(config_json=json.dumps(["genlib-gan"]).encode()))
    assert r.raised("BadConfig", "config.json"), r


def test_missing_config_is_bad_config(hub, gl, tiny):
    r = load_repo(hub, gl, tiny.with_files(drop=("config.json",)))
    assert r.raised("BadConfig", "config.json", REPO), r
