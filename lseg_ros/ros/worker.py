"""lseg_node's frame path: one-slot buffers and the worker thread that segments frames.

The executor never waits for the model: each camera's newest frame waits in its stream's
one-slot buffer (a newer frame replaces it and counts as dropped), and one worker thread
takes the newest frame of every camera that has one and segments them in one batched
forward; each result goes out on its own camera's outputs (outputs.py).
"""
from __future__ import annotations

import threading
import time
from typing import List, Optional

from sensor_msgs.msg import CompressedImage

from .cameras import CameraFrame, CameraStream
from .conversions import ImageConversionError, compressed_to_rgb, image_to_rgb


class FrameWorker:
    """The frames of ``streams`` (CameraStreams with their ``outputs``), segmented by ``node``'s
    segmenter (read at each frame). Of ``node`` it uses ``segmenter``, ``_active``,
    ``_stopping()``, ``context``, ``_log`` and ``label_info`` (outputs.LabelInfoOutput);
    ``config`` is its NodeConfig."""

    def __init__(self, node, streams: List[CameraStream], config) -> None:
        self.node, self.streams, self.config = node, streams, config
        self.lock = threading.Condition()  # the streams' frame slots
        self.thread: Optional[threading.Thread] = None

    def put(self, stream: CameraStream, msg) -> None:
        """A camera's frame: into its one-slot buffer (a frame still waiting there is dropped)."""
        with self.lock:
            stream.counters.frames_in += 1
            if stream.put((msg, time.perf_counter())):
                stream.counters.dropped += 1
            self.lock.notify()

    def clear(self, stream: CameraStream) -> None:
        """Drop the frame waiting in ``stream``'s slot."""
        with self.lock:
            stream.slot = None

    def start(self, stop: threading.Event) -> None:
        """Start the worker thread; it ends once ``stop`` is set (after a forward it is in)."""
        self.thread = threading.Thread(target=self._run, args=(stop,), name="lseg_worker", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        """Wake the worker thread (its stop event is set)."""
        with self.lock:
            self.lock.notify_all()

    def _run(self, stop: threading.Event) -> None:
        """Wait for a frame from any camera, take the newest frame of every camera that has one
        and segment them together (one batched forward)."""
        node = self.node
        while not stop.is_set():
            with self.lock:
                while not any(stream.slot is not None for stream in self.streams) and not stop.is_set():
                    self.lock.wait(timeout=0.1)
                frames = [(stream, *stream.take()) for stream in self.streams if stream.slot is not None]
            if not frames or stop.is_set():
                continue
            try:
                self._process(frames)
            except Exception as error:  # the node never dies on a frame
                if stop.is_set() or not node.context.ok():
                    return  # shutting down or cleaned up: publishers may already be invalid
                node.counters.failed += 1
                node._log("error", f"worker step failed: {type(error).__name__}: {error}", throttle=1.0)

    def _process(self, frames: List[tuple]) -> None:
        """Segment ``frames`` ((stream, msg, receive time), at most one per camera) in one
        forward and publish each result on its own camera's outputs. A frame that cannot be
        converted is rejected alone; the others are segmented."""
        node = self.node
        converted = [frame for frame in (self._converted(*frame) for frame in frames) if frame is not None]
        if not converted:
            return
        segmenter = node.segmenter
        if segmenter.label_set is None:
            node._log("warning", "no labels set: frame not segmented; publish labels on 'labels' or "
                      "'~/label_query' or set the labels parameter", throttle=5.0)
            return
        wanted = [frame.stream.outputs.wanted() for frame in converted]
        start = time.perf_counter()
        # one forward for all cameras (same-size frames batch; the segmenter runs other sizes one by one);
        # what one camera's subscribers want is computed for all of them
        results = segmenter.segment([frame.rgb for frame in converted],
                                    return_confidences=any(outputs.confidences for outputs in wanted),
                                    return_embeddings=any(outputs.embeddings for outputs in wanted))
        inference_s = time.perf_counter() - start
        if not node._active:  # deactivated meanwhile: inactive nodes publish nothing
            return
        if results[0].generation != node.label_info.generation:  # first frame(s) of a new label set
            node.label_info.publish(converted[0].header, results[0].labels, results[0].generation)
        for frame, outputs, result in zip(converted, wanted, results):
            counters = frame.stream.counters
            try:
                frame.stream.outputs.publish(frame, outputs, result)
            except Exception as error:  # one camera's failure does not keep the others' outputs back
                if not node._active or node._stopping():
                    raise  # deactivated, cleaned up or shutting down: the worker decides
                counters.failed += 1
                node._log("error", f"{frame.stream.log_prefix}publishing failed: {type(error).__name__}: {error}",
                          throttle=1.0, key=frame.stream.name)
                continue
            counters.processed += 1
            _push(counters.inference_s, inference_s)
            _push(counters.end_to_end_s, time.perf_counter() - frame.receive_time)

    def _converted(self, stream: CameraStream, msg, receive_time: float) -> Optional[CameraFrame]:
        """The frame as RGB, or None after counting and logging why it is rejected."""
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg, max_pixels=self.config.max_image_pixels)
            else:
                rgb = image_to_rgb(msg, max_pixels=self.config.max_image_pixels)
        except ImageConversionError as error:
            stream.counters.rejected_frames += 1
            self.node._log("error", f"{stream.log_prefix}frame rejected: {error}", throttle=1.0, key=stream.name)
            return None
        return CameraFrame(stream, msg.header, rgb, receive_time)


def _push(window: list, value: float, size: int = 100) -> None:
    window.append(value)
    if len(window) > size:
        del window[0]
