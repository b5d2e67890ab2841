"""Rewrite the README's generated parameter table from the config dataclasses."""
from pathlib import Path

from lseg_ros.ros.params import render_parameter_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- parameter-table:start", "<!-- parameter-table:end -->"
text = README.read_text()
begin = text.index(START)
begin = text.index("\n", begin) + 1
stop = text.index(END)
README.write_text(text[:begin] + render_parameter_table() + text[stop:])
print("README parameter table updated")
