"""lseg_ros.validation.label_text_problem: labels that draw nothing or hide characters are
refused by Unicode category; ordinary labels in any script are accepted."""
import pytest

from lseg_ros.validation import label_text_problem


@pytest.mark.parametrize("label, problem", [
    ("\u3164", "no visible characters"),            # HANGUL FILLER (a letter that draws nothing)
    ("\u115f\u1160", "no visible characters"),      # Hangul choseong/jungseong fillers
    ("\uffa0 ", "no visible characters"),           # halfwidth Hangul filler
    ("\u2800", "no visible characters"),            # BRAILLE PATTERN BLANK (a symbol)
    ("\u0301", "no visible characters"),            # a lone combining acute accent
    ("\ufe0f", "no visible characters"),            # a lone variation selector
    ("\u0301\ufe0f\u20dd", "no visible characters"),  # only marks
    ("\U000e0041\U000e0042", "no visible characters"),  # only tag characters
    ("door\U000e0041", "format character U+E0041"),  # a tag character hidden in a label
    ("do\u200bor", "format character U+200B"),      # zero-width space inside a label
    ("door\u00adway", "format character U+00AD"),   # soft hyphen
    ("door\u2028chair", "line separator U+2028"),
    ("door\u2029chair", "paragraph separator U+2029"),
    ("door\ue000", "private-use character U+E000"),
    ("door\U0010fffd", "private-use character U+10FFFD"),
    ("door\U000e01f0", "unassigned code point U+E01F0"),
    ("door\ud800", "surrogate code point U+D800"),
    ("door\x1b[31m", "control character U+001B"),
    ("\u202eevil\u202c", "bidirectional control character U+202E"),
])
def test_invisible_and_hidden_characters_are_refused_by_class(label, problem):
    assert problem in label_text_problem(label)


@pytest.mark.parametrize("label", [
    "Tür", "椅子", "chaise longue", "stop sign \u2764\ufe0f", "family 👨\u200d👩\u200d👧",
    "caf\u0065\u0301", "می\u200cخواهم", "стул", "कुर्सी", "x", "3", "?",
])
def test_ordinary_labels_in_any_script_are_accepted(label):
    assert label_text_problem(label) is None


# ------------------------------------------------------------ label sets within explicit limits
from lseg_ros.validation import LabelLimits, check_labels, check_texts  # noqa: E402


def test_label_checks_take_their_limits_from_the_caller():
    small = LabelLimits(max_labels=2, max_names=3, max_label_chars=5, max_descriptions=1)
    assert check_labels(["door", "sofa"], None, None, small)[0] == ["door", "sofa"]
    with pytest.raises(ValueError, match="3 labels requested; at most 2"):
        check_labels(["a", "b", "c"], None, None, small)
    with pytest.raises(ValueError, match="4 label names .* at most 3"):
        check_labels(["a; b", "c; d"], None, None, small)
    with pytest.raises(ValueError, match="'window' is 6 characters long; at most 5"):
        check_labels(["window"], None, None, small)
    with pytest.raises(ValueError, match="2 descriptions; at most 1"):
        check_labels(["door"], [["wooden", "white"]], None, small)
    with pytest.raises(ValueError, match="4 texts requested; at most 3"):
        check_texts(["a", "b", "c", "d"], small)
    assert check_labels(["a", "b", "c"], None, None, LabelLimits())[0] == ["a", "b", "c"]


def test_label_checks_resolve_thresholds_and_check_the_label_indices_the_config_names():
    _, _, thresholds = check_labels(["door", "sofa"], None, [float("nan"), 0.4], LabelLimits(), default_threshold=0.2)
    assert thresholds == [0.2, 0.4]
    with pytest.raises(ValueError, match="threshold_label 2 is not a label index"):
        check_labels(["door", "sofa"], None, None, LabelLimits(), threshold_label=2)
    with pytest.raises(ValueError, match="unknown_value 1 collides with label index 1"):
        check_labels(["door", "sofa"], None, None, LabelLimits(), unknown_value=1)
