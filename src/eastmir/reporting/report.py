"""``eastmir report RUNS… --out DIR``: tables and figures a person would rather read than JSON.

Writes into ``DIR``: ``report.md`` (a grid per metric and data fraction,
mean ± std over seeds, best per teacher in bold; then each system's paired
differences against the Baseline, seed by seed: :mod:`eastmir.reporting.paired`),
``report.csv``, ``report.tex`` (booktabs), ``figures/*.png`` and
``report.html``: one self-contained page (figures inlined as data URIs, no
script, no outside resource) to open in any browser or mail to a colleague.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from eastmir.errors import RunError
from eastmir.outputs import Outputs
from eastmir.reporting import figures
from eastmir.reporting.grid import TITLES, cells, grid_csv_text, grid_latex, grid_markdown, load_rows, metrics_of
from eastmir.reporting.paired import paired_differences, paired_markdown

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1.5em 0; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 90%; }
"""


def _markdown_to_html_table(table: str) -> str:
    """A Markdown grid of :mod:`eastmir.reporting.grid` as an HTML table (``**x**`` → ``<b>x</b>``)."""
    lines = [line.strip().strip("|").split("|") for line in table.splitlines()]
    head, body = lines[0], lines[2:]

    def cell(text: str, tag: str) -> str:
        text = html.escape(text.strip())
        if text.startswith("**") and text.endswith("**"):
            text = f"<b>{text[2:-2]}</b>"
        return f"<{tag}>{text}</{tag}>"

    rows = ["<tr>" + "".join(cell(c, "th") for c in head) + "</tr>"]
    rows += ["<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in body]
    return '<table class="results">' + "".join(rows) + "</table>"


def write_report(
    run_dirs: Sequence[str | Path], out: str | Path, title: str = "eastmir report", outputs: Outputs | None = None
) -> dict[str, Path]:
    """Write the report of ``run_dirs`` into the folder ``out`` (made, or one eastmir wrote before); returns what
    was written, by kind. Every file goes through ``outputs`` (:class:`eastmir.outputs.Outputs`): a file there that
    eastmir did not write (a user's ``report.md``) is refused unless it allows overwriting."""
    rows, skipped = load_rows(run_dirs)
    for line in skipped:
        print(f"warning: {line}")
    if not rows:
        stalled = [line for line in skipped if ": stalled: " in line]
        if stalled and len(stalled) == len(skipped):
            raise RunError(
                f"eastmir report: every run stalled at chance level ({len(stalled)}; the warnings above name them): "
                "nothing to compare; give them more steps (trainer.min_steps) or another learning rate"
            )
        raise RunError("eastmir report: none of the given directories is a finished run (metrics.json)")
    outputs = (outputs or Outputs()).with_inputs(run_dirs)
    out = outputs.folder(out)
    for name in ("report.md", "report.csv", "report.tex", "report.html"):
        outputs.check(out / name)  # all refusals before anything is written
    figures_dir = outputs.subfolder(out / "figures")
    for name in ("bars.png", "fractions.png", "per_class_ap.png", "curves.png"):
        outputs.check(figures_dir / name)
    cs = cells(rows)
    metrics = metrics_of(rows)
    sections, latex = _sections(rows, cs, metrics)
    made = _figures(rows, cs, metrics[0], out / "figures")
    seeds = max(len(c.runs) for c in cs)
    intro = f"{len(rows)} runs; {'mean ± std over up to ' + str(seeds) + ' seeds; ' if seeds > 1 else ''}"
    intro += "best student per teacher in bold."
    md = [f"# {title}", "", intro, ""]
    for heading, table in sections:
        md += [f"## {heading}", "", table, ""]
    md += ["## Figures", ""] + [f"![{k}](figures/{p.name})" for k, p in made.items() if p] + [""]
    written = {"markdown": out / "report.md", "csv": out / "report.csv", "latex": out / "report.tex"}
    outputs.write(written["markdown"], "\n".join(md))
    outputs.write(written["csv"], grid_csv_text(cs, metrics))
    outputs.write(written["latex"], "% \\usepackage{booktabs}\n" + "\n\n".join(latex) + "\n")
    written.update({kind: path for kind, path in made.items() if path})
    written["html"] = out / "report.html"
    outputs.write(written["html"], _html(title, intro, sections, made, _captions(metrics[0])))
    return written


def _sections(rows: list, cs: list, metrics: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """The report's ``(heading, markdown table)`` sections and their LaTeX tables: one grid per metric and
    training-data share, then the paired differences against the Baseline on the first metric."""
    fractions = sorted({c.fraction for c in cs}, reverse=True)
    sections: list[tuple[str, str]] = []
    latex = []
    for fraction in fractions:
        subset = [c for c in cs if c.fraction == fraction]
        data = "" if len(fractions) == 1 else f", {fraction:.0%} of the training data"
        for metric in metrics:
            heading = f"Test {TITLES[metric]}{data}"
            sections.append((heading, grid_markdown(subset, metric)))
            latex.append(grid_latex(subset, metric, caption=heading))
    primary = metrics[0]
    pairs = paired_differences(rows, primary)
    if pairs:
        heading = f"Paired differences against the Baseline (test {TITLES[primary]}, same seed and data)"
        sections.append((heading, paired_markdown(pairs, primary)))
    return sections, latex


def _figures(rows: list, cs: list, primary: str, folder: Path) -> dict[str, Path | None]:
    """The report's figures, by kind (``None``: nothing to draw)."""
    return {
        "bars": figures.bars(cs, primary, folder / "bars.png"),
        "fractions": figures.fractions(cs, primary, folder / "fractions.png"),
        "per_class": figures.per_class(cs, folder / "per_class_ap.png"),
        "curves": figures.curves(rows, folder / "curves.png"),
    }


def _captions(primary: str) -> dict[str, str]:
    return {
        "bars": f"Test {TITLES[primary]} per teacher and system (mean over seeds, bars: std); dashed: the Baseline.",
        "fractions": f"Test {TITLES[primary]} over the share of training data (mean ± std over seeds).",
        "per_class": "Test average precision of every class (full training data, mean over seeds).",
        "curves": "Validation score and training loss per epoch.",
    }


def _html(
    title: str, intro: str, sections: list[tuple[str, str]], made: dict[str, Path | None], captions: dict[str, str]
) -> str:
    """One self-contained HTML page: the tables, and the figures embedded as PNG data."""
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(intro)}</p>"]
    for heading, table in sections:
        body += [f"<h2>{html.escape(heading)}</h2>", _markdown_to_html_table(table)]
    for kind, path in made.items():
        if path:
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(
                f'<figure><img class="figure" alt="{kind}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(captions[kind])}</figcaption></figure>"
            )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>" + "".join(body) + "</body></html>\n"
    )
