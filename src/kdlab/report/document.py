"""A report built once and written twice: ``report.md`` and a self-contained ``report.html`` (PNGs inlined).

Figures are declared as specs (:mod:`kdlab.report.figures`) and drawn when the report is written, so a report is a
pure function of the data it shows.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..io import atomic_write_text
from .figures import draw_figure
from .format import markdown_table

_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
pre{background:#f6f6f6;padding:8px;overflow-x:auto}.holds{color:#137333}.fails{color:#b3261e}.na{color:#666}"""


@dataclass
class Report:
    """Append blocks, then ``write(out_dir)``; figures are drawn into ``out_dir`` under their names."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> "Report":
        """A heading of ``level`` (2 = section)."""
        self.blocks.append(("heading", (level, text)))
        return self

    def paragraph(self, text: str) -> "Report":
        """A paragraph of plain text."""
        self.blocks.append(("paragraph", text))
        return self

    def bullets(self, items: Sequence[str]) -> "Report":
        """A bulleted list."""
        self.blocks.append(("bullets", list(items)))
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> "Report":
        """A table (cells written with str())."""
        self.blocks.append(("table", (list(headers), [[str(c) for c in r] for r in rows])))
        return self

    def figure(self, name: str, spec: dict[str, Any], caption: str = "") -> "Report":
        """A figure drawn from ``spec`` (:func:`kdlab.report.figures.draw_figure`) to ``name`` when written."""
        self.blocks.append(("figure", (name, spec, caption)))
        return self

    def files(self) -> list[str]:
        """The files :meth:`write` creates: the figures' PNGs, report.md and report.html."""
        return [value[0] for kind, value in self.blocks if kind == "figure"] + ["report.md", "report.html"]

    def code(self, text: str) -> "Report":
        """A code block (e.g. the command that reproduces the report)."""
        self.blocks.append(("code", text))
        return self

    def claims(self, claims: Sequence[dict[str, Any]]) -> "Report":
        """Claims with their verdicts, evidence, statistic, rule and selections."""
        self.blocks.append(("claims", list(claims)))
        return self

    def claims_section(self, results: dict[str, Any]) -> "Report":
        """The claims of a study with their verdicts, each decided by a rule declared before the run."""
        self.heading("Claims")
        self.paragraph("Each verdict comes from an interval and a rule declared before the run: holds when the whole "
                       "interval satisfies the rule, does not hold when it lies on the other side of the threshold, "
                       "undecided otherwise (or without an interval); not applicable when the claim's "
                       "precondition is absent. Every choice behind a statistic (best temperature, teacher, "
                       "method) is made on validation accuracy; test accuracy is read only for the chosen "
                       "comparison.")
        return self.claims(results["claims"])

    def reproduce(self, results: dict[str, Any], reused_where: str = " from the run store", note: str = "") -> "Report":
        """The closing section of a study report: the command that reproduces it, runs trained and reused, time."""
        self.heading("Reproduce")
        self.code(results["command"])
        executor = results.get("executor")
        where = f" ({executor['name']} executor, {executor['workers']} worker{'s' * (executor['workers'] > 1)})" \
            if executor else ""
        return self.paragraph(f"{results['runs_trained']} runs trained, {results['runs_reused']} reused{reused_where}; "
                              f"{results['seconds']:.0f} s on this machine{where}.{note}")

    def to_markdown(self) -> str:
        """The report as Markdown (figures linked by file name)."""
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += ["#" * value[0] + " " + value[1], ""]
            elif kind == "paragraph":
                out += [value, ""]
            elif kind == "bullets":
                out += [f"- {item}" for item in value] + [""]
            elif kind == "table":
                headers, rows = value
                out += [*markdown_table(headers, rows), ""]
            elif kind == "figure":
                out += [f"![{value[-1]}]({value[0]})", ""]
            elif kind == "code":
                out += ["```", value, "```", ""]
            elif kind == "claims":
                out += [f"- **{_verdict(c)}** — {c['claim']}. {_claim_text(c)}" for c in value] + [""]
        return "\n".join(out)

    def to_html(self, base_dir: Path) -> str:
        """The report as one self-contained HTML page (figures inlined from ``base_dir``)."""
        e = html.escape
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(self.title)}</title>",
               f"<style>{_CSS}</style></head><body><h1>{e(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                out.append(f"<h{value[0]}>{e(value[1])}</h{value[0]}>")
            elif kind == "paragraph":
                out.append(f"<p>{e(value)}</p>")
            elif kind == "bullets":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in value) + "</ul>")
            elif kind == "table":
                headers, rows = value
                out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"
                           + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
                           + "</table>")
            elif kind == "figure":
                data = base64.b64encode((base_dir / value[0]).read_bytes()).decode()
                out.append(f"<figure><img alt='{e(value[-1])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{e(value[-1])}</figcaption></figure>")
            elif kind == "code":
                out.append(f"<pre>{e(value)}</pre>")
            elif kind == "claims":
                out.append("<ul>" + "".join(
                    f"<li><b class='{_css_class(c)}'>{_verdict(c)}</b> — {e(c['claim'])}. "
                    f"{e(_claim_text(c))}</li>" for c in value) + "</ul>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Draw the figures, then write report.md and the self-contained report.html into ``out_dir``."""
        out_dir = Path(out_dir)
        for kind, value in self.blocks:
            if kind == "figure":
                draw_figure(value[1], out_dir / value[0])
        md = atomic_write_text(out_dir / "report.md", self.to_markdown())
        page = atomic_write_text(out_dir / "report.html", self.to_html(out_dir))
        return md, page


def _verdict(claim: dict[str, Any]) -> str:
    if claim.get("not_applicable"):
        return "not applicable"
    return {True: "holds", False: "does not hold", None: "undecided"}[claim["holds"]]


def _css_class(claim: dict[str, Any]) -> str:
    return {True: "holds", False: "fails", None: "na"}[claim["holds"]]


def _claim_text(claim: dict[str, Any]) -> str:
    """Evidence, then (for declared claims) the statistic, the rule and what was selected on which split."""
    parts = [claim["evidence"].rstrip(".") + "."]
    if claim.get("statistic"):
        parts.append(f"Statistic: {claim['statistic']}.")
    if claim.get("rule"):
        parts.append(f"Rule: {claim['rule']}.")
    if claim.get("selections"):
        chosen = "; ".join(f"{k}: {v}" for k, v in claim["selections"].items())
        parts.append(f"Selected on {claim.get('selected_on') or 'validation'}: {chosen}.")
    return " ".join(parts)
