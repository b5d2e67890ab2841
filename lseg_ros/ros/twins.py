"""Hearing latched and plain publishers on one topic: two subscriptions, each message once.

A subscription with transient-local durability receives the last message of a latched
(transient-local) publisher that started before it, but DDS does not match it with
volatile publishers at all (``ros2 topic pub`` by default, most nodes). A volatile
subscription matches both, without the history. So the node subscribes twice, and a
message of a latched publisher sent while both are connected then arrives twice, once
on each subscription. :class:`TwinFilter` recognises the second copy.

rclpy on Humble gives callbacks no publisher GID or sequence number, so a copy is
recognised by content: the serialized message, received on the *other* subscription of
the same topic within ``window`` seconds and not already paired. Unpaired arrivals are
remembered per channel in order, so a burst A, B from a latched publisher pairs A with A
and B with B whatever order the two subscriptions deliver them in. The cost of that rule:
an identical message sent by a volatile publisher within the window of a latched one's is
taken as its copy, which changes nothing (same content). ROS-free; tested without rclpy.
"""
from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Hashable, Tuple

#: seconds within which the two copies of one message arrive (both subscriptions are served
#: by the same executor: normally milliseconds apart)
TWIN_WINDOW_S = 2.0
#: unpaired arrivals remembered per channel
TWIN_MEMORY = 16


class TwinFilter:
    """``is_copy(topic, channel, key, now)``: True when this arrival is the second copy of a
    message already taken from the other channel (``"live"`` or ``"latched"``) of ``topic``."""

    def __init__(self, window: float = TWIN_WINDOW_S, memory: int = TWIN_MEMORY) -> None:
        if window <= 0 or memory < 1:
            raise ValueError(f"TwinFilter needs window > 0 and memory >= 1, got {window}, {memory}")
        self.window = window
        self.memory = memory
        self._unpaired: Dict[Tuple[Hashable, Hashable], Deque[Tuple[bytes, float]]] = {}

    def is_copy(self, topic: Hashable, channel: Hashable, key: bytes, now: float) -> bool:
        for (other_topic, other_channel), arrivals in self._unpaired.items():
            if other_topic != topic or other_channel == channel:
                continue
            while arrivals and now - arrivals[0][1] > self.window:  # expired: never paired
                arrivals.popleft()
            for index, (other_key, _) in enumerate(arrivals):
                if other_key == key:
                    del arrivals[index]
                    return True
        own = self._unpaired.setdefault((topic, channel), deque(maxlen=self.memory))
        own.append((key, now))
        return False
