"""Checks on text that arrives from outside (topics, parameters, files), and how it is echoed.

* :func:`shorten` caps a value quoted in an error or log line, so a 10,000-character
  label or image format never becomes a 10,000-character log line.
* :func:`parse_label_text`, :func:`split_synonyms`, :func:`join_synonyms`: label text
  ('person; man, door': ',' between labels, ';' between one label's synonyms).
* :func:`label_text_problem` says what is wrong with a label or prompt: control
  characters (``\\n``, ``\\x1b``), bidirectional controls that make a label read differently
  than it is stored (``'\\u202eevil\\u202c'``), other invisible format characters, or
  nothing visible at all (``'\\u200b'``, ``'\\u3164'``, a lone combining mark).
"""
from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

#: characters of an echoed value kept in messages (the rest is counted, not shown)
ECHO_LIMIT = 80

#: bidirectional embedding, override and isolate controls (Unicode category Cf)
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shorten(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def label_text_problem(text: str) -> Optional[str]:
    """Why ``text`` is not acceptable as a label or prompt, or None when it is.

    A label needs at least one visible character: a letter, number, punctuation mark or
    symbol (Unicode categories L*, N*, P*, S*) other than the blank ones in
    :data:`INVISIBLE_GRAPHICS` (so a label of only spaces, combining marks or variation
    selectors, such as a lone U+0301 or U+FE0F, is refused). Anywhere in it, these are
    refused: control characters (Cc), bidirectional controls, other format characters (Cf:
    zero-width space, soft hyphen, tag characters U+E0000-E007F, ...) except the joiners in
    :data:`_ALLOWED_FORMAT` (emoji sequences, Persian and Indic scripts need them), line
    and paragraph separators (Zl, Zp), private-use (Co), unassigned (Cn) and surrogate (Cs)
    code points."""
    if not any(_is_visible(char) for char in text):
        return "has no visible characters"
    for char in text:
        category = unicodedata.category(char)
        if char in _BIDI_CONTROLS:
            return f"contains the bidirectional control character U+{ord(char):04X}"
        if category == "Cf" and char in _ALLOWED_FORMAT:
            continue
        if category in _REFUSED_CATEGORIES:
            return f"contains the {_REFUSED_CATEGORIES[category]} U+{ord(char):04X}"
    return None


#: letters and symbols that draw nothing (Hangul fillers, the blank Braille pattern): not visible
INVISIBLE_GRAPHICS = frozenset("\u115f\u1160\u3164\uffa0\u2800")

#: format characters (Cf) a label may contain: zero-width non-joiner and joiner
_ALLOWED_FORMAT = frozenset("\u200c\u200d")

#: refused Unicode categories -> how an error names them
_REFUSED_CATEGORIES = {"Cc": "control character", "Cf": "format character", "Zl": "line separator",
                       "Zp": "paragraph separator", "Co": "private-use character",
                       "Cn": "unassigned code point", "Cs": "surrogate code point"}


def _is_visible(char: str) -> bool:
    """Whether ``char`` draws something on its own (letter, number, punctuation, symbol)."""
    return unicodedata.category(char)[0] in "LNPS" and char not in INVISIBLE_GRAPHICS


def split_synonyms(label: str, keep_empty: bool = False) -> List[str]:
    """'person; man; woman' -> ['person', 'man', 'woman'] (a label's names)."""
    names = [name.strip() for name in label.split(SYNONYM_SEPARATOR)]
    return names if keep_empty else [name for name in names if name]


def join_synonyms(names: Sequence[str]) -> str:
    """['person', 'man'] -> 'person; man' (the label's text form)."""
    return f"{SYNONYM_SEPARATOR} ".join(str(name).strip() for name in names)


SYNONYM_SEPARATOR = ";"


def parse_label_text(text: str) -> List[str]:
    """'door, chair ,floor' -> ['door', 'chair', 'floor']: labels are separated by commas or
    newlines; ';' separates one label's synonyms: 'person; man; woman, car' -> two labels,
    ['person; man; woman', 'car']."""
    labels = []
    for part in text.replace("\n", ",").split(","):
        names = split_synonyms(part)
        if names:
            labels.append(join_synonyms(names))
    return labels

@dataclass(frozen=True)
class LabelLimits:
    """What one label set or text list may hold; checks refuse more, naming the limit."""

    #: labels in one set
    max_labels: int = 1024
    #: names in one set, synonyms included (and texts in one list)
    max_names: int = 4096
    #: characters of one name, description or text (a label with synonyms: 4x this in all)
    max_label_chars: int = 256
    #: descriptions (extra prompts) of one label
    max_descriptions: int = 32


def check_labels(labels: Sequence[str], descriptions, thresholds, limits: "LabelLimits", *,
                 default_threshold: float = 0.0, threshold_label: int = -1,
                 unknown_value: int = 255) -> Tuple[List[str], List[List[str]], List[float]]:
    """Checked copies of (labels, descriptions, thresholds) for a label set; ValueError names
    the bad value. ``labels``: strings ('person; man' for synonyms) or lists of names;
    ``descriptions``: None or one list of strings per label; ``thresholds``: None or one
    value per label (None, NaN or 0 = ``default_threshold``). ``threshold_label`` must be a
    label index or -1 and ``unknown_value`` must not be one."""
    if isinstance(labels, str):
        raise ValueError(f"labels must be a list of strings, got the string {shorten(labels)}; "
                         "use parse_label_text() for 'door, chair'")
    labels = [join_synonyms(label) if isinstance(label, (list, tuple)) else str(label).strip()
              for label in labels]
    if not labels:
        raise ValueError("empty label list; give at least one label, e.g. ['floor', 'door']")
    if len(labels) > limits.max_labels:
        raise ValueError(f"{len(labels)} labels requested; at most {limits.max_labels} are accepted")
    for index, label in enumerate(labels):
        if not label:
            raise ValueError(f"empty label name at position {index} of {shorten(labels)}")
        longest = max((len(name) for name in split_synonyms(label, keep_empty=True)), default=0)
        if longest > limits.max_label_chars or len(label) > 4 * limits.max_label_chars:
            raise ValueError(f"label {shorten(label, 40)} is {len(label)} characters long; at most "
                             f"{limits.max_label_chars} are accepted per name (synonyms separated by ';', "
                             f"{4 * limits.max_label_chars} in all)")
        problem = label_text_problem(label)
        if problem:
            raise ValueError(f"label {shorten(label, 40)} at position {index} {problem}; labels must be "
                             "visible text without control characters")
        if any(not name for name in split_synonyms(label, keep_empty=True)):
            raise ValueError(f"label {shorten(label, 40)} at position {index} has an empty name between "
                             "its ';' separators; write synonyms as 'person; man; woman'")
    labels = [join_synonyms(split_synonyms(label)) for label in labels]  # canonical "a; b" spacing
    # A name may be shared by two labels (SCLIP's COCO-Object background lists 'bed', also a
    # class); it then counts for both and ties go to the lower index, as in the references.
    # A label given twice, or a name repeated inside one label, is a mistake.
    seen_labels = {}
    names_total = 0
    for index, label in enumerate(labels):
        if label in seen_labels:
            raise ValueError(f"duplicate label {shorten(label, 40)} in {shorten(labels)}: labels "
                             f"{seen_labels[label]} and {index}; each label must be unique")
        seen_labels[label] = index
        names = split_synonyms(label)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"label {shorten(label, 40)} lists {shorten(repeated[0], 40)} twice")
        names_total += len(names)
    if names_total > limits.max_names:
        raise ValueError(f"{names_total} label names (synonyms included) requested; at most {limits.max_names} "
                         "are accepted")
    below = threshold_label
    if below >= len(labels):
        raise ValueError(f"threshold_label {below} is not a label index: the set has {len(labels)} labels "
                         f"({shorten(labels)}); use -1 for unknown_value")
    unknown = unknown_value
    if unknown < len(labels):
        raise ValueError(f"unknown_value {unknown} collides with label index {unknown} "
                         f"({len(labels)} labels); set unknown_value to 65535")
    if descriptions is not None and any(isinstance(d, str) for d in descriptions):
        raise ValueError(f"descriptions must be one list of strings per label, got {shorten(list(descriptions))}")
    descriptions = [list(d) for d in descriptions] if descriptions is not None else [[] for _ in labels]
    if len(descriptions) != len(labels):
        raise ValueError(f"{len(descriptions)} description lists for {len(labels)} labels")
    for label, desc_list in zip(labels, descriptions):
        if len(desc_list) > limits.max_descriptions:
            raise ValueError(f"label {shorten(label, 40)} has {len(desc_list)} descriptions; at most "
                             f"{limits.max_descriptions} are accepted")
        for desc in desc_list:
            if not isinstance(desc, str) or not desc.strip() or len(desc) > limits.max_label_chars:
                raise ValueError(f"invalid description {shorten(desc, 40)}: must be a non-empty string "
                                 f"of at most {limits.max_label_chars} characters")
            problem = label_text_problem(desc)
            if problem:
                raise ValueError(f"description {shorten(desc, 40)} of label {shorten(label, 40)} {problem}")
    default = default_threshold
    if thresholds is None:
        thresholds = [default] * len(labels)
    if len(thresholds) != len(labels):
        raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
    checked = []
    for value in thresholds:
        value = default if value is None or math.isnan(float(value)) or float(value) == 0 else float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold {value} out of range; accepted: [0, 1] (0 or NaN = default)")
        checked.append(value)
    return labels, [[d.strip() for d in ds] for ds in descriptions], checked


def check_texts(texts: Sequence[str], limits: "LabelLimits") -> List[str]:
    """Checked, stripped copies of free texts to embed (Segmenter.encode_texts); ValueError
    names the bad one. Each text is one phrase (';' is not a synonym separator here)."""
    if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
        raise ValueError(f"texts must be a list of strings, got {shorten(texts)}")
    texts = [text.strip() for text in texts]
    if not texts:
        raise ValueError("no texts given; give at least one, e.g. ['door']")
    if len(texts) > limits.max_names:
        raise ValueError(f"{len(texts)} texts requested; at most {limits.max_names} are accepted")
    for index, text in enumerate(texts):
        if not text:
            raise ValueError(f"empty text at position {index} of {shorten(texts)}")
        if len(text) > limits.max_label_chars:
            raise ValueError(f"text {shorten(text, 40)} is {len(text)} characters long; at most "
                             f"{limits.max_label_chars} are accepted")
        problem = label_text_problem(text)
        if problem:
            raise ValueError(f"text {shorten(text, 40)} at position {index} {problem}")
    return texts
