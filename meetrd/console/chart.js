// A line chart of a search's answer with uPlot: one line per group, the
// legend under it giving each line's value where the pointer is.  The
// chart last drawn is window.meetrConsole.chart, its data as given.

import { number } from "./format.js";

window.meetrConsole = window.meetrConsole || { chart: null };

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c",
                "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d"];

export function colorOf(index) {
  return COLORS[index % COLORS.length];
}

// The x values (epoch seconds) and one array of y values per line, null
// where a line has no point, from the answer's `points` or its groups'.
export function seriesOf(answer, metric) {
  const lines = answer.groups
    ? answer.groups.map((group) => ({
        label: labelOf(group.tags),
        points: group.points || [],
      }))
    : [{ label: `${answer.aggregation}(${metric})`, points: answer.points || [] }];
  const xs = [...new Set(lines.flatMap((line) =>
    line.points.map(([start]) => Date.parse(start) / 1000)))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, index) => [x, index]));
  const ys = lines.map((line) => {
    const values = new Array(xs.length).fill(null);
    for (const [start, value] of line.points) {
      values[at.get(Date.parse(start) / 1000)] = value;
    }
    return values;
  });
  return { labels: lines.map((line) => line.label), xs, ys };
}

export function labelOf(tags) {
  return Object.entries(tags).map(([key, value]) =>
    value === null ? `(no ${key})` : `${key}=${value}`).join(", ");
}

export class Chart {
  constructor(box) {
    this.box = box;
    this.plot = null;
    window.addEventListener("resize", () => this.fit());
  }

  width() {
    return Math.max(260, this.box.clientWidth);
  }

  height() {
    return window.innerWidth < 600 ? 240 : 340;
  }

  fit() {
    if (this.plot) {
      this.plot.setSize({ width: this.width(), height: this.height() });
    }
  }

  clear(label) {
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.box.setAttribute("aria-label", label);
    window.meetrConsole.chart = null;
  }

  draw({ labels, xs, ys }, description) {
    this.clear(description);
    const uPlot = window.uPlot;
    const options = {
      width: this.width(),
      height: this.height(),
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
      scales: { x: { time: true } },
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
      focus: { alpha: 0.35 },
      series: [
        { label: "Time (UTC)",
          value: (u, v) => v === null ? "\u2013" :
            uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}")(
              uPlot.tzDate(new Date(v * 1000), "Etc/UTC")) },
        ...labels.map((label, index) => ({
          label,
          stroke: colorOf(index),
          width: 1.5,
          spanGaps: false,
          points: { show: xs.length < 60 },
          value: (u, v) => number(v),
        })),
      ],
      axes: [
        { stroke: "#4b5563", grid: { stroke: "#e5e7eb" } },
        { stroke: "#4b5563", grid: { stroke: "#e5e7eb" }, size: 64,
          values: (u, values) => values.map((v) => number(v)) },
      ],
    };
    this.plot = new uPlot(options, [xs, ...ys], this.box);
    window.meetrConsole.chart = this.plot;
  }
}
