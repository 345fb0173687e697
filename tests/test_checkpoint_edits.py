"""An edited or foreign checkpoint is refused with its file name and what is wrong, never a traceback."""

import numpy as np
import pytest

from main import main
from simulator.checkpoint import CheckpointError, load_checkpoint

TINY = """\
name: ck-tiny
model: {d_model: 16, n_layer: 1, n_head: 2, seq_len: 16}
train: {steps: 2, batch_size: 2, eval_every: 0, stats_every: 0}
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    (root / "p.yaml").write_text(TINY)
    assert main(["train", "--preset", str(root / "p.yaml"), "--runs", str(root / "runs"), "--quiet"]) == 0
    (run,) = list((root / "runs").iterdir())
    with np.load(run / "checkpoint.npz") as z:
        return {k: z[k] for k in z.files}


EDITS = {
    "format as text": ({"format": np.array("one")}, "'format' must be one integer"),
    "step as a vector": ({"step": np.array([1, 2])}, "'step' must be one integer"),
    "negative step": ({"step": np.array(-3)}, "negative step"),
    "malformed rng": ({"rng.data": np.array('{"bit_generator": "PCG64"}')}, "'rng.data' is not a random-number state"),
    "rng not json": ({"rng.dropout": np.array("{{{")}, "'rng.dropout' is not a random-number state"),
    "2-D weights": (None, "shape"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edited_checkpoint_is_refused_with_file_and_reason(edit, saved, tmp_path, capsys):
    change, words = EDITS[edit]
    arrays = dict(saved)
    if change is None:
        arrays["params"] = arrays["params"].reshape(2, -1)
        words = "shape (2,"
    else:
        arrays.update(change)
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    with pytest.raises(CheckpointError, match="checkpoint.npz") as err:
        load_checkpoint(tmp_path)
    assert words in str(err.value), str(err.value)
    assert main(["sample", "--checkpoint", str(tmp_path), "--max-new", "3"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_random_bytes_are_not_a_checkpoint_and_numpy_gives_no_pickle_advice(tmp_path):
    (tmp_path / "checkpoint.npz").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError, match="not an .npz archive") as err:
        load_checkpoint(tmp_path)
    assert "pickle" not in str(err.value)
