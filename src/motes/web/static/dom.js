// Building the page: elements from data, never HTML strings from data.
// Every text the mesh or a user wrote goes in as a text node, so nothing it contains
// can run as script or change the page's structure.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

// A link inside the app (hash routes only: nothing leaves the page).
export function link(route, text, attrs = {}) {
  return h("a", { href: "#" + route, ...attrs }, text);
}

export function route(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export function fmtNum(v, digits = 1) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en");
  return v.toFixed(digits);
}

export function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return `${(v * 1000).toFixed(0)} µs`;
  if (v < 1000) return `${v.toFixed(v < 10 ? 2 : 1)} ms`;
  return `${(v / 1000).toFixed(2)} s`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtTime(ts) {
  if (!ts) return "–";
  return new Date(ts * 1000).toLocaleTimeString("en-GB");
}

export function fmtAgo(ts) {
  if (!ts) return "–";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

export function badge(text, kind = text) {
  return h("span", { class: `badge b-${String(kind).replace(/[^a-z0-9-]/gi, "-")}` }, text);
}

// Display a JSON value compactly.
export function show(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

// What a user typed into a cell: a JSON number, true/false/null or a quoted string
// becomes that value; anything else is text.
export function parseInput(text) {
  const t = text.trim();
  if (t === "") return "";
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t) || t === "true" || t === "false" || t === "null" || /^["[{]/.test(t)) {
    try { return JSON.parse(t); } catch { return text; }
  }
  return text;
}

// A small Markdown subset, rendered to elements: headings, paragraphs, lists, code
// blocks, quotes, **bold**, *italic*, `code` and [links](http...).
export function markdown(src) {
  const out = document.createDocumentFragment();
  const lines = String(src || "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      const code = [];
      i++;
      while (i < lines.length && !/^```/.test(lines[i])) code.push(lines[i++]);
      i++;
      out.appendChild(h("pre", {}, h("code", {}, code.join("\n"))));
      continue;
    }
    const head = /^(#{1,6})\s+(.*)$/.exec(line);
    if (head) {
      out.appendChild(h(`h${Math.min(6, head[1].length + 1)}`, {}, inline(head[2])));
      i++;
      continue;
    }
    if (/^\s*[-*]\s+/.test(line) || /^\s*\d+\.\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const list = h(ordered ? "ol" : "ul");
      while (i < lines.length && (/^\s*[-*]\s+/.test(lines[i]) || /^\s*\d+\.\s+/.test(lines[i]))) {
        list.appendChild(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""))));
        i++;
      }
      out.appendChild(list);
      continue;
    }
    if (/^>\s?/.test(line)) {
      const quote = [];
      while (i < lines.length && /^>\s?/.test(lines[i])) quote.push(lines[i++].replace(/^>\s?/, ""));
      out.appendChild(h("blockquote", {}, inline(quote.join(" "))));
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|>|\s*[-*]\s|\s*\d+\.\s)/.test(lines[i])) para.push(lines[i++]);
    out.appendChild(h("p", {}, inline(para.join(" "))));
  }
  return out;
}

function inline(text) {
  const parts = [];
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*]+\*)|(\[[^\]]+\]\([^)\s]+\))/g;
  let last = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    const tok = m[0];
    if (m[1]) parts.push(h("code", {}, tok.slice(1, -1)));
    else if (m[2]) parts.push(h("strong", {}, tok.slice(2, -2)));
    else if (m[3]) parts.push(h("em", {}, tok.slice(1, -1)));
    else {
      const [, label, href] = /^\[([^\]]+)\]\(([^)\s]+)\)$/.exec(tok);
      parts.push(/^(https?:\/\/|#)/.test(href) ? h("a", { href, rel: "noopener noreferrer" }, label) : label);
    }
    last = m.index + tok.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

// A bar per bucket: a histogram in a row of the table.
export function bars(buckets, label) {
  const max = Math.max(1, ...buckets.map((b) => b.count));
  return h("figure", { class: "hist", "aria-label": label },
    h("figcaption", {}, label),
    h("div", { class: "bars" }, buckets.map((b) => {
      const fill = h("span");
      fill.style.height = `${Math.round((b.count / max) * 100)}%`; // CSSOM: allowed by the CSP
      return h("div", { class: "bar", title: `${b.label}: ${b.count}` }, fill, h("small", {}, `${b.label}: ${b.count}`));
    })));
}
