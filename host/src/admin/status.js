// The eventsift status page: reads /status.json and redraws, every
// __REFRESH_MS__ ms. Values are set as text, never as HTML.
"use strict";

const REFRESH_MS = __REFRESH_MS__;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fill(id, rows, empty, cells) {
  const body = document.querySelector("#" + id + " tbody");
  const columns = document.querySelectorAll("#" + id + " thead th").length;
  body.replaceChildren();
  if (!rows || rows.length === 0) {
    const tr = el("tr");
    const td = el("td", empty, "empty");
    td.colSpan = columns;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const row of rows) {
    const tr = el("tr");
    for (const c of cells(row)) tr.appendChild(c);
    if (row.__key) tr.dataset.key = row.__key;
    body.appendChild(tr);
  }
}

function num(v) {
  return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US");
}

function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let n = Number(v);
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

function td(text, cls) { return el("td", text, cls); }

function draw(s) {
  document.getElementById("role").textContent = s.role;
  const b = s.build;
  document.getElementById("build").textContent =
    b.version + " · " + b.contract + " · commit " + b.commit;
  const health = document.getElementById("health");
  const problem = s.health.live || s.health.ready;
  health.textContent = problem ? "not ready: " + problem : "ready";
  health.className = "pill " + (problem ? "bad" : "ok");
  document.getElementById("rate-accepted").textContent = num(Math.round(s.rates.accepted_per_second));
  document.getElementById("rate-rows").textContent = num(Math.round(s.rates.rows_per_second));
  const t = s.totals;
  document.getElementById("totals").textContent =
    "since start: " + num(t.accepted) + " events accepted, " + num(t.rejected_by_api) +
    " refused by the API, " + num(t.rows_written) + " rows written, " +
    num(t.rejected_by_writer) + " records to rejected_events";

  fill("partitions", s.partitions, "no partitions (this daemon runs no writer, or none is assigned yet)", (p) => [
    td(p.partition, "num"),
    td(num(p.position), "num"),
    td(num(p.lag), "num" + (p.lag > 0 ? " warn" : "")),
    td(ago(p.last_commit_age_seconds), "num"),
    td(p.stopped ? "stopped: " + p.stopped : "running", p.stopped ? "bad wrap" : ""),
  ]);

  const plugins = s.plugins.map((p) => Object.assign({ __key: p.event_type }, p));
  fill("plugins", plugins, "no plugins loaded", (p) => [
    td(p.name), td(p.version), td(p.event_type, "mono"), td(p.table, "mono"),
    td(p.route || "–", "mono"), td(p.contract), td(p.source, "mono"), td(p.loaded_at),
  ]);
  fill("refused", s.refused, "no refused files", (r) => [
    td(r.file, "mono bad"), td(r.reason, "wrap"),
  ]);

  const tables = s.tables || {};
  document.getElementById("tables-read").textContent =
    tables.read_at ? "(read " + tables.read_at + ")" : (tables.loading ? "(reading…)" : "");
  const list = (tables.list || []).map((x) => Object.assign({ __key: x.name }, x));
  const none = tables.note || tables.error || (tables.loading ? "reading the warehouse…" : "no tables yet");
  fill("tables", list, none, (x) => [
    td(x.name, "mono"), td(num(x.rows), "num"), td(num(x.files), "num"), td(bytes(x.bytes), "num"),
    td(num(x.partitions), "num"), td(x.last_commit || "–"), td(ago(x.freshness_seconds), "num"),
  ]);

  fill("rejections", s.rejections, "no rejections", (r) => [
    td(r.stage), td(r.reason, "wrap"), td(num(r.count), "num"), td(r.event_type || "–", "mono"),
    td(r.last_at), td(r.partition === null ? "refused by the API" : "p" + r.partition + " @ " + r.offset, "mono"),
    td(r.sample, "mono wrap"),
  ]);
  document.getElementById("updated").textContent = new Date().toLocaleTimeString("en-GB");
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

async function refresh() {
  try {
    const r = await fetch("/status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("status " + r.status);
    draw(await r.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach the daemon: " + e.message;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
