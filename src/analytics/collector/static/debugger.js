// The collector's live events page: one EventSource, batches rendered once per frame, rows as
// a grid whose off-screen rows the browser skips (content-visibility): a table re-laid out
// every row on each insertion and kept the page busy 70% of the time at 2,000 events/s.
// Data from events is only ever set as text (textContent), never as HTML.
"use strict";

(() => {
  const MAX_ITEMS = 5000; // kept in the page (filters search these), the pause buffer too
  const MAX_ROWS = 500; // rows in the table at most
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), rows: $("rows"), empty: $("empty"), note: $("note"), types: $("types"),
    type: $("f-type"), user: $("f-user"), text: $("f-text"), pause: $("pause"), clear: $("clear"),
    detail: $("detail"), title: $("d-title"), reason: $("d-reason"), json: $("d-json"),
    copy: $("copy"), close: $("close"), layout: document.querySelector(".layout"),
  };
  const state = {
    items: [], // shown or showable, oldest first
    fresh: [], // arrived since the last frame
    pending: [], // arrived while paused
    droppedWhilePaused: 0,
    paused: false,
    full: false, // the next frame rebuilds the table
    frame: 0,
    typeCounts: {},
    selected: null,
    skipped: 0,
  };

  // -- items ---------------------------------------------------------------------------------

  function userOf(msg) {
    const user = msg.userId ?? msg.anonymousId;
    return user === undefined || user === null ? "" : String(user);
  }

  function nameOf(msg) {
    switch (msg.type) {
      case "track": return String(msg.event ?? "");
      case "group": return `group ${msg.groupId ?? ""}`;
      case "alias": return `previous ${msg.previousId ?? ""}`;
      default: return String(msg.name ?? msg.properties?.title ?? "");
    }
  }

  function eventItem(e) {
    const msg = e.message;
    return {
      kind: "event", id: `e${e.seq}`, msg, type: String(msg.type), user: userOf(msg),
      name: nameOf(msg), time: msg.timestamp ?? "", received: msg.receivedAt ?? "", key: e.key ?? "",
    };
  }

  function refusedItem(r) {
    const msg = r.message && typeof r.message === "object" ? r.message : null;
    const where = r.index === null ? "request" : `message ${r.index}`;
    return {
      kind: "refused", id: `r${r.pos}`, msg: r.message ?? r.preview ?? null, refusal: r,
      type: "refused", user: msg ? userOf(msg) : "", time: msg?.timestamp ?? "",
      name: `${r.code}: ${r.reason}` + (r.field ? ` (field: ${r.field})` : "") + ` [${where}]`,
      received: r.at, key: r.key ?? "",
    };
  }

  function matches(item) {
    const type = ui.type.value;
    const user = ui.user.value.trim().toLowerCase();
    const text = ui.text.value.trim().toLowerCase();
    return (!type || item.type === type)
      && (!user || item.user.toLowerCase().includes(user))
      && (!text || item.name.toLowerCase().includes(text));
  }

  function keep(list, items, onDrop) {
    list.push(...items);
    if (list.length > MAX_ITEMS) onDrop(list.splice(0, list.length - MAX_ITEMS).length);
  }

  // -- the stream ----------------------------------------------------------------------------

  function receive(data) {
    const batch = JSON.parse(data);
    const items = batch.events.map(eventItem).concat(batch.refused.map(refusedItem));
    items.sort((a, b) => (a.received < b.received ? -1 : a.received > b.received ? 1 : 0));
    for (const item of items) count(item.type, 1);
    for (const [type, n] of Object.entries(batch.skippedTypes)) count(type, n);
    state.skipped += batch.skipped;
    showStats(batch.stats);
    if (!items.length) return;
    if (state.paused) {
      keep(state.pending, items, (n) => { state.droppedWhilePaused += n; });
      setStatus();
    } else {
      add(items);
    }
  }

  function add(items) {
    keep(state.items, items, () => {});
    state.fresh.push(...items);
    if (state.fresh.length > MAX_ROWS) state.full = true;
    schedule();
  }

  function count(type, n) {
    state.typeCounts[type] = (state.typeCounts[type] ?? 0) + n;
  }

  function showStats(stats) {
    $("c-rate").textContent = stats.rate.toLocaleString();
    $("c-stored").textContent = stats.stored.toLocaleString();
    $("c-duplicates").textContent = stats.duplicates.toLocaleString();
    $("c-refused").textContent = stats.refused.toLocaleString();
    const parts = Object.entries(state.typeCounts).sort((a, b) => b[1] - a[1])
      .map(([type, n]) => `${type} ${n.toLocaleString()}`);
    ui.types.textContent = "Per type since this page opened: " + (parts.join(" · ") || "none yet.");
  }

  function setStatus(text) {
    if (text !== undefined) state.connection = text;
    const waiting = state.pending.length;
    ui.status.className = "status " + (state.paused ? "paused" : state.connection === "live" ? "live" : "");
    ui.status.textContent = state.paused
      ? `Paused: ${waiting.toLocaleString()} new waiting`
      : state.connection === "live" ? "Live" : state.connection;
  }

  function connect() {
    const source = new EventSource("/debugger/stream");
    source.addEventListener("batch", (e) => receive(e.data));
    source.onopen = () => setStatus("live");
    source.onerror = () => setStatus(source.readyState === EventSource.CLOSED
      ? "Disconnected: reload the page" : "Reconnecting…");
  }

  // -- rendering -----------------------------------------------------------------------------

  function schedule() {
    if (!state.frame) state.frame = requestAnimationFrame(render);
  }

  function clock(iso) {
    const match = /T(\d\d:\d\d:\d\d(?:\.\d+)?)Z$/.exec(iso);
    return match ? match[1] : iso; // the time of day (UTC); the full value is the cell's title
  }

  function cell(tr, text, cls, shown = text) {
    const td = document.createElement("span");
    td.setAttribute("role", "cell");
    td.textContent = shown;
    td.title = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function row(item) {
    const tr = document.createElement("div");
    tr.setAttribute("role", "row");
    tr.dataset.id = item.id;
    tr.className = item.kind === "refused" ? "row refused" : "row";
    tr.setAttribute("aria-selected", String(state.selected === item));
    const td = document.createElement("span");
    td.setAttribute("role", "cell");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "open";
    button.tabIndex = -1;
    button.textContent = item.type;
    button.setAttribute("aria-label", `Show ${item.type} ${item.name} ${item.user}`.trim());
    td.appendChild(button);
    tr.appendChild(td);
    cell(tr, item.user);
    cell(tr, item.name);
    cell(tr, item.time, "wide mono", clock(item.time));
    cell(tr, item.received, "wide mono", clock(item.received));
    cell(tr, item.key, "wide key");
    rowItems.set(tr, item);
    return tr;
  }

  const rowItems = new WeakMap();

  function render() {
    state.frame = 0;
    const fresh = state.fresh;
    state.fresh = [];
    if (state.full) {
      state.full = false;
      rebuild();
    } else {
      const fragment = document.createDocumentFragment();
      for (let i = fresh.length - 1; i >= 0; i--) {
        if (matches(fresh[i])) fragment.appendChild(row(fresh[i]));
      }
      ui.rows.prepend(fragment);
      trim();
    }
    finish();
  }

  function trim() {
    // One range deletion: removing rows one by one re-counts the live collection each time.
    const rows = ui.rows.children;
    if (rows.length <= MAX_ROWS) return;
    const range = document.createRange();
    range.setStartBefore(rows[MAX_ROWS]);
    range.setEndAfter(ui.rows.lastElementChild);
    range.deleteContents();
  }

  function rebuild() {
    const fragment = document.createDocumentFragment();
    let shown = 0;
    for (let i = state.items.length - 1; i >= 0 && shown < MAX_ROWS; i--) {
      if (matches(state.items[i])) {
        fragment.appendChild(row(state.items[i]));
        shown++;
      }
    }
    ui.rows.replaceChildren(fragment);
  }

  function finish() {
    const rows = ui.rows.children;
    ui.empty.hidden = rows.length > 0 || state.items.length > 0;
    if (rows.length && !ui.rows.querySelector('button[tabindex="0"]')) {
      rows[0].querySelector("button").tabIndex = 0;
    }
    const notes = [];
    if (rows.length >= MAX_ROWS) notes.push(`Showing the newest ${MAX_ROWS} rows; filters search the newest ${MAX_ITEMS.toLocaleString()} events.`);
    if (state.skipped) notes.push(`${state.skipped.toLocaleString()} events arrived too fast to show (counted above); analytics events lists them all.`);
    if (state.droppedWhilePaused) notes.push(`${state.droppedWhilePaused.toLocaleString()} older events were not kept while paused.`);
    ui.note.textContent = notes.join(" ");
    ui.note.hidden = notes.length === 0;
  }

  // -- the selected event --------------------------------------------------------------------

  function jsonOf(item) {
    return typeof item.msg === "string" ? item.msg : JSON.stringify(item.msg, null, 2);
  }

  function select(tr) {
    const item = rowItems.get(tr);
    if (!item) return;
    for (const other of ui.rows.querySelectorAll('[aria-selected="true"]')) other.setAttribute("aria-selected", "false");
    tr.setAttribute("aria-selected", "true");
    state.selected = item;
    ui.title.textContent = item.kind === "refused" ? "Refused" : `${item.type} ${item.name}`.trim();
    ui.reason.hidden = item.kind !== "refused";
    if (item.kind === "refused") ui.reason.textContent = item.name;
    ui.json.textContent = item.msg === null ? "(no message: the whole request was refused)" : jsonOf(item);
    ui.detail.hidden = false;
    ui.layout.classList.add("with-detail");
  }

  function closeDetail() {
    ui.detail.hidden = true;
    ui.layout.classList.remove("with-detail");
    const tr = ui.rows.querySelector('[aria-selected="true"]');
    tr?.setAttribute("aria-selected", "false");
    state.selected = null;
    tr?.querySelector("button")?.focus();
  }

  async function copy() {
    const text = ui.json.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const range = document.createRange(); // plain http off loopback has no clipboard API
      range.selectNodeContents(ui.json);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      document.execCommand("copy");
    }
    ui.copy.textContent = "Copied";
    setTimeout(() => { ui.copy.textContent = "Copy JSON"; }, 1500);
  }

  function moveFocus(from, step) {
    const rows = [...ui.rows.children];
    const next = rows[rows.indexOf(from) + step];
    if (!next) return;
    from.querySelector("button").tabIndex = -1;
    const button = next.querySelector("button");
    button.tabIndex = 0;
    button.focus();
  }

  // -- wiring --------------------------------------------------------------------------------

  ui.rows.addEventListener("click", (e) => {
    const tr = e.target.closest('[role="row"]');
    if (tr) select(tr);
  });
  ui.rows.addEventListener("keydown", (e) => {
    const tr = e.target.closest('[role="row"]');
    if (!tr) return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      moveFocus(tr, e.key === "ArrowDown" ? 1 : -1);
    }
  });
  for (const input of [ui.type, ui.user, ui.text]) {
    input.addEventListener("input", () => { state.full = true; schedule(); });
  }
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  ui.pause.addEventListener("click", () => {
    state.paused = !state.paused;
    ui.pause.setAttribute("aria-pressed", String(state.paused));
    ui.pause.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused && state.pending.length) {
      const pending = state.pending;
      state.pending = [];
      add(pending);
    }
    setStatus();
  });
  ui.clear.addEventListener("click", () => {
    state.items = [];
    state.fresh = [];
    state.pending = [];
    state.full = true;
    schedule();
  });
  ui.copy.addEventListener("click", copy);
  ui.close.addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !ui.detail.hidden) closeDetail();
  });
  setStatus("Connecting…");
  connect();
})();
