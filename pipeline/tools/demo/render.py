"""Rich renderables of the demo view, and the plain text summary for a non-terminal stdout.

Layout adapts to the width: three section columns from 210 characters, two from 140, one
(stacked) below. Sections come from :mod:`~pipeline.tools.demo.view_model` as they are, so a new
section needs no change here.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from pipeline.tools.demo.trend import Trends, sparkline
from pipeline.tools.demo.view_model import Line, Section, Unit

MISSING = "—"
ALERT_STYLE = "bold white on red"


def format_seconds(seconds: float) -> str:
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f}m"
    if seconds < 48 * 3600:
        hours, rest = divmod(round(seconds), 3600)
        return f"{hours}h{rest // 60:02d}m"
    return f"{seconds / 86400:.1f}d"


_FORMATS: dict[Unit, str] = {
    "score": "{:+.1f}",
    "ratio": "{:.1%}",
    "count": "{:,.0f}",
    "rate": "{:,.1f}/s",
    "per_minute": "{:,.1f}/min",
    "money": "{:,.2f}",
    "mean": "{:.2f}",
    "factor": "{:.2f}x",
}


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return MISSING
    if unit == "seconds":
        return format_seconds(value)
    if unit == "flag":
        return "yes" if value >= 1 else "NO"
    return _FORMATS[unit].format(value)


def columns_for(width: int) -> int:
    """Section columns: a section needs ~70 characters to show its notes and sparklines."""
    return 3 if width >= 210 else 2 if width >= 140 else 1


def _line_row(line: Line, trends: Trends, spark_width: int) -> tuple[Text, ...]:
    value = format_value(line.value, line.unit)
    spark = sparkline(trends.values(line.trend), spark_width) if line.trend else ""
    return (
        Text(line.label),
        Text(value, style=ALERT_STYLE if line.alert else "bold"),
        Text(line.note, style="dim"),
        Text(spark, style="cyan"),
    )


def section_panel(section: Section, trends: Trends, spark_width: int) -> Panel:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    table.add_column(no_wrap=True, width=spark_width)
    for line in section.lines:
        table.add_row(*_line_row(line, trends, spark_width))
    alerts = sorted({line.alert for line in section.lines if line.alert})
    body: list[RenderableType] = [table]
    body += [Text(f"⚠ {alert}", style="bold red") for alert in alerts]
    return Panel(
        Group(*body),
        title=f"[bold]{section.title}[/]",
        title_align="left",
        border_style="red" if alerts else "blue",
    )


def render_view(
    sections: Sequence[Section], trends: Trends, *, width: int, header: str, footer: str
) -> RenderableType:
    """The whole screen: a header line, the section panels in a grid, a footer line."""
    columns = columns_for(width)
    spark_width = 16 if width // columns >= 70 else 10
    grid = Table.grid(expand=True, padding=(0, 0))
    for _ in range(columns):
        grid.add_column(ratio=1)
    panels: list[RenderableType] = [section_panel(s, trends, spark_width) for s in sections]
    for start in range(0, len(panels), columns):
        row = panels[start : start + columns]
        grid.add_row(*row, *[""] * (columns - len(row)))
    return Group(Text(header, style="bold"), grid, Text(footer, style="dim"))


def plain_summary(sections: Sequence[Section], header: str) -> str:
    """One block of plain lines (no escape codes), one line per section, for logs and pipes."""
    lines = [header]
    for section in sections:
        parts = []
        for line in section.lines:
            text = f"{line.label} {format_value(line.value, line.unit)}"
            if line.alert:
                text += f" [ALERT {line.alert}]"
            parts.append(text)
        lines.append(f"  {section.title}: " + " · ".join(parts))
    return "\n".join(lines)
