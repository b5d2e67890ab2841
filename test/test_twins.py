"""TwinFilter: a latched publisher's message reaches the node's two label subscriptions;
the second copy is recognised, everything else is new (no rclpy needed)."""
import pytest

from lseg_ros.ros.twins import TwinFilter

pytestmark = pytest.mark.ros


def test_the_copy_on_the_other_channel_is_recognised_once():
    twins = TwinFilter(window=2.0)
    assert not twins.is_copy("labels", "live", b"door", 0.0)
    assert twins.is_copy("labels", "latched", b"door", 0.01)
    # a third arrival is a new message (a repeat by its publisher), whichever channel
    assert not twins.is_copy("labels", "latched", b"door", 0.02)
    assert twins.is_copy("labels", "live", b"door", 0.03)  # ...whose own copy comes next


def test_a_burst_pairs_in_order_whatever_the_interleaving():
    twins = TwinFilter()
    arrivals = [("live", b"A"), ("live", b"B"), ("latched", b"A"), ("live", b"C"), ("latched", b"B"),
                ("latched", b"C")]
    copies = [twins.is_copy("labels", channel, key, 0.1 * i) for i, (channel, key) in enumerate(arrivals)]
    assert copies == [False, False, True, False, True, True]


def test_repeats_from_a_plain_publisher_are_all_new():
    twins = TwinFilter()
    assert [twins.is_copy("labels", "live", b"door", 0.1 * i) for i in range(4)] == [False] * 4


def test_history_of_a_latched_publisher_alone_is_new():
    twins = TwinFilter()
    assert not twins.is_copy("labels", "latched", b"door", 0.0)  # delivered to the latched twin only


def test_an_old_arrival_is_not_paired_after_the_window():
    twins = TwinFilter(window=1.0)
    assert not twins.is_copy("labels", "live", b"door", 0.0)
    assert not twins.is_copy("labels", "latched", b"door", 1.5)


def test_topics_and_contents_are_kept_apart():
    twins = TwinFilter()
    assert not twins.is_copy("labels", "live", b"door", 0.0)
    assert not twins.is_copy("label_query", "latched", b"door", 0.0)  # another topic
    assert not twins.is_copy("labels", "latched", b"chair", 0.0)  # another content
    assert twins.is_copy("labels", "latched", b"door", 0.0)


def test_memory_is_bounded():
    twins = TwinFilter(memory=4)
    for i in range(100):
        twins.is_copy("labels", "live", str(i).encode(), 0.0)
    assert all(len(arrivals) <= 4 for arrivals in twins._unpaired.values())
    assert not twins.is_copy("labels", "latched", b"0", 0.0)  # forgotten
    assert twins.is_copy("labels", "latched", b"99", 0.0)


@pytest.mark.parametrize("window, memory", [(0, 4), (-1, 4), (1.0, 0)])
def test_bad_settings_are_refused(window, memory):
    with pytest.raises(ValueError, match="window"):
        TwinFilter(window=window, memory=memory)
