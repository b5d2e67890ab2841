"""Pairing two streams by header stamp (ROS-free): depth images with color frames.

message_filters' ApproximateTimeSynchronizer waits for both streams before it calls
back; the node must not: the image path never waits for depth. So the newest depth
messages are kept in a short buffer and each color frame, once segmented, takes the one
whose stamp is nearest to its own, within ``slop`` seconds (an exact stamp match, as
RealSense ``aligned_depth_to_color`` gives, always wins).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Optional


class StampBuffer:
    """The last ``capacity`` (stamp in nanoseconds, item) pairs, thread-safe."""

    def __init__(self, capacity: int = 10) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def push(self, stamp_ns: int, item: Any) -> None:
        with self._lock:
            self._items.append((int(stamp_ns), item))

    def nearest(self, stamp_ns: int, slop_s: float) -> Optional[Any]:
        """The item whose stamp is nearest ``stamp_ns``, if within ``slop_s`` seconds; on a
        tie, the newer one."""
        slop_ns = int(round(slop_s * 1e9))
        with self._lock:
            best, best_gap = None, None
            for item_stamp, item in self._items:
                gap = abs(item_stamp - stamp_ns)
                if gap <= slop_ns and (best_gap is None or gap <= best_gap):
                    best, best_gap = item, gap
        return best

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time (anything with sec, nanosec) in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
