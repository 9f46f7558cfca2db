"""Property: whatever bytes a checkpoint file holds, loading it (and building its model) gives a
valid payload or the project's one-line error, never another exception and never an allocation
beyond the file's own tensors."""
import io

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import densekit
from densekit.engine.checkpoint import build, load_checkpoint, model_from_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> bytes:
    model = densekit.create_model("plain-cnn", num_classes=3, in_channels=1)
    payload = build("weights", {"name": "plain-cnn", "args": model.model_args}, model.state_dict(),
                    data={"classes": ["a", "b", "c"], "mean": [0.5], "std": [0.25], "channels": 1,
                          "image_size": [28, 28], "dataset": "mnist", "tta": "none"})
    path = tmp_path_factory.mktemp("ckpt") / "w.pt"
    save_checkpoint(payload, path)
    return path.read_bytes()


def _load(path):
    try:
        payload = load_checkpoint(path)
        model_from_checkpoint(payload)
    except densekit.DensekitError as err:
        assert "\n" not in str(err)


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**9), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 10**9), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**9), st.integers(0, 255)),
    st.tuples(st.just("zero"), st.integers(0, 10**9), st.integers(1, 4096)))


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_a_mutated_checkpoint_loads_or_gets_one_line(good, tmp_path, mutations):
    data = bytearray(good)
    for kind, pos, arg in mutations:
        pos %= max(len(data), 1)
        if kind == "flip" and data:
            data[pos] ^= 1 << arg
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = bytes([arg])
        elif kind == "zero":
            data[pos:pos + arg] = bytes(len(data[pos:pos + arg]))
    path = tmp_path / "m.pt"
    path.write_bytes(bytes(data))
    _load(path)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(classes=st.integers(1, 10**9), side=st.integers(-5, 10**7), channels=st.integers(-2, 10**6))
def test_claimed_sizes_are_checked_before_anything_is_allocated(good, tmp_path, classes, side, channels):
    payload = torch.load(io.BytesIO(good), weights_only=True)
    payload["model"]["args"].update(num_classes=classes, in_channels=channels)
    payload["data"].update(image_size=[side, side], channels=channels)
    payload.pop("checksum")
    payload["version"] = 1
    path = tmp_path / "claims.pt"
    torch.save(payload, path)
    _load(path)   # a 10^9-class head would need 100+ GB: it must be refused, not attempted
