"""Small horizontal bar charts as server-made SVG, for the value page: no script, no
``style=``, every text escaped (``charts.escape``). Colours are presentation attributes
the style sheet may override through the classes ``bar-chart``, ``bar-chart-bar`` and
``bar-chart-label``.
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.logtext import cut
from receiver.web.charts import escape

WIDTH = 320
ROW = 18
LABEL_W = 110.0
TEXT_W = 60.0
_FILL = "#1565c0"

Bar = tuple[str, float | None, str]
"""(label, value or None for no data, the value as people read it)."""


def bar_chart(title: str, bars: Sequence[Bar]) -> str:
    """One bar per entry, scaled to the largest value; a missing value is drawn as no bar
    and its text ("—") says so. ``title`` is the accessible summary."""
    height = max(1, len(bars)) * ROW + 4
    top = max((v for _, v, _ in bars if v is not None and v > 0), default=0.0)
    room = WIDTH - LABEL_W - TEXT_W
    parts: list[str] = []
    for i, (label, value, text) in enumerate(bars):
        y = 2 + i * ROW
        parts.append(
            f'<text class="bar-chart-label" x="{LABEL_W - 4:.1f}" y="{y + 12:.1f}" '
            f'text-anchor="end">{escape(cut(label, 18))}</text>'
        )
        width = room * value / top if value is not None and top > 0 and value > 0 else 0.0
        if width:
            parts.append(
                f'<rect class="bar-chart-bar" x="{LABEL_W:.1f}" y="{y + 3:.1f}" '
                f'width="{max(width, 1.0):.1f}" height="{ROW - 6}" fill="{_FILL}"/>'
            )
        parts.append(
            f'<text class="bar-chart-label" x="{LABEL_W + width + 4:.1f}" y="{y + 12:.1f}">'
            f"{escape(text)}</text>"
        )
    summary = escape(f"{title}: " + ", ".join(f"{label} {text}" for label, _, text in bars))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar-chart" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="{summary}" '
        f'font-family="sans-serif" font-size="10" fill="currentColor">'
        f"<title>{summary}</title>{''.join(parts)}</svg>"
    )
