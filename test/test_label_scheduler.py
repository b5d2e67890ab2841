"""LabelScheduler without ROS: one-slot buffer, supersede, generations, the waiting bound,
failures and stop, with a segmenter double whose text forward the test holds and releases."""
from __future__ import annotations

import sys
import threading
import time

import pytest

from lseg_ros.ros.cameras import Counters
from lseg_ros.ros.labels import LabelRequest, LabelScheduler, label_list, label_specs


class FakeSegmenter:
    """validate/prepare/use like Segmenter's; ``prepare_labels`` blocks while ``gate`` is clear
    and raises ``fail`` (an exception) when set."""

    def __init__(self) -> None:
        self.generation = 0
        self.in_use = None  # names of the set in use
        self.prepared = []  # names of every set encoded, in order
        self.gate = threading.Event()
        self.gate.set()
        self.encoding = threading.Event()  # set while a prepare_labels call is in progress
        self.fail = None

    def validate_labels(self, names, descriptions=None, thresholds=None):
        if not names:
            raise ValueError("empty label set")
        if any(not name.strip() for name in names):
            raise ValueError(f"empty label name in {names!r}")
        return [name.strip() for name in names], [list(d) for d in descriptions or [[] for _ in names]], thresholds

    def prepare_labels(self, names, descriptions=None, thresholds=None):
        self.encoding.set()
        try:
            assert self.gate.wait(10.0)
            if self.fail is not None:
                raise self.fail
            self.prepared.append(list(names))
            return list(names)
        finally:
            self.encoding.clear()

    def use_labels(self, label_set):
        self.generation += 1
        self.in_use = label_set
        return self.generation


@pytest.fixture
def scheduled():
    segmenter, counters, lines, cleared = FakeSegmenter(), Counters(), [], []
    scheduler = LabelScheduler(segmenter, counters, lambda level, text, **kw: lines.append((level, text)),
                               cleared.append)
    stop = threading.Event()
    scheduler.start(stop)
    scheduler.stop_event = stop  # the event the thread watches (the node's per-configure one)
    yield scheduler, segmenter, counters, lines, cleared
    stop.set()
    scheduler.stop()
    segmenter.gate.set()
    scheduler.thread.join(5.0)


def _request(*names, order=0):
    return LabelRequest(list(names), [[] for _ in names], [None] * len(names), "test", done=threading.Event(),
                        order=order)


def _until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_a_request_is_encoded_off_the_callers_thread_and_used_under_the_next_generation(scheduled):
    scheduler, segmenter, counters, lines, _ = scheduled
    first, second = _request("door"), _request("chair", "table")
    scheduler.enqueue(first)
    assert first.done.wait(5.0) and first.outcome == (True, "")
    scheduler.enqueue(second)
    assert second.done.wait(5.0) and second.outcome == (True, "")
    assert segmenter.generation == 2 and segmenter.in_use == ["chair", "table"]
    assert ("info", "label set 2 from test: ['chair', 'table']") in lines
    assert scheduler.latest is second and scheduler.pending is None


def test_the_one_slot_buffer_keeps_only_the_newest_waiting_request_and_answers_the_older_superseded(scheduled):
    scheduler, segmenter, counters, _, _ = scheduled
    segmenter.gate.clear()
    encoding = _request("encoding")
    scheduler.enqueue(encoding)
    assert segmenter.encoding.wait(5.0)
    assert scheduler.encoding[0] is encoding
    older, newer = _request("older"), _request("newer")
    scheduler.enqueue(older)
    scheduler.enqueue(newer)
    assert older.done.is_set() and not older.outcome[0] and "superseded" in older.outcome[1]
    assert scheduler.pending is newer
    segmenter.gate.set()
    assert newer.done.wait(5.0) and newer.outcome == (True, "")
    # the set being encoded finished (cached) but was not put in use: a newer one was waiting
    assert encoding.outcome == (False, "superseded by a newer label set (from test) before it was applied")
    assert segmenter.prepared == [["encoding"], ["newer"]] and segmenter.in_use == ["newer"]
    assert segmenter.generation == 1 and counters.superseded_label_sets == 1


def test_the_newest_call_wins_whichever_reaches_the_buffer_first(scheduled):
    scheduler, segmenter, _, _, _ = scheduled
    segmenter.gate.clear()
    later, earlier = _request("later", order=20), _request("earlier", order=10)
    scheduler.enqueue(later)
    scheduler.enqueue(earlier)
    assert earlier.done.is_set() and earlier.outcome == (
        False, "superseded by a newer label set (from test) before it was applied")
    segmenter.gate.set()
    assert later.done.wait(5.0) and later.outcome == (True, "")
    assert segmenter.in_use == ["later"]


def test_an_empty_set_pauses_segmentation_and_is_announced_with_its_generation(scheduled):
    scheduler, segmenter, _, lines, cleared = scheduled
    scheduler.submit([], None, None, "labels parameter")
    assert _until(lambda: cleared == [1])
    assert segmenter.in_use is None and segmenter.prepared == []
    assert ("warning", "labels parameter: empty label set; segmentation paused until labels arrive") in lines


def test_a_refused_set_is_counted_logged_and_never_queued(scheduled):
    scheduler, segmenter, counters, lines, _ = scheduled
    scheduler.submit(["door", " "], None, None, "labels topic", allow_empty=False)
    scheduler.submit([], None, None, "label_query", allow_empty=False)
    assert scheduler.pending is None and counters.rejected_queries == 2 and counters.refused_calls == 0
    assert lines[0] == ("error", "labels topic: label set rejected: empty label name in ['door', ' ']")
    assert segmenter.generation == 0


def test_calls_beyond_max_waiting_are_refused_at_once_and_the_waiting_call_gets_its_set(scheduled):
    scheduler, segmenter, counters, _, _ = scheduled
    segmenter.gate.clear()
    answers = {}
    waiting = threading.Thread(target=lambda: answers.update(
        first=scheduler.call(_request("first"), 10.0, 1, lambda: False)))
    waiting.start()
    assert _until(lambda: scheduler.waiting_calls == 1)
    started = time.monotonic()
    refused = scheduler.call(_request("second"), 10.0, 1, lambda: False)
    assert time.monotonic() - started < 1.0
    assert refused == (False, "refused: too many calls waiting (1 ~/set_labels calls wait for their label sets); "
                              "call again")
    assert counters.rejected_queries == 1 and counters.refused_calls == 1
    segmenter.gate.set()
    waiting.join(10.0)
    assert answers["first"] == (True, "") and scheduler.waiting_calls == 0


def test_a_call_answers_when_its_timeout_passes_or_the_node_stops(scheduled):
    scheduler, segmenter, _, _, _ = scheduled
    segmenter.gate.clear()
    success, message = scheduler.call(_request("slow"), 0.1, 3, lambda: False)
    assert not success and message.startswith("not in use after 0.1 s (set_labels_timeout)")
    assert scheduler.call(_request("slower"), 10.0, 3, lambda: True) == (False, "the node is shutting down")
    assert scheduler.waiting_calls == 0


def test_an_encoder_failure_is_counted_reported_and_the_thread_takes_the_next_set(scheduled):
    scheduler, segmenter, counters, lines, _ = scheduled
    segmenter.fail = RuntimeError("CUDA out of memory")
    broken = _request("door")
    scheduler.enqueue(broken)
    assert broken.done.wait(5.0)
    assert broken.outcome == (False, "label encoding failed: RuntimeError: CUDA out of memory")
    assert counters.failed == 1 and ("error", "label encoding failed: RuntimeError: CUDA out of memory") in lines
    segmenter.fail = ValueError("label 'x' too long")
    refused = _request("x")
    scheduler.enqueue(refused)
    assert refused.done.wait(5.0) and refused.outcome == (False, "label 'x' too long")
    assert counters.rejected_queries == 1 and counters.refused_calls == 1  # a waiting caller was told
    segmenter.fail = None
    good = _request("chair")
    scheduler.enqueue(good)
    assert good.done.wait(5.0) and good.outcome == (True, "") and segmenter.in_use == ["chair"]


def test_threshold_changes_reapply_the_latest_set_unless_another_is_waiting(scheduled):
    scheduler, segmenter, _, _, _ = scheduled
    first = _request("door")
    scheduler.enqueue(first)
    assert first.done.wait(5.0)
    scheduler.reapply_latest("threshold parameter")
    assert _until(lambda: segmenter.generation == 2)
    assert segmenter.prepared == [["door"], ["door"]]
    segmenter.gate.clear()
    waiting = _request("chair")
    scheduler.enqueue(waiting)
    assert segmenter.encoding.wait(5.0)
    other = _request("table")
    scheduler.enqueue(other)
    scheduler.reapply_latest("threshold parameter")  # "table" waits: it is not replaced
    assert scheduler.pending is other


def test_stop_answers_the_waiting_request_and_ends_the_thread_after_its_forward(scheduled):
    scheduler, segmenter, _, _, _ = scheduled
    segmenter.gate.clear()
    encoding, waiting = _request("encoding"), _request("waiting")
    scheduler.enqueue(encoding)
    assert segmenter.encoding.wait(5.0)
    scheduler.enqueue(waiting)
    scheduler.stop_event.set()
    scheduler.stop()
    assert waiting.outcome == (False, "the node stopped before this label set was applied")
    assert scheduler.segmenter is None  # the model can be freed once the forward ends
    assert scheduler.thread.is_alive()  # still in its text forward
    segmenter.gate.set()
    scheduler.thread.join(5.0)
    assert not scheduler.thread.is_alive()


def test_apply_now_uses_the_set_in_the_calling_thread_and_remembers_it():
    segmenter = FakeSegmenter()
    scheduler = LabelScheduler(segmenter, Counters(), lambda *a, **k: None)
    request = scheduler.validated([" door", "chair"], None, None, "labels parameter")
    assert request.thresholds == [None, None] and request.names == ["door", "chair"]
    assert scheduler.apply_now(request) == 1 and segmenter.in_use == ["door", "chair"]
    assert scheduler.latest is request and scheduler.thread is None


def test_label_inputs_are_read_into_names_prompts_and_thresholds():
    class Spec:
        def __init__(self, name, prompts=(), threshold=float("nan")):
            self.name, self.prompts, self.threshold = name, prompts, threshold

    assert label_specs([Spec("door", ["a door"], 0.3), Spec("wall", threshold=0.0), Spec("sky")]) == (
        ["door", "wall", "sky"], [["a door"], [], []], [0.3, None, None])
    assert label_list("door, chair") == ["door", "chair"] and label_list(None) == []
    with pytest.raises(ValueError, match="obstacle_labels must be a string array .*got 3"):
        label_list(3, "obstacle_labels")


def test_the_scheduler_module_needs_no_rclpy():
    import subprocess

    code = "import sys, lseg_ros.ros.labels; sys.exit('rclpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
