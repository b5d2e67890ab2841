"""The camera simulator's frame sources and camera model."""
import itertools

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rclpy")

from lseg_ros.ros.camera_sim import CameraSimConfig, frame_source, pinhole_camera_info  # noqa: E402

from helpers import domain_id  # noqa: E402

pytestmark = pytest.mark.ros


def test_generated_scenes_come_with_their_ground_truth():
    frames = list(itertools.islice(frame_source(CameraSimConfig(width=80, height=60, seed=3)), 3))
    for rgb, truth, geometry in frames:
        assert rgb.shape == (60, 80, 3) and rgb.dtype == np.uint8 and truth.shape == (60, 80)
        assert geometry.depth.shape == (60, 80) and geometry.k == list(pinhole_camera_info(80, 60, 60.0).k)
    again = next(frame_source(CameraSimConfig(width=80, height=60, seed=3)))
    np.testing.assert_array_equal(again[0], frames[0][0])


def test_folder_frames_are_sorted_and_looped(tmp_path):
    for index, name in enumerate(["b.png", "a.jpg", "c.bmp"]):
        Image.fromarray(np.full((8, 8, 3), index * 100, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("ignored")
    frames = [rgb for rgb, truth, _ in itertools.islice(frame_source(CameraSimConfig(source=str(tmp_path))), 4)]
    assert [int(f[0, 0, 0]) // 50 * 50 for f in frames] == [100, 0, 200, 100]


def test_animated_image_file_gives_its_frames(tmp_path):
    path = tmp_path / "clip.gif"
    frames = [Image.fromarray(np.full((8, 8, 3), value, np.uint8)) for value in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    read = [rgb for rgb, _, _ in itertools.islice(frame_source(CameraSimConfig(source=str(path))), 3)]
    assert [int(f.mean()) for f in read] == [0, 255, 0]


@pytest.mark.parametrize("source", ["/nonexistent/folder", "empty"])
def test_unusable_source_is_a_clear_error(tmp_path, source):
    if source == "empty":
        source = str(tmp_path)
    with pytest.raises(ValueError, match="camera_sim"):
        frame_source(CameraSimConfig(source=source))


def test_pinhole_camera_info_centres_the_principal_point():
    info = pinhole_camera_info(640, 480, 90.0)
    assert info.k[2] == 320 and info.k[5] == 240
    assert info.k[0] == pytest.approx(320.0)


def test_camera_sim_and_overlay_recorder_say_at_startup_what_they_publish_and_record(tmp_path):
    import rclpy
    from rclpy.parameter import Parameter

    from lseg_ros.ros.camera_sim import CameraSim
    from lseg_ros.ros.recorder import OverlayRecorder

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id())
    try:
        camera = CameraSim(context=context, parameter_overrides=[Parameter("rate", value=2.0),
                                                                 Parameter("max_frames", value=7)])
        line = camera.startup_line()
        assert line == ("camera_sim publishing /image, /camera_info, /depth (reliable): source scenes, 320x240, "
                        "2 Hz, 7 frames")
        recorder = OverlayRecorder(context=context, parameter_overrides=[
            Parameter("output_dir", value=str(tmp_path / "out")), Parameter("max_frames", value=3)])
        line = recorder.startup_line()
        assert line.startswith("overlay_recorder recording /overlay, /points, /objects into ")
        assert str((tmp_path / "out").resolve()) in line and "(3 overlays; latency printed: yes)" in line
        camera.destroy_node()
        recorder.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
