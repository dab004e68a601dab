// The mesh's views: nodes, motes and instances, placements, queues and flows, the store,
// logs. Each fetches its JSON and draws it; every entity links to its logs and to its
// placement.

import { h, replace, link, route, fmtNum, fmtMs, fmtBytes, fmtTime, fmtAgo, badge, bars } from "./dom.js";
import { api, again, say } from "./app.js";

function heading(name, title, ...extra) {
  return h("header", { class: "viewhead" }, h("h1", { id: `title-${name}` }, title), ...extra);
}

function table(caption, headers, rows, attrs = {}) {
  return h("table", attrs,
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none"))));
}

// Paging and filtering for long lists: links that change the hash, so Back works.
function pager(base, params, data) {
  const { total, offset, limit } = data;
  const go = (o) => route(base, { ...params, offset: o || null });
  const search = h("input", { type: "search", placeholder: "filter", value: params.q || "", "aria-label": "filter" });
  search.addEventListener("change", () => { location.hash = route(base, { ...params, q: search.value || null, offset: null }); });
  return h("nav", { class: "pager", "aria-label": "pages" },
    search,
    h("span", {}, total > limit ? `${offset + 1}–${Math.min(total, offset + limit)} of ${total}` : `${total} shown`),
    offset > 0 ? link(go(Math.max(0, offset - limit)), "‹ previous") : null,
    offset + limit < total ? link(go(offset + limit), "next ›") : null);
}

function qs(params, keys) {
  const out = {};
  for (const k of keys) if (params[k]) out[k] = params[k];
  return out;
}

function entityLinks(kind, { app, mote, node, iid, name }) {
  const logs = link(route("/logs", { app, mote, node, iid }), "logs", { "aria-label": `logs of ${kind} ${name}` });
  const place = link(route("/placements", { q: name }), "placement", { "aria-label": `placement of ${kind} ${name}` });
  return h("span", { class: "links" }, logs, " · ", place);
}

// --- nodes -----------------------------------------------------------------------------

export function nodesView(params) {
  let root;
  return {
    title: "Nodes",
    topics: ["nodes"],
    mount(section) { root = section; },
    async refresh() {
      const data = await api(route("/api/nodes", qs(params, ["offset", "limit", "q"])));
      const rows = data.items.map((n) => h("tr", { dataset: { node: n.name, state: n.state } },
        h("th", { scope: "row" }, n.name, n.leader ? h("span", { class: "leader", title: "scheduler leader" }, " ★ leader") : null, h("br"), h("small", {}, n.id)),
        h("td", {}, `${n.machine}, ${n.cpus} CPU${n.cpus === 1 ? "" : "s"}${n.gpus ? `, ${n.gpus} GPU` : ""}`, h("br"), h("small", {}, `${n.host} pid ${n.pid}`)),
        h("td", {}, badge(n.state), h("br"), h("small", {}, fmtAgo(n.since))),
        h("td", {}, `${Math.round((100 * n.cpu_load) / Math.max(1, n.cpus))} %`, h("br"), h("small", {}, `load ${fmtNum(n.cpu_load, 2)}`)),
        h("td", {}, fmtBytes(n.memory_mb * 1024 * 1024)),
        h("td", {}, n.on_battery ? `battery${n.battery_pct !== null ? ` ${Math.round(n.battery_pct)} %` : ""}` : "mains"),
        h("td", { class: "num" }, fmtNum(n.instances), h("br"), h("small", {}, n.motes.join(", "))),
        h("td", { class: "num" }, fmtNum(n.inflight)),
        h("td", {}, entityLinks("node", { node: n.id, name: n.name }))));
      const states = Object.entries(data.states).map(([s, c]) => h("span", {}, badge(s), ` ${c} `));
      replace(root,
        heading("nodes", "Nodes", h("p", { class: "summary" }, states)),
        data.histograms ? h("div", { class: "hists" }, bars(data.histograms.cpu_load, "CPU load per core"), bars(data.histograms.instances, "Instances per node")) : null,
        data.total > data.limit || params.q ? pager("/nodes", params, data) : null,
        table("Every node in the mesh", ["Node", "Machine", "State", "CPU", "Memory", "Power", "Instances", "In flight", ""], rows, { id: "nodes" }));
    },
  };
}

// --- motes and instances -----------------------------------------------------------

export function motesView(params) {
  let root;
  return {
    title: "Motes",
    topics: ["motes"],
    mount(section) { root = section; },
    async refresh() {
      const data = await api(route("/api/motes", qs(params, ["offset", "limit", "q"])));
      const body = [];
      for (const m of data.items) {
        body.push(h("tr", { class: "mote", dataset: { mote: m.mote } },
          h("th", { scope: "row" }, m.mote, h("br"), h("small", {}, `${m.kind}, min ${m.min} max ${m.max}`)),
          h("td", {}, m.version, m.versions.length > 1 ? h("small", {}, ` (running ${m.versions.join(", ")})`) : null),
          h("td", { class: "num" }, `${m.ready}/${m.wanted}`),
          h("td", { class: "num", dataset: { col: "calls" } }, fmtNum(m.calls_s)),
          h("td", { class: "num" }, fmtMs(m.p50_ms)),
          h("td", { class: "num" }, fmtMs(m.p99_ms), h("br"), h("small", {}, m.latency_window)),
          h("td", { class: "num" }, fmtNum(m.failed), h("br"), h("small", {}, `${fmtNum(m.errors_s)}/s`)),
          h("td", { class: "num" }, fmtNum(m.inflight)),
          h("td", {}, m.nodes.join(", ")),
          h("td", {}, entityLinks("mote", { app: m.app, mote: m.mote.split(".")[1], name: m.mote }))));
        for (const i of m.instances) {
          const [app, mote] = i.mote.split(".");
          body.push(h("tr", { class: "instance", dataset: { iid: i.iid, node: i.node_name, mote: i.mote } },
            h("td", {}, "↳ ", i.iid, h("br"), h("small", {}, i.detail || (i.pid ? `pid ${i.pid}` : ""))),
            h("td", {}, i.version),
            h("td", {}, badge(i.state)),
            h("td", { class: "num" }, fmtNum(i.calls_s)),
            h("td", { class: "num" }, fmtMs(i.p50_ms)),
            h("td", { class: "num" }, fmtMs(i.p99_ms)),
            h("td", { class: "num" }, fmtNum(i.failed)),
            h("td", { class: "num" }, fmtNum(i.inflight)),
            h("td", {}, i.node_name),
            h("td", {}, entityLinks("instance", { app, mote, iid: i.iid, name: i.mote }))));
        }
      }
      replace(root,
        heading("motes", "Motes and instances", h("p", { class: "summary" }, `${data.total} motes; rates and latencies over the last 10 s`)),
        data.total > data.limit || params.q ? pager("/motes", params, data) : null,
        table("Every mote, then its instances", ["Mote", "Version", "Ready", "Calls/s", "p50", "p99", "Errors", "In flight", "Nodes", ""], body, { id: "motes" }));
    },
  };
}

// --- placements --------------------------------------------------------------------

export function placementsView(params) {
  let root;
  const open = new Map(); // mote -> whether its verdicts are shown (kept across redraws)
  const verdicts = (p, body) => {
    const el = h("details", { open: open.get(p.mote) ?? p.status === "pending" ? true : null }, h("summary", {}, "Every node's verdict"), body);
    el.addEventListener("toggle", () => open.set(p.mote, el.open));
    return el;
  };
  return {
    title: "Placements",
    topics: ["placements"],
    mount(section) { root = section; },
    async refresh() {
      const data = await api(route("/api/placements", qs(params, ["offset", "limit", "q"])));
      const motes = data.items.map((p) => h("article", { class: `placement s-${p.status.replace(/ /g, "-")}`, dataset: { mote: p.mote }, "aria-label": `placement of ${p.mote}` },
        h("h2", {}, p.mote, " ", badge(p.status === "pending" ? "pending: waiting for a node" : p.status, p.status), h("small", {}, ` ${p.placed} of ${p.desired} placed`)),
        p.note ? h("p", { class: "note" }, p.note) : null,
        p.vetoes.length ? h("ul", { class: "vetoes", "aria-label": `rules that vetoed nodes for ${p.mote}` },
          p.vetoes.map((v) => h("li", {}, h("strong", {}, v.rule), " — vetoed ", v.nodes.join(", ")))) : null,
        verdicts(p,
          table(`Why ${p.mote} runs where it does`, ["Node", "Placed", "Verdict", "Score", "Rules"], p.nodes.map((n) => h("tr", {},
            h("th", { scope: "row" }, n.name),
            h("td", { class: "num" }, fmtNum(n.placed)),
            h("td", {}, badge(n.eligible ? "eligible" : "vetoed")),
            h("td", { class: "num" }, n.score === null ? "–" : fmtNum(n.score, 2)),
            h("td", {}, h("ul", { class: "rules" }, n.rules.map((r) => h("li", { class: r.ok ? "ok" : "veto" },
              `${r.rule}: ${r.ok ? "ok" : "VETO"}${r.score ? ` (${fmtNum(r.score, 2)})` : ""}${r.reason ? ` — ${r.reason}` : ""}`)))))))),
        p.instances.length ? h("p", { class: "instances" }, "Instances: ", p.instances.map((i) => h("span", { class: "inst" },
          `${i.iid} on ${i.node_name} (${i.state}) `, link(route("/logs", { app: p.mote.split(".")[0], mote: p.mote.split(".")[1], iid: i.iid }), "logs"), i.cause ? h("small", {}, ` cause ${i.cause}`) : null, "; "))) : null));
      const decisions = data.decisions.map((d) => h("li", {}, h("time", {}, fmtTime(d.at)), ` ${d.kind === "node_lost" ? "lost" : "placed"}: ${d.summary}`, h("small", {}, ` (cause ${d.cause})`)));
      replace(root,
        heading("placements", "Placements and the scheduler's reasons"),
        pager("/placements", params, data),
        h("div", { id: "placements" }, motes.length ? motes : h("p", { class: "empty" }, "no app deployed")),
        h("h2", {}, "Recent decisions"),
        h("ol", { class: "decisions" }, decisions));
    },
  };
}

// --- queues and flows --------------------------------------------------------------

export function queuesView() {
  let root;
  return {
    title: "Queues and flows",
    topics: ["queues"],
    mount(section) { root = section; },
    async refresh() {
      const data = await api("/api/queues");
      replace(root,
        heading("queues", "Durable queues and flows", h("p", { class: "summary" }, data.sampled_at ? `read from the stream at ${fmtTime(data.sampled_at)}` : "")),
        table("Durable calls waiting or running, per mote", ["Mote", "Depth", "Running", "Oldest", ""], data.queues.map((q) => {
          const [app, mote] = q.mote.split(".");
          return h("tr", { dataset: { mote: q.mote } }, h("th", { scope: "row" }, q.mote), h("td", { class: "num" }, fmtNum(q.depth)),
            h("td", { class: "num" }, fmtNum(q.running)), h("td", { class: "num" }, `${fmtNum(q.oldest_s)} s`), h("td", {}, entityLinks("mote", { app, mote, name: q.mote })));
        }), { id: "queues" }),
        table("Flows: each stage and the items waiting at it", ["Flow", "Stages"], data.flows.map((f) => h("tr", {},
          h("th", { scope: "row" }, f.flow),
          h("td", {}, f.stages.map((s, i) => h("span", { class: "stage" }, i ? " → " : "", s.mote, s.depth ? ` (${s.depth} waiting)` : ""))))), { id: "flows" }));
    },
  };
}

// --- store -------------------------------------------------------------------------

export function storeView(params) {
  let root;
  return {
    title: "Store",
    topics: ["store"],
    mount(section) { root = section; },
    async refresh() {
      const data = await api(route("/api/store", qs(params, ["offset", "limit", "q"])));
      const files = data.items.map((f) => {
        const r = f.report;
        const check = h("button", { type: "button", "aria-label": `check ${f.si.slice(0, 12)} now` }, "check");
        check.addEventListener("click", async () => {
          check.disabled = true;
          try { await api("/api/store/check", { method: "POST", body: { si: f.si } }); again(); } catch (err) { say(err.message); }
        });
        return h("tr", { dataset: { si: f.si, health: f.health } },
          h("th", { scope: "row" }, h("code", {}, f.si.slice(0, 16)), h("br"), h("small", {}, fmtAgo(f.stored_at))),
          h("td", { class: "num" }, fmtBytes(f.size)),
          h("td", {}, `${f.k} of ${f.n} (happy ${f.happy})`),
          h("td", {}, badge(f.health), f.error ? h("small", {}, ` ${f.error}`) : null),
          h("td", { class: "shares" }, r ? `${r.healthy}/${r.blobs} blobs healthy, ${r.recoverable}/${r.blobs} recoverable, ${r.missing_shares} shares missing` : "–"),
          h("td", {}, f.holders.join(", ")),
          h("td", {}, f.checked_at ? fmtTime(f.checked_at) : "–", " ", check));
      });
      replace(root,
        heading("store", "The store", h("p", { class: "summary" }, `${data.total} files${data.degraded.length ? `; ${data.degraded.length} with missing shares (repair runs in the mesh after a node is lost)` : ""}`)),
        table("Bytes per node", ["Node", "Shares", "Cache", "Free", "Files"], data.nodes.map((n) => h("tr", {},
          h("th", { scope: "row" }, n.name), h("td", { class: "num" }, fmtBytes(n.share_bytes)), h("td", { class: "num" }, fmtBytes(n.cache_bytes)),
          h("td", { class: "num" }, fmtBytes(n.free_bytes)), h("td", { class: "num" }, fmtNum(n.files)))), { id: "holdings" }),
        data.total > data.limit || params.q ? pager("/store", params, data) : null,
        table("Stored files and their share health", ["File", "Size", "Coding", "Health", "Shares", "Held by", "Checked"], files, { id: "files" }));
    },
  };
}

// --- logs --------------------------------------------------------------------------

const MAX_LINES = 2000;

export function logsView(params) {
  let root, list, source = null, follow = params.follow !== "0";
  const filters = qs(params, ["app", "mote", "node", "iid"]);
  function add(lines) {
    for (const l of lines) {
      list.appendChild(h("li", { class: l.stream === "err" ? "err" : "" },
        h("time", {}, fmtTime(l.ts)), ` ${l.node_name} ${l.mote}[${l.iid}] `, h("span", { class: "text" }, l.text)));
    }
    while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
    if (follow) list.lastElementChild?.scrollIntoView({ block: "nearest" });
  }
  function open() {
    close();
    replace(list);
    if (!follow) {
      api(route("/api/logs", filters)).then((d) => add(d.lines), (err) => say(err.message));
      return;
    }
    source = new EventSource(route("/api/logs/stream", filters));
    source.addEventListener("lines", (e) => add(JSON.parse(e.data)));
  }
  function close() { if (source) { source.close(); source = null; } }
  return {
    title: "Logs",
    topics: [],
    mount(section) {
      root = section;
      const form = h("form", { class: "filters", "aria-label": "log filters" },
        ["app", "mote", "node", "iid"].map((k) => h("label", {}, `${k} `, h("input", { name: k, value: filters[k] || "", size: 14 }))),
        h("label", {}, h("input", { type: "checkbox", name: "follow", checked: follow ? true : null }), " follow"),
        h("button", { type: "submit" }, "show"));
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const f = new FormData(form);
        location.hash = route("/logs", { app: f.get("app"), mote: f.get("mote"), node: f.get("node"), iid: f.get("iid"), follow: f.get("follow") ? null : "0" });
      });
      list = h("ol", { class: "loglines", id: "loglines", "aria-live": "off" });
      replace(root, heading("logs", "Logs", h("p", { class: "summary" }, Object.keys(filters).length ? Object.entries(filters).map(([k, v]) => `${k}=${v}`).join(" ") : "every mote on every node")), form, list);
    },
    resume() { open(); },
    pause() { close(); },
    async refresh() {},
    dispose() { close(); },
  };
}
