// The dashboard: one page, one view at a time, each live from the server's event stream.
//
// A view says which topics it shows; the page opens /api/stream?topics=... for them and,
// on each "change", fetches the view's JSON again (one fetch at a time: changes during
// a fetch cause one more fetch after it, never a queue). While the tab is hidden the
// stream is closed and nothing is fetched; it reopens, and the view is fetched, when the
// tab is shown again.

import { h, replace, route } from "./dom.js";
import { nodesView, motesView, placementsView, queuesView, storeView, logsView } from "./views.js";
import { blocksView, blockView } from "./blocks.js";

export class ApiError extends Error {
  constructor(err) {
    super(err.message || "request failed");
    this.status = err.status;
    this.code = err.code;
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (!res.ok) throw new ApiError((data && data.error) || { message: res.statusText, status: res.status });
  return data;
}

const VIEWS = [
  { name: "nodes", label: "Nodes", make: nodesView },
  { name: "motes", label: "Motes", make: motesView },
  { name: "placements", label: "Placements", make: placementsView },
  { name: "queues", label: "Queues & flows", make: queuesView },
  { name: "store", label: "Store", make: storeView },
  { name: "logs", label: "Logs", make: logsView },
  { name: "blocks", label: "Blocks", make: blocksView },
];

const main = document.getElementById("main");
const live = document.getElementById("live");
const nav = document.getElementById("nav");
const notice = document.getElementById("notice");

let current = null; // { view, params, key, source, busy, again }

export function say(message, kind = "error") {
  replace(notice, message ? h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message) : null);
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "") || "nodes";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: Object.fromEntries(new URLSearchParams(query)) };
}

function mount() {
  const { parts, params } = parseHash();
  const name = parts[0] || "nodes";
  const key = location.hash;
  if (current && current.key === key) return;
  unmount();
  let view;
  if (name === "blocks" && parts[1]) view = blockView(parts[1], params);
  else {
    const spec = VIEWS.find((v) => v.name === name) || VIEWS[0];
    view = spec.make(params);
  }
  for (const a of nav.querySelectorAll("a")) a.setAttribute("aria-current", a.dataset.view === name ? "page" : "false");
  const section = h("section", { id: `view-${name}`, class: "view", "aria-labelledby": `title-${name}` });
  replace(main, section);
  current = { view, params, key, section, source: null, busy: false, again: false };
  document.title = `${view.title} · motes`;
  view.mount(section);
  resume();
}

function unmount() {
  if (!current) return;
  pause();
  if (current.view.dispose) current.view.dispose();
  current = null;
}

async function refresh() {
  const c = current;
  if (!c || document.hidden) return;
  if (c.busy) { c.again = true; return; }
  const focused = document.activeElement;
  if (focused && c.section.contains(focused) && /^(INPUT|SELECT|TEXTAREA)$/.test(focused.tagName)) {
    // Never redraw under the user's cursor: look again once they leave the field.
    if (!c.waiting) {
      c.waiting = true;
      focused.addEventListener("blur", () => { c.waiting = false; refresh(); }, { once: true });
    }
    return;
  }
  c.busy = true;
  try {
    do {
      c.again = false;
      await c.view.refresh();
      if (c === current) say("");
    } while (c.again && c === current && !document.hidden);
  } catch (err) {
    if (c === current) say(err.status === 401 ? "Session ended: open a new link from `motes dashboard`." : `Could not load: ${err.message}`);
  } finally {
    c.busy = false;
  }
}

function resume() {
  const c = current;
  if (!c || document.hidden) return;
  const topics = c.view.topics || [];
  if (topics.length && !c.source) {
    const source = new EventSource(route("/api/stream", { topics: topics.join(",") }));
    source.addEventListener("change", () => refresh());
    source.addEventListener("open", () => setLive("live"));
    source.addEventListener("error", () => setLive(source.readyState === EventSource.CLOSED ? "offline" : "reconnecting"));
    c.source = source;
  } else if (!topics.length) setLive("live");
  if (c.view.resume) c.view.resume();
  refresh();
}

function pause() {
  const c = current;
  if (!c) return;
  if (c.source) { c.source.close(); c.source = null; }
  if (c.view.pause) c.view.pause();
  setLive("paused");
}

function setLive(state) {
  live.textContent = state;
  live.dataset.state = state;
}

export function again() { refresh(); }

document.addEventListener("visibilitychange", () => (document.hidden ? pause() : resume()));
window.addEventListener("hashchange", mount);

replace(nav, VIEWS.map((v) => h("a", { href: `#/${v.name}`, dataset: { view: v.name } }, v.label)));
document.getElementById("newlink").addEventListener("click", async () => {
  try {
    const { url } = await api("/api/links", { method: "POST" });
    say(`A one-time link for another browser: ${url}`, "info");
  } catch (err) { say(err.message); }
});
mount();
