// One job: status timeline, progress, input and meta, the result preview and, for crawls, its pages.

import {
  TERMINAL,
  absTime,
  badge,
  duration,
  errorBox,
  fill,
  h,
  jobUrl,
  jobUrls,
  jsonView,
  parseTime,
  progressBar,
  relTime,
} from "./dom.js";
import { actionButtons, newer, runAction } from "./joblist.js";
import { resultPreview, scalarOutputs, screenshot } from "./preview.js";
import { renderTimeline } from "./timeline.js";

const PAGES = 25;
const NOFOLLOW = "noopener noreferrer nofollow";

export class JobDetail {
  /** `ctx`: {api, seen} */
  constructor(section, ctx, id) {
    this.ctx = ctx;
    this.id = id;
    this.job = null;
    this.result = null;
    this.resultState = "none";
    /** the last attempts_detail read, the `status|attempts` it was read at, and the last one asked for */
    this.attempts = null;
    this.attemptsAt = null;
    this.attemptsAsked = null;
    this.gone = false;
    this.objectUrls = [];
    this.files = (path) =>
      ctx.api.objectUrl(path).then((url) => {
        if (url.startsWith("blob:")) this.objectUrls.push(url);
        return url;
      });
    this.head = h("div", { class: "detail-head" });
    this.progress = h("div", { class: "card progress-card" });
    this.timeline = h("section", { class: "card" });
    this.inputs = h("section", { class: "card" });
    this.resultBox = h("section", { class: "card result-card", id: "result" });
    this.pagesBox = h("section", { class: "card", id: "pages", hidden: true });
    fill(section, 
      this.head,
      this.progress,
      h("div", { class: "grid-2" }, this.timeline, this.inputs),
      this.resultBox,
      this.pagesBox,
    );
    fill(this.head, h("p", { class: "muted" }, "Loading job…"));
  }

  async load() {
    try {
      this.show(await this.read());
    } catch (exc) {
      if (exc.status === 401) return;
      const hint = exc.status === 404 ? "It may have expired (terminal jobs are deleted after the retention period)." : "";
      fill(this.head, h("a", { href: "#/", class: "back" }, "← Jobs"), errorBox(exc), h("p", { class: "muted" }, hint));
      for (const box of [this.progress, this.timeline, this.inputs, this.resultBox]) box.hidden = true;
    }
  }

  read() {
    return this.ctx.api.get(`/v1/jobs/${encodeURIComponent(this.id)}`);
  }

  offer(job) {
    if (job.job_id !== this.id || !this.job) return;
    if (parseTime(job.updated_at) < parseTime(this.job.updated_at)) return;
    this.show(job);
  }

  show(snapshot) {
    // the stream may have told of a later state while GET /v1/jobs/{id} was on its way
    const job = newer(this.ctx.seen.get(snapshot.job_id), snapshot);
    const restarted = this.job && TERMINAL.has(this.job.status) && !TERMINAL.has(job.status);
    this.job = job;
    this.ctx.seen.set(job.job_id, job);
    if (Array.isArray(snapshot.attempts_detail)) {
      this.attempts = snapshot.attempts_detail;
      this.attemptsAt = attemptsMark(snapshot);
    }
    this.readAttemptsIfChanged();
    this.renderHead();
    this.renderProgress();
    this.renderTimeline();
    if (this.inputs.childElementCount === 0) this.renderInputs();
    if (restarted) this.resultState = "none";
    if (job.result_available && this.resultState === "none") this.loadResult();
    else if (!job.result_available) this.renderNoResult();
  }

  /**
   * Stream, Retry and Cancel snapshots carry no attempts_detail: when one shows another status or
   * attempt count than the last read was made at, the job is read again, once for each such change.
   */
  readAttemptsIfChanged() {
    const mark = attemptsMark(this.job);
    if (this.gone || this.attemptsAt === null || mark === this.attemptsAt || mark === this.attemptsAsked) return;
    this.attemptsAsked = mark;
    this.read().then(
      (job) => this.show(job),
      () => {}, // the attempts stay as last read; the next change asks again
    );
  }

  destroy() {
    this.gone = true;
    for (const url of this.objectUrls) URL.revokeObjectURL(url);
  }

  renderHead() {
    const job = this.job;
    const [url, ...more] = jobUrls(job);
    const actions = h("div", { class: "head-actions", onclick: (event) => this.act(event) }, actionButtons(job));
    fill(this.head, 
      h("a", { href: "#/", class: "back" }, "← Jobs"),
      h(
        "div",
        { class: "title-row" },
        h("span", { class: "kind big" }, job.kind),
        h("h2", { class: "job-id mono" }, job.job_id),
        badge(job.status),
        h("div", { class: "spacer" }),
        actions,
      ),
      url ? h("div", { class: "url-line" }, urlLink(url), more.length ? moreUrls(more) : null) : null,
    );
  }

  async act(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    try {
      this.show(await runAction(this.ctx.api, button.dataset.action, this.id));
    } catch {
      button.disabled = false;
    }
  }

  renderProgress() {
    const job = this.job;
    const p = job.progress || {};
    let fraction = typeof p.progress === "number" ? p.progress : null;
    if (job.status === "completed" || job.status === "partial") fraction = 1;
    let message = p.message || "";
    if (job.status === "waiting") message = "Waiting for a free worker";
    else if (job.status === "delayed") message = `Due ${relTime(parseTime(job.run_at))}${job.error ? " (retry after backoff)" : ""}`;
    else if (job.status === "completed") message = "Done";
    else if (job.status === "partial") message = "Done, with some outputs or pages failed";
    else if (job.status === "failed") message = job.error ? `Failed: ${job.error.message}` : "Failed";
    else if (job.status === "cancelled") message = "Cancelled";
    else if (!message) message = "Running";
    const percent = fraction === null ? "" : `${Math.round(fraction * 100)}%`;
    this.progress.className = `card progress-card p-${job.status}`;
    fill(this.progress, 
      h(
        "div",
        { class: "progress-line" },
        h("span", { class: "progress-msg" }, message),
        h("span", { class: "muted" }, percent, percent ? " · " : "", `attempt ${job.attempts} of ${job.max_attempts}`),
      ),
      progressBar(fraction ?? 0, { label: "job progress", indeterminate: job.status === "active" && fraction === null }),
    );
  }

  renderTimeline() {
    renderTimeline(this.timeline, this.job, this.attempts);
  }

  renderInputs() {
    const job = this.job;
    const hasMeta = job.meta && Object.keys(job.meta).length > 0;
    const settings = {
      priority: job.priority,
      max_attempts: job.max_attempts,
      timeout_s: job.timeout_s,
      run_at: job.run_at ? absTime(parseTime(job.run_at)) : null,
    };
    fill(this.inputs, 
      h("h3", {}, "Input"),
      jsonView(job.input),
      h("h3", {}, "Meta"),
      hasMeta ? jsonView(job.meta) : h("p", { class: "muted" }, "No meta."),
      h("h3", {}, "Settings"),
      h(
        "dl",
        { class: "facts" },
        Object.entries(settings).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null || v === undefined ? "—" : String(v))]),
      ),
    );
  }

  renderNoResult() {
    const job = this.job;
    const why = TERMINAL.has(job.status)
      ? `No result: the job is ${job.status}.`
      : "The result appears here when the job finishes; this page updates by itself.";
    fill(this.resultBox, h("h3", {}, "Result"), h("p", { class: "muted" }, why));
    this.pagesBox.hidden = true;
  }

  async loadResult() {
    this.resultState = "loading";
    try {
      this.result = await this.ctx.api.get(`${this.job.links.result}?limit=${PAGES}`);
      this.resultState = "loaded";
    } catch (exc) {
      this.resultState = "none";
      if (exc.status !== 401) fill(this.resultBox, h("h3", {}, "Result"), errorBox(exc));
      return;
    }
    this.renderResult();
  }

  renderResult() {
    const { outputs = {}, stats = {} } = this.result;
    const everything = { ...this.result };
    delete everything.pages;
    const tookMs = stats.elapsed_ms ?? stats.duration_ms;
    const facts = {
      status_code: outputs.status_code,
      final_url: outputs.final_url,
      content_type: outputs.content_type,
      took: typeof tookMs === "number" ? duration(tookMs) : undefined,
      pages: this.result.total_pages,
      ...aiFacts(stats.ai),
      ...Object.fromEntries(scalarOutputs(outputs)),
      // the rest of stats (bytes, rendered, a crawl's max_depth_reached...) as the kind reported them
      ...Object.fromEntries(Object.entries(stats).filter(([k, v]) => !TOOK.has(k) && (v === null || typeof v !== "object"))),
    };
    const isLong = ([k]) => k.endsWith("url");
    const given = Object.entries(facts).filter(([, v]) => v !== undefined && v !== null);
    const shown = [...given.filter((f) => !isLong(f)), ...given.filter(isLong)];
    const thumb = typeof outputs.screenshot === "string" ? screenshot(outputs.screenshot, this.files, "Screenshot of the page") : null;
    if (thumb) thumb.classList.add("thumb");
    fill(this.resultBox, 
      h("h3", {}, "Result"),
      h(
        "div",
        { class: "result-top" },
        h(
          "dl",
          { class: "fact-grid" },
          shown.map((fact) => h("div", { class: isLong(fact) ? "long" : "" }, h("dt", {}, fact[0]), h("dd", {}, String(fact[1])))),
        ),
        thumb,
      ),
      resultPreview(outputs, {
        files: this.files,
        everything,
        base: outputs.final_url || jobUrl(this.job),
        ai: Boolean(stats.ai),
        name: this.id,
      }),
    );
    if (this.result.pages) this.renderPages(this.result, 0);
  }

  renderPages(page, offset) {
    const total = page.total_pages ?? page.pages.length;
    const chosen = h("div", { class: "page-preview" }, h("p", { class: "muted" }, "Select a page to preview its outputs."));
    const rows = page.pages.map((p, n) =>
      h(
        "tr",
        {
          class: p.success === false ? "bad-row" : "",
          dataset: { index: String(offset + n) },
          onclick: (event) => {
            for (const tr of event.currentTarget.parentNode.children) tr.classList.remove("chosen");
            event.currentTarget.classList.add("chosen");
            fill(chosen, h("h4", { class: "mono" }, p.url || ""), resultPreview(p, { files: this.files, base: p.url }));
          },
        },
        h("td", { class: "num" }, String(offset + n + 1)),
        h("td", { class: "url-cell" }, h("span", { class: "url", title: p.url || "" }, p.url || "")),
        h("td", { class: "num" }, p.depth ?? ""),
        h("td", { class: "num" }, p.status_code ?? ""),
        h("td", {}, p.success === false ? h("span", { class: "err-code" }, "failed") : "ok"),
        h("td", { class: "title-cell" }, p.title || ""),
        h("td", { class: "err-cell" }, p.error ? (typeof p.error === "string" ? p.error : p.error.message || p.error.code || "") : ""),
      ),
    );
    const go = async (to) => {
      try {
        const next = await this.ctx.api.get(`${this.job.links.result}?offset=${to}&limit=${PAGES}`);
        this.renderPages(next, to);
      } catch (exc) {
        fill(chosen, errorBox(exc));
      }
    };
    const last = offset + page.pages.length;
    this.pagesBox.hidden = false;
    fill(this.pagesBox, 
      h(
        "div",
        { class: "section-head" },
        h("h3", {}, `Pages (${total})`),
        h(
          "div",
          { class: "pager" },
          h("span", { class: "muted" }, total ? `${offset + 1}–${last} of ${total}` : "none"),
          pagerButton("‹ Prev", offset === 0, () => go(Math.max(0, offset - PAGES))),
          pagerButton("Next ›", page.next_offset === null || page.next_offset === undefined, () => go(page.next_offset)),
        ),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "pages" },
          h("thead", {}, h("tr", {}, ["#", "URL", "Depth", "HTTP", "OK", "Title", "Error"].map((t) => h("th", {}, t)))),
          h("tbody", {}, rows),
        ),
      ),
      chosen,
    );
  }
}

/** What the result's `took` already says. */
const TOOK = new Set(["elapsed_ms", "duration_ms"]);

/** stats.ai as facts: which model answered, its tokens and its own time. */
function aiFacts(ai) {
  if (!ai || typeof ai !== "object") return {};
  const tokens = [["in", ai.input_tokens], ["out", ai.output_tokens], ["total", ai.total_tokens]]
    .filter(([, n]) => typeof n === "number")
    .map(([what, n]) => `${what} ${n}`);
  return {
    ai_model: ai.model ?? undefined,
    ai_tokens: tokens.length ? tokens.join(" · ") : undefined,
    ai_took: typeof ai.elapsed_ms === "number" ? duration(ai.elapsed_ms) : undefined,
  };
}

function attemptsMark(job) {
  return `${job.status}|${job.attempts}`;
}

function urlLink(url) {
  return h("a", { href: url, target: "_blank", rel: NOFOLLOW, class: "mono" }, url);
}

/** A multi_fetch's other URLs, folded: "+N more". */
function moreUrls(urls) {
  return h(
    "details",
    { class: "more-urls" },
    h("summary", {}, `+${urls.length} more`),
    h("ul", {}, urls.map((url) => h("li", {}, urlLink(url)))),
  );
}

function pagerButton(label, disabled, onclick) {
  return h("button", { type: "button", class: "btn tiny", disabled, onclick }, label);
}
