"""An exported file's metadata is a claim, checked before anything is built from it (issue 22):
hostile or damaged fields in an .onnx give one line naming the field in the runtime, in
`densekit predict MODEL.onnx` and in `densekit serve MODEL.onnx` (before a server starts)."""
import json

import numpy as np
import onnx
import pytest
from PIL import Image

import densekit
from densekit import DensekitError
from densekit.cli import main



@pytest.fixture(scope="module")
def exported(digits_onnx, tmp_path_factory):
    image = tmp_path_factory.mktemp("image") / "digit.png"
    Image.fromarray((np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)).save(image)
    return digits_onnx, image


def tampered(path, tmp_path, **fields):
    """A copy of the export whose metadata has ``fields`` (JSON values; bytes are stored as they are)."""
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({k: v.decode() if isinstance(v, bytes) else json.dumps(v) for k, v in fields.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    out = tmp_path / "tampered.onnx"
    onnx.save(proto, str(out))
    return out


CASES = [  # (field: hostile value, a word the one line must hold)
    ({"classes": ["a", "b", "c"]}, "classes"),                 # 3 names on a 10-output graph
    ({"image_size": [100000, 100000]}, "image_size"),          # a 10 GB allocation at startup
    ({"format_version": b"abc"}, "format_version"),
    ({"classes": 5}, "classes"),
    ({"image_size": [8]}, "image_size"),
    ({"model": []}, "model"),
    ({"std": [-1]}, "std"),
    ({"tta": "rot90"}, "tta"),
    ({"classes": [f"c{i}" for i in range(200_000)]}, "classes"),   # more than limits.MAX_CLASSES
    ({"channels": 3}, "channels"),                              # the graph takes 1
    ({"classes": b"not json ["}, "classes"),
]


@pytest.mark.parametrize("fields, word", CASES, ids=[next(iter(f)) + str(i) for i, (f, _) in enumerate(CASES)])
def test_hostile_metadata_is_one_line_in_the_runtime_predict_and_serve(exported, tmp_path, capsys, fields, word):
    from densekit.runtime import OnnxModel
    path, image = exported
    bad = tampered(path, tmp_path, **fields)
    with pytest.raises(DensekitError) as err:
        OnnxModel(bad)
    assert word in str(err.value) and "\n" not in str(err.value) and str(bad) in str(err.value)
    for argv in (["predict", str(bad), str(image)], ["serve", str(bad), "--port", "0"]):
        assert main(argv) == 1
        out = capsys.readouterr().err
        assert word in out and out.startswith("densekit: error: ") and len(out.strip().splitlines()) == 1, out


def test_the_untampered_export_still_loads(exported):
    from densekit.runtime import OnnxModel
    path, image = exported
    [result] = densekit.predict(path, [image], top_k=2)
    assert len(result["top_k"]) == 2 and OnnxModel(path).input_shape == (1, 8, 8)
