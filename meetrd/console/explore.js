// Explore: a metric (typed ahead from /1.0/metric_names), tag filters and
// a group-by (from the metric's series, /api/v1/series), an aggregation,
// an interval and a time range; drawn as a line chart.  The query lives
// in the URL (#/explore?metric=...), so that a link shares it.

import { get } from "./api.js";
import { Chart, colorOf, labelOf, seriesOf } from "./chart.js";
import { el, number, parts, utc } from "./format.js";

const RANGES = { "15m": 900, "1h": 3600, "1d": 86400, "7d": 604800 };
// The aggregations offered (GET /1.0/metrics takes any pQ percentile).
const AGGREGATIONS = ["avg", "sum", "min", "max", "count", "first", "last",
                      "stddev", "p50", "p90", "p99"];
// Intervals the automatic choice picks from, in seconds.
const STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
               10800, 21600, 43200, 86400];
const TARGET_POINTS = 240;

export function autoInterval(seconds) {
  const step = STEPS.find((s) => seconds / s <= TARGET_POINTS) || 86400;
  if (step % 86400 === 0) {
    return `${step / 86400}d`;
  }
  if (step % 3600 === 0) {
    return `${step / 3600}h`;
  }
  return step % 60 === 0 ? `${step / 60}m` : `${step}s`;
}

// A selector of a metric's series for the Prometheus API.
function selectorOf(metric) {
  return `{__name__="${metric.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"}`;
}

function localInput(date) {
  return date.toISOString().slice(0, 19);
}

export class ExploreView {
  constructor(notices) {
    this.notices = notices;
    this.section = document.getElementById("view-explore");
    Object.assign(this, parts("explore", [
      "form", "metric", "aggregation", "group", "interval", "range", "from",
      "to", "status", "link",
    ]), parts("explore", {
      names: "metric-names", tagList: "tags", tagKey: "tag-key",
      tagValue: "tag-value", tagValues: "tag-values",
    }));
    this.aggregation.append(
      ...AGGREGATIONS.map((name) => el("option", name, { value: name })));
    this.caption = document.getElementById("chart-caption");
    this.groupsTable = document.getElementById("explore-groups");
    this.chart = new Chart(document.getElementById("chart"));
    this.tags = [];
    this.series = [];
    this.seriesOf = "";
    this.typing = null;
    this.runs = 0;

    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.metric.addEventListener("input", () => {
      clearTimeout(this.typing);
      this.typing = setTimeout(() => this.suggestNames(), 150);
    });
    this.metric.addEventListener("change", () => this.loadSeries());
    this.range.addEventListener("change", () => this.rangeChanged());
    this.tagKey.addEventListener("change", () => this.suggestValues());
    document.getElementById("explore-tag-add")
      .addEventListener("click", () => this.addTag());
    this.tagValue.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.addTag();
      }
    });
  }

  show(params) {
    this.metric.value = params.get("metric") || "";
    this.aggregation.value = params.get("aggregation") || "avg";
    this.interval.value = params.get("interval") || "";
    this.range.value = params.get("range") ||
      (params.get("from") ? "custom" : "1h");
    if (params.get("from")) {
      this.from.value = params.get("from").replace(/Z$/, "");
    }
    if (params.get("to")) {
      this.to.value = params.get("to").replace(/Z$/, "");
    }
    this.tags = params.getAll("tag").filter((t) => t.includes(":"));
    this.wantedGroup = params.get("group_by") || "";
    this.rangeChanged(false);
    this.renderTags();
    this.renderGroupOptions();
    this.link.href = location.hash || "#/explore";
    this.suggestNames();
    if (this.metric.value) {
      this.loadSeries().then(() => this.run());
    } else {
      this.chart.clear("No chart yet");
      this.status.textContent = "Choose a metric and press Run.";
      this.metric.focus();
    }
  }

  hide() {}

  rangeChanged(fill = true) {
    const custom = this.range.value === "custom";
    for (const field of this.form.querySelectorAll(".custom-range")) {
      field.hidden = !custom;
    }
    if (custom && fill && !this.from.value) {
      const now = new Date();
      this.to.value = localInput(now);
      this.from.value = localInput(new Date(now - 3600 * 1000));
    }
  }

  // The query of the form, as URL parameters.
  params() {
    const params = new URLSearchParams();
    params.set("metric", this.metric.value.trim());
    params.set("aggregation", this.aggregation.value);
    for (const tag of this.tags) {
      params.append("tag", tag);
    }
    if (this.group.value) {
      params.set("group_by", this.group.value);
    }
    if (this.interval.value.trim()) {
      params.set("interval", this.interval.value.trim());
    }
    params.set("range", this.range.value);
    if (this.range.value === "custom") {
      params.set("from", this.from.value + "Z");
      params.set("to", this.to.value + "Z");
    }
    return params;
  }

  submit() {
    if (!this.form.reportValidity()) {
      return;
    }
    const hash = "#/explore?" + this.params().toString();
    if (location.hash === hash) {
      this.run();
    } else {
      location.hash = hash;
    }
  }

  window() {
    if (this.range.value === "custom") {
      const from = new Date(this.from.value + "Z");
      const to = new Date(this.to.value + "Z");
      return [from, to];
    }
    const to = new Date();
    return [new Date(to - RANGES[this.range.value] * 1000), to];
  }

  async suggestNames() {
    try {
      const answer = await get("/1.0/metric_names",
                               { prefix: this.metric.value.trim(), limit: 50 });
      this.names.replaceChildren(...answer.metrics.map((name) =>
        el("option", null, { value: name })));
    } catch (error) {
      this.notices.show(error.message);
    }
  }

  // The tag sets of the metric's series over the range: the keys and
  // values offered for filters and the group-by.
  async loadSeries() {
    const metric = this.metric.value.trim();
    if (!metric) {
      return;
    }
    const [from, to] = this.window();
    try {
      const answer = await get("/api/v1/series", {
        "match[]": selectorOf(metric),
        start: (from.getTime() / 1000).toFixed(3),
        end: (to.getTime() / 1000).toFixed(3),
      });
      this.series = answer.data;
      this.seriesOf = metric;
    } catch (error) {
      this.series = [];
      this.notices.show(error.message);
    }
    this.renderGroupOptions();
    this.suggestValues();
  }

  keys() {
    const keys = new Set();
    for (const labels of this.series) {
      for (const key of Object.keys(labels)) {
        if (key !== "__name__") {
          keys.add(key);
        }
      }
    }
    return [...keys].sort();
  }

  renderGroupOptions() {
    const keys = this.keys();
    const wanted = this.wantedGroup || this.group.value;
    if (wanted && !keys.includes(wanted)) {
      keys.push(wanted);
    }
    this.group.replaceChildren(el("option", "No grouping", { value: "" }),
      ...keys.map((key) => el("option", key, { value: key })));
    this.group.value = wanted;
    const chosenKey = this.tagKey.value;
    this.tagKey.replaceChildren(el("option", "tag key", { value: "" }),
      ...this.keys().map((key) => el("option", key, { value: key })));
    this.tagKey.value = this.keys().includes(chosenKey) ? chosenKey : "";
  }

  suggestValues() {
    const key = this.tagKey.value;
    const values = [...new Set(this.series.map((labels) => labels[key])
      .filter((value) => value !== undefined))].sort();
    this.tagValues.replaceChildren(...values.map((value) =>
      el("option", null, { value })));
  }

  addTag() {
    const key = this.tagKey.value;
    const value = this.tagValue.value.trim();
    if (!key || !value) {
      this.tagKey.focus();
      return;
    }
    const tag = `${key}:${value}`;
    if (!this.tags.includes(tag)) {
      this.tags.push(tag);
    }
    this.tagValue.value = "";
    this.renderTags();
  }

  renderTags() {
    this.tagList.replaceChildren(...this.tags.map((tag, index) => {
      const item = el("li", null, { class: "tag" });
      const [key, ...rest] = tag.split(":");
      item.append(el("span", `${key} = ${rest.join(":")}`));
      const remove = el("button", "\u00d7", {
        type: "button", "aria-label": `Remove filter ${key} = ${rest.join(":")}`,
        class: "remove" });
      remove.addEventListener("click", () => {
        this.tags.splice(index, 1);
        this.renderTags();
      });
      item.append(remove);
      return item;
    }));
  }

  async run() {
    const metric = this.metric.value.trim();
    if (!metric) {
      return;
    }
    const [from, to] = this.window();
    if (!(from < to)) {
      this.notices.show("The time range is empty: From must be before To.");
      return;
    }
    const interval = this.interval.value.trim() ||
      autoInterval((to - from) / 1000);
    const params = {
      metric, aggregation: this.aggregation.value,
      from: from.toISOString(), to: to.toISOString(), interval,
      tag: this.tags, group_by: this.group.value,
    };
    const run = ++this.runs;
    this.status.textContent = "Searching\u2026";
    this.section.setAttribute("aria-busy", "true");
    try {
      const answer = await get("/1.0/metrics", params);
      if (run !== this.runs) {
        return;
      }
      this.notices.clear();
      this.draw(answer, metric, interval, from, to);
    } catch (error) {
      if (run === this.runs) {
        this.status.textContent = "";
        this.chart.clear("No chart: the search failed");
        this.notices.show(error.message);
      }
    } finally {
      this.section.removeAttribute("aria-busy");
    }
  }

  draw(answer, metric, interval, from, to) {
    const data = seriesOf(answer, metric);
    const by = answer.group_by ? ` by ${answer.group_by}` : "";
    const what = `${answer.aggregation} of ${metric}${by}, every ${interval}`;
    this.caption.textContent = `${what}, ${utc(from)} to ${utc(to)}` +
      ` (read from ${answer.resolution})`;
    if (data.xs.length === 0) {
      this.chart.clear(`No points: ${what}`);
      this.status.textContent = "No points in this range.";
    } else {
      this.chart.draw(data, `Line chart of ${what}: ${data.labels.length} ` +
                      `line(s), ${data.xs.length} intervals`);
      this.status.textContent = `${data.labels.length} line(s), ` +
        `${data.xs.length} intervals; ${answer.aggregation} over the ` +
        `range: ${number(answer.value)}.`;
    }
    this.renderTotals(answer, metric);
  }

  renderTotals(answer, metric) {
    const rows = answer.groups
      ? answer.groups.map((group) => [labelOf(group.tags), group.value])
      : [[`${answer.aggregation}(${metric})`, answer.value]];
    this.groupsTable.querySelector("tbody").replaceChildren(
      ...rows.map(([label, value], index) => {
        const row = el("tr");
        const name = el("th", null, { scope: "row" });
        name.append(el("span", null, { class: "swatch",
          style: `background:${colorOf(index)}` }), label);
        row.append(name, el("td", number(value), { class: "num" }));
        return row;
      }));
    this.groupsTable.hidden = false;
  }
}
