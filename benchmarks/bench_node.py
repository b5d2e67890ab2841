"""lseg_node benchmark: end-to-end latency, sustained rate and label-switch cost over real rclpy/DDS.

    python benchmarks/bench_node.py                       # dense_clip ViT-B-16, random weights, 448, 640x480
    python benchmarks/bench_node.py --model lseg-test-tiny-ViT --short-side 224 --frames 5 --seconds 3

Prints one JSON object (progress goes to stderr). What is measured (every time is
``time.perf_counter()`` in this one process; a frame's key is its header stamp, unique and
increasing):

* ``latency.<outputs>``: frames are published one at a time (rgb8 ``sensor_msgs/Image``, message
  built beforehand) and the next frame is sent only after the node has finished the previous one,
  so this is latency, not queueing. ``end_to_end_s`` = publish() of the frame -> the probe's
  callback receiving the ~/mask with the same stamp. ``all_outputs_s`` = publish -> the last of the
  subscribed outputs (mask, and overlay + confidence when subscribed) received. ``segment_s`` =
  ``node.segmenter.segment(frame)`` called directly on the same model instance, on the same frame,
  with the same ``return_confidences`` the node uses, interleaved frame by frame with the ROS
  measurement (order alternating), so the ratios hold on a noisy machine.
  ``ratio_end_to_end_to_segment`` = median(end_to_end) / median(segment) (target <= 1.2 on the CPU
  for ``mask_only``); ``ratio_paired_median`` = median over frames of end_to_end / segment.
  ``node_inference_s`` is the node's own timing of its segment() call (its diagnostics counter).
  ``<outputs>`` is ``mask_only`` (nothing subscribes to ~/overlay and ~/confidence, so the node
  skips them) or ``all_outputs`` (the probe subscribes to both).
* ``sustained.<outputs>``: frames published at ``--rate`` Hz for ``--seconds`` s, then the node is
  drained. ``processed_per_s`` = (masks - 1) / (last mask time - first mask time), the steady
  rate; ``processed_per_s_wall`` = processed / (first publish -> last mask). ``dropped`` = frames
  replaced in the node's one-slot buffer before the worker took them (the node's counter);
  ``lost_in_transport`` = published - received by the node (sensor-data QoS is best effort).
  ``latency_s`` = publish -> mask for the processed frames (includes waiting in the slot).
  ``efficiency`` = processed_per_s * median segment_s of the same outputs (1.0 = engine-bound).
* ``label_switch``: the node is idle (previous frame finished, outputs ``mask_only``). At t0 the
  probe publishes a label set on ``labels`` (std_msgs/String) and right after it a new frame F.
  The switch is complete at the first ~/mask, of a frame published after t0, that the node
  segmented with the new labels. The mask itself does not name its labels; ~/label_info does:
  the node encodes the set off the frame path (frames keep coming back with the old labels
  meanwhile) and publishes the SegmentationInfo just before the outputs of the first frame
  segmented with the new set, stamped with that frame's header. So frames are published one
  after another until a mask arrives whose stamp equals that SegmentationInfo's stamp
  (``frames_needed``). ``latency_s`` = t0 -> that mask received; ``label_info_latency_s`` =
  t0 -> the SegmentationInfo with the new labels received; ``overhead_s`` = latency_s - the
  end-to-end latency of a plain frame sent just before the switch in the same trial (paired),
  i.e. what the switch adds to a frame (about the text forward). ``new_labels`` uses 10 labels
  never seen before (text tower runs: ``text_forwards`` = the encoder's forward-batch count,
  ``prompts`` the prompts encoded); ``cached_labels`` switches back to the base labels, which
  are in the label cache (``text_forwards`` must be 0). ``engine_text_encode_s`` /
  ``engine_cached_encode_s``: ``segmenter.label_encoder.encode()`` called directly on another
  never-seen set / the cached base set, one per trial, interleaved with the trials.

Why in-process: the node (``LsegNode``, its own executor in a thread, like ``rclpy.spin`` in
``lseg_node``) and the probe (publisher + subscribers, another executor thread) share this
process. The engine's time is then measured on the *same* model instance with the same thread
pool, memory and weights, interleaved with the ROS frames, and the node's counters (frames in,
dropped, text forwards, "finished processing") can be read exactly instead of inferred. The
price: the probe's callbacks share the GIL with the node, so end_to_end is a slight
over-estimate of a separate-process deployment (messages still go through the RMW and are
serialized; rmw is reported). A separate process would need a second model instance to time
segment(), competing for the same 2 cores. Each run uses its own ROS_DOMAIN_ID (``--domain-id``,
default 1 + pid % 100) and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np
from bench_args import add_model_arguments

LABELS = ["floor", "wall", "door", "chair", "table", "person", "window", "ceiling", "plant", "cabinet"]
_ADJECTIVES = ["red", "blue", "green", "wooden", "metal", "plastic", "glass", "striped", "round", "square",
               "small", "large", "old", "new", "white", "black", "yellow", "shiny", "dusty", "broken"]
_NOUNS = ["sofa", "lamp", "bed", "sink", "stairs", "shelf", "monitor", "keyboard", "bottle", "cup",
          "backpack", "bicycle", "umbrella", "mirror", "curtain", "radiator", "printer", "suitcase", "vase",
          "clock"]
TARGET_RATIO = 1.2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--prompt-templates", default="default", help="none | single | imagenet | default")
    parser.add_argument("--labels", type=int, default=10, help="labels in the active set (and in each switch)")
    parser.add_argument("--frames", type=int, default=10, help="latency samples per outputs setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rate", type=float, default=30.0, help="publish rate (Hz) of the sustained run")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each sustained run")
    parser.add_argument("--switches", type=int, default=3, help="label-switch trials (new, then cached)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--executor", choices=("single", "multi"), default="single",
                        help="the node's executor: single (as rclpy.spin in lseg_node) or multi (4 threads)")
    parser.add_argument("--domain-id", type=int, default=1 + os.getpid() % 100)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for any one result")
    args = parser.parse_args(argv)
    if args.labels < 1 or args.labels > len(LABELS) * 10:
        parser.error(f"--labels must be in [1, {len(LABELS) * 10}]")
    if args.frames < 1 or args.rate <= 0 or args.seconds <= 0 or args.switches < 0:
        parser.error("--frames >= 1, --rate > 0, --seconds > 0, --switches >= 0")
    return args


def log(message: str) -> None:
    print(f"[bench_node {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(values) -> dict:
    values = [float(v) for v in values]
    if not values:
        return {"n": 0}
    return {"median": round(statistics.median(values), 4), "p90": round(float(np.percentile(values, 90)), 4),
            "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}


def _median(values):
    return statistics.median(values) if values else float("nan")


def _await(condition, timeout: float, poll: float = 0.001) -> bool:
    """Poll a condition on state this process shares with the node (its counters)."""
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(poll)
    return True


def _key(stamp) -> tuple:
    return stamp.sec, stamp.nanosec


def fresh_names():
    """Label names never used before in this run: "red sofa", "red lamp", ... (400, then numbered)."""
    for round_ in itertools.count():
        for adjective, noun in itertools.product(_ADJECTIVES, _NOUNS):
            yield f"{adjective} {noun}" + (f" {round_}" if round_ else "")


class Probe:
    """The benchmark's node: publishes frames and labels, timestamps every output on arrival."""

    def __init__(self, node_name: str):
        import rclpy
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from lseg_ros.msg import SegmentationInfo

        self.node = rclpy.create_node("lseg_bench_probe")
        self.ns = node_name
        self.cond = threading.Condition()
        self.times = {"mask": {}, "overlay": {}, "confidence": {}}  # stamp -> receive time
        self.infos = []  # (receive time, labels, stamp key)
        self.node.create_subscription(Image, f"{node_name}/mask", self._stamp_callback("mask"), 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(SegmentationInfo, f"{node_name}/label_info", self._on_info, latched)
        self.image_pub = self.node.create_publisher(Image, "image", qos_profile_sensor_data)
        self.labels_pub = self.node.create_publisher(String, "labels", 10)
        self._optional = []
        self._stamp_counter = itertools.count(1)
        self._stamp_base = int(time.time())

    def _stamp_callback(self, key):
        def on_message(msg):
            now = time.perf_counter()
            with self.cond:
                self.times[key].setdefault(_key(msg.header.stamp), now)
                self.cond.notify_all()
        return on_message

    def _on_info(self, msg):
        now = time.perf_counter()
        with self.cond:
            self.infos.append((now, list(msg.labels), _key(msg.header.stamp)))
            self.cond.notify_all()

    def subscribe_optional(self, on: bool) -> None:
        """Subscribe to (or drop) ~/overlay and ~/confidence."""
        from sensor_msgs.msg import Image

        from lseg_ros.msg import ConfidenceMaps

        if on and not self._optional:
            self._optional = [
                self.node.create_subscription(Image, f"{self.ns}/overlay", self._stamp_callback("overlay"), 10),
                self.node.create_subscription(ConfidenceMaps, f"{self.ns}/confidence",
                                              self._stamp_callback("confidence"), 10)]
        elif not on:
            for subscription in self._optional:
                self.node.destroy_subscription(subscription)
            self._optional = []

    def next_stamp(self, msg) -> tuple:
        count = next(self._stamp_counter)
        msg.header.stamp.sec, msg.header.stamp.nanosec = self._stamp_base + count // 1000, (count % 1000) * 1000
        return _key(msg.header.stamp)

    def wait(self, predicate, timeout: float):
        """The first truthy predicate() (called under the lock), or None after timeout."""
        deadline = time.perf_counter() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return None
                self.cond.wait(remaining)


class Bench:
    def __init__(self, args, node, probe, frames, messages):
        self.args, self.node, self.probe = args, node, probe
        self.frames, self.messages = frames, messages
        self.lost_timeout = 5.0  # a frame the node has not received by then is lost (best effort)

    @property
    def counters(self):
        return self.node.counters

    def in_flight(self) -> int:
        c = self.counters
        return c.frames_in - c.dropped - c.processed - c.rejected_frames - c.failed

    def wait_idle(self) -> None:
        if not _await(lambda: self.in_flight() == 0, self.args.timeout, poll=0.005):
            raise RuntimeError(f"node still busy after {self.args.timeout} s")

    def outputs(self, all_outputs: bool):
        return ("mask", "overlay", "confidence") if all_outputs else ("mask",)

    def set_outputs(self, all_outputs: bool) -> None:
        self.probe.subscribe_optional(all_outputs)
        want = 1 if all_outputs else 0
        publishers = self.node._streams[0].publishers  # the single camera's outputs
        ok = _await(lambda: publishers["overlay"].get_subscription_count() == want
                    and publishers["confidence"].get_subscription_count() == want, 20.0, poll=0.01)
        if not ok:
            raise RuntimeError("the node did not see the probe's overlay/confidence subscriptions change")

    def send_frame(self, index: int, all_outputs: bool):
        """Publish one frame, wait until the node finished it; None if the frame was lost."""
        msg = self.messages[index % len(self.messages)]
        c = self.counters
        frames_in0, processed0 = c.frames_in, c.processed
        key = self.probe.next_stamp(msg)
        t_publish = time.perf_counter()
        self.probe.image_pub.publish(msg)
        if not _await(lambda: c.frames_in > frames_in0, self.lost_timeout):
            return None
        keys = self.outputs(all_outputs)
        times = self.probe.times
        if not self.probe.wait(lambda: all(key in times[k] for k in keys), self.args.timeout):
            raise RuntimeError(f"no {'/'.join(keys)} for frame {key} within {self.args.timeout} s "
                               f"(node counters: {self.counters})")
        _await(lambda: c.processed > processed0, self.args.timeout)
        with self.probe.cond:
            received = {k: times[k][key] for k in keys}
        return {"key": key, "end_to_end": received["mask"] - t_publish,
                "all_outputs": max(received.values()) - t_publish, "node_inference": c.inference_s[-1]}

    def send_frame_retrying(self, index: int, all_outputs: bool):
        lost = 0
        for _ in range(20):
            result = self.send_frame(index, all_outputs)
            if result is not None:
                return result, lost
            lost += 1
        raise RuntimeError("20 frames in a row lost in transport")

    def engine_segment(self, index: int, all_outputs: bool) -> float:
        frame = self.frames[index % len(self.frames)]
        start = time.perf_counter()
        self.node.segmenter.segment(frame, return_confidences=all_outputs)
        return time.perf_counter() - start

    # ------------------------------------------------------------ measures
    def warmup(self) -> None:
        for index in range(self.args.warmup):
            self.send_frame_retrying(index, False)
            self.engine_segment(index, False)
            self.engine_segment(index, True)

    def latency(self, all_outputs: bool) -> dict:
        end_to_end, all_out, segment, node_inference, lost = [], [], [], [], 0
        for index in range(self.args.frames):
            engine_first = index % 2 == 1
            if engine_first:
                segment.append(self.engine_segment(index, all_outputs))
            result, lost_now = self.send_frame_retrying(index, all_outputs)
            lost += lost_now
            if not engine_first:
                segment.append(self.engine_segment(index, all_outputs))
            end_to_end.append(result["end_to_end"])
            all_out.append(result["all_outputs"])
            node_inference.append(result["node_inference"])
        paired = [e / s for e, s in zip(end_to_end, segment)]
        ratio = _median(end_to_end) / _median(segment)
        out = {"end_to_end_s": summary(end_to_end), "segment_s": summary(segment),
               "ratio_end_to_end_to_segment": round(ratio, 3), "ratio_paired_median": round(_median(paired), 3),
               "overhead_s": round(_median([e - s for e, s in zip(end_to_end, segment)]), 4),
               "node_inference_s": summary(node_inference), "lost_in_transport": lost}
        if all_outputs:
            out["all_outputs_s"] = summary(all_out)
        return out

    def sustained(self, all_outputs: bool, segment_median: float) -> dict:
        args, probe, c = self.args, self.probe, self.counters
        self.wait_idle()
        frames_in0, processed0, dropped0 = c.frames_in, c.processed, c.dropped
        count = max(1, int(round(args.rate * args.seconds)))
        published = {}
        start = time.perf_counter()
        for index in range(count):
            delay = start + index / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            msg = self.messages[index % len(self.messages)]
            key = probe.next_stamp(msg)
            published[key] = time.perf_counter()
            probe.image_pub.publish(msg)
        last_publish = time.perf_counter()
        _await(lambda: c.frames_in - frames_in0 == count, 1.0, poll=0.005)  # late deliveries
        self.wait_idle()
        processed = c.processed - processed0
        keys = self.outputs(all_outputs)
        probe.wait(lambda: all(sum(1 for key in published if key in probe.times[k]) >= processed for k in keys),
                   10.0)
        with probe.cond:
            masks = sorted((probe.times["mask"][key], key) for key in published if key in probe.times["mask"])
        latencies = [t - published[key] for t, key in masks]
        steady = (len(masks) - 1) / (masks[-1][0] - masks[0][0]) if len(masks) >= 2 else float("nan")
        wall = len(masks) / (masks[-1][0] - start) if masks else float("nan")
        return {"rate_hz": args.rate, "seconds": args.seconds, "published": count,
                "published_per_s": round((count - 1) / (last_publish - start), 2) if count > 1 else None,
                "received_by_node": c.frames_in - frames_in0, "lost_in_transport": count - (c.frames_in - frames_in0),
                "processed": processed, "dropped": c.dropped - dropped0, "masks_received": len(masks),
                "processed_per_s": round(steady, 3), "processed_per_s_wall": round(wall, 3),
                "engine_fps": round(1.0 / segment_median, 3),
                "efficiency": round(steady * segment_median, 3), "latency_s": summary(latencies)}

    def switch(self, names) -> dict:
        """One label switch on an idle node (see the module docstring for the definition)."""
        from std_msgs.msg import String

        probe, encoder = self.probe, self.node.segmenter.label_encoder
        self.wait_idle()
        baseline, _ = self.send_frame_retrying(0, False)  # paired reference: a frame with no switch
        forwards0, cached0 = encoder.forward_count, len(encoder)
        info_index = len(probe.infos)
        t0 = time.perf_counter()
        probe.labels_pub.publish(String(data=", ".join(names)))
        frames_needed, lost = 0, 0
        deadline = t0 + self.args.timeout
        while time.perf_counter() < deadline:
            frames_needed += 1
            result = self.send_frame(frames_needed, False)
            if result is None:
                lost += 1
                continue
            with probe.cond:
                info = next((i for i in probe.infos[info_index:] if i[1] == list(names)), None)
            if info is not None and result["key"] >= info[2]:  # segmented with the new labels
                with probe.cond:
                    t_mask = probe.times["mask"][result["key"]]
                return {"latency": t_mask - t0, "label_info_latency": info[0] - t0,
                        "overhead": t_mask - t0 - baseline["end_to_end"],
                        "frames_needed": frames_needed, "lost": lost,
                        "text_forwards": encoder.forward_count - forwards0,
                        "cache_entries_added": len(encoder) - cached0}
        raise RuntimeError(f"no frame segmented with the new labels within {self.args.timeout} s")

    def label_switches(self, base_labels) -> dict:
        names_iter = fresh_names()
        encoder = self.node.segmenter.label_encoder
        new, cached, engine_new, engine_cached = [], [], [], []
        for trial in range(self.args.switches):
            new_names = [next(names_iter) for _ in base_labels]
            log(f"label switch {trial + 1}/{self.args.switches}: new labels {new_names[:2]}...")
            new.append(self.switch(new_names))
            log(f"label switch {trial + 1}/{self.args.switches}: back to cached labels")
            cached.append(self.switch(base_labels))
            probe_names = [next(names_iter) for _ in base_labels]
            start = time.perf_counter()
            encoder.encode(probe_names)
            engine_new.append(time.perf_counter() - start)
            start = time.perf_counter()
            encoder.encode(base_labels)
            engine_cached.append(time.perf_counter() - start)

        def report(trials, engine):
            latency = [t["latency"] for t in trials]
            return {"latency_s": summary(latency),
                    "label_info_latency_s": summary([t["label_info_latency"] for t in trials]),
                    "overhead_s": summary([t["overhead"] for t in trials]),
                    "frames_needed": [t["frames_needed"] for t in trials],
                    "text_forwards": [t["text_forwards"] for t in trials],
                    "cache_entries_added": [t["cache_entries_added"] for t in trials],
                    "lost_in_transport": sum(t["lost"] for t in trials),
                    "engine_encode_s": summary(engine)}

        templates = len(encoder.templates)
        return {"definition": "idle node; t0 = labels published on 'labels', a new frame right after; latency = "
                              "t0 -> first ~/mask of a frame published after t0 whose stamp equals the stamp of the "
                              "~/label_info naming the new labels (the first frame segmented with them); frames "
                              "are segmented with the old labels meanwhile",
                "trials": self.args.switches, "labels_per_set": len(base_labels),
                "prompts_per_new_set": len(base_labels) * max(1, templates), "templates": templates,
                "text_batch_size": encoder.batch_size,
                "new_labels": report(new, engine_new), "cached_labels": report(cached, engine_cached)}


def machine_info(device) -> dict:
    import torch

    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "machine": platform.machine(), "python": platform.python_version(), "cpu_model": None}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo
                                      if line.startswith("model name")), None)
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    import torch
    import rclpy
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
    from rclpy.utilities import get_rmw_implementation_identifier
    from std_msgs.msg import Header

    from lseg_ros.preprocess import model_input_size
    from lseg_ros.ros.conversions import rgb_to_image_msg
    from lseg_ros.ros.node import LsegNode
    from lseg_ros.ros.params import parameter_overrides

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    base_labels = (LABELS * 10)[:args.labels]
    base_labels = [label if i < len(LABELS) else f"{label} {i // len(LABELS)}" for i, label in enumerate(base_labels)]
    parameters = {"backend": args.backend, "model": args.model, "pretrained": args.pretrained,
                  "device": args.device, "precision": args.precision, "short_side": args.short_side,
                  "prompt_templates": args.prompt_templates, "labels": base_labels}
    rclpy.init(domain_id=args.domain_id)
    node_executor = (MultiThreadedExecutor(num_threads=4) if args.executor == "multi" else SingleThreadedExecutor())
    probe_executor = SingleThreadedExecutor()
    node = probe = None
    try:
        log(f"building {args.backend}/{args.model} (domain {args.domain_id})")
        build_start = time.perf_counter()
        node = LsegNode("lseg_node", parameter_overrides=parameter_overrides(parameters))
        build_s = time.perf_counter() - build_start  # includes encoding the initial labels
        probe = Probe(node.get_fully_qualified_name())
        node_executor.add_node(node)
        probe_executor.add_node(probe.node)
        for executor in (node_executor, probe_executor):
            threading.Thread(target=executor.spin, daemon=True).start()
        if node.segmenter.labels != base_labels:
            raise RuntimeError(f"the node started with labels {node.segmenter.labels}, not {base_labels}")
        if not _await(lambda: probe.image_pub.get_subscription_count() > 0
                      and node._streams[0].publishers["mask"].get_subscription_count() > 0, 20.0, poll=0.01):
            raise RuntimeError("probe and node did not discover each other")

        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
                  for _ in range(min(args.frames, 8))]
        messages = [rgb_to_image_msg(frame, Header(frame_id="camera")) for frame in frames]
        bench = Bench(args, node, probe, frames, messages)
        segmenter = node.segmenter
        size = model_input_size(args.height, args.width, segmenter.config.short_side,
                                segmenter.config.max_long_side, segmenter.backend.input_multiple)

        log("warm-up")
        bench.warmup()
        latency, sustained = {}, {}
        for all_outputs in (False, True):
            name = "all_outputs" if all_outputs else "mask_only"
            bench.set_outputs(all_outputs)
            log(f"{name}: latency over {args.frames} frames")
            latency[name] = bench.latency(all_outputs)
            log(f"{name}: sustained {args.rate} Hz for {args.seconds} s")
            sustained[name] = bench.sustained(all_outputs, latency[name]["segment_s"]["median"])
        bench.set_outputs(False)
        label_switch = bench.label_switches(base_labels)
        ratio = latency["mask_only"]["ratio_end_to_end_to_segment"]
        result = {
            "benchmark": "lseg_node end to end (in-process node + probe over rclpy/DDS)",
            "model": segmenter.description, "backend": args.backend, "device": str(segmenter.device),
            "precision": args.precision, "image": [args.height, args.width], "model_input": list(size),
            "labels": len(base_labels), "frames": args.frames, "warmup": args.warmup,
            "build_s_with_initial_labels": round(build_s, 3),
            "rmw": get_rmw_implementation_identifier(), "ros_domain_id": args.domain_id,
            "node_executor": args.executor,
            "latency_definition": "publish(frame) -> its ~/mask received (one frame at a time, node idle); "
                                  "segment_s: segmenter.segment() on the same frame, same instance, interleaved",
            "latency": latency, "sustained": sustained, "label_switch": label_switch,
            "target_ratio": TARGET_RATIO, "meets_target": ratio <= TARGET_RATIO,
            "node_counters": {k: getattr(node.counters, k) for k in (
                "frames_in", "processed", "dropped", "rejected_frames", "rejected_queries", "failed")},
            "machine": dict(machine_info(segmenter.device), loadavg_start=[round(x, 2) for x in load_start],
                            loadavg_end=[round(x, 2) for x in os.getloadavg()]),
        }
        print(json.dumps(result, indent=2))
    finally:
        node_executor.shutdown()
        probe_executor.shutdown()
        for ros_node in (probe.node if probe else None, node):
            if ros_node is not None:
                ros_node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
