"""lseg_node's label inputs on ROS: the ``labels`` topic and ``~/label_query`` (each heard
from plain and latched publishers: twins.py), the ``~/set_labels`` and ``~/encode_text``
services. What they ask for goes to the node's :class:`~lseg_ros.ros.labels.LabelScheduler`.
"""
from __future__ import annotations

import array
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
try:
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from std_msgs.msg import String

from .labels import LabelScheduler, label_query, label_specs, label_text
from .runner import SET_LABELS_MAX_WAITING
from .twins import TwinFilter

#: ~/set_labels and ~/encode_text requests queued in DDS until taken: a burst this deep is
#: answered, not dropped (a caller sending such bursts needs a client queue as deep for the answers)
SERVICE_QUEUE_DEPTH = 100
SERVICE_QOS = QoSProfile(depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
#: label inputs: reliable, as publishers of commands are; the latched twin hears transient-local
#: publishers that started first (depth 1: only the last label set matters)
LABEL_INPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
LABEL_INPUT_LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


class LabelInputs:
    """The label topics and services of ``node`` (its ``segmenter``, ``counters``, ``_stop``,
    ``_stopping()`` and ``_log``), feeding ``scheduler``; ``config`` is its NodeConfig.
    ``subscription(msg_type, topic, callback, qos, **kwargs)`` and ``service(srv_type, name,
    callback, **kwargs)`` make entities the node destroys at cleanup."""

    def __init__(self, node, scheduler: LabelScheduler, config, subscription, service) -> None:
        from ..msg import LabelQuery
        from ..srv import EncodeText, SetLabels

        self.node, self.scheduler, self.config = node, scheduler, config
        self._stop = node._stop  # this configure's: a waiting call ends when it is cleaned up
        self._twins = TwinFilter()
        # Each topic twice, so that latched publishers started before this node are heard
        # (transient local) as well as plain ones (volatile); see twins.py. The latched twin
        # does not match volatile publishers, by design: it says nothing about it (each such
        # publisher still logs once that a subscription requests incompatible QoS;
        # docs/node.md: labels from a mission planner).
        quiet = SubscriptionEventCallbacks(incompatible_qos=lambda event: None)
        for channel, qos, events in (("live", LABEL_INPUT_QOS, None), ("latched", LABEL_INPUT_LATCHED_QOS, quiet)):
            subscription(String, "labels", self._label_input("labels topic", channel, label_text), qos,
                         event_callbacks=events)
            subscription(LabelQuery, "~/label_query", self._label_input("label_query", channel, label_query),
                         qos, event_callbacks=events)
        # a reentrant group of its own: a call that waits for its label set holds up neither
        # frames nor the next call (which supersedes it); at most SET_LABELS_MAX_WAITING calls
        # wait at once, so they cannot take every executor thread (runner.py), and a deep
        # request queue keeps a burst of calls from being dropped before they are answered
        service(SetLabels, "~/set_labels", self._on_set_labels, qos_profile=SERVICE_QOS,
                callback_group=ReentrantCallbackGroup())
        # its own group too: a text forward does not hold up frames nor wait for set_labels;
        # calls that come together queue (deeply) and are answered one by one
        service(EncodeText, "~/encode_text", self._on_encode_text, qos_profile=SERVICE_QOS,
                callback_group=MutuallyExclusiveCallbackGroup())

    def _label_input(self, source: str, channel: str, to_labels):
        """The callback of one of a label topic's two subscriptions: a message that is not the
        twin of one already taken (twins.py) becomes a label request."""
        def on_labels(msg) -> None:
            if not self._twins.is_copy(source, channel, serialize_message(msg), time.monotonic()):
                self.scheduler.submit(*to_labels(msg), source, allow_empty=False)
        return on_labels

    def _on_set_labels(self, request, response):
        """~/set_labels: apply a label set and answer once it is in use, or refused, superseded
        by a newer request, timed out (set_labels_timeout) or the node stops. Calls run
        concurrently (reentrant group); one that would be the (SET_LABELS_MAX_WAITING + 1)-th
        to wait is refused at once, so waiting calls never hold every executor thread."""
        labels, stop, node = self.scheduler, self._stop, self.node
        order = labels.next_order()  # before validation: the order the calls came in
        names, prompts, thresholds = label_specs(request.labels)
        try:
            if not names:
                raise ValueError("empty label set; give at least one label (to pause segmentation, set the "
                                 "labels parameter to [])")
            label_request = labels.validated(names, prompts, thresholds, "set_labels service")
        except ValueError as error:
            labels.reject("set_labels service", error, answered=True)
            return self._label_reply(response, False, str(error))
        label_request.order = order
        success, message = labels.call(label_request, self.config.set_labels_timeout, SET_LABELS_MAX_WAITING,
                                       lambda: node._stopping() or stop.is_set())
        return self._label_reply(response, success, message)

    def _label_reply(self, response, success: bool, message: str):
        segmenter = self.node.segmenter
        label_set = segmenter.label_set if segmenter is not None else None
        response.success, response.message = success, message
        response.labels = list(label_set.names) if label_set is not None else []
        response.generation = label_set.generation if label_set is not None else 0
        return response

    def _on_encode_text(self, request, response):
        """~/encode_text: embeddings of texts in the space of ~/embeddings (same label cache)."""
        node = self.node
        segmenter = node.segmenter
        response.success = False
        if segmenter is None:
            response.message = "the node is not configured"
            return response
        response.model = segmenter.description
        response.logit_scale = float(segmenter.logit_scale)
        try:
            embeddings = segmenter.encode_texts(list(request.texts))
        except ValueError as error:
            node.counters.rejected_queries += 1
            node.counters.refused_calls += 1  # answered to the caller
            node._log("error", f"encode_text rejected: {error}", throttle=1.0)
            response.message = str(error)
            return response
        except InterruptedError:
            response.message = "the node is shutting down"
            return response
        values = embeddings.float().cpu().numpy()
        response.dim = int(values.shape[1])
        response.embeddings = array.array("f", values.astype("<f4").tobytes())
        response.success = True
        return response
