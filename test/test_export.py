"""lseg-export and runtime onnxruntime: the exported image side of each backend gives the
torch masks; wrong graphs are refused naming what differs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from lseg_ros.config import SegmenterConfig  # noqa: E402
from lseg_ros.data.scenes import generate_scene  # noqa: E402
from lseg_ros.export import main as export_main  # noqa: E402
from lseg_ros.runtime import OnnxImageSide, onnx_providers, read_metadata  # noqa: E402
from lseg_ros.segmenter import Segmenter  # noqa: E402

from helpers import ON_CUDA, TEST_DEVICE, needs_cuda  # noqa: E402

TINY_CLIP = "lseg-test-tiny-ViT"
LABELS = ["floor", "wall", "red disk", "blue square", "checkerboard"]


def _onnx_device() -> str:
    """The device of the ONNX Runtime Segmenters: the test device when this onnxruntime has a
    GPU provider for it, else the CPU (the dev pin is the CPU build)."""
    import onnxruntime

    if ON_CUDA and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return TEST_DEVICE
    return "cpu"


@pytest.fixture(scope="module")
def clip_weights(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    from lseg_ros.models.dense_clip import MODEL_CONFIG_DIR  # registers the tiny model config

    assert (MODEL_CONFIG_DIR / f"{TINY_CLIP}.json").is_file()

    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    path = tmp_path_factory.mktemp("weights") / "tiny_clip.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return str(path)


def _frames(height, width, count=2, seed=7):
    rng = np.random.default_rng(seed)
    return [generate_scene(rng, (height, width))[0] for _ in range(count)]


def _export(tmp_path, options, height, width, name="model.onnx"):
    out = tmp_path / name
    code = export_main(["--height", str(height), "--width", str(width), "--out", str(out), *options])
    assert code == 0
    return out


def _assert_same_masks(torch_config, onnx_yaml, height, width):
    reference = Segmenter(torch_config)
    exported = Segmenter(SegmenterConfig.from_yaml(onnx_yaml, extra={"device": _onnx_device()}))
    assert exported.settings["runtime"].startswith("onnxruntime (")
    reference.set_labels(LABELS)
    exported.set_labels(LABELS)
    frames = _frames(height, width)
    expected = reference.segment(frames)  # a batch of 2: the graph's batch axis is dynamic
    got = exported.segment(frames)
    for want, have in zip(expected, got):
        np.testing.assert_array_equal(have.mask, want.mask)
        np.testing.assert_allclose(have.confidences, want.confidences, atol=1e-4)
    return exported


# ------------------------------------------------------------------- each backend
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["naclip", "maskclip", "sclip"])
def test_dense_clip_export_gives_the_torch_masks(tmp_path, clip_weights, mode, capsys):
    options = ["--backend", "dense_clip", "--model", TINY_CLIP, "--pretrained", clip_weights,
               "--dense_clip.mode", mode, "--short_side", "96", "--max_long_side", "160"]
    out = _export(tmp_path, options, 72, 120)
    printed = capsys.readouterr().out
    assert "mask agreement 100.000%" in printed and "image input 96x160" in printed
    torch_config = SegmenterConfig(backend="dense_clip", model=TINY_CLIP, pretrained=clip_weights, device=TEST_DEVICE,
                                   short_side=96, max_long_side=160)
    torch_config.dense_clip.mode = mode
    exported = _assert_same_masks(torch_config, out.with_suffix(".yaml"), 72, 120)
    assert exported.backend.clip.visual is None and exported.released_parameters > 0  # the text tower stays


def test_node_params_file_gives_the_onnxruntime_config(exported_clip):
    import yaml

    from lseg_ros.ros.params import configs_from_values

    data = yaml.safe_load(exported_clip.with_suffix(".params.yaml").read_text())
    values = data["/**/lseg_node"]["ros__parameters"]
    assert values["onnx_model"] == str(exported_clip.resolve()) and values["runtime"] == "onnxruntime"
    config, _ = configs_from_values(values)
    expected = SegmenterConfig.from_yaml(exported_clip.with_suffix(".yaml"))
    assert config.to_dict() == expected.to_dict()
    config.device = "cpu"
    assert Segmenter(config).settings["runtime"] == "onnxruntime (CPUExecutionProvider)"


@pytest.mark.slow
def test_dense_clip_sliding_window_exports_one_window_and_merges_as_torch(tmp_path, clip_weights, capsys):
    options = ["--backend", "dense_clip", "--model", TINY_CLIP, "--pretrained", clip_weights,
               "--dense_clip.window", "64", "--dense_clip.stride", "32", "--short_side", "64", "--max_long_side", "160"]
    out = _export(tmp_path, options, 60, 140)
    assert "window input 64x64" in capsys.readouterr().out
    assert read_metadata(str(out))["kind"] == "window"
    torch_config = SegmenterConfig(backend="dense_clip", model=TINY_CLIP, pretrained=clip_weights, device=TEST_DEVICE,
                                   short_side=64, max_long_side=160)
    torch_config.dense_clip.window, torch_config.dense_clip.stride = 64, 32
    _assert_same_masks(torch_config, out.with_suffix(".yaml"), 60, 140)


@pytest.mark.slow
def test_shipped_lseg_demo_model_export_gives_the_torch_masks(tmp_path):
    from lseg_ros.demo_model import demo_model_config

    config = demo_model_config()
    config.device = TEST_DEVICE
    yaml_path = tmp_path / "demo.yaml"
    import yaml

    yaml_path.write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    out = _export(tmp_path, ["--config", str(yaml_path)], 120, 160)
    metadata = read_metadata(str(out))
    assert metadata["backend_description"].startswith("lseg lseg_tiny")
    exported = _assert_same_masks(config, out.with_suffix(".yaml"), 120, 160)
    reference = Segmenter(config)
    with torch.no_grad():
        embeddings = reference.backend(reference.model_input(_frames(120, 160, count=1)))  # the torch forward
    assert json.loads(metadata["output_shape"]) == list(embeddings.shape[1:])  # [D, h/2, w/2]
    # the ViT's weights are dropped (the decoder stays: its blocks refine the logits)
    assert exported.backend.net.pretrained is None and exported.released_parameters > 0
    remaining = sum(p.numel() for p in exported.backend.parameters())
    assert remaining + exported.released_parameters == sum(p.numel() for p in reference.backend.parameters())


@pytest.mark.slow
def test_lmseg_aggregation_exports_its_image_side_and_keeps_the_label_head_in_torch(tmp_path):
    """lmseg head aggregation: the graph is encoders + fusion ([F | guidance blocks] at the
    fixed 128x128 input); the aggregation takes the labels, so it stays in torch after it."""
    from safetensors.torch import save_file

    from lseg_ros.models.base import build_backend

    torch.manual_seed(0)
    config = SegmenterConfig(backend="lmseg", model="lmseg_tiny", pretrained="random", device=TEST_DEVICE)
    weights = tmp_path / "lmseg_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in build_backend(config).net_state_dict().items()}, str(weights))
    config.pretrained = str(weights)
    out = _export(tmp_path, ["--backend", "lmseg", "--model", "lmseg_tiny", "--pretrained", str(weights),
                             "--device", TEST_DEVICE], 48, 64)
    assert json.loads(read_metadata(str(out))["output_shape"]) == [32 + 2 * 64, 8, 8]
    exported = _assert_same_masks(config, out.with_suffix(".yaml"), 48, 64)
    assert exported.backend.sam is None and exported.backend.clip.visual is None
    assert sum(p.numel() for p in exported.backend.aggregator.parameters()) > 0


# ------------------------------------------------------------------ refusals
@pytest.fixture(scope="module")
def exported_clip(tmp_path_factory, clip_weights):
    folder = tmp_path_factory.mktemp("exported")
    out = folder / "tiny.onnx"
    assert export_main(["--height", "64", "--width", "64", "--out", str(out), "--verify-frames", "0",
                        "--backend", "dense_clip", "--model", TINY_CLIP, "--pretrained", clip_weights,
                        "--short_side", "64"]) == 0
    return out


def test_frames_of_another_size_are_refused_naming_both_sizes(exported_clip):
    segmenter = Segmenter(SegmenterConfig.from_yaml(exported_clip.with_suffix(".yaml"), extra={"device": "cpu"}))
    segmenter.set_labels(["door"])
    with pytest.raises(ValueError, match=r"exported for 64x64 frames .*got a model input of 64x96"):
        segmenter.segment(np.zeros((64, 96, 3), np.uint8))
    assert segmenter.segment(np.zeros((64, 64, 3), np.uint8)).mask.shape == (64, 64)  # the next good frame


def test_graph_from_other_weights_is_refused(tmp_path, exported_clip):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    other = tmp_path / "tiny_clip.safetensors"  # same file name, other weights: the description matches
    save_file({k: v.contiguous() for k, v in open_clip.create_model(TINY_CLIP, pretrained=None).state_dict().items()},
              str(other))
    config = SegmenterConfig.from_yaml(exported_clip.with_suffix(".yaml"), extra={"device": "cpu",
                                                                                   "pretrained": str(other)})
    with pytest.raises(ValueError, match="exported from other weights"):
        Segmenter(config)


def test_graph_from_another_backend_is_refused_naming_both(exported_clip):
    from lseg_ros.demo_model import demo_model_config

    config = demo_model_config()
    config.device, config.runtime, config.onnx_model = "cpu", "onnxruntime", str(exported_clip)
    with pytest.raises(ValueError, match=r"exported from 'dense_clip/naclip .*builds 'lseg lseg_tiny"):
        Segmenter(config)


def test_missing_or_foreign_onnx_file_is_refused_naming_it(tmp_path, clip_weights):
    import onnx
    from onnx import TensorProto, helper

    base = dict(backend="dense_clip", model=TINY_CLIP, pretrained=clip_weights, device="cpu", runtime="onnxruntime")
    with pytest.raises(ValueError, match="nothing.onnx' is not a file"):
        Segmenter(SegmenterConfig(onnx_model=str(tmp_path / "nothing.onnx"), **base))
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(ValueError, match="no lseg_ros metadata"):
        Segmenter(SegmenterConfig(onnx_model=str(foreign), **base))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="garbage.onnx' cannot be loaded by onnxruntime"):
        Segmenter(SegmenterConfig(onnx_model=str(garbage), **base))


def test_torch_only_settings_are_refused_with_onnxruntime(exported_clip):
    config = SegmenterConfig.from_yaml(exported_clip.with_suffix(".yaml"), extra={"device": "cpu", "quantize": "int8"})
    with pytest.raises(ValueError, match="quantize 'int8' apply to the torch runtime only"):
        Segmenter(config)


def test_export_cli_refuses_bad_arguments_naming_them(tmp_path, capsys):
    assert export_main(["--height", "64", "--width", "64", "--out", str(tmp_path / "model.pt")]) == 2
    assert "should end in .onnx" in capsys.readouterr().err
    assert export_main(["--height", "0", "--width", "64", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "0x64" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (["--opset", "1"], "--opset 1 is not supported; accepted: 14 to 20"),
    (["--opset", "999"], "--opset 999 is not supported; accepted: 14 to 20"),
    (["--height", "100000"], "at most 8192 pixels, got 100000x64"),
    (["--width", "9000"], "at most 8192 pixels, got 64x9000"),
    (["--verify-frames", "-1"], "--verify-frames must be >= 0 (0 = no check), got -1"),
    (["--min-agreement", "1.5"], "--min-agreement must be in [0, 1], got 1.5"),
    (["--out", "{tmp}/missing/m.onnx"], "--out folder '{tmp}/missing' does not exist"),
])
def test_export_cli_refuses_out_of_range_values_with_one_line_naming_them(tmp_path, capsys, options, message):
    argv = ["--height", "64", "--width", "64", "--out", str(tmp_path / "m.onnx")]
    argv += [option.format(tmp=tmp_path) for option in options]  # later options win
    assert export_main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert not (tmp_path / "missing").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_export_command_exits_2_on_a_bad_opset_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "lseg_ros.export", "--height", "64", "--width", "64",
                             "--out", str(tmp_path / "m.onnx"), "--opset", "999"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2
    assert result.stderr.strip() == "lseg-export: --opset 999 is not supported; accepted: 14 to 20"


# ------------------------------------------------------------------ providers
def test_providers_prefer_tensorrt_then_cuda_then_cpu(tmp_path):
    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen = onnx_providers(torch.device("cuda:1"), available, str(tmp_path / "engines"), fp16=True, stream=1234)
    assert [name for name, _ in chosen] == available
    trt = chosen[0][1]
    assert trt["device_id"] == "1" and trt["trt_fp16_enable"] == "1"
    assert trt["trt_engine_cache_enable"] == "1" and trt["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert (tmp_path / "engines").is_dir()
    assert chosen[1][1] == {"device_id": "1", "has_user_compute_stream": "1", "user_compute_stream": "1234"}
    assert [name for name, _ in onnx_providers(torch.device("cuda"), available[1:])] == available[1:]
    assert onnx_providers(torch.device("cpu"), available) == [("CPUExecutionProvider", {})]
    with pytest.raises(ValueError, match="no GPU execution provider .*CPUExecutionProvider.*onnxruntime-gpu"):
        onnx_providers(torch.device("cuda"), ["CPUExecutionProvider"])


@needs_cuda
def test_cuda_runtime_binds_torch_buffers_and_matches_the_cpu_graph(exported_clip):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    images = torch.randn(2, 3, 64, 64)
    on_cpu = OnnxImageSide(exported_clip, torch.device("cpu"))(images)
    side = OnnxImageSide(exported_clip, torch.device(TEST_DEVICE))
    assert side.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    on_gpu = side(images.to(TEST_DEVICE))
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-3, rtol=1e-3)


def test_evaluation_runs_the_exported_image_side_and_gives_the_torch_probabilities(exported_clip, clip_weights):
    """lseg-eval's logits path runs the configured image side: the exported graph, not the
    (released) torch weights, with probabilities equal to torch's on the same frame."""
    from lseg_ros.evaluate import predict_probabilities

    onnx = Segmenter(SegmenterConfig.from_yaml(exported_clip.with_suffix(".yaml"), extra={"device": "cpu"}))
    torch_side = Segmenter(SegmenterConfig(backend="dense_clip", model=TINY_CLIP, pretrained=clip_weights,
                                           device="cpu", short_side=64))
    assert onnx.released_parameters > 0
    for segmenter in (onnx, torch_side):
        segmenter.set_labels(["door", "floor", "wall"])
    image = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = predict_probabilities(torch_side, image)
        got = predict_probabilities(onnx, image)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
