"""The whole pipeline offline in one command: camera simulator -> lseg_node -> overlay recorder.

    python -m lseg_ros.ros.demo --frames 30 --out lseg_demo_out

Uses the small LSeg model shipped with the package (trained here on generated scenes) on
generated scenes, prints per-frame latency and the masks' accuracy against the scenes'
ground truth, and exits after a bounded number of frames or seconds.

lseg_node runs in its own process, as a launch starts it, so the latency printed is the
node's. This process is the camera and the recorder, kept off the node's path: the scenes
are rendered before streaming starts (publishing costs only the message conversion), the
node's outputs are only stored when they arrive, and the overlays, top views and accuracy
are worked out just before the next frame is stamped and published. After the stream the
same engine (same SegmenterConfig) times ``segment()`` on the streamed frames in this
process, and the demo prints the node's latency over the engine's time.
"""
from __future__ import annotations

import argparse
import collections
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..config import SegmenterConfig, flatten, write_params_file
from ..data.scenes import SCENE_CLASSES
from ..demo_model import demo_model_config

#: distinct scenes rendered before streaming (~0.1-0.3 s each on a CPU); the stream cycles them
MAX_SCENES = 20
#: seconds lseg_node gets to end after SIGINT before it is killed
STOP_WAIT_S = 5.0
#: seconds to wait for the node's /diagnostics after the last frame (it publishes every second)
FINAL_DIAGNOSTICS_WAIT_S = 3.0
#: seconds to wait for the node's subscriptions and publishers to match this process's
MATCH_WAIT_S = 10.0
#: the node's outputs the demo subscribes to
OUTPUTS = ("overlay", "mask", "points", "objects")


def choose_model(args) -> SegmenterConfig:
    config = demo_model_config(device=args.device)
    if config is not None and args.pretrained is None:
        print(f"[demo] model: the small LSeg model shipped with lseg_ros ({config.pretrained}),\n"
              "       trained here on generated scenes; it knows only the scene classes.")
        return config
    config = SegmenterConfig(backend="dense_clip", model="lseg-test-tiny-ViT", pretrained=args.pretrained or "random",
                             device=args.device, short_side=224, labels=list(SCENE_CLASSES))
    if config.pretrained == "random":
        print("[demo] WARNING: no trained model is shipped in this checkout; using RANDOM weights.\n"
              "       The masks are meaningless; the pipeline, timing and messages are real.")
    return config


# ------------------------------------------------------------------ the node process
class NodeProcess:
    """lseg_node as its own process (``python -m lseg_ros.ros.node --ros-args --params-file``),
    with this process's environment; its output is read by a thread (last lines kept)."""

    def __init__(self, config: SegmenterConfig, workdir: Path) -> None:
        params = workdir / "lseg_node.yaml"
        write_params_file(params, flatten(config))  # every SegmenterConfig field (dotted names)
        command = [sys.executable, "-m", "lseg_ros.ros.node", "--ros-args", "--params-file", str(params)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True,  # a Ctrl-C reaches it from stop() only
                                        preexec_fn=_end_with_parent if sys.platform == "linux" else None)
        self.tail: collections.deque = collections.deque(maxlen=20)
        self.ready = threading.Event()
        self.start_error: Optional[str] = None
        self._reader = threading.Thread(target=self._read, name="lseg_node output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Keep the node's last lines; note "lseg_node ready" and a start-up error; pass its
        warnings and errors on."""
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            if "lseg_node ready" in line:
                self.ready.set()
            elif "cannot start:" in line and self.start_error is None:
                self.start_error = line.split("cannot start:", 1)[1].strip()
            elif self.ready.is_set() and ("[WARN]" in line or "[ERROR]" in line):
                print(f"[lseg_node] {line}", file=sys.stderr, flush=True)

    def wait_ready(self, timeout: float) -> Optional[str]:
        """None once the node said it is ready, else why it is not (it ended, or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.wait(0.1):
                return None
            if self.process.poll() is not None:
                self._reader.join(2.0)  # its last lines
                if self.start_error:
                    return self.start_error
                tail = " | ".join(line for line in self.tail if line.strip())[-600:]
                return f"it exited with code {self.process.returncode} during start-up: {tail}"
        return f"not ready within {timeout:g} s"

    def stop(self) -> None:
        """SIGINT (as launch does), then kill after STOP_WAIT_S; reaps the process."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(2.0)


def _end_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM when the demo (its main thread, which starts the node)
    dies, even by SIGKILL: no orphan."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ------------------------------------------------------------------ frames and outputs
def render_scenes(camera, count: int, node: NodeProcess) -> list:
    """``count`` (rgb, ground truth, geometry) scenes from the camera's source; stops early
    (returning what it has) when the node process ended."""
    scenes = []
    for _ in range(count):
        if node.process.poll() is not None:
            break
        scenes.append(next(camera.frames))
    return scenes


class Outputs:
    """The node's outputs as they arrive (stored with their receipt time, nothing else), and
    the work on them, done by :meth:`process` between frames."""

    def __init__(self, out_dir: Path, scenes: list, floor_label: Optional[int]) -> None:
        self.out_dir = out_dir
        self.scenes = scenes
        self.floor_label = floor_label
        self.published: Dict[int, int] = {}  # stamp (ns) -> scene index
        self.arrived: Dict[str, list] = {key: [] for key in OUTPUTS}  # (stamp ns, receipt ns, msg)
        self.diagnostics: Dict[str, str] = {}
        self.diagnostics_at_ns = 0
        self.latencies_ms: List[float] = []
        self.received_stamps: List[int] = []
        self.accuracies: List[float] = []
        self.floor_errors: List[np.ndarray] = []
        self.point_counts: List[int] = []
        self.object_counts: List[int] = []
        self.topdown_written = 0
        self._pending_3d: Dict[int, dict] = {}
        self.subscriptions: list = []  # of the outputs, for wait_matched

    def subscribe(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, PointCloud2

        from ..msg import ObjectArray

        types = {"overlay": Image, "mask": Image, "points": PointCloud2, "objects": ObjectArray}
        self.subscriptions = [node.create_subscription(types[key], f"/lseg_node/{key}",
                                                       lambda msg, key=key: self._arrive(key, msg), 10)
                              for key in OUTPUTS]
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _arrive(self, key: str, msg) -> None:
        receipt_ns = time.time_ns()  # the clock of the camera's stamps (system time, one machine)
        self.arrived[key].append((msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, receipt_ns, msg))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if values.get("node") == "/lseg_node" and "frames_in" in values:
                self.diagnostics = values
                self.diagnostics_at_ns = time.time_ns()

    @property
    def overlays(self) -> int:
        """Overlays received so far (processed or not)."""
        return len(self.latencies_ms) + len(self.arrived["overlay"])

    def process(self) -> None:
        """Write and measure what arrived: overlays (and their latency line), mask accuracy
        against the ground truth, the 3D figures and top views."""
        from PIL import Image as PilImage

        from .conversions import image_msg_to_array

        overlays, self.arrived["overlay"] = self.arrived["overlay"], []
        for stamp, receipt_ns, msg in overlays:
            index = len(self.latencies_ms)
            self.latencies_ms.append((receipt_ns - stamp) / 1e6)
            self.received_stamps.append(stamp)
            PilImage.fromarray(image_msg_to_array(msg)).save(self.out_dir / f"overlay_{index:05d}.png")
            print(f"frame {index:4d}  stamp {stamp // 10**9}.{stamp % 10**9:09d}  "
                  f"latency {self.latencies_ms[-1]:7.1f} ms", flush=True)
        masks, self.arrived["mask"] = self.arrived["mask"], []
        for stamp, _, msg in masks:
            scene = self._scene(stamp)
            if scene is not None and scene[1] is not None:
                self.accuracies.append(float((image_msg_to_array(msg) == scene[1]).mean()))
        for key in ("points", "objects"):
            arrived, self.arrived[key] = self.arrived[key], []
            for stamp, _, msg in arrived:
                entry = self._pending_3d.setdefault(stamp, {})
                entry[key] = msg
                if len(entry) == 2:
                    del self._pending_3d[stamp]
                    self._process_3d(stamp, entry["points"], entry["objects"])
        while len(self._pending_3d) > 20:  # a frame whose other half never came
            self._pending_3d.pop(next(iter(self._pending_3d)))

    def _scene(self, stamp: int):
        index = self.published.get(stamp)
        return None if index is None else self.scenes[index]

    def _process_3d(self, stamp: int, cloud, objects) -> None:
        """Counts, the floor points' distance to the scene's true floor plane, the top view."""
        from PIL import Image as PilImage

        from .conversions import cloud_msg_to_records
        from .recorder import topdown_picture

        records = cloud_msg_to_records(cloud)
        self.point_counts.append(len(records))
        self.object_counts.append(len(objects.objects))
        scene = self._scene(stamp)
        geometry = None if scene is None else scene[2]
        if geometry is not None and self.floor_label is not None:
            floor = records[records["label"] == self.floor_label]
            if len(floor):
                xyz = np.stack([floor["x"], floor["y"], floor["z"]], axis=1).astype(np.float64)  # [N, 3]
                self.floor_errors.append(np.abs(xyz @ geometry.floor_normal - geometry.floor_offset))
        picture = topdown_picture(cloud, objects, 6.0)
        PilImage.fromarray(picture).save(self.out_dir / f"topdown_{self.topdown_written:05d}.png")
        self.topdown_written += 1


# ------------------------------------------------------------------ streaming
def wait_matched(camera, outputs: Outputs, executor, timeout: float) -> bool:
    """Spin until the node's subscriptions match the camera's publishers and its publishers
    this process's subscriptions (so no frame or output is lost to discovery); False on timeout."""
    publishers = [pub for pub in (camera.image_pub, camera.info_pub, camera.depth_pub) if pub is not None]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(pub.get_subscription_count() > 0 for pub in publishers) and \
                all(sub.get_publisher_count() > 0 for sub in outputs.subscriptions):
            return True
        executor.spin_once(timeout_sec=0.1)
    return False


def stream(camera, outputs: Outputs, executor, args, node: NodeProcess) -> float:
    """Publish the scenes at ``args.rate`` until ``args.frames`` overlays arrived,
    ``args.timeout`` s passed or the node process ended; the stored outputs are processed just
    before each frame is stamped, when nothing of the node's is due. The streaming seconds."""
    period = 1.0 / args.rate
    start = next_at = time.monotonic()
    published = 0
    while outputs.overlays < args.frames and time.monotonic() - start < args.timeout and \
            node.process.poll() is None:
        if time.monotonic() >= next_at:
            outputs.process()
            scene_index = published % len(outputs.scenes)
            stamp = camera.publish_frame(*outputs.scenes[scene_index])
            outputs.published[stamp] = scene_index
            published += 1
            next_at = max(next_at + period, time.monotonic())
        executor.spin_once(timeout_sec=min(0.1, max(0.0, next_at - time.monotonic())))
    return time.monotonic() - start


def wait_final_diagnostics(outputs: Outputs, executor) -> None:
    """Spin until a /diagnostics message of the node arrives after its last output and counts
    every overlay received as processed, at most FINAL_DIAGNOSTICS_WAIT_S. (The node counts a
    frame once its outputs are published: a message composed in between, received after the
    last overlay, counts one frame less.)"""
    last_ns = time.time_ns()
    deadline = time.monotonic() + FINAL_DIAGNOSTICS_WAIT_S

    def settled() -> bool:
        if outputs.diagnostics_at_ns <= last_ns:
            return False
        try:
            return int(outputs.diagnostics.get("processed", "0")) >= outputs.overlays
        except ValueError:  # not a count: nothing to wait for
            return True

    while not settled() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)


def time_engine(config: SegmenterConfig, scenes: list) -> tuple:
    """(median ms of ``Segmenter.segment()`` on each scene after a warm-up, its description)
    in this process, with the node's SegmenterConfig."""
    from ..segmenter import Segmenter

    segmenter = Segmenter(config)
    segmenter.segment(scenes[0][0])  # warm-up
    times = []
    for rgb, _, _ in scenes:
        begin = time.perf_counter()
        segmenter.segment(rgb)
        times.append(time.perf_counter() - begin)
    return 1000 * float(np.median(times)), f"{segmenter.description} on {segmenter.device}"


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="stop after this many processed frames")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="stop streaming after this many seconds (the node's start-up gets as long)")
    parser.add_argument("--rate", type=float, default=5.0, help="camera frames per second")
    parser.add_argument("--out", default="lseg_demo_out", help="folder for the overlays")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pretrained", default=None, help="override the demo model's weights")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.frames < 1 or args.timeout <= 0:
        parser.error(f"--rate ({args.rate}), --frames ({args.frames}) and --timeout ({args.timeout}) must be > 0")

    config = choose_model(args)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Ctrl-C and SIGTERM stop the node, also when started from a shell that ignores SIGINT (a & job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    with tempfile.TemporaryDirectory(prefix="lseg_demo_") as workdir:
        node = NodeProcess(config, Path(workdir))
        print(f"[demo] lseg_node started as process {node.process.pid}", flush=True)
        try:
            return run(args, config, out_dir, node)
        except KeyboardInterrupt:
            print("[demo] interrupted", file=sys.stderr)
            return 130
        finally:
            node.stop()


def run(args, config: SegmenterConfig, out_dir: Path, node: NodeProcess) -> int:
    """Render, wait for the node, stream, report; the node process is stopped by the caller."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from .camera_sim import CameraSim

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # Ctrl-C: KeyboardInterrupt, node stopped
    executor = SingleThreadedExecutor()
    try:
        # not spun: its timer never fires, the stream below publishes its frames
        camera = CameraSim(parameter_overrides=[Parameter("rate", value=args.rate),
                                                Parameter("source", value="scenes"),
                                                Parameter("width", value=320), Parameter("height", value=240)])
        probe = rclpy.create_node("lseg_demo")
        begin = time.monotonic()
        scenes = render_scenes(camera, min(args.frames, MAX_SCENES), node)  # while the node loads its model
        rendered_s = time.monotonic() - begin
        problem = node.wait_ready(args.timeout)
        if problem is not None:
            print(f"[demo] cannot start lseg_node: {problem}", file=sys.stderr)
            return 1
        print(f"[demo] {len(scenes)} scenes rendered in {rendered_s:.1f} s while lseg_node started; "
              f"streaming them at {args.rate:g} Hz", flush=True)
        floor = SCENE_CLASSES.index("floor") if "floor" in config.labels else None
        outputs = Outputs(out_dir, scenes, floor)
        outputs.subscribe(probe)
        executor.add_node(probe)
        if not wait_matched(camera, outputs, executor, MATCH_WAIT_S):
            print(f"[demo] lseg_node did not connect to the camera and the demo within {MATCH_WAIT_S:g} s",
                  file=sys.stderr)
            return 1
        print(f"[demo] {_ready_line(node)}; writing overlays to {out_dir}/", flush=True)
        elapsed = stream(camera, outputs, executor, args, node)
        if node.process.poll() is not None:
            node.stop()  # its last lines
            tail = " | ".join(line for line in node.tail if line.strip())[-600:]
            print(f"[demo] lseg_node exited with code {node.process.returncode} during the stream: {tail}",
                  file=sys.stderr)
            return 1
        wait_final_diagnostics(outputs, executor)
        outputs.process()
    finally:
        executor.shutdown()
        rclpy.try_shutdown()
    node.stop()  # before timing the engine here: the two would share the CPU
    return report(outputs, elapsed, config, scenes, out_dir)


def _ready_line(node: NodeProcess) -> str:
    line = next((line for line in node.tail if "lseg_node ready" in line), "lseg_node ready")
    return line[line.index("lseg_node ready"):]


def report(outputs: Outputs, elapsed: float, config: SegmenterConfig, scenes: list, out_dir: Path) -> int:
    latencies = np.array(outputs.latencies_ms)
    if len(latencies) == 0:
        print("[demo] no overlay received", file=sys.stderr)
        return 1
    counters = outputs.diagnostics
    print(f"[demo] {len(latencies)} frames in {elapsed:.1f} s; latency median {np.median(latencies):.1f} ms, "
          f"p90 {np.percentile(latencies, 90):.1f} ms (image stamp to overlay here, node in its own process); "
          f"frames in {counters.get('frames_in', '?')}, processed {counters.get('processed', '?')}, "
          f"dropped {counters.get('dropped', '?')}", flush=True)
    engine_ms, description = time_engine(config, [scenes[outputs.published[stamp]] for stamp in
                                                  outputs.received_stamps if stamp in outputs.published])
    print(f"[demo] engine: segment() median {engine_ms:.1f} ms on the same {len(latencies)} frames in this "
          f"process ({description})")
    print(f"[demo] node latency / engine time: {np.median(latencies) / engine_ms:.1f}x (medians); the node's "
          f"diagnostics: inference {counters.get('inference_ms_mean', '?')} ms, frame received to outputs "
          f"published {counters.get('end_to_end_ms_mean', '?')} ms (means)")
    if outputs.accuracies:
        print(f"[demo] pixel accuracy against the scenes' ground truth: {np.mean(outputs.accuracies):.3f} "
              f"over {len(outputs.accuracies)} frames")
    if outputs.point_counts:
        print(f"[demo] 3D: {np.mean(outputs.point_counts):.0f} labelled points and "
              f"{np.mean(outputs.object_counts):.1f} objects per frame; top views in {out_dir}/topdown_*.png")
    if outputs.floor_errors:
        errors = np.concatenate(outputs.floor_errors)
        print(f"[demo] 3D: of the points labelled 'floor', {100 * np.mean(errors < 0.05):.1f} % lie within 5 cm of "
              f"the scene's true floor plane (median {1000 * np.median(errors):.1f} mm; the rest are pixels of the "
              f"wall or objects labelled floor)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
