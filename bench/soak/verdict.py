"""The soak's judgement and report: one row per simulated hour, whether RSS stayed flat once
the windows were full, the markdown table and the chart."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

__all__ = ["TABLE_SIZES", "by_hour", "table", "verdict", "write_chart"]


def by_hour(samples: list[dict[str, Any]], hours: float) -> list[dict[str, Any]]:
    """One row per simulated hour: median/max RSS of its samples, sizes at its last sample."""
    rows = []
    for hour in range(int(hours) + 1):
        inside = [s for s in samples if hour <= s["sim_hours"] < hour + 1]
        if not inside:
            continue
        last = inside[-1]
        rows.append(
            {
                "hour": hour,
                "samples": len(inside),
                "rss_mb": round(statistics.median(s["rss_mb"] for s in inside), 1),
                "rss_max_mb": max(s["rss_mb"] for s in inside),
                "broker_rss_mb": last["broker_rss_mb"],
                "events": last.get("events", 0),
                "exposed_samples": last.get("samples", 0),
                "sizes": {k: v for k, v in last["sizes"].items() if isinstance(v, int)},
            }
        )
    return rows


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 with fewer than two)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def _days(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Hour rows by simulated day, whole days only (20+ hours: a row may lack samples)."""
    days: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        days.setdefault(row["hour"] // 24, []).append(row)
    return {day: hours for day, hours in days.items() if len(hours) >= 20}


def verdict(rows: list[dict[str, Any]], steady_from: float) -> dict[str, Any]:
    """RSS growth from the first steady hour to the last: absolute, relative, per hour.

    Also the peak RSS of each simulated day: the allocator keeps what a transient peak took
    (a full checkpoint, a busy batch), so RSS steps up until the busiest hour of a day with
    full windows has passed; equal peaks on later days are what "flat" means then.
    """
    steady = [row for row in rows if row["hour"] >= steady_from]
    first, last = steady[0], steady[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    structures = {
        name: {
            "from": first["sizes"].get(name),
            "to": last["sizes"].get(name),
            "per_hour": round(_slope([(r["hour"], r["sizes"].get(name, 0)) for r in steady]), 1),
        }
        for name in last["sizes"]
    }
    return {
        "from_hour": first["hour"],
        "to_hour": last["hour"],
        "rss_from_mb": first["rss_mb"],
        "rss_to_mb": last["rss_mb"],
        "rss_growth_mb": round(growth, 1),
        "rss_growth_pct": round(100 * growth / first["rss_mb"], 1),
        "rss_slope_mb_per_hour": round(_slope([(r["hour"], r["rss_mb"]) for r in steady]), 2),
        "rss_peak_by_day_mb": {
            f"{day * 24}-{day * 24 + 24}h": max(r["rss_max_mb"] for r in hours)
            for day, hours in _days(rows).items()
        },
        "structures": structures,
    }


TABLE_SIZES = ("dedupe_ids", "view_buckets", "carts", "orders", "tickets", "timers")


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per simulated hour, RSS, events counted, the sizes that matter."""
    head = ["sim h", "RSS MB", "max MB", "broker MB", "events", *TABLE_SIZES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        broker = "–" if row["broker_rss_mb"] is None else f"{row['broker_rss_mb']:.0f}"
        cells = [
            str(row["hour"]),
            f"{row['rss_mb']:.1f}",
            f"{row['rss_max_mb']:.1f}",
            broker,
            f"{row['events']:,.0f}",
            *(f"{row['sizes'].get(name, 0):,}" for name in TABLE_SIZES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(results: dict[str, Any], path: Path) -> None:
    """Worker RSS over simulated hours (left) and the structure sizes behind it (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, judged = results["samples"], results["verdict"]
    steady_from = results["parameters"]["steady_from"]
    fig, (memory, sizes) = plt.subplots(1, 2, figsize=(11, 4.2))
    memory.plot([s["sim_hours"] for s in samples], [s["rss_mb"] for s in samples], lw=1)
    memory.axvspan(0, steady_from, color="#eeeeee", label="windows filling")
    memory.set_xlabel("simulated hours")
    memory.set_ylabel("worker RSS (MB)")
    memory.set_ylim(bottom=0)
    memory.legend(loc="lower right", fontsize=8)
    memory.set_title(
        f"RSS h{judged['from_hour']}→h{judged['to_hour']}: {judged['rss_growth_mb']:+.1f} MB "
        f"({judged['rss_growth_pct']:+.1f} %)",
        fontsize=10,
    )
    sized = [s for s in samples if s["sizes"]]
    base = next(s["sizes"] for s in sized if s["sim_hours"] >= steady_from)
    for name in TABLE_SIZES:
        if base.get(name):
            sizes.plot(
                [s["sim_hours"] for s in sized],
                [s["sizes"].get(name, 0) / base[name] for s in sized],
                label=f"{name} ({base[name]:,})",
                lw=1,
            )
    sizes.axhline(1.0, color="#999999", lw=0.5)
    sizes.axvspan(0, steady_from, color="#eeeeee")
    sizes.legend(fontsize=7, ncol=2, loc="lower right")
    sizes.set_ylim(bottom=0)
    sizes.set_xlabel("simulated hours")
    sizes.set_title(f"Entries held by the worker, relative to hour {steady_from:g}", fontsize=10)
    from bench.report import save_figure

    p = results["parameters"]
    save_figure(
        fig,
        f"cx-pipeline soak: {p['hours']:g} simulated h at {p['rate']:g} events/s, "
        f"{p['speed']:g}× real time, {results['wall_seconds']:.0f} s wall",
        path,
    )
