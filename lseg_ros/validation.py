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
