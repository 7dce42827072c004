"""The demo view's state between refreshes: selected window, trends, rates, alert limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import Metric

from pipeline.tools.demo.alert_rules import RULE_FILE, AlertThresholds, load_thresholds
from pipeline.tools.demo.scrape import Scrape
from pipeline.tools.demo.signals import SignalTally
from pipeline.tools.demo.trend import RateMeter, Trends
from pipeline.tools.demo.view_model import Reading, Section, build_sections, counters, headline


class DemoScreen:
    """Turns one collection of metric families after another into sections, with memory."""

    def __init__(
        self,
        windows: Sequence[str],
        window: str,
        *,
        thresholds: AlertThresholds | None = None,
        rule_problem: str | None = None,
    ) -> None:
        if window not in windows:
            raise ValueError(f"window {window!r} is not one of {', '.join(windows)}")
        self.windows = tuple(windows)
        self.window = window
        self.thresholds = thresholds
        self.rule_problem = rule_problem
        self.trends = Trends()
        self.rates = RateMeter()
        self.ready = False
        self.waiting: list[str] = []
        """Titles of the sections not :attr:`~Section.live` yet (or all, before the view is
        ready)."""
        self.live_at: float | None = None
        """When every section first had numbers (epoch s), None until then."""

    @classmethod
    def with_rule_file(cls, windows: Sequence[str], window: str) -> DemoScreen:
        """Thresholds from the alert rule file; without it the view runs, unhighlighted."""
        try:
            return cls(windows, window, thresholds=load_thresholds())
        except (OSError, ValueError) as problem:
            return cls(windows, window, rule_problem=f"no alert highlighting ({problem})")

    def next_window(self) -> None:
        self.window = self.windows[(self.windows.index(self.window) + 1) % len(self.windows)]

    def refresh(
        self, families: Iterable[Metric], now: float, signals: SignalTally | None = None
    ) -> list[Section]:
        """Sections of this collection (and of the signals tally, when the demo reads them);
        also feeds the rate meter and the sparklines."""
        scrape = Scrape(families)
        self.ready = scrape.view_ready()
        self.rates.add(now, counters(scrape))
        reading = Reading(
            scrape,
            window=self.window,
            short=self.windows[0],
            long=self.windows[-1],
            rates=self.rates.rates(),
            thresholds=self.thresholds,
            signals=signals,
            now=now,
        )
        sections = build_sections(reading)
        self.waiting = [s.title for s in sections if not (self.ready and s.live)]
        if self.ready:
            self.trends.record(now, headline(reading))
            if self.live_at is None and not self.waiting:
                self.live_at = now
        return sections

    def footer(self) -> str:
        source = self.rule_problem or f"alert limits from {RULE_FILE.name}"
        trend = f"sparklines: {self.windows[0]} window, a bar per {self.trends.every:g}s"
        return f"{trend} · {source}"
