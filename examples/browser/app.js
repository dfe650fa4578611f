// The live page: connect to nats-server over WebSocket, decode each salt-nats event
// with the shared decoder, and show a filterable event table, jobs with their
// per-minion results, and the detail of one event.
//
// Event data comes from minions and is untrusted, so it reaches the page only through
// textContent, never as HTML.

import { wsconnect } from "./vendor/nats-core.js";
import { decodeMessage, jsonReplacer } from "./decode.js";
import { JobBook, formatArguments, globToRegExp, minionRows } from "./jobs.js";

// The page keeps at most this many events and jobs, dropping the oldest.
const MAX_EVENTS = 2000;
const MAX_JOBS = 200;

const STATUS_SYMBOLS = { success: "✓", failed: "✗", waiting: "…" };

const elements = Object.fromEntries(
  [
    "connect-form",
    "server",
    "user",
    "password",
    "subject",
    "prefix",
    "connect",
    "status",
    "jobs",
    "jobs-empty",
    "event-count",
    "filter-tag",
    "filter-minion",
    "filter-fun",
    "events",
    "detail-title",
    "detail",
  ].map((id) => [id, document.getElementById(id)]),
);
const eventRows = elements.events.tBodies[0];

const state = {
  connection: null,
  events: [],
  jobs: new JobBook(MAX_JOBS),
  jobElements: new Map(),
  rowsById: new Map(),
  nextId: 1,
  skipped: 0,
  selectedId: null,
};

// --- connection ---------------------------------------------------------------------

function setStatus(kind, text) {
  elements.status.dataset.state = kind;
  elements.status.textContent = text;
}

async function connect() {
  const server = elements.server.value.trim();
  const subject = elements.subject.value.trim();
  const prefix = elements.prefix.value.trim();
  const options = {
    servers: server,
    name: "salt-nats-browser",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 2000,
  };
  if (elements.user.value !== "") {
    options.user = elements.user.value;
    options.pass = elements.password.value;
  }

  setStatus("connecting", `Connecting to ${server}…`);
  elements.connect.disabled = true;
  let connection;
  try {
    connection = await wsconnect(options);
  } catch (error) {
    setStatus("error", `Cannot connect to ${server}: ${error.message}`);
    elements.connect.disabled = false;
    return;
  }
  state.connection = connection;

  const subscription = connection.subscribe(subject);
  readMessages(subscription, prefix);
  watchStatus(connection, server, subject);
  try {
    // The flush returns once the server has the subscription.
    await connection.flush();
  } catch (error) {
    setStatus("error", `Subscribing to ${subject} failed: ${error.message}`);
  }
  setStatus("connected", `Connected to ${server}, subscribed to ${subject}`);
  elements.connect.textContent = "Disconnect";
  elements.connect.disabled = false;

  connection.closed().then((error) => {
    if (state.connection === connection) {
      state.connection = null;
      elements.connect.textContent = "Connect";
      if (error) {
        setStatus("error", `Closed: ${error.message}`);
      } else {
        setStatus("disconnected", "Disconnected");
      }
    }
  });
}

async function disconnect() {
  const connection = state.connection;
  state.connection = null;
  elements.connect.textContent = "Connect";
  setStatus("disconnected", "Disconnected");
  await connection?.close();
}

async function readMessages(subscription, prefix) {
  for await (const message of subscription) {
    let event;
    try {
      event = decodeMessage(message, { prefix });
    } catch (error) {
      state.skipped++;
      console.warn(`skipped message on ${message.subject}: ${error.message}`);
      updateCount();
      continue;
    }
    addEvent(event);
  }
}

async function watchStatus(connection, server, subject) {
  for await (const status of connection.status()) {
    if (state.connection !== connection) {
      return;
    }
    if (status.type === "disconnect" || status.type === "reconnecting") {
      setStatus("reconnecting", `Connection to ${server} lost; reconnecting…`);
    } else if (status.type === "reconnect") {
      setStatus("connected", `Connected to ${server}, subscribed to ${subject}`);
    } else if (status.type === "error") {
      setStatus("error", `Server error: ${status.error?.message ?? "unknown"}`);
    }
  }
}

// --- events -------------------------------------------------------------------------

function addEvent(event) {
  const record = { ...event, id: state.nextId++, receivedAt: new Date() };
  state.events.push(record);
  if (state.events.length > MAX_EVENTS) {
    const dropped = state.events.shift();
    state.rowsById.get(dropped.id)?.remove();
    state.rowsById.delete(dropped.id);
  }

  const jid = state.jobs.add(record);
  if (jid !== null) {
    renderJobs();
  }
  if (matchesFilters(record, currentFilters())) {
    eventRows.prepend(makeRow(record));
  }
  updateCount();
}

function currentFilters() {
  const glob = elements["filter-tag"].value.trim();
  return {
    tag: glob === "" ? null : globToRegExp(glob),
    minion: elements["filter-minion"].value.trim().toLowerCase(),
    fun: elements["filter-fun"].value.trim().toLowerCase(),
  };
}

function functionOf(record) {
  const fun = record.data?.fun;
  return typeof fun === "string" ? fun : "";
}

function matchesFilters(record, filters) {
  if (filters.tag !== null && !filters.tag.test(String(record.tag))) {
    return false;
  }
  if (filters.minion !== "" && !(record.origin ?? "").toLowerCase().includes(filters.minion)) {
    return false;
  }
  return filters.fun === "" || functionOf(record).toLowerCase().includes(filters.fun);
}

function makeRow(record) {
  const row = document.createElement("tr");
  row.dataset.id = String(record.id);
  row.dataset.tag = String(record.tag);
  row.tabIndex = 0;
  for (const text of [
    record.receivedAt.toLocaleTimeString(undefined, { hour12: false }),
    String(record.tag),
    record.origin ?? "",
    functionOf(record),
  ]) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  if (record.id === state.selectedId) {
    row.classList.add("selected");
  }
  state.rowsById.set(record.id, row);
  return row;
}

function renderEvents() {
  const filters = currentFilters();
  state.rowsById.clear();
  const rows = [];
  for (let index = state.events.length - 1; index >= 0; index--) {
    if (matchesFilters(state.events[index], filters)) {
      rows.push(makeRow(state.events[index]));
    }
  }
  eventRows.replaceChildren(...rows);
  updateCount();
}

function updateCount() {
  const shown = eventRows.rows.length;
  let text = `${shown} shown of ${state.events.length}`;
  if (state.skipped > 0) {
    text += `, ${state.skipped} undecodable`;
  }
  elements["event-count"].textContent = text;
}

// --- jobs ---------------------------------------------------------------------------

function renderJobs() {
  const items = state.jobs.jobs().map(renderJob);
  elements.jobs.replaceChildren(...items);
  elements["jobs-empty"].hidden = items.length > 0;
}

function renderJob(job) {
  const item = document.createElement("li");
  item.className = "job";
  item.dataset.jid = job.jid;

  const rows = minionRows(job);
  const failed = rows.filter((row) => row.status === "failed").length;
  const returned = rows.filter((row) => row.status !== "waiting").length;
  if (failed > 0) {
    item.dataset.state = "failed";
  } else if (returned < rows.length) {
    item.dataset.state = "running";
  } else {
    item.dataset.state = "done";
  }

  const title = document.createElement("div");
  title.className = "job-title";
  const fun = document.createElement("strong");
  fun.textContent = job.fun ?? "(unknown function)";
  title.append(fun);
  if (job.args.length > 0) {
    const args = document.createElement("code");
    args.textContent = formatArguments(job.args, (value) => JSON.stringify(value, jsonReplacer));
    title.append(" ", args);
  }

  const meta = document.createElement("div");
  meta.className = "job-meta";
  const parts = [`jid ${job.jid}`];
  if (job.target !== undefined) {
    const type = job.targetType ? ` (${job.targetType})` : "";
    parts.push(`target ${JSON.stringify(job.target)}${type}`);
  }
  if (job.user !== undefined) {
    parts.push(`by ${job.user}`);
  }
  parts.push(`${returned} of ${rows.length} returned${failed > 0 ? `, ${failed} failed` : ""}`);
  meta.textContent = parts.join(" · ");

  const list = document.createElement("ul");
  list.className = "minions";
  for (const row of rows) {
    list.append(renderMinion(job, row));
  }

  item.append(title, meta, list);
  return item;
}

function renderMinion(job, row) {
  const item = document.createElement("li");
  item.className = "minion";
  item.dataset.minion = row.id;
  item.dataset.status = row.status;

  const symbol = document.createElement("span");
  symbol.className = "symbol";
  symbol.textContent = STATUS_SYMBOLS[row.status];
  symbol.setAttribute("aria-hidden", "true");
  const name = document.createElement("span");
  name.textContent = row.id;
  const result = document.createElement("span");
  result.className = "result";
  result.textContent = row.status;
  if (row.status === "failed" && row.retcode !== undefined) {
    result.textContent += `, retcode ${row.retcode}`;
  }
  item.append(symbol, name, result);

  const ret = job.returns.get(row.id);
  if (ret !== undefined) {
    item.tabIndex = 0;
    item.addEventListener("click", () => showDetail(ret.event));
    item.addEventListener("keydown", (keyEvent) => {
      if (keyEvent.key === "Enter") {
        showDetail(ret.event);
      }
    });
  }
  return item;
}

// --- detail -------------------------------------------------------------------------

function showDetail(record) {
  state.selectedId = record.id;
  for (const row of eventRows.querySelectorAll("tr.selected")) {
    row.classList.remove("selected");
  }
  state.rowsById.get(record.id)?.classList.add("selected");

  elements["detail-title"].textContent = String(record.tag);
  elements["detail-title"].classList.remove("empty");
  const shown = {
    subject: record.subject,
    tag: record.tag,
    master: record.master,
    origin: record.origin,
    truncated: record.truncated,
    headers: record.headers,
    data: record.data,
  };
  elements.detail.textContent = JSON.stringify(shown, jsonReplacer, 2);
}

// --- start-up -----------------------------------------------------------------------

function prefillFromQuery() {
  const query = new URLSearchParams(window.location.search);
  for (const name of ["server", "user", "subject", "prefix"]) {
    if (query.has(name)) {
      elements[name].value = query.get(name);
    }
  }
}

elements["connect-form"].addEventListener("submit", (submitEvent) => {
  submitEvent.preventDefault();
  if (state.connection !== null) {
    disconnect();
  } else {
    connect();
  }
});

for (const id of ["filter-tag", "filter-minion", "filter-fun"]) {
  elements[id].addEventListener("input", renderEvents);
}

function showRowDetail(domEvent) {
  const row = domEvent.target.closest("tr");
  const record = state.events.find((item) => String(item.id) === row?.dataset.id);
  if (record !== undefined) {
    showDetail(record);
  }
}

eventRows.addEventListener("click", showRowDetail);
eventRows.addEventListener("keydown", (keyEvent) => {
  if (keyEvent.key === "Enter") {
    showRowDetail(keyEvent);
  }
});

prefillFromQuery();
updateCount();
