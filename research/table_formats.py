"""Tables rendered: LaTeX (booktabs), Markdown and CSV rows of a research.tables.Table, with the notes that
say what the numbers and marks mean. LaTeX and Markdown print paper names (research/table_names.py) in the
study's row order with the baseline first; the CSV keeps the config's values. The bar chart is drawn by
experiments/ablate.py.
"""

from __future__ import annotations

import math
import re

from research.table_names import in_percent
from research.tables import ALPHA, MIN_DOF, POWER, Table


def notes(table: Table) -> list[str]:
    """The footnotes that say what the numbers and marks mean."""
    seeds = ", ".join(map(str, table.seeds))
    lines = [
        f"Mean ± sample standard deviation over seeds {seeds}"
        + ("; Seeds = finished runs / expected runs." if table.counts else "."),
        "Bold: best, underlined: second best per column among complete rows (↑ higher / ↓ lower is better).",
    ]
    if table.baseline is not None:
        base = " / ".join(table.display(table.rows[table.baseline]))
        delta = f"Δ: difference of means to the baseline row ({base}); " if table.deltas else ""
        lines.append(
            f"{delta}†: p < {ALPHA} in a two-sided paired t-test against the baseline row ({base}) across the "
            f"seeds both rows finished, marked only with at least {MIN_DOF} degrees of freedom "
            f"({MIN_DOF + 1} paired seeds; no test with fewer than 2 paired seeds or identical values)."
        )
        untested = [
            " / ".join(table.display(r))
            for r in table.rows
            if any(c.delta is not None and c.p is None for c in r.cells.values())
        ]
        lines += [f"No test for: {'; '.join(untested)}."] if untested else []
    shown = [table.names.columns.get(name, name) for name, _ in table.metrics if in_percent(name)]
    points = " (their Δ in percentage points)" if table.deltas and table.baseline is not None else ""
    lines += [f"In percent: {', '.join(shown)}{points}."] if shown else []
    for row in table.rows:
        if not all(c.complete for c in row.cells.values()):
            gaps = ", ".join(f"seed {s} {st}" for s, st in row.runs.items() if st != "finished")
            lines.append(
                f"‡ {' / '.join(table.display(row))}: incomplete ({gaps or 'a finished run lacks the metric'}); "
                "the mean is over the finished seeds only and the row is not ranked."
            )
    return lines


# Renderers. Each format says how to write a number, bold, second best and the two marks.
MARKDOWN = {"pm": " ± ", "bold": "**{}**", "second": "<ins>{}</ins>", "dagger": "†", "ddagger": " ‡", "dash": "–"}
MARKDOWN |= {"math": "{}"}
LATEX = {"pm": r" \pm ", "bold": r"\mathbf{{{}}}", "second": r"\underline{{{}}}", "dash": "--"}
LATEX |= {"dagger": r"^\dagger", "ddagger": r"^\ddagger", "math": "${}$"}


def _body(table: Table, style: dict[str, str], digits: int) -> list[list[str]]:
    """Table cells as strings: keys, seeds, then per metric the value (and Δ with a baseline)."""
    body = []
    for i, row in enumerate(table.rows):
        cells = [*table.display(row)] + ([f"{row.finished}/{len(table.seeds)}"] if table.counts else [])
        cells += [style["dash"] if row.params is None else params_text(row.params)] if table.params else []
        for name, _ in table.metrics:
            c = row.cells[name]
            scale, places = (100, max(digits - 2, 0)) if in_percent(name) else (1, digits)
            mark = style["dagger"] if c.significant else ""
            text = f"{scale * c.mean:.{places}f}"
            text += "" if math.isnan(c.std) else f"{style['pm']}{scale * c.std:.{places}f}"
            text = style["bold" if c.rank == 0 else "second"].format(text) if c.rank is not None else text
            text += ("" if table.deltas else mark) + (style["ddagger"] if c.values and not c.complete else "")
            cells.append(style["math"].format(text) if c.values else style["dash"])
            if table.baseline is not None and table.deltas:
                delta = None if c.delta is None else style["math"].format(f"{scale * c.delta:+.{places}f}{mark}")
                cells.append("baseline" if i == table.baseline else delta or style["dash"])
        body.append(cells)
    return body


def _header(table: Table) -> list[str]:
    """Key names, Seeds, Params (when asked), metric names with their direction, Δ columns."""
    names = table.names
    header = [names.column(k) for k in table.keys] + (["Seeds"] if table.counts else [])
    header += ["Params"] if table.params else []
    for name, goal in table.metrics:
        metric = table.header(name)
        header.append(f"{metric} {'↑' if goal == 'max' else '↓'}")
        header += [f"Δ {metric}"] if table.baseline is not None and table.deltas else []
    return header


def params_text(count: float) -> str:
    """A parameter count as papers print it: 845K, 2.91M, 1.20B."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.{0 if unit == 'K' else 2}f}{unit}"
    return f"{count:.0f}"


def to_markdown(table: Table, digits: int = 3) -> str:
    header = _header(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _body(table, MARKDOWN, digits)]
    return "\n".join(lines + [""] + notes(table)) + "\n"


def latex_escape(text: str) -> str:
    """Plain text for LaTeX: special characters escaped, the table's symbols as math."""
    text = re.sub(r"([&%$#_{}])", r"\\\1", text)
    symbols = {"±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "↑": r"$\uparrow$"}
    for symbol, tex in (symbols | {"↓": r"$\downarrow$", "–": "--", "<": "$<$", ">": "$>$"}).items():
        text = text.replace(symbol, tex)
    return text


LATEX_WIDTHS = {"column": ("table", r"\columnwidth"), "full": ("table*", r"\textwidth")}


def to_latex(table: Table, caption: str, tag: str, digits: int = 3, width: str = "column") -> str:
    """A booktabs float ready to \\input (needs booktabs and graphicx): `table` at most \\columnwidth wide
    (width="column") or `table*` at most \\textwidth (width="full"), the tabular shrunk to fit, never enlarged;
    the notes sit under it."""
    env, limit = LATEX_WIDTHS[width]
    header = [latex_escape(h) for h in _header(table)]
    keys = "l" * len(table.keys)
    lines = [
        rf"\begin{{{env}}}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{tab:{tag}}}",
        rf"\resizebox{{\ifdim\width>{limit}{limit}\else\width\fi}}{{!}}{{%",
        rf"\begin{{tabular}}{{{keys}r{'c' * (len(header) - len(keys) - 1)}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
    ]
    for cells in _body(table, LATEX, digits):
        lines.append(" & ".join(latex_escape(c) if j < len(table.keys) else c for j, c in enumerate(cells)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip", r"{\footnotesize\raggedright"]
    lines += [latex_escape(note) + r"\par" for note in notes(table)]
    return "\n".join(lines + ["}", rf"\end{{{env}}}"]) + "\n"


def to_csv(table: Table) -> list[list[str]]:
    """Rows for csv.writer: full-precision numbers, one column per statistic, empty = none."""
    header = [*table.keys, "seeds_finished", "seeds_expected", "runs"] + (["params"] if table.params else [])
    for name, _ in table.metrics:
        header += [f"{name} mean", f"{name} std", f"{name} n", f"{name} delta", f"{name} p"]
        header += [f"{name} ci_low", f"{name} ci_high", f"{name} mde"]
    out = [header]
    for row in table.rows:
        cells = [*row.label, str(row.finished), str(len(table.seeds))]
        cells.append(" ".join(f"{s}:{status}" for s, status in row.runs.items()))
        cells += ["" if row.params is None else repr(row.params)] if table.params else []
        for name, _ in table.metrics:
            c = row.cells[name]
            numbers = [c.mean, c.std, len(c.values), c.delta, c.p, *(c.ci or (None, None)), c.mde]
            cells += ["" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v) for v in numbers]
        out.append(cells)
    return out


def power_markdown(table: Table, digits: int) -> str:
    """Markdown of every row's paired differences to the baseline: per metric the mean difference over the
    paired seeds, its confidence interval, p and the minimum detectable effect (what a null row rules out)."""
    if table.baseline is None:
        return ""
    base = " / ".join(table.display(table.rows[table.baseline]))
    lines = [
        f"Paired differences to the baseline row ({base}):",
        "",
        f"| Row | Metric | Paired seeds | Δ | {round(100 * (1 - ALPHA))} % CI | p | MDE |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        for name, _ in table.metrics:
            c = row.cells[name]
            if c.ci is None:
                continue
            scale, places = (100, max(digits - 2, 1)) if in_percent(name) else (1, digits)
            low, high = (f"{scale * v:+.{places}f}" for v in c.ci)
            p = "–" if c.p is None else f"{c.p:.3f}"
            delta = scale * (c.ci[0] + c.ci[1]) / 2
            cells = [" / ".join(table.display(row)), table.header(name), str(c.paired), f"{delta:+.{places}f}"]
            lines.append("| " + " | ".join([*cells, f"[{low}, {high}]", p, f"{scale * c.mde:.{places}f}"]) + " |")
    lines += [
        "",
        f"Δ: mean of the paired differences; CI: two-sided t interval; p: paired t-test; MDE: the true difference "
        f"that test finds with {round(100 * POWER)} % power at α = {ALPHA}, (t(1 - α/2) + t({POWER})) × SE, "
        "n - 1 degrees of freedom.",
    ]
    return "\n".join(lines) + "\n"
