"""Checks on text that arrives from outside (topics, parameters, files), and how it is echoed.

* :func:`shorten` caps a value quoted in an error or log line, so a 10,000-character
  label or image format never becomes a 10,000-character log line.
* :func:`parse_label_text`, :func:`split_synonyms`, :func:`join_synonyms`: label text
  ('person; man, door': ',' between labels, ';' between one label's synonyms).
* :func:`label_text_problem` says what is wrong with a label or prompt: control
  characters (``\\n``, ``\\x1b``), bidirectional controls that make a label read differently
  than it is stored (``'\\u202eevil\\u202c'``), or nothing visible at all (``'\\u200b'``).
"""
from __future__ import annotations

import unicodedata
from typing import Any, List, Optional, Sequence

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
    """Why ``text`` is not acceptable as a label or prompt, or None when it is."""
    for char in text:
        if char in _BIDI_CONTROLS:
            return f"contains the bidirectional control character U+{ord(char):04X}"
        if unicodedata.category(char) == "Cc":
            return f"contains the control character U+{ord(char):04X}"
    visible = [char for char in text if not char.isspace() and unicodedata.category(char) != "Cf"]
    if not visible:
        return "has no visible characters"
    return None


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
