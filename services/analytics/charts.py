"""The analytics charts as SVG, drawn by matplotlib on the server (no chart code in the page).

Each chart shows numbers the page also prints in a table (the table is the accessible version; the
image's ``alt`` says what the chart shows). Figures are built with matplotlib's object API (no pyplot
state), so charts can be drawn in worker threads at once; text stays text in the SVG (smaller, and
readable by a screen reader or a search).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from services.analytics.report import Analytics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ChartName = Literal["hosts", "intakes", "topics"]
CHART_NAMES: tuple[ChartName, ...] = ("hosts", "intakes", "topics")
WIDTH_IN = 4.2  # a phone's width at the page's scale; the SVG scales to the column
INK, MUTED, ACCENT, WARN, SOFT = "#1f2a30", "#5c6670", "#2f6f8f", "#b3261e", "#9cc3d5"


def render(name: ChartName, figures: Analytics) -> bytes:
    """One chart as SVG bytes."""
    svg_fonttype_text()
    fig = _DRAW[name](figures)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def describe(name: ChartName, figures: Analytics) -> str:
    """The chart's ``alt`` text: what it shows, pointing at the table with the numbers."""
    if name == "hosts":
        flagged = sum(1 for h in figures.hosts if h.flagged)
        return (
            f"Bar chart: share of bookings each host rescheduled, {len(figures.hosts)} hosts, "
            f"{flagged} above the {figures.threshold:.0%} line. The numbers are in the hosts table."
        )
    if name == "intakes":
        weeks = figures.weeks
        return (
            f"Bar chart: intakes completed and abandoned per week, last {weeks} weeks. See the weekly table."
        )
    return "Bar chart: topics students booked about, this week and last week. See the topics table."


def _figure(rows: float) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, max(1.6, 0.55 + 0.32 * rows)), dpi=96)
    ax = fig.add_subplot()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_color(MUTED)
    ax.spines["bottom"].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    return fig, ax


def _hosts(figures: Analytics) -> Figure:
    hosts = figures.hosts[:12]
    fig, ax = _figure(len(hosts) or 1)
    names = [h.email.split("@")[0] for h in hosts]
    rates = [h.reschedule_rate * 100 for h in hosts]
    colors = [WARN if h.flagged else ACCENT for h in hosts]
    ax.barh(range(len(hosts)), rates, color=colors, height=0.6)
    ax.axvline(figures.threshold * 100, color=INK, linestyle="--", linewidth=1)
    ax.set_yticks(range(len(hosts)), names)
    ax.invert_yaxis()
    ax.set_xlabel("host reschedules, % of bookings", fontsize=8, color=MUTED)
    ax.set_xlim(0, max(figures.threshold * 200, *rates, 1) * 1.1)
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:.0f}%", va="center", fontsize=7, color=INK)
    return fig


def _intakes(figures: Analytics) -> Figure:
    weeks = figures.weekly
    fig, ax = _figure(7)
    xs = range(len(weeks))
    completed = [w.completed for w in weeks]
    abandoned = [w.abandoned for w in weeks]
    ax.bar(xs, completed, color=ACCENT, label="completed")
    ax.bar(xs, abandoned, bottom=completed, color=SOFT, label="abandoned")
    step = max(1, len(weeks) // 6)
    ax.set_xticks(list(xs)[::step], [w.week[5:] for w in weeks][::step])
    ax.set_ylabel("intakes", fontsize=8, color=MUTED)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return fig


def _topics(figures: Analytics) -> Figure:
    topics = figures.topics[:8]
    fig, ax = _figure(max(1, len(topics)) * 1.4)
    ys = [y * 1.0 for y in range(len(topics))]
    ax.barh(
        [y - 0.2 for y in ys], [t.this_week for t in topics], height=0.38, color=ACCENT, label="this week"
    )
    ax.barh([y + 0.2 for y in ys], [t.last_week for t in topics], height=0.38, color=SOFT, label="last week")
    ax.set_yticks(ys, [t.title[:28] for t in topics])
    ax.invert_yaxis()
    ax.set_xlabel("intakes", fontsize=8, color=MUTED)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return fig


_DRAW: dict[ChartName, Callable[[Analytics], Figure]] = {
    "hosts": _hosts,
    "intakes": _intakes,
    "topics": _topics,
}


def svg_fonttype_text() -> None:
    """Keep SVG text as text (matplotlib's default draws glyphs as paths: bigger, unreadable)."""
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "office-hours"  # stable ids: the same figures, the same bytes
