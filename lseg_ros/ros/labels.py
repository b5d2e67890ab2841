"""lseg_node's label sets: requests from every input, applied off the frame path (no rclpy).

Label sets come from the ``labels`` topic, ``~/label_query``, ``~/set_labels`` and the
``labels`` parameter. Each is validated at once (cheap) and becomes a :class:`LabelRequest`
in a one-slot buffer; one encoder thread takes it, encodes it (the text forward) and swaps
it in whole under a new generation number, while frames keep being segmented with the
current set. A newer request supersedes one still waiting (answered "superseded"); one
being encoded finishes (its labels are cached) but is not put in use if a newer one is
waiting. Concurrent ~/set_labels calls are ordered by arrival: the newest wins, whichever
reaches the buffer first. :class:`LabelScheduler` holds all of it with plain threading.
"""
from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional

from ..validation import parse_label_text, shorten


@dataclass
class LabelRequest:
    """A validated label set waiting to be applied by the worker."""

    names: List[str]
    descriptions: List[List[str]]
    thresholds: List[Optional[float]]
    source: str
    done: Optional[threading.Event] = None  # set by finish(): a ~/set_labels call waits on it
    outcome: Optional[tuple] = None  # (success, message)
    order: int = 0  # arrival order (a ~/set_labels call's when it came in): the newest request wins

    def finish(self, success: bool, message: str) -> None:
        if self.outcome is None:
            self.outcome = (success, message)
            if self.done is not None:
                self.done.set()


class LabelScheduler:
    """The label requests of one configured node and the thread that applies them.

    ``segmenter`` validates (``validate_labels``), encodes (``prepare_labels``) and swaps in
    (``use_labels``, which returns the new generation) label sets; ``counters`` (a
    :class:`~lseg_ros.ros.cameras.Counters`) counts refused, failed and superseded sets;
    ``log(level, text, throttle=...)`` logs; ``on_cleared(generation)`` is called when an
    empty set pauses segmentation (there is no frame then to announce it with)."""

    def __init__(self, segmenter, counters, log: Callable[..., None],
                 on_cleared: Callable[[int], None] = lambda generation: None) -> None:
        self.segmenter, self.counters, self.log, self.on_cleared = segmenter, counters, log, on_cleared
        self.lock = threading.Condition()
        self.pending: Optional[LabelRequest] = None  # the one-slot buffer: waiting for the encoder thread
        self.encoding: Optional[tuple] = None  # (request, start time) being encoded now
        self.latest: Optional[LabelRequest] = None  # last accepted request (threshold changes re-apply it)
        self.waiting_calls = 0  # calls waiting in call() (max_waiting)
        self.thread: Optional[threading.Thread] = None
        self._order = itertools.count(1)  # arrival order of requests

    # ------------------------------------------------------------- requests
    def next_order(self) -> int:
        """The next arrival number (take it when a call comes in, before validating it)."""
        return next(self._order)

    def validated(self, names, descriptions, thresholds, source: str) -> LabelRequest:
        """A request of checked copies of the label set; ValueError names a bad value."""
        checked_names, checked_descriptions, _ = self.segmenter.validate_labels(names, descriptions, thresholds)
        return LabelRequest(checked_names, checked_descriptions,
                            list(thresholds) if thresholds else [None] * len(checked_names), source)

    def reject(self, source: str, error: ValueError, answered: bool = False) -> None:
        """Count and log a refused label set; ``answered``: its caller was told (a service call)."""
        self.counters.rejected_queries += 1
        self.counters.refused_calls += answered
        self.log("error", f"{source}: label set rejected: {error}")

    def submit(self, names, descriptions, thresholds, source: str, allow_empty: bool = True) -> None:
        """Validate a label set now (cheap) and hand it to the encoder thread.

        An empty set from the labels parameter pauses segmentation; from a topic it is a bad
        query (rejected, the current labels stay)."""
        if not names and allow_empty:
            self.log("warning", f"{source}: empty label set; segmentation paused until labels arrive")
            request = LabelRequest([], [], [], source)
        else:
            try:
                request = self.validated(names, descriptions, thresholds, source)
            except ValueError as error:
                self.reject(source, error)
                return
        self.enqueue(request)

    def enqueue(self, request: LabelRequest) -> None:
        """Make ``request`` the one waiting for the encoder thread: it supersedes a request still
        waiting, unless that one came in later (concurrent ~/set_labels calls: the newest wins)."""
        with self.lock:
            if not request.order:
                request.order = self.next_order()
            newer = max((other for other in (self.pending, self.encoding and self.encoding[0])
                         if other is not None and other.order > request.order),
                        key=lambda other: other.order, default=None)
            if newer is None:
                replaced = self.pending
                self.pending = self.latest = request  # supersedes a waiting request
                self.lock.notify()
        if newer is not None:  # a call that came in later is already waiting or being encoded
            request.finish(False, f"superseded by a newer label set (from {newer.source}) before it was applied")
        elif replaced is not None:
            replaced.finish(False, f"superseded by a newer label set (from {request.source}) before it was applied")

    def reapply_latest(self, source: str) -> None:
        """Encode the last accepted set again (its default thresholds changed), unless another
        set is waiting."""
        with self.lock:
            latest = self.latest
            if self.pending is None and latest is not None and latest.names:
                self.pending = LabelRequest(latest.names, latest.descriptions, latest.thresholds, source)
                self.lock.notify()

    def call(self, request: LabelRequest, timeout: float, max_waiting: int,
             stopping: Callable[[], bool]) -> tuple:
        """(success, message) of a caller that waits until ``request`` is in use, refused,
        superseded, ``timeout`` seconds pass or ``stopping()``. A call that would be the
        (``max_waiting`` + 1)-th waiting is refused at once, so waiting calls never hold every
        executor thread."""
        with self.lock:
            busy = self.waiting_calls >= max_waiting
            if not busy:
                self.waiting_calls += 1
        if busy:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += 1
            self.log("warning", f"set_labels refused: {max_waiting} calls already waiting", throttle=1.0)
            return False, (f"refused: too many calls waiting ({max_waiting} ~/set_labels calls wait for their "
                           "label sets); call again")
        try:
            request.done = threading.Event()
            self.enqueue(request)
            deadline = time.monotonic() + timeout
            while not request.done.wait(0.05):
                if stopping():
                    return False, "the node is shutting down"
                if time.monotonic() > deadline:
                    return False, (f"not in use after {timeout:g} s (set_labels_timeout): still encoding; it is "
                                   "applied when ready unless a newer set comes")
            return request.outcome
        finally:
            with self.lock:
                self.waiting_calls -= 1

    # ------------------------------------------------------------- applying
    def apply_now(self, request: LabelRequest) -> int:
        """Encode and use ``request`` in the calling thread (the initial labels, before the node
        reports ready); returns its generation. ValueError names a refused set."""
        label_set = self.segmenter.prepare_labels(request.names, request.descriptions, request.thresholds)
        self.latest = request
        generation = self.segmenter.use_labels(label_set)
        self.log("info", f"label set {generation} from {request.source}: {shorten(request.names, 200)}")
        return generation

    def start(self, stop: threading.Event) -> None:
        """Start the encoder thread; it ends once ``stop`` is set (after a text forward it is in)."""
        self.thread = threading.Thread(target=self._run, args=(stop,), name="lseg_labels", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Answer a waiting request (the node stops), wake the encoder thread (its stop event is
        set) and let go of the segmenter (a text forward still running holds it until it ends)."""
        with self.lock:
            waiting, self.pending = self.pending, None
            self.segmenter = None
            self.lock.notify_all()
        if waiting is not None:
            waiting.finish(False, "the node stopped before this label set was applied")

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self.lock:
                while self.pending is None and not stop.is_set():
                    self.lock.wait(timeout=0.1)
                request, self.pending = self.pending, None
                self.encoding = (request, time.monotonic()) if request is not None else None
            if request is None:
                continue
            try:
                self._apply(request)
            except Exception as error:  # the node never dies on a label set
                if not stop.is_set():
                    self.counters.failed += 1
                    self.log("error", f"label encoding failed: {type(error).__name__}: {error}")
                request.finish(False, f"label encoding failed: {type(error).__name__}: {error}")
            finally:
                with self.lock:
                    self.encoding = None

    def _apply(self, request: LabelRequest) -> None:
        """Encode ``request`` (off the frame path) and swap it in whole under a new generation.
        Its ``finish`` says how it ended (for a waiting ~/set_labels call)."""
        segmenter = self.segmenter
        if not request.names:
            self.on_cleared(segmenter.use_labels(None))
            request.finish(True, "")
            return
        try:
            label_set = segmenter.prepare_labels(request.names, request.descriptions, request.thresholds)
        except InterruptedError:
            request.finish(False, "the node stopped before this label set was applied")
            return  # shutting down
        except ValueError as error:
            self.counters.rejected_queries += 1
            self.counters.refused_calls += request.done is not None  # a ~/set_labels call is told
            self.log("error", f"{request.source}: label set not applied: {error}")
            request.finish(False, str(error))
            return
        newer = self.pending
        if newer is not None:  # a newer request came in meanwhile: it wins (this one is cached)
            self.counters.superseded_label_sets += 1
            self.log("info", f"{request.source}: label set superseded by a newer request before it was ready")
            request.finish(False, f"superseded by a newer label set (from {newer.source}) before it was applied")
            return
        generation = segmenter.use_labels(label_set)
        self.log("info", f"label set {generation} from {request.source}: {shorten(request.names, 200)}")
        request.finish(True, "")


def label_text(msg) -> tuple:
    """(names, prompts, thresholds) of a labels topic message (std_msgs/String): 'door, person; man'."""
    return parse_label_text(msg.data), None, None


def label_query(msg) -> tuple:
    """(names, prompts, thresholds) of a LabelQuery message."""
    return label_specs(msg.labels)


def label_specs(specs) -> tuple:
    """(names, prompts, thresholds) of LabelSpec messages; threshold NaN or 0 = the node's default."""
    names = [spec.name for spec in specs]
    prompts = [list(spec.prompts) for spec in specs]
    thresholds = [None if math.isnan(spec.threshold) or spec.threshold == 0 else float(spec.threshold)
                  for spec in specs]
    return names, prompts, thresholds


def label_list(value, name: str = "labels") -> List[str]:
    """A label-list parameter's value as a list of names; ValueError names a wrong type."""
    if value is None:
        return []
    if isinstance(value, str):
        return parse_label_text(value)
    if isinstance(value, (list, tuple)) and all(isinstance(label, str) for label in value):
        return list(value)
    raise ValueError(f"{name} must be a string array (or 'door, chair'), got {shorten(value)}")
