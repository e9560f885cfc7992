// Live updates for the dashboard: Server-Sent Events, and polling when the stream does
// not deliver (a proxy buffering it, or EventSource failing). `?live=poll` forces polling.
"use strict";

const POLL_MS = 3000;
const STREAM_GRACE_MS = 6000; // the server sends `hello` at once and `ping` every 10 s

function setBadge(cell, kind, status) {
  const span = document.createElement("span");
  span.className = `badge ${kind}-${status}`;
  span.textContent = status;
  cell.replaceChildren(span);
}

function shortTime(value) {
  return value ? value.replace("T", " ").replace("Z", "") : "";
}

function updateRow(row) {
  const tr = document.querySelector(`tr[data-key="${CSS.escape(row.key)}"]`);
  if (!tr || row.gone) return;
  for (const cell of tr.querySelectorAll("[data-f]")) {
    const f = cell.dataset.f;
    if (cell.dataset.badge) setBadge(cell, cell.dataset.badge, row[f]);
    else if (f === "shortRevision") { cell.textContent = row.shortRevision; cell.title = row.revision; }
    else if (f === "lastSyncAt") cell.textContent = shortTime(row.lastSyncAt);
    else if (f === "autoSync") cell.textContent = row.autoSync ? "Auto" : "Manual";
    else cell.textContent = row[f] ?? "";
  }
}

function showMode(text) {
  const el = document.getElementById("live-mode");
  if (el) el.textContent = text;
  document.body.dataset.live = text;
}

function live(streamUrl, onEvent, poll) {
  let polling = null;
  const startPolling = () => {
    if (polling) return;
    showMode("polling");
    polling = setInterval(poll, POLL_MS);
    poll();
  };
  if (new URLSearchParams(location.search).get("live") === "poll" || !window.EventSource) {
    startPolling();
    return;
  }
  const source = new EventSource(streamUrl);
  let heard = false;
  const watchdog = setTimeout(() => { if (!heard) { source.close(); startPolling(); } }, STREAM_GRACE_MS);
  const hear = () => { heard = true; showMode("live"); };
  source.addEventListener("hello", hear);
  source.addEventListener("ping", hear);
  for (const type of ["row", "app"]) {
    source.addEventListener(type, (e) => { hear(); onEvent(JSON.parse(e.data)); });
  }
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) { clearTimeout(watchdog); startPolling(); }
  };
}

function listPage(table) {
  live(table.dataset.stream, updateRow, async () => {
    const resp = await fetch(table.dataset.poll, { credentials: "same-origin" });
    if (!resp.ok) return;
    const body = await resp.json();
    for (const item of body.items) updateRow({ key: `${item.namespace}/${item.name}`, ...item });
  });
}

function appPage(container) {
  // One fetch at a time; a change during a fetch makes one more fetch after it.
  let running = false;
  let again = false;
  let shown = null; // the last fragment put in the page: unchanged ones are not re-rendered
  const reload = async () => {
    if (running) { again = true; return; }
    running = true;
    try {
      do {
        again = false;
        const resp = await fetch(container.dataset.fragment, { credentials: "same-origin" });
        const html = resp.ok ? await resp.text() : null;
        if (html !== null && html !== shown) { container.innerHTML = html; shown = html; }
      } while (again);
    } finally {
      running = false;
    }
  };
  live(container.dataset.stream, reload, reload);
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("apps");
  if (table) listPage(table);
  const container = document.getElementById("live");
  if (container) appPage(container);
});
