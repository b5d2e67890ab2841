"""lseg_node's status on /diagnostics, one builder for one camera and for several.

diagnostic_updater's naming: each status is "<node name>: <task>", the fully qualified
name is a value. One camera: 'segmentation' (the node, its labels and its input),
'input frequency' and 'input timestamps' (diagnostic_updater's FrequencyStatus and
TimeStampStatus, diagnostics.py). Several cameras: 'segmentation' (the labels, the model,
the worker), then one 'camera <name>' per camera (its input: counters, rate, stamps,
silence, depth). An inactive managed node reports every task OK, "inactive".
"""
from __future__ import annotations

import time
from typing import List

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from .cameras import CameraStream
from .diagnostics import ERROR, OK, WARN

#: the tasks /diagnostics reports on, as "<node name>: <task>"
DIAGNOSTIC_TASKS = ("segmentation", "input frequency", "input timestamps")


class NodeStatus:
    """The statuses of ``node`` (an lseg node: its segmenter, streams, counters, label
    scheduler, node_config and ``_log``), counting problems since the previous call."""

    def __init__(self, node) -> None:
        self.node = node
        self._seen = (0, 0)  # (problems, processed) at the last call (several cameras)

    def statuses(self) -> List[DiagnosticStatus]:
        """The statuses of one /diagnostics message."""
        node = self.node
        if not node._active:  # configured managed node, not active: nothing is expected to arrive
            return self._inactive()
        label_health, label_values = self._label_status()
        counters, several = node.counters, bool(node.node_config.cameras)
        if several:
            health, values = self._shared_health(), {**self._shared_values(), **label_values}
            tasks = [self._camera_status(stream) for stream in node._streams]
        else:
            stream = node._streams[0]  # its counters are the node's
            # a refused request that was answered to its caller is no health problem: only label
            # messages from topics, refused with nobody to tell, count
            unanswered = counters.rejected_queries - counters.refused_calls
            health, silent_s = self._input_health(stream, counters.input_problems() + unanswered)
            queries = {"rejected_queries": counters.rejected_queries, "refused_calls": counters.refused_calls}
            values = {"node": node.get_fully_qualified_name(),
                      **self._input_values(stream, silent_s, label_values, queries)}
            tasks = [self._status(task, level, message, {"node": node.get_fully_qualified_name(),
                                                         "topic": stream.image_sub.topic_name, **task_values})
                     for task, (level, message, task_values) in self._input_checks(stream)]
        values.update(device=str(node.segmenter.device), model=node.segmenter.description)
        if label_health is not None and label_health[0] != OK:
            level, message = label_health
        else:
            level, message = health or label_health or (OK, "running")
        return [self._status(DIAGNOSTIC_TASKS[0], level, message, values)] + tasks

    def _inactive(self) -> List[DiagnosticStatus]:
        segmenter = self.node.segmenter
        label_set = segmenter.label_set
        values = {"node": self.node.get_fully_qualified_name(), "labels": ", ".join(segmenter.labels),
                  "label_generation": label_set.generation if label_set else 0, "model": segmenter.description}
        return [self._status(task, OK, "inactive (lifecycle state)", values) for task in DIAGNOSTIC_TASKS]

    def _shared_health(self):
        """Several cameras: (level, message) of label queries refused and frames failing since
        the last call, or None (each camera's input is in its own status)."""
        node = self.node
        counters = node.counters
        problems = counters.rejected_queries - counters.refused_calls + counters.failed  # see statuses()
        processed = sum(stream.counters.processed for stream in node._streams)
        new_problems, new_processed = problems - self._seen[0], processed - self._seen[1]
        self._seen = (problems, processed)
        if not new_problems:
            return None
        return (ERROR, "label queries rejected or frames failing, nothing processed") if not new_processed else \
            (WARN, "some label queries rejected or frames failing")

    def _shared_values(self) -> dict:
        node = self.node
        counters, streams = node.counters, node._streams
        return {
            "node": node.get_fully_qualified_name(), "cameras": ", ".join(node.node_config.cameras),
            "input_topics": ", ".join(node.input_topics()),
            **{key: sum(getattr(stream.counters, key) for stream in streams)
               for key in ("frames_in", "processed", "dropped")},
            "rejected_queries": counters.rejected_queries, "refused_calls": counters.refused_calls,
            "failed": counters.failed,
        }

    def _camera_status(self, stream: CameraStream) -> DiagnosticStatus:
        """One camera's status, named '<node>: camera <name>': the worst of its input health,
        its input rate and its stamps (diagnostic_updater's frequency and time-stamp checks)."""
        counters = stream.counters
        health, silent_s = self._input_health(stream, counters.input_problems())
        level, message = health or (OK, "running" if counters.frames_in else "waiting for the first frame")
        values = {"node": self.node.get_fully_qualified_name(), "camera": stream.name,
                  **self._input_values(stream, silent_s)}
        for task, (task_level, task_message, task_values) in self._input_checks(stream):
            if task_level != OK:
                message += f"; {task}: {task_message}"
                level = max(level, task_level)
            values.update(task_values)
        return self._status(f"camera {stream.name}", level, message, values)

    @staticmethod
    def _input_checks(stream: CameraStream) -> list:
        """[(task, (level, message, values))] of the input rate and stamps since the last call."""
        return [(DIAGNOSTIC_TASKS[1], stream.frequency.update(time.monotonic())),
                (DIAGNOSTIC_TASKS[2], stream.stamps.update())]

    @staticmethod
    def _input_values(stream: CameraStream, silent_s: float, labels: dict = None, queries: dict = None) -> dict:
        """A camera's input values; with one camera also the ``labels`` values and the label
        ``queries`` counts."""
        counters = stream.counters
        return {
            "input_topic": stream.image_sub.topic_name, "seconds_since_last_frame": f"{silent_s:.1f}",
            "frames_in": counters.frames_in, "processed": counters.processed, "dropped": counters.dropped,
            "rejected_frames": counters.rejected_frames, **(queries or {}),
            "rejected_camera_info": counters.rejected_camera_info, "failed": counters.failed,
            "inference_ms_mean": _mean_ms(counters.inference_s), "end_to_end_ms_mean": _mean_ms(counters.end_to_end_s),
            **(labels or {}),
            "depth_in": counters.depth_in, "depth_matched": counters.depth_matched,
            "depth_unmatched": counters.depth_unmatched, "rejected_depth": counters.rejected_depth,
        }

    def _input_health(self, stream: CameraStream, problems: int) -> tuple:
        """((level, message) of a camera's input since the last diagnostics, or None when
        healthy; seconds since its last frame). Rejected or failing input, a silent image
        topic (also logged), depth arriving but never paired."""
        config = self.node.node_config
        counters, seen = stream.counters, stream.diagnostics_seen
        new_problems, new_processed = problems - seen[0], counters.processed - seen[1]
        new_unpaired, new_paired = counters.depth_unmatched - seen[2], counters.depth_matched - seen[3]
        stream.diagnostics_seen = (problems, counters.processed, counters.depth_unmatched, counters.depth_matched)
        silent_s = time.monotonic() - stream.last_frame_at
        timeout = config.input_timeout
        stale = timeout > 0 and silent_s > timeout
        topic = stream.image_sub.topic_name
        if stale:
            self.node._log("warning", f"no frame for {silent_s:.0f} s on {topic}; check the camera and the topic "
                           "remapping", throttle=max(10.0, timeout), key=stream.name)
        if new_problems and not new_processed:
            return (ERROR, "input rejected or failing, nothing processed"), silent_s
        if new_problems:
            return (WARN, "some input rejected or failing"), silent_s
        if stale:
            return (WARN, f"no frame for {silent_s:.1f} s on {topic}"), silent_s
        if new_unpaired and not new_paired:
            return (WARN, f"depth arriving but not paired with frames (stamps more than depth_slop="
                          f"{config.depth_slop:g} s apart?)"), silent_s
        return None, silent_s

    def _label_status(self) -> tuple:
        """((level, message) when there is no label set, or None; the values about labels)."""
        node = self.node
        encoding, pending = node.label_scheduler.encoding, node.label_scheduler.pending
        label_set = node.segmenter.label_set
        health = None
        if label_set is None:
            health = (WARN, "waiting for labels" + ("" if encoding is None else " (encoding a label set)"))
        elif encoding is not None:
            health = (OK, "running; encoding a new label set")
        values = {
            "labels": ", ".join(node.segmenter.labels), "label_generation": label_set.generation if label_set else 0,
            "label_encoding": "idle" if encoding is None else
            f"{len(encoding[0].names)} labels from {encoding[0].source}, {time.monotonic() - encoding[1]:.1f} s",
            "label_pending": "none" if pending is None else f"{len(pending.names)} labels from {pending.source}",
            "superseded_label_sets": node.counters.superseded_label_sets,
        }
        return health, values

    def _status(self, task: str, level: int, message: str, values: dict) -> DiagnosticStatus:
        """A DiagnosticStatus named '<node name>: <task>' (diagnostic_updater's naming; the
        fully qualified name is a value)."""
        return DiagnosticStatus(level=bytes([level]) if isinstance(DiagnosticStatus.OK, bytes) else level,
                                name=f"{self.node.get_name()}: {task}", message=message,
                                hardware_id=str(self.node.segmenter.device),
                                values=[KeyValue(key=key, value=str(value)) for key, value in values.items()])


def _mean_ms(window: list) -> str:
    return f"{1000.0 * sum(window) / len(window):.1f}" if window else "n/a"
