// DOM building without innerHTML: every string that reaches the page becomes a text node.

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:", "blob:"]);

/** `url` if it is http(s), mailto, blob, data:image or a same-origin path; otherwise null. */
export function safeUrl(url, base) {
  if (typeof url !== "string" || url === "") return null;
  if (/^data:image\/(png|jpeg|gif|webp);base64,/i.test(url)) return url;
  if (!base && (url.startsWith("#") || (url.startsWith("/") && !url.startsWith("//")))) return url;
  try {
    const parsed = new URL(url, base || undefined);
    return SAFE_SCHEMES.has(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

/** h("a", {href, class, onclick}, "text", child, [more]) — attributes go through setAttribute. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "href" || name === "src") {
      const safe = safeUrl(value);
      if (safe !== null) el.setAttribute(name, safe);
    } else if (name === "value" || name === "checked" || name === "selected") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace el's children; null, undefined and false are skipped (replaceChildren would show "null"). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// -- time --------------------------------------------------------------------------------------

export function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  ms = Math.max(0, ms);
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours} h ${min % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function relTime(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "—";
  const delta = now - ms;
  if (Math.abs(delta) < 2000) return "just now";
  const abs = Math.abs(delta);
  const text = abs < 60_000 ? `${Math.round(abs / 1000)} s` : duration(abs).replace(/ \d+ (s|min|h)$/, "");
  return delta > 0 ? `${text} ago` : `in ${text}`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

export function absTime(ms) {
  if (ms === null || ms === undefined) return "—";
  const d = new Date(ms);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`
  );
}

/** A <time> that says "12 s ago" and keeps saying it: refreshTimes() rewrites every one of them. */
export function timeAgo(iso) {
  const ms = parseTime(iso);
  if (ms === null) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: absTime(ms), dataset: { ago: String(ms) } }, relTime(ms));
}

export function refreshTimes(root = document) {
  const now = Date.now();
  for (const el of root.querySelectorAll("[data-ago]")) el.textContent = relTime(Number(el.dataset.ago), now);
}

// -- small widgets -------------------------------------------------------------------------------

export const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);
export const STATUSES = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"];
/** the built-in kinds; the list adds any other kind (a plugin's) among the jobs it loads */
export const KINDS = ["fetch", "render", "crawl", "map", "interact", "multi_fetch"];

export function badge(status) {
  return h("span", { class: `badge s-${status}`, dataset: { status } }, status);
}

export function progressBar(fraction, { label = "", indeterminate = false } = {}) {
  const bar = h("div", { class: "bar-fill" });
  bar.style.width = `${Math.round(Math.min(1, Math.max(0, fraction || 0)) * 100)}%`;
  return h(
    "div",
    { class: `bar${indeterminate ? " indeterminate" : ""}`, role: "progressbar", "aria-label": label || "progress" },
    bar,
  );
}

/** JSON pretty-printed with keys, strings and numbers in their own spans (all text nodes). */
export function jsonView(value) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const pre = h("pre", { class: "json" });
  const token = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let last = 0;
  for (const m of text.matchAll(token)) {
    pre.append(text.slice(last, m.index));
    if (m[1] && m[2]) pre.append(h("span", { class: "j-key" }, m[1]), m[2]);
    else if (m[1]) pre.append(h("span", { class: "j-str" }, m[1]));
    else if (m[3]) pre.append(h("span", { class: "j-lit" }, m[3]));
    else pre.append(h("span", { class: "j-num" }, m[4]));
    last = m.index + m[0].length;
  }
  pre.append(text.slice(last));
  return pre;
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const el = h("div", { class: `toast t-${kind}`, role: "status" }, message);
  box.append(el);
  setTimeout(() => el.classList.add("gone"), 4000);
  setTimeout(() => el.remove(), 4500);
}

/** An error from the API as a block a person can act on: message, then each field problem. */
export function errorBox(error) {
  const details = (error && error.details) || [];
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", {}, error.code ? `${error.code}: ` : "", error.message || String(error)),
    details.length ? h("ul", {}, details.map((d) => h("li", {}, h("code", {}, d.field), " ", d.problem))) : null,
  );
}

/** The URLs a job was given: `input.url`, or a multi_fetch's `input.urls` (strings or {url}). */
export function jobUrls(job) {
  const input = (job && job.input) || {};
  if (typeof input.url === "string" && input.url) return [input.url];
  if (!Array.isArray(input.urls)) return [];
  return input.urls.map((u) => (typeof u === "string" ? u : u && u.url)).filter((u) => typeof u === "string" && u);
}

export function jobUrl(job) {
  return jobUrls(job)[0] || "";
}

/** "first URL" or "first URL +N more", for a one-line cell. */
export function urlSummary(job) {
  const urls = jobUrls(job);
  return urls.length > 1 ? `${urls[0]} +${urls.length - 1} more` : urls[0] || "";
}
