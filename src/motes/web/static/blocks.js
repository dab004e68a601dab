// Blocks: a collection (a block whose children are its rows) drawn as a table, a kanban
// board grouped by a property, or a wiki page. Switching view changes the URL only,
// never the data. Plain cells are edited in place; computed cells show their value,
// the node that computed it, when, and what it cost.

import { h, replace, link, route, show, parseInput, markdown, fmtTime, fmtMs, badge } from "./dom.js";
import { api, again, say } from "./app.js";

const KINDS = ["table", "kanban", "wiki"];

function title(b) {
  return show(b.props.title ?? b.id);
}

export function blocksView() {
  let root;
  return {
    title: "Blocks",
    topics: ["blocks"],
    mount(section) { root = section; },
    async refresh() {
      const { blocks } = await api("/api/blocks");
      const form = h("form", { class: "inline", "aria-label": "new collection" },
        h("input", { name: "title", placeholder: "title of a new collection", required: true, "aria-label": "title" }),
        h("button", { type: "submit" }, "create"));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const t = new FormData(form).get("title");
        try {
          const b = await api("/api/blocks", { method: "POST", body: { props: { title: t } } });
          location.hash = `#/blocks/${b.id}`;
        } catch (err) { say(err.message); }
      });
      replace(root,
        h("header", { class: "viewhead" }, h("h1", { id: "title-blocks" }, "Blocks")),
        h("ul", { class: "roots" }, blocks.map((b) => h("li", {}, link(`/blocks/${b.id}`, title(b)), h("small", {}, ` ${b.children.length} rows · ${b.id}`)))),
        form);
    },
  };
}

function cellMeta(cell) {
  const r = cell.result;
  if (cell.status === "fresh" && r) {
    const where = r.node_name || r.node || "?";
    return h("small", { class: "meta", "data-node": where },
      `computed on ${where} at ${fmtTime(r.computed_at)} in ${fmtMs(r.wall_ms)} (${fmtMs(r.rtt_ms)} round trip, ${r.bytes_in + r.bytes_out} B)`);
  }
  return h("small", { class: "meta" }, cell.reason || (cell.status === "stale" ? "computing…" : cell.status));
}

function cellValue(cell) {
  const r = cell.result;
  if (cell.status === "fresh" && r) {
    return r.error ? h("span", { class: "cell-error" }, r.error) : h("span", { class: "value" }, show(r.value));
  }
  return badge(cell.status === "stale" ? "computing" : cell.status);
}

function computedCell(block, prop) {
  const cell = block.cells[prop];
  return h("div", { class: `computed c-${cell.status}`, dataset: { prop, status: cell.status }, title: `${cell.mote}(${cell.args.join(", ")})` },
    cellValue(cell), h("br"), cellMeta(cell));
}

// A plain cell: its value; click (or Enter) to edit, Enter or leaving the field saves.
function editableCell(view, block, prop) {
  const value = block.props[prop];
  const cell = h("div", { class: "editable", tabindex: 0, role: "button", "aria-label": `edit ${prop} of ${title(block)}`, dataset: { prop } }, show(value));
  const start = () => {
    if (view.editing) return;
    view.editing = true;
    const input = h("input", { value: show(value), "aria-label": `${prop} of ${title(block)}` });
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      view.editing = false;
      input.blur(); // the page redraws only once no field has the cursor
      if (save && input.value !== show(value)) {
        try {
          await api(`/api/blocks/${block.id}`, { method: "PATCH", body: { props: { [prop]: parseInput(input.value) }, expect: block.revision } });
        } catch (err) { say(err.code === "conflict" ? "Someone changed this row meanwhile: look again and retry." : err.message); }
      }
      again();
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation(); // the cell's own Enter starts an edit: not this one
      if (e.key === "Enter") finish(true);
      else if (e.key === "Escape") finish(false);
    });
    input.addEventListener("blur", () => finish(true));
    replace(cell, input);
    input.focus();
    input.select();
  };
  cell.addEventListener("click", start);
  cell.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === cell) start(); });
  return cell;
}

function value(view, block, prop) {
  if (block.cells && prop in block.cells) return computedCell(block, prop);
  return editableCell(view, block, prop);
}

function tableOf(view, data) {
  const cols = data.columns;
  const rows = data.children.map((b) => h("tr", { dataset: { block: b.id } },
    cols.map((c, i) => (i === 0 ? h("th", { scope: "row" }, value(view, b, c)) : h("td", {}, value(view, b, c)))),
    h("td", {}, deleteButton(b))));
  const add = h("button", { type: "button" }, "add row");
  add.addEventListener("click", async () => {
    try { await api("/api/blocks", { method: "POST", body: { parent: data.block.id, props: { [cols[0] || "title"]: "new" } } }); again(); } catch (err) { say(err.message); }
  });
  return h("div", { class: "r-table" },
    h("table", { id: "block-table" }, h("caption", {}, `${title(data.block)} as a table`),
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)), h("th", {}, ""))),
      h("tbody", {}, rows)),
    add);
}

function deleteButton(b) {
  const del = h("button", { type: "button", class: "quiet", "aria-label": `delete ${title(b)}` }, "×");
  del.addEventListener("click", async () => {
    try { await api(`/api/blocks/${b.id}`, { method: "DELETE" }); again(); } catch (err) { say(err.message); }
  });
  return del;
}

function groupProp(data, params) {
  if (params.group) return params.group;
  if (typeof data.block.props.group_by === "string") return data.block.props.group_by;
  return data.columns.find((c) => data.children.some((b) => typeof b.props[c] === "string" && c !== "title")) || data.columns[0];
}

function kanbanOf(view, data, params) {
  const by = groupProp(data, params);
  const declared = Array.isArray(data.block.props.groups) ? data.block.props.groups.map(show) : [];
  const groups = [...declared];
  for (const b of data.children) {
    const g = show(b.props[by] ?? "");
    if (!groups.includes(g)) groups.push(g);
  }
  const pick = h("select", { "aria-label": "group by" }, data.columns.map((c) => h("option", { value: c, selected: c === by ? true : null }, c)));
  pick.addEventListener("change", () => { location.hash = route(`/blocks/${data.block.id}`, { view: "kanban", group: pick.value }); });
  const card = (b) => {
    const move = h("select", { "aria-label": `move ${title(b)}` }, groups.map((g) => h("option", { value: g, selected: g === show(b.props[by] ?? "") ? true : null }, g || "(none)")));
    move.addEventListener("change", async () => {
      try { await api(`/api/blocks/${b.id}`, { method: "PATCH", body: { props: { [by]: move.value } } }); again(); } catch (err) { say(err.message); }
    });
    return h("li", { class: "card", dataset: { block: b.id } },
      h("h3", {}, title(b)),
      h("dl", {}, data.columns.filter((c) => c !== by && c !== "title").map((c) => [h("dt", {}, c), h("dd", {}, value(view, b, c))])),
      move);
  };
  return h("div", { class: "r-kanban" },
    h("label", {}, "group by ", pick),
    h("div", { class: "board", id: "block-kanban" }, groups.map((g) => h("section", { class: "column", "aria-label": `${by}: ${g || "(none)"}` },
      h("h2", {}, g || "(none)"),
      h("ul", {}, data.children.filter((b) => show(b.props[by] ?? "") === g).map(card))))));
}

function wikiOf(view, data) {
  return h("article", { class: "r-wiki", id: "block-wiki" },
    h("div", { class: "md" }, markdown(data.block.text)),
    data.children.map((b) => h("section", { dataset: { block: b.id } },
      h("h2", {}, title(b)),
      h("dl", {}, data.columns.filter((c) => c !== "title").map((c) => [h("dt", {}, c), h("dd", {}, value(view, b, c))])),
      b.text ? h("div", { class: "md" }, markdown(b.text)) : null)));
}

export function blockView(id, params) {
  let root;
  const kind = KINDS.includes(params.view) ? params.view : null;
  const view = {
    title: "Block",
    topics: ["blocks"],
    editing: false,
    mount(section) { root = section; },
    async refresh() {
      if (view.editing) return; // never redraw under the user's cursor; saving redraws
      const data = await api(`/api/blocks/${encodeURIComponent(id)}`);
      const shown = kind || (KINDS.includes(data.block.props.view) ? data.block.props.view : "table");
      view.title = title(data.block);
      const switcher = h("nav", { class: "switch", "aria-label": "view as" }, KINDS.map((k) =>
        link(route(`/blocks/${id}`, { ...params, view: k }), k, { role: "button", "aria-pressed": k === shown ? "true" : "false" })));
      const body = shown === "kanban" ? kanbanOf(view, data, params) : shown === "wiki" ? wikiOf(view, data) : tableOf(view, data);
      replace(root,
        h("header", { class: "viewhead" },
          h("p", { class: "crumbs" }, link("/blocks", "Blocks"), data.path.map((p) => [" / ", link(`/blocks/${p.id}`, show(p.title))])),
          h("h1", { id: "title-blocks" }, title(data.block)),
          h("p", { class: "summary" }, `revision ${data.block.revision} · ${data.children.length} rows`),
          switcher),
        body);
    },
  };
  return view;
}
