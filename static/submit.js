// The submit form: fetch, render, crawl, map and interact with their common options, and the body it sends.

import { errorBox, fill, h, jsonView } from "./dom.js";

const KIND_HELP = {
  fetch: "One URL over HTTP; tick “Run JavaScript” to use the browser.",
  render: "One URL in headless Chromium: scripts run, screenshots are possible.",
  crawl: "Follow links from a start URL, page by page, into a page table.",
  map: "List a site's URLs (links and sitemap) without keeping their content.",
  interact: "Open the page in the browser and run actions: click, type, scroll, screenshot.",
};
const PAGE_KINDS = "fetch render interact crawl";
const WAIT_UNTIL = ["", "load", "domcontentloaded", "networkidle0", "networkidle2"];
const OUTPUTS = ["markdown", "html", "text", "links", "metadata", "headers", "screenshot", "pdf"];
/** outputs only a page loaded in the browser has: a crawl refuses them per page */
const BROWSER_OUTPUTS = new Set(["screenshot", "pdf"]);
const ONE_PAGE_KINDS = "fetch render interact";
const SAMPLE_ACTIONS = '[\n  {"type": "wait_for", "selector": "body"},\n  {"type": "scroll"},\n  {"type": "screenshot"}\n]';

export class SubmitForm {
  /** `ctx`: {api, onSubmitted(job)} */
  constructor(section, ctx) {
    this.ctx = ctx;
    this.kind = "render";
    this.form = h("form", {
      class: "submit-form",
      novalidate: true,
      onsubmit: (e) => this.send(e),
      oninput: () => this.preview(),
      onchange: () => this.preview(),
    });
    this.problem = h("div", { class: "form-problem" });
    this.request = h("div", { class: "request-preview" });
    this.button = h("button", { type: "submit", class: "btn primary wide", form: "submit-form" }, "Submit job");
    this.form.id = "submit-form";
    this.build();
    fill(section, 
      h("div", { class: "section-head" }, h("h2", {}, "New job"), h("span", { class: "muted" }, "POST /v1/jobs")),
      h(
        "div",
        { class: "submit-layout" },
        this.form,
        h("aside", { class: "card request-card" }, h("h3", {}, "Request"), this.request, this.problem, this.button),
      ),
    );
    this.setKind(this.kind);
  }

  build() {
    const kinds = h(
      "div",
      { class: "seg kinds", role: "radiogroup", "aria-label": "Job kind" },
      Object.keys(KIND_HELP).map((kind) =>
        h(
          "label",
          { class: "seg-item" },
          h("input", { type: "radio", name: "kind", value: kind, checked: kind === this.kind, onchange: () => this.setKind(kind) }),
          h("span", {}, kind),
        ),
      ),
    );
    this.kindHelp = h("p", { class: "muted kind-help" });
    this.form.append(
      group("What", [
        kinds,
        this.kindHelp,
        field("URL", input("url", "input.url", { type: "url", placeholder: "https://example.com/", autocomplete: "off" })),
      ]),
      group("Outputs", [
        h(
          "div",
          { class: "checks", dataset: { field: "input.output" } },
          OUTPUTS.map((o) => {
            const box = check(`out_${o}`, o, o === "markdown");
            if (BROWSER_OUTPUTS.has(o)) box.dataset.kinds = ONE_PAGE_KINDS;
            return box;
          }),
        ),
      ], PAGE_KINDS),
      group("Page", [
        row([
          field("Run JavaScript (render_js)", check("render_js", "use the browser"), "fetch crawl"),
          field("Wait until", selectOf("wait_until", "input.wait_until", WAIT_UNTIL), PAGE_KINDS),
          field("Full-page screenshot", check("screenshot_full_page", "whole page, not the viewport"), "fetch render interact"),
        ]),
        row([
          field("Wait for selector", input("wait_for", "input.wait_for", { placeholder: "#content" }), PAGE_KINDS),
          field("Extra wait (ms)", input("wait_ms", "input.wait_ms", { type: "number", min: 0, max: 60000, placeholder: "0" }), PAGE_KINDS),
          field("Method", selectOf("method", "input.method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]), "fetch render interact"),
        ]),
        field(
          "Headers (one “Name: value” a line)",
          textarea("headers", "input.headers", 2, "Accept-Language: en"),
          "fetch render interact crawl",
        ),
        field(
          "Body",
          textarea("body", "input.body", 2, "sent as is; a JSON object is sent as JSON (Content-Type: application/json)"),
          "fetch render interact",
        ),
      ], PAGE_KINDS),
      group("Crawl", [
        row([
          field("Max pages", input("max_pages", "input.max_pages", { type: "number", min: 1, placeholder: "10" })),
          field("Max depth", input("max_depth", "input.max_depth", { type: "number", min: 0, placeholder: "2" })),
          field("Stay on the domain", check("same_domain", "same_domain", true)),
          field("Obey robots.txt", check("respect_robots", "respect_robots", true)),
        ]),
      ], "crawl"),
      group("Map", [
        row([
          field("Max URLs", input("max_urls", "input.max_urls", { type: "number", min: 1, placeholder: "100" })),
          field("Read the sitemap", check("use_sitemap", "use_sitemap", true)),
        ]),
      ], "map"),
      group("Which URLs", [
        row([
          field("Include (one pattern a line)", textarea("include", "input.include", 2, "/blog/*")),
          field("Exclude (one pattern a line)", textarea("exclude", "input.exclude", 2, "*/tag/*")),
        ]),
      ], "crawl map"),
      group("Actions", [field("Actions (JSON list)", textarea("actions", "input.actions", 6, "", SAMPLE_ACTIONS))], "interact"),
      group("Job", [
        row([
          field("Priority", input("priority", "priority", { type: "number", min: -100, max: 100, placeholder: "0" })),
          field("Max attempts", input("max_attempts", "max_attempts", { type: "number", min: 1, max: 20, placeholder: "server default" })),
          field("Timeout (s)", input("timeout_s", "timeout_s", { type: "number", min: 1, placeholder: "60" })),
          field("Delay (s)", input("delay_s", "delay_s", { type: "number", min: 0, placeholder: "0" })),
        ]),
        field("Meta (JSON object, echoed back)", textarea("meta", "meta", 2, '{"ticket": "ABC-1"}')),
      ]),
    );
  }

  setKind(kind) {
    this.kind = kind;
    this.kindHelp.textContent = KIND_HELP[kind];
    for (const el of this.form.querySelectorAll("[data-kinds]")) el.hidden = !el.dataset.kinds.split(" ").includes(kind);
    this.preview();
  }

  value(name) {
    const el = this.form.elements.namedItem(name);
    return el ? el.value.trim() : "";
  }

  checked(name) {
    const el = this.form.elements.namedItem(name);
    return Boolean(el && el.checked);
  }

  /** The request body from the visible fields; throws Error(field: problem) for what it cannot read. */
  body() {
    const kind = this.kind;
    const on = (kinds) => kinds.split(" ").includes(kind);
    const input = { url: this.value("url") };
    const number = (name, target = input) => {
      const raw = this.value(name);
      if (raw !== "") target[name] = Number(raw);
    };
    if (on(PAGE_KINDS)) {
      input.output = OUTPUTS.filter((o) => this.checked(`out_${o}`) && (on(ONE_PAGE_KINDS) || !BROWSER_OUTPUTS.has(o)));
      if (on("fetch crawl") && this.checked("render_js")) input.render_js = true;
      if (this.value("wait_until")) input.wait_until = this.value("wait_until");
      if (this.value("wait_for")) input.wait_for = this.value("wait_for");
      number("wait_ms");
      const headers = parseHeaders(this.value("headers"));
      if (Object.keys(headers).length) input.headers = headers;
    }
    if (on("fetch render interact")) {
      if (this.checked("screenshot_full_page")) input.screenshot_full_page = true;
      if (this.value("method") !== "GET") input.method = this.value("method");
      if (this.value("body")) input.body = bodyOf(this.value("body"));
    }
    if (kind === "crawl") {
      number("max_pages");
      number("max_depth");
      if (!this.checked("same_domain")) input.same_domain = false;
      if (!this.checked("respect_robots")) input.respect_robots = false;
    }
    if (kind === "map") {
      number("max_urls");
      if (!this.checked("use_sitemap")) input.use_sitemap = false;
    }
    if (on("crawl map")) {
      for (const name of ["include", "exclude"]) {
        const patterns = lines(this.value(name));
        if (patterns.length) input[name] = patterns;
      }
    }
    if (kind === "interact") input.actions = parseJson(this.value("actions") || "[]", "input.actions", Array.isArray, "a JSON list");
    const body = { kind, input };
    for (const name of ["priority", "max_attempts", "timeout_s", "delay_s"]) number(name, body);
    if (this.value("meta")) {
      body.meta = parseJson(this.value("meta"), "meta", (v) => v && typeof v === "object" && !Array.isArray(v), "a JSON object");
    }
    return body;
  }

  preview() {
    this.markFields([]);
    try {
      fill(this.request, h("div", { class: "muted mono small" }, "POST /v1/jobs"), jsonView(this.body()));
    } catch (exc) {
      fill(this.request, h("div", { class: "bad" }, exc.message));
    }
  }

  async send(event) {
    event.preventDefault();
    fill(this.problem);
    let body;
    try {
      body = this.body();
    } catch (exc) {
      fill(this.problem, errorBox({ message: exc.message, details: exc.details || [] }));
      this.markFields(exc.details || []);
      return;
    }
    if (!body.input.url) {
      const details = [{ field: "input.url", problem: "is required" }];
      fill(this.problem, errorBox({ code: "validation_error", message: "Enter a URL to scrape.", details }));
      this.markFields(details);
      return;
    }
    this.button.disabled = true;
    this.button.textContent = "Submitting…";
    try {
      const job = await this.ctx.api.post("/v1/jobs", body);
      this.ctx.onSubmitted(job);
    } catch (exc) {
      if (exc.status !== 401) fill(this.problem, errorBox(exc));
      this.markFields(exc.details || []);
    } finally {
      this.button.disabled = false;
      this.button.textContent = "Submit job";
    }
  }

  markFields(details) {
    for (const el of this.form.querySelectorAll(".invalid")) el.classList.remove("invalid");
    for (const el of this.form.querySelectorAll(".field-problem")) el.remove();
    for (const { field: name, problem } of details) {
      const el = this.form.querySelector(`[data-field="${CSS.escape(String(name).split(".").slice(0, 2).join("."))}"]`);
      if (!el) continue;
      el.classList.add("invalid");
      el.after(h("div", { class: "field-problem" }, `${name} ${problem}`));
    }
  }
}

/** The body as typed; one that parses as a JSON object goes as that object, which the server sends as JSON. */
function bodyOf(text) {
  try {
    const value = JSON.parse(text);
    if (value && typeof value === "object" && !Array.isArray(value)) return value;
  } catch {
    // not JSON: sent as the text it is
  }
  return text;
}

function parseHeaders(text) {
  const headers = {};
  for (const line of lines(text)) {
    const at = line.indexOf(":");
    if (at <= 0) throw formProblem(`Headers: “${line}” is not “Name: value”.`, "input.headers", "needs “Name: value” lines");
    headers[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return headers;
}

function parseJson(text, name, ok, what) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (exc) {
    throw formProblem(`${name}: not valid JSON (${exc.message}).`, name, "is not valid JSON");
  }
  if (!ok(value)) throw formProblem(`${name}: must be ${what}.`, name, `must be ${what}`);
  return value;
}

function formProblem(message, field, problem) {
  return Object.assign(new Error(message), { details: [{ field, problem }] });
}

function lines(text) {
  return text.split("\n").map((l) => l.trim()).filter(Boolean);
}

// -- form parts ----------------------------------------------------------------------------------

function group(title, children, kinds) {
  return h("fieldset", { class: "card group", dataset: kinds ? { kinds } : {} }, h("legend", {}, title), children);
}

function row(children) {
  return h("div", { class: "row" }, children);
}

function field(label, control, kinds) {
  // a checkbox brings its own <label>, and labels do not nest
  const tag = control.classList.contains("check") ? "div" : "label";
  return h(tag, { class: "field", dataset: kinds ? { kinds } : {} }, h("span", { class: "field-label" }, label), control);
}

function input(name, path, attrs = {}) {
  return h("input", { name, dataset: { field: path }, ...attrs });
}

function textarea(name, path, rows, placeholder, value = "") {
  return h("textarea", { name, rows, placeholder, spellcheck: "false", dataset: { field: path }, value });
}

function selectOf(name, path, values) {
  return h("select", { name, dataset: { field: path } }, values.map((v) => h("option", { value: v }, v || "default")));
}

function check(name, label, on = false) {
  const id = `f_${name}`;
  return h("span", { class: "check" }, h("input", { type: "checkbox", name, id, checked: on }), h("label", { for: id }, label));
}
