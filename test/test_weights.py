"""Checkpoint reading never runs pickled code, yet accepts real training checkpoints."""
import argparse
import os
import sys
import types

import pytest
import torch

from lseg_ros.weights import WeightsError, _unsafe_globals, extract_state_dict, read_checkpoint

#: checkpoints whose pickle holds metadata classes load only where torch has safe_globals
needs_safe_globals = pytest.mark.skipif(not hasattr(torch.serialization, "safe_globals"), reason=(
    f"torch {torch.__version__}: metadata classes load with weights_only=True from torch 2.5 (safe_globals)"))


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused_naming_the_callable(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": RunsCode(marker)}, path)
    with pytest.raises(WeightsError, match="system") as error:
        read_checkpoint(path)
    assert not marker.exists()
    assert "\x1b[" not in str(error.value)


@pytest.fixture
def lightning_like_modules():
    """Stand-ins for pytorch_lightning 1.x classes that exist only while the file is written."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint",
             "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    modules = {name: types.ModuleType(name) for name in names}
    checkpoint_cls = type("ModelCheckpoint", (), {"__module__": "pytorch_lightning.callbacks.model_checkpoint"})
    attribute_dict = type("AttributeDict", (dict,), {"__module__": "pytorch_lightning.utilities.parsing"})
    modules["pytorch_lightning.callbacks.model_checkpoint"].ModelCheckpoint = checkpoint_cls
    modules["pytorch_lightning.utilities.parsing"].AttributeDict = attribute_dict
    sys.modules.update(modules)
    yield checkpoint_cls, attribute_dict
    for name in names:
        sys.modules.pop(name, None)


@needs_safe_globals
def test_lightning_checkpoint_with_class_keyed_callbacks_and_hparams_loads(tmp_path, lightning_like_modules):
    checkpoint_cls, _ = lightning_like_modules
    path = tmp_path / "demo_e200.ckpt"
    weights = {"net.scratch.head1.weight": torch.randn(4, 3, 1, 1)}
    torch.save({"epoch": 200, "state_dict": weights, "pytorch-lightning_version": "1.3.5",
                "callbacks": {checkpoint_cls: {"best_model_score": torch.tensor(0.5)}},
                "hyper_parameters": {"backbone": "clip_vitl16_384", "lr": 0.004},  # Lightning stores dict(hparams)
                "hparams_namespace": argparse.Namespace(arch_option=0)}, path)
    for name in list(sys.modules):
        if name.startswith("pytorch_lightning"):
            del sys.modules[name]  # the loader must not need Lightning installed
    state = extract_state_dict(read_checkpoint(path), prefix="net.")
    assert torch.equal(state["scratch.head1.weight"], weights["net.scratch.head1.weight"])


def test_unsupported_suffix_and_missing_file_are_named(tmp_path):
    with pytest.raises(WeightsError, match="unsupported weights file type '.onnx'"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        read_checkpoint(tmp_path / "m.onnx")
    with pytest.raises(WeightsError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.safetensors")


def test_corrupt_torch_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(WeightsError, match="broken.pth"):
        read_checkpoint(path)


def test_metadata_that_weights_only_loading_cannot_rebuild_is_refused_clearly(tmp_path, lightning_like_modules):
    _, attribute_dict = lightning_like_modules
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hyper_parameters": attribute_dict(lr=0.1)}, path)
    with pytest.raises(WeightsError, match="odd.ckpt"):
        read_checkpoint(path)


def save_lightning_like_checkpoint(path, checkpoint_cls):
    torch.save({"state_dict": {"w": torch.ones(1)}, "callbacks": {checkpoint_cls: {}},
                "hparams_namespace": argparse.Namespace(arch_option=0)}, path)
    return path


def test_globals_named_without_torchs_own_scanner_are_the_same(tmp_path, monkeypatch, lightning_like_modules):
    """torch < 2.5 has no get_unsafe_globals_in_checkpoint: the pickle's own GLOBALs, minus
    torch's allow-list, name the same classes and callables."""
    checkpoint_cls, _ = lightning_like_modules
    metadata = save_lightning_like_checkpoint(tmp_path / "meta.ckpt", checkpoint_cls)
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": RunsCode(tmp_path / "pwned")}, evil)
    torchs = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint", raising=False)
    expected = {metadata: ["argparse.Namespace", "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"],
                evil: [f"{os.system.__module__}.system"]}
    for path, names in expected.items():
        assert sorted(_unsafe_globals(path)) == names
        if torchs is not None:
            assert sorted(torchs(str(path))) == names


def test_metadata_checkpoint_on_a_torch_without_safe_globals_is_refused_naming_the_version(
        tmp_path, monkeypatch, lightning_like_modules):
    checkpoint_cls, _ = lightning_like_modules
    path = save_lightning_like_checkpoint(tmp_path / "meta.ckpt", checkpoint_cls)
    monkeypatch.delattr(torch.serialization, "get_unsafe_globals_in_checkpoint", raising=False)
    monkeypatch.delattr(torch.serialization, "safe_globals", raising=False)
    with pytest.raises(WeightsError) as error:
        read_checkpoint(path)
    message = str(error.value)
    assert len(message.splitlines()) == 1 and "meta.ckpt" in message and f"torch {torch.__version__}" in message
    assert "argparse.Namespace" in message and "torch 2.5" in message and ".safetensors" in message
    # a plain state dict still loads there
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(2)}, plain)
    assert torch.equal(read_checkpoint(plain)["w"], torch.ones(2))
