"""Rewrite the generated parameter table in docs/parameters.md from the config dataclasses."""
from pathlib import Path

from lseg_ros.ros.params import render_parameter_table

PARAMETERS_DOC = Path(__file__).resolve().parent.parent / "docs" / "parameters.md"
START, END = "<!-- parameter-table:start", "<!-- parameter-table:end -->"
text = PARAMETERS_DOC.read_text()
begin = text.index(START)
begin = text.index("\n", begin) + 1
stop = text.index(END)
PARAMETERS_DOC.write_text(text[:begin] + render_parameter_table() + text[stop:])
print("docs/parameters.md parameter table updated")
