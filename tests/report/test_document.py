"""The Markdown a Report writes."""

from __future__ import annotations

import re

from kdlab.report import Report


def test_a_pipe_inside_a_table_cell_is_escaped_so_the_row_keeps_its_columns(tmp_path):
    Report("t").table(["KL(p||q)", "x"], [["a|b", 1], ["two\nlines", 2]]).write(tmp_path)
    lines = (tmp_path / "report.md").read_text().splitlines()
    header, rule, row, joined = (line for line in lines if line.startswith("|"))
    assert header == "| KL(p\\|\\|q) | x |"
    assert row == "| a\\|b | 1 |"
    assert joined == "| two lines | 2 |"  # a newline would end the row
    # a Markdown row splits on unescaped pipes only: two columns each
    assert [len(re.split(r"(?<!\\)\|", line)) - 2 for line in (header, row)] == [2, 2]
