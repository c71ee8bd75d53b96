// Targets: every target of this instance with its state and last error,
// down ones first; filtered by job, state and text; refreshed every 5 s
// while shown.

import { get } from "./api.js";
import { ago, el, number, parts, utc } from "./format.js";

const REFRESH_MS = 5000;
const ORDER = { down: 0, unknown: 1, up: 2 };

export class TargetsView {
  constructor(notices) {
    this.notices = notices;
    this.section = document.getElementById("view-targets");
    this.table = document.querySelector("#targets-table tbody");
    Object.assign(this, parts("targets", ["summary", "meta", "empty", "job",
                                          "state", "text", "auto"]));
    this.answer = null;
    this.timer = null;
    this.loading = false;
    for (const input of [this.job, this.state]) {
      input.addEventListener("change", () => this.filtersChanged());
    }
    this.text.addEventListener("input", () => this.filtersChanged());
    document.getElementById("targets-filter")
      .addEventListener("submit", (event) => event.preventDefault());
    document.getElementById("targets-refresh")
      .addEventListener("click", () => this.load());
    this.auto.addEventListener("change", () => this.schedule());
  }

  show(params) {
    this.job.dataset.wanted = params.get("job") || "";
    this.state.value = params.get("state") || "";
    this.text.value = params.get("text") || "";
    this.load();
  }

  hide() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  filtersChanged() {
    this.job.dataset.wanted = this.job.value;
    const params = new URLSearchParams();
    for (const [name, input] of [["job", this.job], ["state", this.state],
                                 ["text", this.text]]) {
      if (input.value) {
        params.set(name, input.value);
      }
    }
    const query = params.toString();
    history.replaceState(null, "", "#/targets" + (query ? "?" + query : ""));
    this.render();
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.auto.checked && !this.section.hidden && !this.refused) {
      this.timer = setTimeout(() => this.load(), REFRESH_MS);
    }
  }

  async load() {
    if (this.loading) {
      return;
    }
    this.loading = true;
    this.section.setAttribute("aria-busy", "true");
    try {
      this.answer = await get("/targets");
      this.loadedAt = new Date();
      this.notices.clear();
      this.render();
    } catch (error) {
      // Without a valid token, asking again changes nothing: wait for one.
      this.refused = error.status === 401 || error.status === 403;
      this.notices.show(error.message);
    } finally {
      this.loading = false;
      this.section.removeAttribute("aria-busy");
      this.schedule();
    }
  }

  jobs() {
    const wanted = this.job.dataset.wanted || "";
    const names = [...new Set(this.answer.targets.map((t) => t.job))].sort();
    if (wanted && !names.includes(wanted)) {
      names.push(wanted);
    }
    const options = [el("option", "All jobs", { value: "" })];
    for (const name of names) {
      options.push(el("option", name, { value: name }));
    }
    this.job.replaceChildren(...options);
    this.job.value = wanted;
  }

  render() {
    if (!this.answer) {
      return;
    }
    this.jobs();
    const all = this.answer.targets;
    const counts = { up: 0, down: 0, unknown: 0 };
    for (const target of all) {
      counts[target.health] = (counts[target.health] || 0) + 1;
    }
    this.summary.replaceChildren(
      el("span", `${counts.down} down`, { class: counts.down ? "badge down" : "badge" }),
      el("span", `${counts.up} up`, { class: "badge up" }),
      el("span", `${counts.unknown} not scraped yet`, { class: "badge unknown" }),
      el("span", `of ${all.length}`, { class: "muted" }));
    const members = this.answer.members || [];
    this.meta.textContent = `Updated ${utc(this.loadedAt)}` +
      (this.answer.instance ? ` \u00b7 instance ${this.answer.instance}` : "") +
      (members.length > 1 ? ` \u00b7 ${members.length} instances share the hunt; each lists its own targets` : "");
    const text = this.text.value.trim().toLowerCase();
    const shown = all.filter((t) =>
      (!this.job.value || t.job === this.job.value) &&
      (!this.state.value || t.health === this.state.value) &&
      (!text || t.node.toLowerCase().includes(text) ||
        (t.last_error || "").toLowerCase().includes(text)))
      .sort((a, b) => (ORDER[a.health] - ORDER[b.health]) ||
        a.job.localeCompare(b.job) || a.node.localeCompare(b.node));
    this.table.replaceChildren(...shown.map((t) => this.row(t)));
    this.empty.hidden = shown.length > 0;
  }

  row(t) {
    const row = el("tr", null, { "data-health": t.health, "data-job": t.job,
                                 "data-node": t.node });
    const state = el("td", null, { "data-label": "State" });
    state.append(el("span", t.health, { class: `badge ${t.health}` }));
    const node = el("td", null, { "data-label": "Node" });
    node.append(el("a", t.node, { href: t.url, rel: "noreferrer",
                                  title: t.url, class: "node" }));
    const error = el("td", t.last_error || "", { "data-label": "Last error",
                                                  class: "error-text" });
    const scrape = el("td", ago(t.last_scrape), { "data-label": "Last scrape",
      title: t.last_scrape ? `${t.last_scrape}, every ${t.interval} s; next ${t.next_scrape || "?"}` : "" });
    const duration = el("td", t.last_duration === null ? "\u2013" :
      `${number(Math.round(t.last_duration * 1000))} ms`,
      { "data-label": "Duration", class: "num", title: `timeout ${t.timeout} s` });
    const samples = el("td", number(t.samples_stored),
      { "data-label": "Samples", class: "num",
        title: `${t.samples_skipped} skipped` });
    const share = t.scrapes ? t.on_time / t.scrapes : null;
    const onTime = el("td", share === null ? "\u2013" :
      `${Math.round(share * 1000) / 10} %`, { "data-label": "On time",
        class: "num", title: `${t.on_time} of ${t.scrapes} scrapes started on time; ${t.retries} retries` });
    const failed = el("td", `${number(t.failures)} of ${number(t.scrapes)}`,
      { "data-label": "Failed", class: "num" });
    row.append(state, el("td", t.job, { "data-label": "Job" }), node, error,
               scrape, duration, samples, onTime, failed);
    return row;
  }
}
