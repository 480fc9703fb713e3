"""Model files shared between labs: only safetensors + JSON are loaded, never a pickle."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from em_restore import io  # noqa: E402
from em_restore.backend.models import fit, store  # noqa: E402
from em_restore.cli import main  # noqa: E402


class Payload:
    """Unpickling this makes a folder: the proof that code ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "a pickle offered as a model was unpickled"


def _evil(path, marker, how="pickle"):
    if how == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": Payload(marker)}))
    else:  # torch's zip checkpoint format, as a .ckpt from a training framework would be
        torch.save({"state_dict": Payload(marker)}, path)
    return path


@pytest.mark.parametrize("name", ["model.pt", "weights.ckpt", "model.pth", "innocent.dat"])
def test_a_pickled_checkpoint_is_refused_without_running_it(tmp_path, marker, name):
    evil = _evil(tmp_path / name, marker, "zip" if name.endswith(".ckpt") else "pickle")
    with pytest.raises(store.ModelError, match="pickled checkpoint, which em-restore never loads"):
        store.load_model(evil)


def test_a_folder_with_a_pickle_instead_of_safetensors_is_refused(tmp_path, marker):
    bundled = store.resolve_model(store.default_model_name())
    folder = tmp_path / "downloaded-model"
    folder.mkdir()
    shutil.copy(bundled / store.CONFIG_FILE, folder / store.CONFIG_FILE)
    _evil(folder / "model.pt", marker)
    with pytest.raises(store.ModelError, match=r"model\.pt is a pickled checkpoint"):
        store.load_model(folder)


def test_the_cli_and_a_resumed_training_refuse_pickles(tmp_path, marker, capsys):
    image = tmp_path / "image.tif"
    io.write_tiff(image, np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32))
    evil = _evil(tmp_path / "model.pt", marker)
    args = ["denoise", str(image), "-o", str(tmp_path / "out.tif"), "--model", str(evil)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pickled checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "out.tif").exists()
    # The one torch file em-restore reads itself: a training checkpoint, for --resume.
    folder = tmp_path / "run"
    folder.mkdir()
    _evil(folder / fit.STATE_FILE, marker, "zip")
    with pytest.raises(ValueError, match="not a training checkpoint em-restore wrote"):
        fit.load_training_state(folder / fit.STATE_FILE)
    quick = ["--epochs", "1", "--steps-per-epoch", "1", "--batch", "2", "--patch", "32", "-q"]
    train = ["train", "--mode", "self", "--noisy", str(image), "-o", str(folder), "--resume"]
    assert main([*train, *quick]) == 2
    assert "not a training checkpoint em-restore wrote" in capsys.readouterr().err


def test_a_model_file_not_a_folder_is_refused_clearly(tmp_path):
    text = tmp_path / "model.json"
    text.write_text("{}")
    with pytest.raises(store.ModelError, match="a model is a folder"):
        store.load_model(text)
