"""lseg-train: LSeg's objective on a tiny random LSeg, checkpoints, resume and the zero-shot split."""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lseg_ros.config import SegmenterConfig, add_config_arguments, field_docs
from lseg_ros.data.scenes import SCENE_CLASSES
from lseg_ros.segmenter import Segmenter
from lseg_ros.train import TrainConfig, Trainer, config_from_args, main

from helpers import TEST_DEVICE, fixed_batch, needs_cuda
from helpers import tiny_train_config as tiny_config


@pytest.mark.slow
def test_a_few_training_steps_lower_the_loss(train_scenes, tmp_path):
    trainer = Trainer(tiny_config(train_scenes, tmp_path, epochs=5, val_split=""))
    batch = fixed_batch(trainer)
    trainer.backend.eval()
    with torch.no_grad():
        before = trainer.loss(batch).item()
    trainer.fit()
    trainer.backend.eval()
    with torch.no_grad():
        after = trainer.loss(batch).item()
    assert trainer.step == 15 and len(trainer.step_losses) == 15
    assert after < 0.8 * before


@pytest.mark.slow
def test_text_tower_stays_frozen_and_image_parts_train(train_scenes, tmp_path):
    trainer = Trainer(tiny_config(train_scenes, tmp_path, max_steps=2, val_split=""))
    text_before = {k: v.clone() for k, v in trainer.backend.net.clip_pretrained.state_dict().items()}
    head_before = trainer.backend.net.scratch.head1.weight.detach().clone()
    trainer.fit()
    for key, value in trainer.backend.net.clip_pretrained.state_dict().items():
        assert torch.equal(value, text_before[key]), key
    assert not torch.equal(trainer.backend.net.scratch.head1.weight, head_before)


@pytest.mark.slow
def test_resume_continues_from_the_same_step_with_identical_losses(train_scenes, tmp_path):
    uninterrupted = Trainer(tiny_config(train_scenes, tmp_path / "a", epochs=3, val_split=""))
    uninterrupted.fit()
    resumed = Trainer(tiny_config(train_scenes, tmp_path / "b", epochs=3, val_split=""),
                      resume=str(tmp_path / "a" / "epoch_001"))
    assert resumed.step == 3 and resumed.epoch == 2
    resumed.fit()
    assert resumed.step == uninterrupted.step == 9
    np.testing.assert_allclose(resumed.step_losses, uninterrupted.step_losses[3:], rtol=1e-6)


@pytest.mark.slow
def test_resume_from_the_command_line_reuses_the_run_config_and_metrics(train_scenes, tmp_path):
    out = tmp_path / "run"
    config = tiny_config(train_scenes, out, epochs=3)
    args = ["--data_root", str(train_scenes), "--out", str(out), "--crop_size", "32", "--scale_range", "0.75,1.25",
            "--batch_size", "4", "--epochs", "3", "--device", TEST_DEVICE, "--progress", "false",
            "--model.short_side", "48", "--model.max_long_side", "64",
            "--backbone_lr", str(config.backbone_lr), "--decoder_lr", str(config.decoder_lr)]
    assert main(args) == 0
    first = list(csv.DictReader(open(out / "metrics.csv")))
    assert main(["--resume", str(out / "epoch_002")]) == 0  # config.yaml of the run is the default
    second = list(csv.DictReader(open(out / "metrics.csv")))
    assert [row["epoch"] for row in second] == ["1", "2", "3", "3"]  # appended, never rewritten
    assert second[:3] == first
    assert float(second[3]["train_loss"]) == pytest.approx(float(first[2]["train_loss"]), rel=1e-6)
    assert 0.0 <= float(second[3]["val_miou"]) <= 1.0


@pytest.mark.slow
def test_each_epoch_writes_weights_state_config_and_metrics(train_scenes, tmp_path):
    Trainer(tiny_config(train_scenes, tmp_path)).fit()
    for epoch in (1, 2):
        assert (tmp_path / f"epoch_{epoch:03d}.safetensors").is_file()
        state = torch.load(tmp_path / f"epoch_{epoch:03d}.train_state.pt", weights_only=True)
        assert state["step"] == 3 * epoch and state["epoch"] == epoch + 1
        assert {"optimizer", "scheduler", "rng"} <= set(state)
    saved = TrainConfig.from_yaml(tmp_path / "config.yaml")
    assert saved.crop_size == 32 and saved.model.short_side == 48 and saved.model.model == "lseg_tiny"
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [int(row["step"]) for row in rows] == [3, 6]
    assert {"train_loss", "val_miou", "val_pixel_accuracy", "lr_backbone", "lr_decoder", "seconds"} <= set(rows[0])
    assert float(rows[-1]["lr_decoder"]) == 0.0  # the poly schedule ends at zero
    inference = SegmenterConfig.from_yaml(tmp_path / "model.yaml")
    assert inference.pretrained.endswith("epoch_002.safetensors") and inference.labels == SCENE_CLASSES


@pytest.mark.slow
def test_epoch_checkpoint_gives_the_engine_the_trainers_logits(train_scenes, tmp_path):
    trainer = Trainer(tiny_config(train_scenes, tmp_path, epochs=1, val_split=""))
    trainer.fit()
    engine = Segmenter(SegmenterConfig(backend="lseg", model="lseg_tiny", device=TEST_DEVICE, short_side=48,
                                       max_long_side=64, labels=SCENE_CLASSES,
                                       pretrained=str(tmp_path / "epoch_001.safetensors")))
    image, _ = trainer.train_set.load(0)  # 48x64: the model input size, no resizing
    trainer.backend.eval()
    with torch.no_grad():
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        trainer_probabilities = trainer.logits(pixels).softmax(1)[0].numpy()
    np.testing.assert_allclose(engine.segment(image).confidences, trainer_probabilities, atol=1e-5)


def test_unseen_classes_are_excluded_from_training_targets(train_scenes, tmp_path):
    unseen = ["red disk", "checkerboard"]
    trainer = Trainer(tiny_config(train_scenes, tmp_path, unseen_classes=unseen))
    assert trainer.train_label_names == [name for name in SCENE_CLASSES if name not in unseen]
    assert trainer.label_embeddings.shape[0] == len(SCENE_CLASSES) - 2
    mask = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [255, 2, 6, 0]])
    expected = torch.tensor([[0, 1, 255, 2], [3, 4, 255, 5], [255, 255, 255, 0]])
    assert torch.equal(trainer.training_targets(mask), expected)
    batch = fixed_batch(trainer)
    targets = trainer.training_targets(batch["mask"])
    unseen_pixels = (batch["mask"] == 2) | (batch["mask"] == 6)
    assert unseen_pixels.any() and torch.all(targets[unseen_pixels] == 255)
    assert set(targets.unique().tolist()) <= set(range(6)) | {255}


def test_unseen_class_names_must_be_dataset_classes(train_scenes, tmp_path):
    with pytest.raises(ValueError, match="'sofa'"):
        Trainer(tiny_config(train_scenes, tmp_path, unseen_classes=["sofa"]))


def test_every_train_config_field_is_documented_and_settable_from_the_command_line(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--resume")
    add_config_arguments(parser, TrainConfig)
    docs = field_docs(TrainConfig)
    assert all(doc for _, _, doc in docs.values())
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 7\nmodel:\n  short_side: 96\n")
    args = parser.parse_args(["--config", str(path), "--batch-size", "3", "--unseen_classes", "wall, floor",
                              "--model.lseg.block_depth", "2", "--model.lseg.arch_option", "1",
                              "--optimizer", "sgd"])
    config = config_from_args(args)
    assert (config.epochs, config.batch_size, config.optimizer) == (7, 3, "sgd")
    assert config.unseen_classes == ["wall", "floor"]
    assert config.model.short_side == 96 and config.model.lseg.block_depth == 2
    assert config.model.backend == "lseg" and config.model.model == "lseg_tiny"


@pytest.mark.parametrize("name, value", [("optimizer", "adam"), ("batch_size", 0), ("precision", "fp8")])
def test_invalid_train_config_values_are_named(name, value):
    config = TrainConfig()
    setattr(config, name, value)
    with pytest.raises(ValueError, match=name):
        config.validate()


class _KilledWhileSaving(Exception):
    """Stands in for SIGKILL: the process stops in the middle of writing a file."""


def _kill_during_training_state_save(monkeypatch):
    """torch.save writes half a file, then the process 'dies'."""
    real_save = torch.save

    def dying_save(obj, path, *args, **kwargs):
        import io
        buffer = io.BytesIO()
        real_save(obj, buffer)
        with open(path, "wb") as stream:
            stream.write(buffer.getvalue()[:100])
        raise _KilledWhileSaving()

    monkeypatch.setattr(torch, "save", dying_save)


@pytest.mark.slow
def test_a_kill_while_saving_leaves_the_previous_epoch_complete_and_resumable(train_scenes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(train_scenes, out, epochs=3, val_split=""))
    trainer.total_steps = 3  # one epoch
    trainer.fit()
    metrics_before = (out / "metrics.csv").read_text()
    trainer.total_steps = 6
    _kill_during_training_state_save(monkeypatch)
    with pytest.raises(_KilledWhileSaving):
        trainer.fit()  # epoch 2 trains, then dies while saving its training state
    monkeypatch.undo()
    assert not (out / "epoch_002.train_state.pt").exists()  # no truncated file under the final name
    assert not list(out.glob(".*.tmp"))  # the temporary is gone too
    assert (out / "metrics.csv").read_text() == metrics_before
    assert SegmenterConfig.from_yaml(out / "model.yaml").pretrained.endswith("epoch_001.safetensors")
    resumed = Trainer(tiny_config(train_scenes, out, epochs=3, val_split=""), resume=str(out))
    assert resumed.step == 3 and resumed.epoch == 2  # the last complete epoch
    resumed.fit()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(row["step"]) for row in rows] == [3, 6, 9]


def _dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.slow
def test_temporaries_of_killed_saves_are_removed_on_resume_and_after_a_save(train_scenes, tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(train_scenes, out, epochs=2, val_split=""))
    trainer.total_steps = 3  # one epoch
    trainer.fit()
    dead = _dead_pid()
    killed = [out / f".epoch_002.safetensors.{dead}.tmp", out / f".epoch_002.train_state.pt.{dead}.tmp",
              out / f".model.yaml.{os.getpid()}.tmp"]  # a SIGKILL skips atomic_path's cleanup
    running = out / f".epoch_002.safetensors.{os.getppid()}.tmp"  # another live process's write
    for path in killed + [running]:
        path.write_bytes(b"half a file")
    resumed = Trainer(tiny_config(train_scenes, out, epochs=2, val_split=""), resume=str(out))
    resumed.fit()
    assert [path for path in killed if path.exists()] == []
    assert running.exists()
    assert (out / "epoch_002.safetensors").is_file()
    again = out / f".epoch_002.train_state.pt.{dead}.tmp"
    again.write_bytes(b"half a file")
    resumed.save_checkpoint(2)  # a successful save clears them too
    assert not again.exists() and running.exists()


@pytest.mark.slow
def test_a_checkpoint_saved_before_its_metrics_row_gets_the_row_on_resume(train_scenes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(tiny_config(train_scenes, out, epochs=2, val_split=""))
    monkeypatch.setattr(Trainer, "_append_metrics", lambda self, row, only_if_missing=False: (_ for _ in ()).throw(
        _KilledWhileSaving()) if not only_if_missing else None)
    with pytest.raises(_KilledWhileSaving):
        trainer.fit()  # epoch 1 saved, killed before its metrics row
    monkeypatch.undo()
    assert not (out / "metrics.csv").exists()
    resumed = Trainer(tiny_config(train_scenes, out, epochs=2, val_split=""), resume=str(out))
    resumed.fit()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(row["step"]) for row in rows] == [3, 6]


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_training_state_is_refused_in_one_line_naming_it(train_scenes, tmp_path, capsys, damage):
    out = tmp_path / "run"
    Trainer(tiny_config(train_scenes, out, epochs=1, val_split="")).fit()
    state = out / "epoch_001.train_state.pt"
    state.write_bytes(b"" if damage == "empty" else state.read_bytes()[:200])
    capsys.readouterr()
    assert main(["--resume", str(out / "epoch_001")]) == 2
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.startswith("lseg-train")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr  # (other lines: earlier tests' garbage collection)
    assert str(state) in lines[0] and "damaged" in lines[0]


def test_resume_of_a_folder_without_a_complete_epoch_is_refused_clearly(train_scenes, tmp_path, capsys):
    (tmp_path / "epoch_001.safetensors").write_bytes(b"")  # weights without a training state
    assert main(["--resume", str(tmp_path), "--data_root", str(train_scenes)]) == 2
    assert "no complete epoch" in capsys.readouterr().err


def test_demo_training_script_installs_the_epoch_that_model_yaml_names():
    script = (Path(__file__).parents[1] / "scripts" / "recipes" / "train_demo_model.sh").read_text()
    assert "model.yaml" in script and "ls \"$WORK\"/run/epoch_" not in script


@pytest.mark.slow
@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_on_cuda_lowers_the_loss(train_scenes, tmp_path, precision):
    """Autocast (fp16 with the gradient scaler) through the DPT decoder's conv + BatchNorm units and
    the ViT: finite losses, and the loss still falls as in fp32 training."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    trainer = Trainer(tiny_config(train_scenes, tmp_path, epochs=5, val_split="", precision=precision))
    assert trainer.amp_dtype == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    batch = fixed_batch(trainer)
    trainer.backend.eval()
    with torch.no_grad():
        before = trainer.loss(batch).item()
    trainer.fit()
    trainer.backend.eval()
    with torch.no_grad():
        after = trainer.loss(batch).item()
    assert all(np.isfinite(loss) for loss in trainer.step_losses)
    assert after < 0.8 * before
