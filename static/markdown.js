// A small Markdown renderer that builds DOM nodes: raw HTML in the input stays text, links must be
// http(s) or mailto, and images are shown as links (the dashboard loads nothing from a scraped site).

import { h, safeUrl } from "./dom.js";

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}> ?/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:\s+|$)(.*)$/;
const TABLE_RULE = /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/;
const MAX_DEPTH = 12;

/** Markdown text → a DocumentFragment. `base` resolves relative links (the page's final URL). */
export function renderMarkdown(text, { base } = {}) {
  const fragment = document.createDocumentFragment();
  fragment.append(...blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"), base, 0));
  return fragment;
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

function blocks(lines, base, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const fence = line.match(FENCE);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) body.push(lines[i++]);
      i += 1;
      out.push(h("pre", { class: "md-code" }, h("code", { "data-lang": fence[2] || null }, body.join("\n"))));
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      out.push(h(`h${heading[1].length}`, {}, inline(heading[2] || "", base)));
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out.push(h("hr"));
      i += 1;
      continue;
    }
    if (QUOTE.test(line) && depth < MAX_DEPTH) {
      const body = [];
      while (i < lines.length && lines[i].trim() && QUOTE.test(lines[i])) body.push(lines[i++].replace(QUOTE, ""));
      out.push(h("blockquote", {}, blocks(body, base, depth + 1)));
      continue;
    }
    if (ITEM.test(line) && depth < MAX_DEPTH) {
      const [list, next] = listAt(lines, i, base, depth);
      out.push(list);
      i = next;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows = [line];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(lines[i++]);
      out.push(table(rows, base));
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !(para.length && startsBlock(lines[i]))) para.push(lines[i++]);
    out.push(h("p", {}, inline(para.join("\n"), base)));
  }
  return out;
}

function listAt(lines, start, base, depth) {
  const first = lines[start].match(ITEM);
  const ordered = /\d/.test(first[2]);
  const indent = first[1].length;
  const items = [];
  let i = start;
  let loose = false;
  while (i < lines.length) {
    const m = lines[i].match(ITEM);
    if (!m || m[1].length !== indent || /\d/.test(m[2]) !== ordered) break;
    const contentIndent = indent + m[2].length + 1;
    const body = [m[3]];
    i += 1;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        const nextLine = lines[i + 1] || "";
        const continues = nextLine.trim() && leading(nextLine) >= contentIndent;
        const sibling = ITEM.test(nextLine) && nextLine.match(ITEM)[1].length === indent;
        if (!continues && !sibling) break;
        if (sibling) loose = true;
        body.push("");
        i += 1;
        continue;
      }
      const sub = line.match(ITEM);
      if (sub && sub[1].length <= indent) break;
      if (leading(line) < contentIndent && !sub && startsBlock(line)) break;
      body.push(line.slice(Math.min(leading(line), contentIndent)));
      i += 1;
    }
    items.push(body);
  }
  const list = h(ordered ? "ol" : "ul");
  if (ordered && Number.parseInt(first[2], 10) !== 1) list.setAttribute("start", String(Number.parseInt(first[2], 10)));
  for (const body of items) {
    const tight = !loose && !body.some((l) => !l.trim());
    const children = blocks(body, base, depth + 1);
    const li = h("li");
    for (const child of children) {
      // a tight list shows its text without paragraph margins
      if (tight && child.tagName === "P") li.append(...child.childNodes);
      else li.append(child);
    }
    list.append(li);
  }
  return [list, i];
}

function leading(line) {
  return line.length - line.trimStart().length;
}

function cells(row) {
  let text = row.trim();
  if (text.startsWith("|")) text = text.slice(1);
  if (text.endsWith("|") && !text.endsWith("\\|")) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function table(rows, base) {
  const [head, ...body] = rows.map(cells);
  return h(
    "div",
    { class: "md-table" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, inline(c, base))))),
      h(
        "tbody",
        {},
        body.map((r) => h("tr", {}, head.map((_, n) => h("td", {}, inline(r[n] ?? "", base))))),
      ),
    ),
  );
}

// -- inline ----------------------------------------------------------------------------------------

const ESCAPABLE = "\\`*_{}[]()#+-.!|<>~";

/** Inline Markdown → an array of nodes. */
function inline(text, base, depth = 0) {
  const out = [];
  let plain = "";
  const flush = () => {
    if (plain) out.push(document.createTextNode(plain));
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && ESCAPABLE.includes(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "\\" && text[i + 1] === "\n") {
      flush();
      out.push(h("br"));
      i += 2;
      continue;
    }
    if (c === "\n") {
      if (plain.endsWith("  ")) {
        plain = plain.trimEnd();
        flush();
        out.push(h("br"));
      } else plain += " ";
      i += 1;
      continue;
    }
    if (c === "`") {
      const ticks = text.slice(i).match(/^`+/)[0];
      const end = text.indexOf(ticks, i + ticks.length);
      if (end > 0) {
        flush();
        out.push(h("code", {}, text.slice(i + ticks.length, end).trim()));
        i = end + ticks.length;
        continue;
      }
    }
    if (depth < 6 && (c === "[" || (c === "!" && text[i + 1] === "["))) {
      const link = linkAt(text, c === "!" ? i + 1 : i);
      if (link) {
        flush();
        out.push(c === "!" ? image(link, base) : anchor(link, base, depth));
        i = link.end;
        continue;
      }
    }
    if (c === "<") {
      const auto = text.slice(i).match(/^<((?:https?:\/\/|mailto:)[^\s<>]+)>/i);
      if (auto) {
        flush();
        out.push(anchor({ label: auto[1], href: auto[1], literal: true }, base, depth));
        i += auto[0].length;
        continue;
      }
    }
    if (depth < 6 && (c === "*" || c === "_" || c === "~")) {
      const run = text.slice(i).match(c === "~" ? /^~~/ : c === "*" ? /^\*{1,3}/ : /^_{1,3}/);
      const marker = run && run[0];
      if (marker && text[i + marker.length] && text[i + marker.length] !== " ") {
        const end = text.indexOf(marker, i + marker.length + 1);
        const wordy = c === "_" && /\w/.test(text[i - 1] || "");
        if (end > 0 && text[end - 1] !== " " && !wordy) {
          flush();
          const inner = inline(text.slice(i + marker.length, end), base, depth + 1);
          out.push(emphasis(marker, inner));
          i = end + marker.length;
          continue;
        }
      }
    }
    plain += c;
    i += 1;
  }
  flush();
  return out;
}

function emphasis(marker, inner) {
  if (marker === "~~") return h("del", {}, inner);
  if (marker.length === 3) return h("strong", {}, h("em", {}, inner));
  return h(marker.length === 2 ? "strong" : "em", {}, inner);
}

/** `[label](href "title")` starting at text[start] === "["; brackets and parentheses may nest. */
function linkAt(text, start) {
  let level = 0;
  let close = -1;
  for (let j = start; j < text.length; j += 1) {
    if (text[j] === "\\") j += 1;
    else if (text[j] === "[") level += 1;
    else if (text[j] === "]" && --level === 0) {
      close = j;
      break;
    }
  }
  if (close < 0 || text[close + 1] !== "(") return null;
  level = 0;
  for (let j = close + 1; j < text.length; j += 1) {
    if (text[j] === "(") level += 1;
    else if (text[j] === ")" && --level === 0) {
      const target = text.slice(close + 2, j).trim();
      const m = target.match(/^<?([^\s>]*)>?(?:\s+["'(](.*)["')])?$/s);
      if (!m) return null;
      return { label: text.slice(start + 1, close), href: m[1], title: m[2] || null, end: j + 1 };
    }
  }
  return null;
}

function anchor(link, base, depth) {
  const href = safeUrl(link.href, base);
  const label = link.literal ? [link.label] : inline(link.label, base, depth + 1);
  if (!href) return h("span", { class: "md-badlink", title: `link not shown: ${link.href}` }, label);
  const a = h("a", { target: "_blank", rel: "noopener noreferrer nofollow", title: link.title || href }, label);
  a.setAttribute("href", href);
  return a;
}

function image(link, base) {
  // images are not loaded from the scraped site; the link says where the image is
  const href = safeUrl(link.href, base);
  const label = `image: ${link.label || link.href || "untitled"}`;
  if (!href || href.startsWith("data:")) return h("span", { class: "md-image" }, label);
  const a = h("a", { class: "md-image", target: "_blank", rel: "noopener noreferrer nofollow", title: href }, label);
  a.setAttribute("href", href);
  return a;
}
