// Fetch: POST /fetch with nodes and a path, then GET /fetch/<job> until
// every node is done, showing each node's state, samples and error.

import { get, postForm } from "./api.js";
import { el, number, parts } from "./format.js";

const POLL_MS = 500;

export class FetchView {
  constructor(notices) {
    this.notices = notices;
    this.section = document.getElementById("view-fetch");
    Object.assign(this, parts("fetch", ["form", "nodes", "url", "result",
                                        "state"]));
    this.jobName = document.getElementById("fetch-job");
    this.table = document.querySelector("#fetch-table tbody");
    this.exploreLink = document.getElementById("fetch-explore");
    this.timer = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.start();
    });
  }

  show(params) {
    if (params.get("job")) {
      this.follow(params.get("job"));
    }
  }

  hide() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async start() {
    const nodes = this.nodes.value.split(/[\s,]+/).filter(Boolean);
    const form = nodes.map((node) => ["node", node]);
    form.push(["url", this.url.value.trim()]);
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const started = await postForm("/fetch", form);
      this.notices.clear();
      history.replaceState(null, "", `#/fetch?job=${started.job}`);
      this.follow(started.job);
    } catch (error) {
      this.notices.show(error.message);
    } finally {
      button.disabled = false;
    }
  }

  async follow(job) {
    clearTimeout(this.timer);
    this.result.hidden = false;
    this.jobName.textContent = job;
    this.exploreLink.href = `#/explore?tag=job:${encodeURIComponent(job)}&range=15m`;
    try {
      const report = await get(`/fetch/${encodeURIComponent(job)}`);
      this.render(report);
      if (report.state !== "done" && !this.section.hidden) {
        this.timer = setTimeout(() => this.follow(job), POLL_MS);
      }
    } catch (error) {
      this.state.textContent = "unknown";
      this.notices.show(error.message);
    }
  }

  render(report) {
    this.state.textContent = report.state;
    this.state.dataset.state = report.state;
    this.table.replaceChildren(...Object.entries(report.nodes).map(
      ([node, fetch]) => {
        const row = el("tr", null, { "data-node": node, "data-state": fetch.state });
        const state = el("td");
        state.append(el("span", fetch.state, { class: `badge ${fetch.state}` }));
        row.append(el("td", node), state,
                   el("td", fetch.samples === undefined ? "\u2013" :
                      number(fetch.samples), { class: "num" }),
                   el("td", fetch.error || "", { class: "error-text" }));
        return row;
      }));
  }
}
