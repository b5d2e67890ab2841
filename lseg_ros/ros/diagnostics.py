"""Input-rate and time-stamp health in the style of diagnostic_updater (no ROS imports).

diagnostic_updater has no wheel on the development machines, so its two standard topic
checks are followed here, same rules and wording, for the node's image input:

* :class:`FrequencyCheck` = ``FrequencyStatus``: events counted over a sliding window of the
  last ``window`` updates; ERROR "No events recorded." when none, WARN "Frequency too low." /
  "Frequency too high." outside [min x (1 - tolerance), max x (1 + tolerance)], else OK
  "Desired frequency met".
* :class:`StampCheck` = ``TimeStampStatus``: the delay (arrival time - header stamp) of
  every frame since the last update against [min_acceptable, max_acceptable]; ERROR
  "Timestamps too far in future seen." / "Timestamps too far in past seen.", ERROR "Zero
  timestamp seen.", WARN "No data since last update.", else OK "Timestamps are reasonable.".

Levels are diagnostic_msgs' values (OK 0, WARN 1, ERROR 2); each ``update`` returns
(level, message, ordered key/values).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from typing import Dict, Tuple

OK, WARN, ERROR = 0, 1, 2
Status = Tuple[int, str, Dict[str, str]]


class FrequencyCheck:
    """diagnostic_updater.FrequencyStatus for one event stream."""

    def __init__(self, min_hz: float = 0.0, max_hz: float = math.inf, tolerance: float = 0.1, window: int = 5,
                 now: float = 0.0) -> None:
        if window < 1:
            raise ValueError(f"frequency window must be >= 1 update, got {window}")
        self.min_hz, self.max_hz, self.tolerance = float(min_hz), float(max_hz), float(tolerance)
        self._lock = threading.Lock()
        self._count = 0
        # (time, count) at each of the last window updates
        self._history = deque([(now, 0)] * window, maxlen=window)

    def tick(self) -> None:
        """One event (a frame arrived)."""
        with self._lock:
            self._count += 1

    def update(self, now: float) -> Status:
        with self._lock:
            count = self._count
        start_time, start_count = self._history[0]
        events, duration = count - start_count, now - start_time
        self._history.append((now, count))
        frequency = events / duration if duration > 0 else 0.0
        if events == 0:
            level, message = ERROR, "No events recorded."
        elif frequency < self.min_hz * (1 - self.tolerance):
            level, message = WARN, "Frequency too low."
        elif math.isfinite(self.max_hz) and frequency > self.max_hz * (1 + self.tolerance):
            level, message = WARN, "Frequency too high."
        else:
            level, message = OK, "Desired frequency met"
        values = {"Events in window": str(events), "Events since startup": str(count),
                  "Duration of window (s)": f"{duration:.6f}", "Actual frequency (Hz)": f"{frequency:.6f}",
                  "Minimum acceptable frequency (Hz)": f"{self.min_hz * (1 - self.tolerance):.6f}",
                  "Maximum acceptable frequency (Hz)": (f"{self.max_hz * (1 + self.tolerance):.6f}"
                                                        if math.isfinite(self.max_hz) else "inf")}
        return level, message, values


class StampCheck:
    """diagnostic_updater.TimeStampStatus for one stream of header stamps."""

    def __init__(self, min_acceptable: float = -1.0, max_acceptable: float = 5.0) -> None:
        self.min_acceptable, self.max_acceptable = float(min_acceptable), float(max_acceptable)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._earliest, self._latest = math.inf, -math.inf
        self._count, self._zero_seen = 0, False

    def record(self, stamp_s: float, now_s: float) -> None:
        """A frame stamped ``stamp_s`` (seconds; 0 = unset) arrived at ``now_s``."""
        with self._lock:
            if stamp_s == 0:
                self._zero_seen = True
                return
            delay = now_s - stamp_s
            self._earliest, self._latest = min(self._earliest, delay), max(self._latest, delay)
            self._count += 1

    def update(self) -> Status:
        with self._lock:
            earliest, latest, count, zero_seen = self._earliest, self._latest, self._count, self._zero_seen
            self._reset()
        values = {"Earliest acceptable timestamp delay": f"{self.min_acceptable:.6f}",
                  "Latest acceptable timestamp delay": f"{self.max_acceptable:.6f}"}
        if count == 0 and not zero_seen:
            return WARN, "No data since last update.", values
        level, message = OK, "Timestamps are reasonable."
        if count:
            values.update({"Earliest timestamp delay": f"{earliest:.6f}", "Latest timestamp delay": f"{latest:.6f}"})
            if earliest < self.min_acceptable:
                level, message = ERROR, "Timestamps too far in future seen."
            if latest > self.max_acceptable:
                level, message = ERROR, "Timestamps too far in past seen."
        if zero_seen:
            level, message = ERROR, "Zero timestamp seen."
        return level, message, values
