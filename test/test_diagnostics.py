"""The node's input checks follow diagnostic_updater's FrequencyStatus and TimeStampStatus
rules (no ROS needed)."""
from lseg_ros.ros.diagnostics import ERROR, OK, WARN, FrequencyCheck, StampCheck


def test_frequency_over_a_sliding_window_of_updates():
    check = FrequencyCheck(min_hz=9.0, max_hz=11.0, tolerance=0.1, window=2, now=0.0)
    assert check.update(1.0)[:2] == (ERROR, "No events recorded.")
    for _ in range(10):
        check.tick()
    level, message, values = check.update(2.0)  # window (0 s, 0) -> (2 s, 10): 5 Hz < 8.1
    assert (level, message) == (WARN, "Frequency too low.")
    assert values["Events in window"] == "10" and values["Actual frequency (Hz)"] == "5.000000"
    for _ in range(20):
        check.tick()
    assert check.update(3.0)[:2] == (WARN, "Frequency too high.")  # (1 s, 0) -> (3 s, 30): 15 Hz > 12.1
    for _ in range(20):
        check.tick()
    assert check.update(4.0)[:2] == (WARN, "Frequency too high.")  # (2 s, 10) -> (4 s, 50): 20 Hz
    assert check.update(5.0)[:2] == (OK, "Desired frequency met")  # (3 s, 30) -> (5 s, 50): 10 Hz
    assert check.update(6.0)[2]["Events since startup"] == "50"


def test_frequency_without_an_upper_bound():
    check = FrequencyCheck(now=0.0)
    for _ in range(1000):
        check.tick()
    level, message, values = check.update(1.0)
    assert (level, message) == (OK, "Desired frequency met")
    assert values["Maximum acceptable frequency (Hz)"] == "inf"


def test_timestamps_checked_against_the_acceptable_delays():
    check = StampCheck(min_acceptable=-1.0, max_acceptable=5.0)
    assert check.update()[:2] == (WARN, "No data since last update.")
    check.record(100.0, 100.5)
    level, message, values = check.update()
    assert (level, message) == (OK, "Timestamps are reasonable.")
    assert values["Latest timestamp delay"] == "0.500000"
    check.record(100.0, 106.0)
    assert check.update()[:2] == (ERROR, "Timestamps too far in past seen.")
    check.record(100.0, 98.0)
    assert check.update()[:2] == (ERROR, "Timestamps too far in future seen.")
    check.record(0.0, 98.0)
    assert check.update()[:2] == (ERROR, "Zero timestamp seen.")
    assert check.update()[:2] == (WARN, "No data since last update.")  # reset after each update
