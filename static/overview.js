// The overview: counts by status, queue depth, oldest waiting age, jobs/min, workers, the browser.

import { STATUSES, duration, fill, h, parseTime, progressBar } from "./dom.js";

const WINDOW_MS = 5 * 60_000;
/** below this much stats history, jobs/min comes from the finish times of the jobs the page knows */
const MIN_SPAN_MS = 30_000;

/** Jobs per minute: finished jobs counted by /v1/stats over time; decreases (expiry) are not throughput. */
export class RateMeter {
  constructor() {
    this.samples = [];
  }

  reset() {
    this.samples = [];
  }

  add(stats, now = Date.now()) {
    const c = stats.counts || {};
    const finished = (c.completed || 0) + (c.partial || 0) + (c.failed || 0) + (c.cancelled || 0);
    this.samples.push({ at: now, finished });
    while (this.samples.length > 2 && now - this.samples[1].at > WINDOW_MS) this.samples.shift();
  }

  /** {value, basis}: over the stats window once it is long enough, else from `knownJobs`' completed_at. */
  perMinute(knownJobs, now = Date.now()) {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (first && last && last.at - first.at >= MIN_SPAN_MS) {
      let finished = 0;
      for (let n = 1; n < this.samples.length; n += 1) {
        finished += Math.max(0, this.samples[n].finished - this.samples[n - 1].finished);
      }
      return { value: (finished / (last.at - first.at)) * 60_000, basis: `over the last ${duration(last.at - first.at)}` };
    }
    let recent = 0;
    for (const job of knownJobs) {
      const done = parseTime(job.completed_at);
      if (done !== null && now - done <= 60_000) recent += 1;
    }
    return { value: recent, basis: "last 60 s (jobs on this page)" };
  }
}

/**
 * The overview section, rendered afresh from the latest stats (cheap: a dozen nodes). `allKeys`: the
 * server has keys, so its counts cover every key's jobs while the list (the tiles filter) is the caller's.
 */
export function renderOverview(section, stats, rate, { onStatus, activeStatus, allKeys = false } = {}) {
  if (!stats) {
    fill(section, h("p", { class: "muted" }, "Loading stats…"));
    return;
  }
  const counts = stats.counts || {};
  const total = STATUSES.reduce((sum, s) => sum + (counts[s] || 0), 0);
  const strip = h(
    "div",
    { class: "status-strip" },
    STATUSES.map((status) =>
      h(
        "button",
        {
          type: "button",
          class: `status-tile s-${status}${activeStatus === status ? " on" : ""}`,
          title: allKeys ? `Show your ${status} jobs (the count is of every key's)` : `Show ${status} jobs`,
          dataset: { status },
          onclick: () => onStatus && onStatus(activeStatus === status ? "" : status),
        },
        h("span", { class: "tile-count", dataset: { count: status } }, String(counts[status] || 0)),
        h("span", { class: "tile-label" }, h("i", { class: "dot" }), status),
      ),
    ),
  );

  const workers = stats.workers || { busy: 0, total: 0 };
  const browser = stats.browser || { state: "unavailable" };
  const oldest = stats.oldest_waiting_age_s;
  const metrics = h(
    "div",
    { class: "metrics" },
    metric("Queue depth", String(stats.queue_depth ?? 0), `${counts.waiting || 0} waiting · ${counts.delayed || 0} delayed`, "queue"),
    metric(
      "Oldest waiting",
      oldest === null || oldest === undefined ? "—" : duration(oldest * 1000),
      oldest ? "since it became due" : "nothing waiting",
      "oldest",
    ),
    metric("Jobs / min", rate.value < 10 ? rate.value.toFixed(1) : String(Math.round(rate.value)), rate.basis, "rate"),
    metric(
      "Workers busy",
      `${workers.busy} / ${workers.total}`,
      progressBar(workers.total ? workers.busy / workers.total : 0, { label: "workers busy" }),
      "workers",
    ),
    metric("Browser", browser.state, browserLine(browser), "browser", `b-${browser.state}`),
  );
  const notice =
    stats.queue_enabled === false
      ? h("div", { class: "notice" }, "The queue is disabled on this server: async submits answer 503; POST /v1/scrape still works.")
      : null;
  fill(section, 
    h(
      "div",
      { class: "section-head" },
      h("h2", {}, "Overview"),
      h("span", { class: "muted" }, `${total} job${total === 1 ? "" : "s"} on record`),
      allKeys
        ? h(
            "span",
            { class: "muted small scope-note", title: "GET /v1/stats counts the jobs of every key; GET /v1/jobs lists yours" },
            "counts: all keys · list: your jobs",
          )
        : null,
    ),
    notice,
    strip,
    metrics,
  );
}

function metric(label, value, sub, name, extra = "") {
  return h(
    "div",
    { class: `metric ${extra}`, dataset: { metric: name } },
    h("div", { class: "metric-label" }, label),
    h("div", { class: "metric-value" }, value),
    h("div", { class: "metric-sub" }, sub),
  );
}

function browserLine(browser) {
  if (browser.state === "unavailable") return "no Chromium found: render jobs fail";
  const parts = [];
  if (browser.max_pages !== undefined) parts.push(`pages ${browser.pages_open ?? 0} / ${browser.max_pages}`);
  if (browser.pages_rendered !== undefined) parts.push(`${browser.pages_rendered} rendered`);
  if (browser.launches !== undefined) parts.push(`${browser.launches} launch${browser.launches === 1 ? "" : "es"}`);
  return parts.join(" · ") || "";
}
