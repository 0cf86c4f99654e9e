// A result's outputs as tabs: an AI answer, rendered markdown, raw HTML, text, links, metadata,
// screenshots, a PDF to download, a multi_fetch's pages, JSON.

import { fill, h, jsonView, safeUrl } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

/** Keys of a result or a crawl page that are facts about it, not outputs to preview. */
const FACTS = new Set(["status_code", "final_url", "content_type", "url", "depth", "success", "title", "error"]);

/**
 * The preview of `outputs` (a result's outputs, or one crawl page). `files` loads a stored file as an
 * object URL (with the key); `everything` is what the JSON tab shows (defaults to `outputs`); `ai`:
 * a model answered (stats.ai), so `content` is its answer; `name` prefixes a downloaded file's name.
 */
export function resultPreview(outputs, { files, everything, base, ai = false, name = "" } = {}) {
  const tabs = [];
  const add = (id, label, build) => tabs.push({ id, label, build });
  const shots = [outputs.screenshot, ...(outputs.action_screenshots || [])].filter((s) => typeof s === "string");
  if (outputs.content !== undefined && outputs.content !== null) {
    add("content", ai ? "AI answer" : "Content", () => contentTab(outputs, base));
  }
  if (typeof outputs.markdown === "string") add("markdown", "Markdown", () => markdownTab(outputs.markdown, base));
  if (Array.isArray(outputs.pages)) {
    add("pages", `Pages (${outputs.pages.length})`, () => pagesTab(outputs.pages, (page) => resultPreview(page, { files, base: page.url })));
  }
  if (shots.length) add("screenshot", shots.length > 1 ? `Screenshots (${shots.length})` : "Screenshot", () =>
    screenshotTab(shots, files),
  );
  if (typeof outputs.pdf === "string") add("pdf", "PDF", () => pdfTab(outputs.pdf, files, name));
  if (typeof outputs.html === "string") add("html", "HTML", () => htmlTab(outputs.html));
  if (typeof outputs.text === "string") add("text", "Text", () => h("pre", { class: "text-out" }, outputs.text));
  if (Array.isArray(outputs.links)) add("links", `Links (${outputs.links.length})`, () => linksTab(outputs.links));
  if (Array.isArray(outputs.urls)) add("urls", `URLs (${outputs.urls.length})`, () => linksTab(outputs.urls));
  if (outputs.metadata && typeof outputs.metadata === "object")
    add("metadata", "Metadata", () => tableTab(outputs.metadata));
  if (outputs.headers && typeof outputs.headers === "object") add("headers", "Headers", () => tableTab(outputs.headers));
  if (outputs.extract !== undefined) add("extract", "Extract", () => jsonView(outputs.extract));
  if (outputs.actions !== undefined) add("actions", "Actions", () => jsonView(outputs.actions));
  const shown = (k) => KNOWN.has(k) || (k === "pages" && Array.isArray(outputs.pages));
  const others = Object.keys(outputs).filter((k) => !FACTS.has(k) && !shown(k) && !isScalar(outputs[k]));
  if (!tabs.length && others.length) add("output", "Output", () => jsonView(pick(outputs, others)));
  add("json", "JSON", () => jsonView(everything ?? outputs));

  if (tabs.length === 1) {
    // nothing to preview but the raw result: keep it out of the way
    return h("details", { class: "preview raw" }, h("summary", {}, "Raw result (JSON)"), tabs[0].build());
  }
  const body = h("div", { class: "tab-body" });
  const bar = h("div", { class: "tabs", role: "tablist" });
  const show = (tab) => {
    for (const button of bar.children) button.setAttribute("aria-selected", String(button.dataset.tab === tab.id));
    if (!tab.node) tab.node = tab.build(); // once: a tab may load a file
    fill(body, tab.node);
  };
  for (const tab of tabs) {
    bar.append(h("button", { type: "button", role: "tab", class: "tab", dataset: { tab: tab.id }, onclick: () => show(tab) }, tab.label));
  }
  show(tabs[0]);
  return h("div", { class: "preview" }, bar, body);
}

const KNOWN = new Set([
  "markdown", "html", "text", "links", "urls", "metadata", "headers", "extract", "actions",
  "screenshot", "action_screenshots", "pdf", "content", "ai_error",
]);

const isScalar = (value) => value === null || typeof value !== "object";

/** Outputs that are plain values a kind reports about itself (a crawl's pages_crawled, a map's count). */
export function scalarOutputs(outputs) {
  return Object.entries(outputs).filter(([k, v]) => !FACTS.has(k) && !KNOWN.has(k) && isScalar(v));
}

function pick(object, keys) {
  return Object.fromEntries(keys.map((k) => [k, object[k]]));
}

function markdownTab(markdown, base) {
  const rendered = h("article", { class: "markdown" }, renderMarkdown(markdown, { base }));
  const source = h("pre", { class: "text-out" }, markdown);
  return toggled([["Rendered", rendered], ["Source", source]]);
}

/** `content`: a model's answer (markdown, or JSON for format json), or the page markdown it fell back to. */
function contentTab(outputs, base) {
  const failed = outputs.ai_extraction_failed === true;
  const why = typeof outputs.ai_error === "string" ? outputs.ai_error : "";
  const notice = failed ? h("div", { class: "notice" }, "The model gave no usable answer: this is the page markdown.", why ? ` ${why}` : "") : null;
  const body = typeof outputs.content === "string" ? markdownTab(outputs.content, base) : jsonView(outputs.content);
  return h("div", { class: "content-out" }, notice, body);
}

/** A stored PDF: loaded with the key only when this tab opens, then offered as a download. */
function pdfTab(path, files, name) {
  const status = h("p", { class: "muted" }, "loading the PDF…");
  const box = h("div", { class: "pdf-box" }, status);
  if (!files) {
    status.textContent = "no way to load files";
    return box;
  }
  const file = `${name ? `${name}-` : ""}${path.split("/").pop() || "page.pdf"}`;
  files(path).then(
    (url) => {
      fill(status, "The page as a PDF, as the browser printed it.");
      box.append(h("a", { class: "btn primary pdf-download", href: url, download: file }, `Download ${file}`));
    },
    (exc) => {
      status.textContent = `could not load ${path}: ${exc.message}`;
      status.classList.add("bad");
    },
  );
  return box;
}

/** A multi_fetch's pages (URL, success, title), each opening to its own preview. */
function pagesTab(pages, preview) {
  if (!pages.length) return h("p", { class: "muted" }, "No pages.");
  return h(
    "div",
    { class: "multi-pages" },
    pages.map((page, n) => {
      const ok = page && page.success !== false;
      const error = page && page.error ? (typeof page.error === "string" ? page.error : page.error.message || page.error.code) : "";
      const item = h(
        "details",
        { class: `multi-page${ok ? "" : " bad-row"}`, dataset: { index: String(n) } },
        h(
          "summary",
          {},
          h("span", { class: "num" }, `${n + 1}. `),
          ok ? "ok " : h("span", { class: "err-code" }, "failed "),
          h("span", { class: "mono" }, String((page && page.url) ?? "")),
          page && page.title ? h("span", { class: "muted" }, ` — ${page.title}`) : null,
          error ? h("span", { class: "err-code" }, ` — ${error}`) : null,
        ),
      );
      // built when first opened: a page's markdown may be long
      item.addEventListener("toggle", () => {
        if (item.open && item.childElementCount === 1) item.append(h("div", { class: "page-preview" }, preview(page || {})));
      });
      return item;
    }),
  );
}

function htmlTab(html) {
  const source = h("pre", { class: "text-out html-source" }, html);
  // shown only on request, in a sandbox without scripts, forms or same-origin access; the page's CSP
  // (inherited by srcdoc documents) also keeps it from loading anything from the scraped site
  const frame = () =>
    h("iframe", {
      class: "html-frame",
      sandbox: "",
      referrerpolicy: "no-referrer",
      srcdoc: html,
      title: "HTML preview (sandboxed)",
    });
  return toggled([["Source", source], ["Rendered (sandboxed, no scripts)", frame]]);
}

/** A small switch between views of the same thing; a view may be a function (built when first shown). */
function toggled(views) {
  const body = h("div", { class: "toggle-body" });
  const bar = h("div", { class: "seg small" });
  const built = new Map();
  const show = (index) => {
    for (const [n, button] of [...bar.children].entries()) button.setAttribute("aria-pressed", String(n === index));
    if (!built.has(index)) {
      const view = views[index][1];
      built.set(index, typeof view === "function" ? view() : view);
    }
    fill(body, built.get(index));
  };
  views.forEach(([label], index) => bar.append(h("button", { type: "button", onclick: () => show(index) }, label)));
  show(0);
  return h("div", {}, bar, body);
}

function screenshotTab(shots, files) {
  return h("div", { class: "shots" }, shots.map((path, n) => screenshot(path, files, n ? `Action screenshot ${n}` : "Screenshot")));
}

/** A stored screenshot: fetched with the key as a blob, shown as an image that opens full size. */
export function screenshot(path, files, alt = "Screenshot") {
  const img = h("img", { class: "shot", alt });
  const link = h("a", { class: "shot-link", target: "_blank", rel: "noopener", title: "Open full size" }, img);
  const status = h("div", { class: "muted small" }, "loading…");
  const box = h("figure", { class: "shot-box" }, link, status);
  if (!files) {
    status.textContent = "no way to load files";
    return box;
  }
  files(path).then(
    (url) => {
      img.addEventListener("load", () => {
        status.textContent = `${img.naturalWidth} × ${img.naturalHeight} px · click to open full size`;
        box.classList.add("loaded");
      });
      img.setAttribute("src", url);
      link.setAttribute("href", url);
    },
    (exc) => {
      status.textContent = `could not load ${path}: ${exc.message}`;
      status.classList.add("bad");
    },
  );
  return box;
}

function linksTab(links) {
  if (!links.length) return h("p", { class: "muted" }, "No links.");
  return h(
    "ol",
    { class: "links" },
    links.map((link) => {
      const url = typeof link === "string" ? link : link && (link.url || link.href);
      const text = typeof link === "string" ? "" : link && link.text;
      const href = safeUrl(url);
      const label = h("span", { class: "mono" }, String(url ?? ""));
      return h(
        "li",
        {},
        href ? h("a", { href, target: "_blank", rel: "noopener noreferrer nofollow" }, label) : label,
        text ? h("span", { class: "muted" }, ` — ${text}`) : null,
      );
    }),
  );
}

function tableTab(object) {
  const rows = Object.entries(object);
  if (!rows.length) return h("p", { class: "muted" }, "Nothing.");
  return h(
    "table",
    { class: "kv" },
    h(
      "tbody",
      {},
      rows.map(([key, value]) =>
        h(
          "tr",
          {},
          h("th", {}, key),
          h("td", {}, cellValue(value)),
        ),
      ),
    ),
  );
}

function cellValue(value) {
  const empty = value === null || value === undefined || (typeof value === "object" && !Object.keys(value).length);
  if (empty) return h("span", { class: "muted" }, "—");
  return typeof value === "object" ? jsonView(value) : String(value);
}
