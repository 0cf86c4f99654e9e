// The job list: newest first, filtered by status and kind (on the server) and by URL (here), kept live.

import {
  KINDS,
  STATUSES,
  TERMINAL,
  badge,
  duration,
  errorBox,
  fill,
  h,
  jobUrls,
  parseTime,
  progressBar,
  timeAgo,
  toast,
  urlSummary,
} from "./dom.js";

const PAGE = 50;

export class JobList {
  /** `ctx`: {api, seen, filters: {status, kind, q}, highlight, navigate, onFilter, onLoaded} */
  constructor(section, ctx) {
    this.ctx = ctx;
    this.filters = ctx.filters;
    this.jobs = new Map();
    this.rows = new Map();
    this.nextCursor = null;
    this.generation = 0;
    this.pending = false;
    this.build(section);
  }

  build(section) {
    this.statusSelect = select("status", ["", ...STATUSES], this.filters.status, "All statuses", () => {
      this.filters.status = this.statusSelect.value;
      this.ctx.onFilter(this.filters);
      this.load();
    });
    const kinds = [...new Set(["", ...KINDS, this.filters.kind])];
    this.kindSelect = select("kind", kinds, this.filters.kind, "All kinds", () => {
      this.filters.kind = this.kindSelect.value;
      this.load();
    });
    this.search = h("input", {
      type: "search",
      name: "q",
      class: "search",
      placeholder: "Search URL or job id (loaded jobs)",
      value: this.filters.q,
      "aria-label": "Search by URL among the loaded jobs",
      oninput: () => {
        this.filters.q = this.search.value;
        this.render();
      },
    });
    this.count = h("span", { class: "muted" });
    this.tbody = h("tbody", { onclick: (event) => this.clicked(event) });
    this.empty = h("div", { class: "empty" });
    this.more = h("button", { type: "button", class: "btn ghost", onclick: () => this.load({ append: true }) }, "Load more");
    this.problem = h("div");
    fill(section, 
      h("div", { class: "section-head" }, h("h2", {}, "Jobs"), this.count),
      h("div", { class: "filters" }, this.statusSelect, this.kindSelect, this.search),
      this.problem,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "jobs" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Status", "Kind", "URL", "Progress", "Tries", "Created", "Took", ""].map((t) => h("th", {}, t)),
            ),
          ),
          this.tbody,
        ),
      ),
      this.empty,
      h("div", { class: "list-foot" }, this.more),
    );
  }

  setStatus(status) {
    this.filters.status = status;
    this.statusSelect.value = status;
    this.load();
  }

  /** The first page (replacing the list, or merged into it), or with `append` the next page. */
  async load({ append = false, merge = false } = {}) {
    const generation = append || merge ? this.generation : ++this.generation;
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (this.filters.status) params.set("status", this.filters.status);
    if (this.filters.kind) params.set("kind", this.filters.kind);
    if (append && this.nextCursor) params.set("cursor", this.nextCursor);
    this.more.disabled = true;
    let page;
    try {
      page = await this.ctx.api.get(`/v1/jobs?${params}`);
    } catch (exc) {
      if (exc.status !== 401) fill(this.problem, errorBox(exc));
      return;
    } finally {
      this.more.disabled = false;
    }
    if (generation !== this.generation) return; // the filters changed meanwhile
    fill(this.problem);
    if (!append && !merge) this.jobs.clear();
    for (const job of page.jobs) this.merge(job, false);
    if (append || !merge) this.nextCursor = page.next_cursor;
    this.render();
    this.ctx.onLoaded();
  }

  /** A job from the live stream or an action: newer snapshots win; new jobs join when they fit the filters. */
  offer(job) {
    if (this.merge(job, true)) this.schedule();
  }

  merge(job, live) {
    // a list page may answer after the stream already told of a later state: keep the later one
    const newest = newer(this.ctx.seen.get(job.job_id), job);
    this.ctx.seen.set(job.job_id, newest);
    const known = this.jobs.get(job.job_id);
    if (known && known !== newest && newer(known, newest) === known) return false;
    if (!known && live && !this.fitsServerFilters(newest)) return false;
    this.jobs.set(job.job_id, newest);
    return true;
  }

  fitsServerFilters(job) {
    return (!this.filters.status || job.status === this.filters.status) && (!this.filters.kind || job.kind === this.filters.kind);
  }

  fits(job) {
    const q = this.filters.q.trim().toLowerCase();
    const found = (url) => url.toLowerCase().includes(q);
    return this.fitsServerFilters(job) && (!q || jobUrls(job).some(found) || job.job_id.includes(q));
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  /** A kind the select does not offer yet (a plugin's) joins it once a job of that kind is loaded. */
  offerKind(kind) {
    if (typeof kind !== "string" || !kind) return;
    if ([...this.kindSelect.options].some((o) => o.value === kind)) return;
    this.kindSelect.append(h("option", { value: kind }, kind));
  }

  render() {
    for (const job of this.jobs.values()) this.offerKind(job.kind);
    const visible = [...this.jobs.values()].filter((job) => this.fits(job)).sort(newestFirst);
    const keep = new Set(visible.map((job) => job.job_id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    visible.forEach((job, index) => {
      let row = this.rows.get(job.job_id);
      if (!row) {
        row = h("tr", { dataset: { id: job.job_id } });
        if (this.ctx.highlight === job.job_id) row.classList.add("flash");
        this.rows.set(job.job_id, row);
      }
      const version = `${job.updated_at}|${job.status}`;
      if (row.dataset.version !== version) {
        row.dataset.version = version;
        row.dataset.status = job.status;
        fill(row, ...cellsOf(job));
      }
      if (this.tbody.children[index] !== row) this.tbody.insertBefore(row, this.tbody.children[index] || null);
    });
    const loaded = this.jobs.size;
    this.count.textContent = visible.length === loaded ? `${loaded} loaded` : `${visible.length} of ${loaded} loaded`;
    this.more.hidden = !this.nextCursor;
    this.empty.hidden = visible.length > 0;
    fill(this.empty, 
      loaded ? "No loaded job matches the search." : h("span", {}, "No jobs yet. ", h("a", { href: "#/new" }, "Submit one"), "."),
    );
  }

  async clicked(event) {
    const button = event.target.closest("button[data-action]");
    const row = event.target.closest("tr[data-id]");
    if (!row) return;
    const id = row.dataset.id;
    if (!button) {
      if (!event.target.closest("a")) this.ctx.navigate(`#/jobs/${id}`);
      return;
    }
    event.stopPropagation();
    button.disabled = true;
    try {
      const job = await runAction(this.ctx.api, button.dataset.action, id);
      this.offer(job);
    } catch {
      button.disabled = false;
    }
  }
}

/** Cancel or retry a job; says what happened in a toast. Returns the job, or throws. */
export async function runAction(api, action, id) {
  try {
    const job = action === "cancel" ? await api.del(`/v1/jobs/${id}`) : await api.post(`/v1/jobs/${id}/retry`);
    toast(action === "cancel" ? `Cancelled ${id}` : `Retrying ${id}`, "ok");
    return job;
  } catch (exc) {
    toast(`${action} failed: ${exc.message}`, "bad");
    throw exc;
  }
}

/** The later snapshot of the same job (`b` on a tie). */
export function newer(a, b) {
  return a && parseTime(a.updated_at) > parseTime(b.updated_at) ? a : b;
}

export function newestFirst(a, b) {
  return (parseTime(b.created_at) ?? 0) - (parseTime(a.created_at) ?? 0) || (a.job_id < b.job_id ? 1 : -1);
}

function select(name, values, current, allLabel, onchange) {
  return h(
    "select",
    { name, "aria-label": allLabel, onchange },
    values.map((v) => h("option", { value: v, selected: v === current }, v || allLabel)),
  );
}

function cellsOf(job) {
  const url = urlSummary(job);
  const title = jobUrls(job).join("\n");
  return [
    h("td", {}, badge(job.status)),
    h("td", {}, h("span", { class: "kind" }, job.kind)),
    h("td", { class: "url-cell" }, h("a", { href: `#/jobs/${job.job_id}`, class: "url", title }, url || job.job_id)),
    h("td", { class: "progress-cell" }, progressCell(job)),
    h("td", { class: "num" }, `${job.attempts}/${job.max_attempts}`),
    h("td", { class: "nowrap" }, timeAgo(job.created_at)),
    h("td", { class: "nowrap num" }, took(job)),
    h("td", { class: "actions" }, actionButtons(job, true)),
  ];
}

function progressCell(job) {
  if (job.status === "active") {
    const p = job.progress || {};
    const fraction = typeof p.progress === "number" ? p.progress : null;
    return h(
      "div",
      { class: "mini-progress" },
      progressBar(fraction ?? 0, { indeterminate: fraction === null }),
      h("span", { class: "muted small" }, p.message || "running"),
    );
  }
  if (job.error) return h("span", { class: "err-code", title: job.error.message || "" }, job.error.code);
  if (job.status === "delayed") return h("span", { class: "muted" }, "starts ", timeAgo(job.run_at));
  return null;
}

function took(job) {
  const started = parseTime(job.started_at);
  const ended = parseTime(job.completed_at);
  if (started !== null && ended !== null) return duration(ended - started);
  if (job.status === "active" && started !== null) return duration(Date.now() - started);
  return "";
}

export function actionButtons(job, compact = false) {
  const size = compact ? "tiny" : "";
  const buttons = [];
  if (!TERMINAL.has(job.status)) {
    buttons.push(actionButton("cancel", "Cancel", "Cancel this job", `${size} danger`));
  }
  if (job.status === "failed" || job.status === "cancelled") {
    buttons.push(actionButton("retry", "Retry", "Run this job again", size));
  }
  return buttons;
}

function actionButton(action, label, title, extra) {
  return h("button", { type: "button", class: `btn ${extra}`, dataset: { action }, title }, label);
}
