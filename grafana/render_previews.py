#!/usr/bin/env python3
"""Render PNG previews of the Grafana dashboards from a live Prometheus (matplotlib).

    python grafana/render_previews.py --prometheus http://127.0.0.1:9090
    python grafana/render_previews.py --prometheus URL --out docs/dashboards \
        --tenant default --window 30d --range 30m executive support

Each dashboard of grafana/dashboards/*.json is drawn on its own 24-column grid: stat panels
as numbers coloured by their thresholds, time series from range queries, bar gauges from
instant queries, every query with the template variables filled in (`by` takes the board's
default dimension, `segment` all its values). It reads the same JSON Grafana loads, so a
preview shows what the board's queries return; it is not a pixel copy of Grafana.

tests/integration/test_observability_e2e.py runs it against its own Prometheus; the
committed previews in docs/dashboards/ come from the same code (see docs/dashboards/README.md).
Needs matplotlib (the `dev` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = HERE / "dashboards"
DEFAULT_OUT = HERE.parent / "docs" / "dashboards"
# The boards a reader looks at first; `all` renders every board.
MAIN = ("executive", "funnel", "revenue", "support", "adoption", "engine")

COLUMN_INCHES = 0.72
ROW_INCHES = 0.36
COLORS = {"red": "#d44a3a", "orange": "#e5a823", "green": "#3f9b4b", "blue": "#3274d9",
          "transparent": "none"}
PALETTE = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9",
           "#705da0", "#508642", "#cca300"]
BACKGROUND = "#f7f8fa"


class Palette:
    """One colour per legend label within a dashboard, so a segment keeps its colour."""

    def __init__(self) -> None:
        self.assigned: dict[str, str] = {}

    def __call__(self, label: str) -> str:
        if label not in self.assigned:
            self.assigned[label] = PALETTE[len(self.assigned) % len(PALETTE)]
        return self.assigned[label]


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


class Prometheus:
    """The few calls of the Prometheus HTTP API the previews need."""

    def __init__(self, url: str, at: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.at = at if at is not None else time.time()

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:  # noqa: S310
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def instant(self, expr: str) -> list[Series]:
        data = self._get("/api/v1/query", {"query": expr, "time": f"{self.at:.3f}"})
        return [Series(r["metric"], [(float(r["value"][0]), float(r["value"][1]))])
                for r in data["result"]]

    def range(self, expr: str, seconds: float) -> list[Series]:
        step = max(1.0, seconds / 240)
        data = self._get("/api/v1/query_range", {
            "query": expr, "start": f"{self.at - seconds:.3f}", "end": f"{self.at:.3f}",
            "step": f"{step:g}"})
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]])
                for r in data["result"]]


# -- formatting ------------------------------------------------------------------------------


def fmt_duration(seconds: float) -> str:
    if seconds < 0:
        return "-" + fmt_duration(-seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def fmt_short(value: float, decimals: int | None) -> str:
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.{2 if decimals is None else min(decimals + 1, 2)}f}{suffix}"
    if decimals is not None:
        return f"{value:,.{decimals}f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:,.0f}"


def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    """A value as Grafana would show it, roughly."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "percent":
        return f"{value:.{1 if decimals is None else decimals}f}%"
    if unit == "s":
        return fmt_duration(value)
    if unit in ("ops", "reqps"):
        return f"{fmt_short(value, decimals)}/s"
    return fmt_short(value, decimals)


def axis_scale(unit: str, numbers: list[float]) -> tuple[float, str]:
    """(factor, unit label) for an axis: values x factor are plotted, the label names the unit,
    and matplotlib picks the tick precision."""
    largest = max((abs(n) for n in numbers), default=0.0)
    if unit == "percentunit":
        return 100.0, "%"
    if unit == "percent":
        return 1.0, "%"
    if unit in ("ops", "reqps"):
        return 1.0, "per second"
    steps = ((("days", 86400), ("hours", 3600), ("minutes", 60)) if unit == "s"
             else (("billions", 1e9), ("millions", 1e6), ("thousands", 1e3)))
    for name, size in steps:
        if largest >= size:
            return 1 / size, name
    return 1.0, "seconds" if unit == "s" else ""


def style_axis(axis: Any, label: str) -> None:
    from matplotlib.ticker import ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    axis.set_label_text(label, fontsize=7, color="#666666")


def legend(series: Series, template: str) -> str:
    if not template or template == "__auto":
        return ", ".join(f"{k}={v}" for k, v in sorted(series.labels.items()) if k != "__name__")
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: series.labels.get(m.group(1), ""), template)


def threshold_color(value: float, steps: list[dict[str, Any]]) -> str:
    color = steps[0]["color"]
    for step in steps[1:]:
        if step["value"] is not None and value >= step["value"]:
            color = step["color"]
    return COLORS.get(color, color)


# -- variables -------------------------------------------------------------------------------


def variable_values(dashboard: Mapping[str, Any], tenant: str, window: str) -> dict[str, str]:
    """Values for the board's template variables: defaults, every segment."""
    values = {"tenant": tenant, "window": window, "__rate_interval": "1m",
              "__interval": "1m", "__range": "1h"}
    for variable in dashboard["templating"]["list"]:
        if variable["name"] == "by":
            values["by"] = variable["current"]["value"]
        elif variable["name"] == "segment":
            values["segment"] = variable.get("allValue", ".+")
    return values


def substitute(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


# -- drawing ---------------------------------------------------------------------------------


def draw_no_data(ax: Any) -> None:
    """An empty chart: "No data" in the middle, no ticks."""
    ax.text(0.5, 0.5, "No data", ha="center", va="center", color="#888888", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_stat(ax: Any, panel: Mapping[str, Any], prom: Prometheus, values: Mapping[str, str]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit, decimals = defaults.get("unit", "short"), defaults.get("decimals")
    result = prom.instant(substitute(panel["targets"][0]["expr"], values))
    ax.set_facecolor("white")
    if not result:
        ax.text(0.5, 0.42, defaults.get("noValue", "No data"), ha="center", va="center",
                fontsize=17, color="#888888", transform=ax.transAxes)
        return
    value = result[0].points[-1][1]
    colored = panel.get("options", {}).get("colorMode") == "value"
    color = threshold_color(value, defaults["thresholds"]["steps"]) if colored else "#222222"
    ax.text(0.5, 0.42, fmt(value, unit, decimals), ha="center", va="center", fontsize=19,
            fontweight="bold", color=color, transform=ax.transAxes)


def draw_timeseries(ax: Any, panel: Mapping[str, Any], prom: Prometheus,
                    values: Mapping[str, str], seconds: float, palette: Palette) -> None:
    import matplotlib.dates as mdates

    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    lines: list[tuple[str, list[datetime], list[float]]] = []
    for query in panel["targets"]:
        for series in prom.range(substitute(query["expr"], values), seconds):
            points = [(t, v) for t, v in series.points if not math.isnan(v)]
            if points:
                label = substitute(legend(series, query.get("legendFormat", "")), values)
                lines.append((label, [datetime.fromtimestamp(t, tz=UTC) for t, _ in points],
                              [v for _, v in points]))
    thresholds = []
    if defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "line":
        thresholds = [s for s in defaults["thresholds"]["steps"][1:] if s["value"] is not None]
    if not lines:
        draw_no_data(ax)
        return
    factor, label = axis_scale(unit, [v for _, _, vs in lines for v in vs]
                               + [s["value"] for s in thresholds])
    for name, times, numbers in lines:
        ax.plot(times, [v * factor for v in numbers], linewidth=1.4, color=palette(name),
                label=name)
    for step in thresholds:
        ax.axhline(step["value"] * factor, color=COLORS.get(step["color"], step["color"]),
                   linestyle="--", linewidth=1)
    style_axis(ax.yaxis, label)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.tick_params(labelsize=7)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    if any(name for name, _, _ in lines):
        ax.legend(fontsize=7, loc="best", framealpha=0.85, ncol=min(len(lines), 3))


def draw_bars(ax: Any, panel: Mapping[str, Any], prom: Prometheus, values: Mapping[str, str],
              palette: Palette) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    labels, numbers = [], []
    for query in panel["targets"]:
        for series in sorted(prom.instant(substitute(query["expr"], values)),
                             key=lambda s: legend(s, query.get("legendFormat", ""))):
            value = series.points[-1][1]
            if math.isnan(value):
                continue
            labels.append(substitute(legend(series, query.get("legendFormat", "")), values))
            numbers.append(value)
    if not numbers:
        draw_no_data(ax)
        return
    # Make room on the left for the longest label (about 0.055 inch a character at 7 pt).
    figure_width = ax.figure.get_figwidth()
    box = ax.get_position()
    margin = min(0.4 * box.width, (max(len(label) for label in labels) + 1.5) * 0.058 / figure_width)
    frame_left = box.x0 - 0.45 * 3.2 / figure_width
    ax.set_position((frame_left + margin + 0.1 / figure_width, box.y0,
                     box.x1 - frame_left - margin - 0.1 / figure_width, box.height))
    positions = list(range(len(numbers)))[::-1]
    factor, axis_label = axis_scale(unit, numbers)
    scaled = [n * factor for n in numbers]
    ax.barh(positions, scaled, color=[palette(label) for label in labels], height=0.7)
    ax.set_yticks(positions, labels, fontsize=7)
    style_axis(ax.xaxis, axis_label)
    ax.tick_params(axis="x", labelsize=7)
    low, high = min(0.0, *scaled), max(0.0, *scaled)
    span = (high - low) or 1.0
    ax.set_xlim(low - 0.02 * span, high + 0.28 * span)
    for position, number, bar_end in zip(positions, numbers, scaled, strict=True):
        ax.text(max(bar_end, 0), position, " " + fmt(number, unit), va="center",
                fontsize=7, color="#333333")
    ax.grid(True, axis="x", color="#e5e5e5", linewidth=0.6)


def render_dashboard(dashboard: Mapping[str, Any], prom: Prometheus, out: Path, *, tenant: str,
                     window: str, seconds: float) -> Path:
    """Draw one dashboard into `out` (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = variable_values(dashboard, tenant, window)
    palette = Palette()
    panels = dashboard["panels"]
    height_units = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    header = 1.1
    width_in, height_in = 24 * COLUMN_INCHES, height_units * ROW_INCHES + header
    fig = plt.figure(figsize=(width_in, height_in), dpi=80, facecolor=BACKGROUND)
    defined = [v["name"] for v in dashboard["templating"]["list"]]
    shown = {**values, "segment": "all" if values.get("segment") == ".+" else values.get("segment")}
    picked = "   ".join(f"{name}: {shown[name]}" for name in defined if name in shown)
    at = datetime.fromtimestamp(prom.at, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.text(0.01, 1 - 0.42 / height_in, dashboard["title"], fontsize=16, fontweight="bold",
             va="center")
    fig.text(0.99, 1 - 0.42 / height_in, f"{picked}   |   {at}".lstrip(" |"), fontsize=9, va="center",
             ha="right", color="#555555")
    for panel in panels:
        grid = panel["gridPos"]
        pad = 0.06
        left = (grid["x"] + pad) / 24
        width = (grid["w"] - 2 * pad) / 24
        top = (header + (grid["y"] + pad) * ROW_INCHES) / height_in
        height = ((grid["h"] - 2 * pad) * ROW_INCHES) / height_in
        title = substitute(panel["title"], values)
        if panel["type"] == "row":
            fig.text(left, 1 - top - height / 2, title, fontsize=11, fontweight="bold",
                     va="center", color="#1f2d3d")
            continue
        title_h = 0.3 / height_in
        fig.text(left + 0.004, 1 - top - title_h / 2, title, fontsize=8.5, va="center",
                 color="#333333", fontweight="bold")
        frame = fig.add_axes((left, 1 - top - height, width, height))
        frame.set_facecolor("white")
        frame.set_xticks([])
        frame.set_yticks([])
        for edge in frame.spines.values():
            edge.set_color("#d8d9da")
        inner_pad_x = 0.45 / width_in
        if panel["type"] == "stat":
            ax = fig.add_axes((left, 1 - top - height, width, height - title_h), frameon=False)
            ax.set_xticks([])
            ax.set_yticks([])
            draw_stat(ax, panel, prom, values)
        else:
            left_pad = inner_pad_x * (3.2 if panel["type"] == "bargauge" else 1.3)
            ax = fig.add_axes((left + left_pad, 1 - top - height + 0.35 / height_in,
                               width - left_pad - 0.12 / width_in,
                               height - title_h - 0.5 / height_in))
            ax.set_facecolor("white")
            for spine in ("top", "right"):
                ax.spines[spine].set_visible(False)
            if panel["type"] == "timeseries":
                draw_timeseries(ax, panel, prom, values, seconds, palette)
            else:
                draw_bars(ax, panel, prom, values, palette)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=BACKGROUND)
    plt.close(fig)
    return out


def render(prometheus: str, out_dir: Path = DEFAULT_OUT, names: Iterable[str] = MAIN, *,
           tenant: str = "default", window: str = "30d", seconds: float = 1800,
           at: float | None = None) -> list[Path]:
    """Render the named boards (`executive`, ... or `all`) to `out_dir/<uid>.png`."""
    prom = Prometheus(prometheus, at)
    boards = {path.stem.removeprefix("crm-kpi-"): json.loads(path.read_text())
              for path in sorted(DASHBOARD_DIR.glob("*.json"))}
    wanted = list(boards) if "all" in names else list(names)
    unknown = [name for name in wanted if name not in boards]
    if unknown:
        raise SystemExit(f"unknown dashboards {unknown}; expected some of {sorted(boards)}")
    return [render_dashboard(boards[name], prom, out_dir / f"{boards[name]['uid']}.png",
                             tenant=tenant, window=window, seconds=seconds)
            for name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(MAIN),
                        help=f"dashboards to render (default: {' '.join(MAIN)}; or: all)")
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--window", default="30d", choices=["1h", "24h", "7d", "30d", "mtd"])
    parser.add_argument("--range", dest="seconds", type=float, default=1800,
                        help="seconds of history for time series (default 1800)")
    args = parser.parse_args(argv)
    for path in render(args.prometheus, args.out, args.names, tenant=args.tenant,
                       window=args.window, seconds=args.seconds):
        print(path)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
