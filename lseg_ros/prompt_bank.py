"""Attribute-enriched prompts (LMSeg): a bank of short descriptions per class name.

LMSeg (Tang et al. 2024, arXiv 2412.00364) enriches each class name with descriptions of
its attributes (color, shape and size, texture and material) written by a language model;
their text embeddings are pooled with the label's own embedding. This module holds such
descriptions as data: a bank maps class names to descriptions, and
:meth:`lseg_ros.segmenter.Segmenter.prepare_labels` uses them for labels that were given
no descriptions of their own (config ``attribute_prompts``; a user bank in
``prompt_bank``).

The package ships a bank (``lseg_ros/prompt_banks/*.json``) covering every class of the
shipped class lists (ADE20K's 150, PASCAL Context's 59, VOC's 20 and background), about
fifty common robot labels and the synthetic scene classes (:mod:`lseg_ros.data.scenes`).

File format (JSON, read with ``json.load`` only)::

    {
      "format": "lseg_ros.prompt_bank/1",
      "description": "optional free text: where the descriptions came from",
      "classes": {
        "door": {
          "color": ["a white, brown or grey door"],
          "shape": ["a door, a rectangular vertical panel taller than a person"],
          "material": ["a wooden or metal door with a handle"]
        }
      }
    }

* ``format`` is required and must be exactly ``lseg_ros.prompt_bank/1``.
* ``classes`` maps a class name to its entry. Names are matched ignoring case and runs of
  whitespace ("Glass  Door" is "glass door"); two names of one file that match the same
  way are an error, and a name may not contain ';' (the synonym separator).
* An entry has any of the attribute kinds ``color``, ``shape`` (shape and size) and
  ``material`` (texture and material), each a list of descriptions; other keys are an
  error (``"colour"`` is caught). An empty entry (``{}``) means "no descriptions" and, in
  a user bank, switches the shipped descriptions of that class off.
* A description is a non-empty string of at most 256 characters without control
  characters, not repeated within its class; a class has at most 32 descriptions in all
  (:attr:`lseg_ros.validation.LabelLimits.max_descriptions`). Keep them short (CLIP reads 77 tokens) and name
  the class or an obvious synonym, so that the text encoder anchors them to it.

Errors are :class:`PromptBankError` (a ``ValueError``) naming the file, the class and the
bad value. A bank's descriptions of a class, in the order :meth:`PromptBank.descriptions`
gives them, interleave the kinds (color, shape, material, color, ...), so a label capped
to fewer descriptions (the node's ``max_prompts_per_label``) keeps every kind.

User banks are merged over the shipped one: a class a user bank names replaces the
shipped entry of that class as a whole; later user banks override earlier ones.
"""
from __future__ import annotations

import functools
import importlib.resources
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .config import ATTRIBUTE_PROMPT_MODES, AUTO_ON_BACKENDS, resolve_attribute_prompts  # noqa: F401  (re-exported)
from .validation import SYNONYM_SEPARATOR, label_text_problem, shorten, split_synonyms

#: the ``format`` value of version 1 of the bank file format
FORMAT = "lseg_ros.prompt_bank/1"
#: attribute kinds an entry may have, in the order descriptions are interleaved
ATTRIBUTE_KINDS = ("color", "shape", "material")
#: most descriptions per class (LabelLimits.max_descriptions)
MAX_DESCRIPTIONS = 32
#: longest description in characters (LabelLimits.max_label_chars)
MAX_DESCRIPTION_CHARS = 256
#: largest bank file in bytes (checked before it is read; the shipped banks are < 64 KiB and a
#: class of 32 longest descriptions is ~9 KB, so this holds ~900 such classes)
MAX_BANK_BYTES = 8 * 1024 * 1024

#: common robot labels the shipped bank covers (besides every class of the shipped class
#: lists and the synthetic scene classes; a test checks)
ROBOT_LABELS = (
    "door", "chair", "stairs", "person", "table", "shelf", "floor", "wall", "window", "sofa", "bed", "cabinet",
    "box", "pallet", "forklift", "trash can", "elevator door", "handrail", "ramp", "glass door",
    "fire extinguisher", "monitor", "keyboard", "cup", "bottle", "plant", "car", "bicycle", "traffic cone",
    "curb", "sidewalk", "road", "grass", "tree", "ceiling", "desk", "laptop", "backpack", "suitcase",
    "cardboard box", "shopping cart", "wheelchair", "ladder", "bucket", "doorway", "corridor", "crosswalk",
    "bollard", "fence", "pole", "bench", "dog", "cat", "truck", "bus", "motorcycle", "whiteboard", "sink",
    "toilet", "power outlet", "light switch", "cable", "pipe", "puddle", "robot", "charging station", "elevator",
    "escalator", "phone", "umbrella", "gate", "speed bump", "manhole cover", "sign", "column",
)

PathLike = Union[str, Path]
Entry = Dict[str, Tuple[str, ...]]


class PromptBankError(ValueError):
    """A prompt bank file is missing or malformed; the message names the file, the class and the value."""


def normalize_name(name: str) -> str:
    """The lookup form of a class name: lower case, whitespace runs as one space, stripped."""
    return " ".join(str(name).split()).lower()


class PromptBank:
    """Class name -> attribute descriptions, validated; look-ups ignore case and whitespace."""

    def __init__(self, entries: Optional[Mapping[str, Entry]] = None, sources: Sequence[str] = ()) -> None:
        #: normalized class name -> {kind: descriptions}
        self.entries: Dict[str, Entry] = dict(entries or {})
        #: the files merged into this bank, in order
        self.sources: List[str] = list(sources)

    def __contains__(self, name: str) -> bool:
        return normalize_name(name) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> List[str]:
        """Normalized class names, sorted."""
        return sorted(self.entries)

    def entry(self, name: str) -> Optional[Entry]:
        """{kind: descriptions} of class ``name`` (any case or spacing), or None."""
        return self.entries.get(normalize_name(name))

    def descriptions(self, label: str, limit: int = MAX_DESCRIPTIONS) -> List[str]:
        """At most ``limit`` descriptions for ``label``, kinds interleaved (color, shape, material,
        color, ...); [] when the bank has none. A label with synonyms ('person; man') takes the
        entry of its first name that the bank has."""
        for name in split_synonyms(str(label)):
            entry = self.entry(name)
            if entry is not None:
                return interleave(entry)[:max(0, limit)]
        return []

    def merged(self, other: "PromptBank") -> "PromptBank":
        """This bank with ``other``'s classes replacing (or adding to) its own."""
        return PromptBank({**self.entries, **other.entries}, self.sources + other.sources)


def interleave(entry: Mapping[str, Sequence[str]]) -> List[str]:
    """One entry's descriptions in one list: the first of each kind, then the second, ..."""
    lists = [list(entry.get(kind, ())) for kind in ATTRIBUTE_KINDS]
    longest = max((len(items) for items in lists), default=0)
    return [items[index] for index in range(longest) for items in lists if index < len(items)]


# ---------------------------------------------------------------------------- loading
def parse_bank(data: Any, source: str) -> PromptBank:
    """A validated bank from decoded JSON ``data``; ``source`` (a file name) is named in errors."""
    if not isinstance(data, dict):
        raise PromptBankError(f"{source}: a prompt bank is a JSON object with 'format' and 'classes', "
                              f"got {shorten(data)}")
    unknown = sorted(set(data) - {"format", "description", "classes"})
    if unknown:
        raise PromptBankError(f"{source}: unknown key(s) {unknown}; known: format, description, classes")
    if data.get("format") != FORMAT:
        raise PromptBankError(f"{source}: format {shorten(data.get('format'))} is not supported; "
                              f"expected {FORMAT!r}")
    if "description" in data and not isinstance(data["description"], str):
        raise PromptBankError(f"{source}: 'description' must be a string, got {shorten(data['description'])}")
    classes = data.get("classes")
    if not isinstance(classes, dict):
        raise PromptBankError(f"{source}: 'classes' must be an object mapping class names to entries, "
                              f"got {shorten(classes)}")
    entries: Dict[str, Entry] = {}
    written: Dict[str, str] = {}  # normalized -> the name as the file writes it
    for name, entry in classes.items():
        key = _checked_name(name, source)
        if key in written:
            raise PromptBankError(f"{source}: class {name!r} repeats class {written[key]!r} (names are "
                                  "matched ignoring case and spacing)")
        written[key] = name
        entries[key] = _checked_entry(entry, f"{source}: class {name!r}")
    return PromptBank(entries, [source])


def _checked_name(name: str, source: str) -> str:
    key = normalize_name(name)
    problem = label_text_problem(name) if key else "is empty"
    if problem:
        raise PromptBankError(f"{source}: class name {shorten(name, 40)} {problem}")
    if SYNONYM_SEPARATOR in key:
        raise PromptBankError(f"{source}: class name {shorten(name, 40)} contains {SYNONYM_SEPARATOR!r} (the "
                              "synonym separator); give each name its own entry")
    if len(key) > MAX_DESCRIPTION_CHARS:
        raise PromptBankError(f"{source}: class name {shorten(name, 40)} is {len(key)} characters long; at "
                              f"most {MAX_DESCRIPTION_CHARS} are accepted")
    return key


def _checked_entry(entry: Any, where: str) -> Entry:
    if not isinstance(entry, dict):
        raise PromptBankError(f"{where}: an entry is an object of attribute lists ({', '.join(ATTRIBUTE_KINDS)}), "
                              f"got {shorten(entry)}")
    unknown = sorted(set(entry) - set(ATTRIBUTE_KINDS))
    if unknown:
        raise PromptBankError(f"{where}: unknown attribute kind(s) {unknown}; known: {', '.join(ATTRIBUTE_KINDS)}")
    checked: Entry = {}
    seen = set()
    for kind in ATTRIBUTE_KINDS:
        if kind not in entry:
            continue
        items = entry[kind]
        if not isinstance(items, list):
            raise PromptBankError(f"{where}: {kind} must be a list of strings, got {shorten(items)}")
        for item in items:
            if not isinstance(item, str):
                raise PromptBankError(f"{where}: {kind} description {shorten(item, 40)} is not a string")
            problem = label_text_problem(item) if item.strip() else "is empty"
            if not problem and len(item) > MAX_DESCRIPTION_CHARS:
                problem = f"is {len(item)} characters long; at most {MAX_DESCRIPTION_CHARS} are accepted"
            if problem:
                raise PromptBankError(f"{where}: {kind} description {shorten(item, 40)} {problem}")
            if item.strip() in seen:
                raise PromptBankError(f"{where}: description {shorten(item.strip(), 40)} is given twice")
            seen.add(item.strip())
        checked[kind] = tuple(item.strip() for item in items)
    if len(seen) > MAX_DESCRIPTIONS:
        raise PromptBankError(f"{where}: {len(seen)} descriptions; at most {MAX_DESCRIPTIONS} per class are "
                              "accepted")
    return checked


def load_bank(path: PathLike) -> PromptBank:
    """The validated bank of one JSON file; PromptBankError names the file and what is wrong.
    A file over :data:`MAX_BANK_BYTES` is refused by its size before it is read."""
    path = Path(path).expanduser()
    try:
        size = path.stat().st_size
        if size > MAX_BANK_BYTES:
            raise PromptBankError(f"{path}: prompt bank file is {size} bytes; at most {MAX_BANK_BYTES} are accepted")
        with path.open("rb") as stream:
            raw = stream.read(MAX_BANK_BYTES + 1)  # a file that grew (or a pipe) is cut, then refused
        if len(raw) > MAX_BANK_BYTES:
            raise PromptBankError(f"{path}: prompt bank file is over {MAX_BANK_BYTES} bytes; at most "
                                  f"{MAX_BANK_BYTES} are accepted")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise PromptBankError(f"{path}: prompt bank file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PromptBankError(f"{path}: cannot read the prompt bank: {error}") from None
    return _parse_text(text, str(path))


def _parse_text(text: str, source: str) -> PromptBank:
    try:
        data = json.loads(text)
        return parse_bank(data, source)
    except json.JSONDecodeError as error:
        raise PromptBankError(f"{source}: not valid JSON: {error.msg} at line {error.lineno} column "
                              f"{error.colno}") from None
    except RecursionError:
        raise PromptBankError(f"{source}: JSON nested too deeply; a prompt bank is an object of classes, "
                              "each an object of description lists") from None


def shipped_bank_files() -> List[str]:
    """Names of the shipped bank files (``lseg_ros/prompt_banks/*.json``), sorted."""
    folder = importlib.resources.files(__package__).joinpath("prompt_banks")
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".json"))


@functools.lru_cache(maxsize=1)
def shipped_bank() -> PromptBank:
    """The shipped bank: every ``lseg_ros/prompt_banks/*.json``, read from the installed package.
    Shipped files must not name the same class twice (a test checks)."""
    folder = importlib.resources.files(__package__).joinpath("prompt_banks")
    bank = PromptBank()
    for name in shipped_bank_files():
        part = _parse_text(folder.joinpath(name).read_text(encoding="utf-8"), f"lseg_ros/prompt_banks/{name}")
        overlap = sorted(set(part.entries) & set(bank.entries))
        if overlap:
            raise PromptBankError(f"lseg_ros/prompt_banks/{name}: classes {overlap[:5]} are already in "
                                  f"{bank.sources}")
        bank = bank.merged(part)
    return bank


def load_prompt_bank(user_banks: Iterable[PathLike] = (), shipped: bool = True) -> PromptBank:
    """The shipped bank (unless ``shipped`` is False) with each user bank merged over it, in order."""
    bank = shipped_bank() if shipped else PromptBank()
    for path in user_banks:
        if path:
            bank = bank.merged(load_bank(path))
    return bank


def descriptions_for(label: str, user_banks: Iterable[PathLike] = (), limit: int = MAX_DESCRIPTIONS) -> List[str]:
    """Descriptions of ``label`` (any case or spacing; synonyms tried in order) from the shipped
    bank and ``user_banks`` merged over it; [] when no bank has it."""
    return load_prompt_bank(user_banks).descriptions(label, limit)


