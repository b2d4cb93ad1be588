// Ensemble console: one small module, no framework, no build step.
// Every text that came from a model, a document or a person is set as text (h() appends text
// nodes); nothing from the server is ever parsed as HTML. Forms are made from the JSON schemas
// the server publishes (run inputs, gate answers), so the console and the server never disagree.

const KEY_NAME = "ensemble-console-key";
const SVG = "http://www.w3.org/2000/svg";
const STATUSES = [
  ["running", "Running"],
  ["waiting", "Waiting for a human"],
  ["done", "Done"],
  ["failed", "Failed"],
  ["idle", "Idle"],
];
const GATE_NAMES = {
  plan_review: "Plan review",
  content_approval: "Content approval",
  solver_help: "Solver asks for help",
  halted: "Run halted",
};
const RESULT_NAMES = { report: "Report", draft: "Draft", answer: "Answer" };

const app = { me: null, scenarios: [], view: 0, timers: new Set(), answers: new Map() };
// app.answers: the last answer sent per thread, put back in the form if the gate refuses it
const main = document.getElementById("main");

// -- elements ------------------------------------------------------------------------------

/** An HTML element; string children become text nodes, `on*` attributes become listeners. */
function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, positions as attributes (the page's CSP allows no inline styles). */
function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace `el`'s children (nulls and falses left out). */
function put(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

function say(text) {
  document.getElementById("status").textContent = text;
}

function screen(title, ...children) {
  document.title = `${title} · Ensemble console`;
  put(main, ...children.flat().filter(Boolean));
}

// -- formatting ----------------------------------------------------------------------------

const humanize = (name) => {
  const text = String(name).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
};
const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en"));
const money = (n) => (n === null || n === undefined ? "–" : `$${Number(n).toFixed(4)}`);
const seconds = (n) => (n === null || n === undefined ? "–" : `${Number(n).toFixed(2)} s`);

function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function when(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").slice(0, 19);
}

const shown = (value) =>
  value === null || value === undefined
    ? "–"
    : typeof value === "object"
      ? JSON.stringify(value)
      : String(value);

function statusBadge(status, waitingFor) {
  const label = (STATUSES.find(([s]) => s === status) || [status, humanize(status)])[1];
  const gate = waitingFor ? ` (${GATE_NAMES[waitingFor] || humanize(waitingFor)})` : "";
  return h("span", { class: `badge status-${status}` }, label + gate);
}

// -- the server ----------------------------------------------------------------------------

/** A 4xx/5xx answer; `detail` is the server's own words. */
class Refusal extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function detailText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => {
        const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "";
        return (where ? `${where}: ` : "") + (e.msg || JSON.stringify(e));
      })
      .join("; ");
  }
  if (detail) return JSON.stringify(detail);
  if (body && typeof body.message === "string") return body.message;
  return `the server answered ${status}`;
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_NAME);
  if (key) headers["X-Api-Key"] = key;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text.slice(0, 500) };
  }
  if (!response.ok) throw new Refusal(response.status, detailText(data, response.status));
  return data;
}

const threadPath = (id) => `/console/api/threads/${encodeURIComponent(id)}`;
const isReviewer = () => Boolean(app.me && app.me.roles && app.me.roles.includes("reviewer"));
const scenarioNamed = (name) => app.scenarios.find((s) => s.name === name);

/** Start a run on a thread (a new input, a resume answer, or a fork's checkpoint). */
function startRun(threadId, body) {
  return api("POST", `/threads/${encodeURIComponent(threadId)}/runs`, body);
}

// -- timers: one view's polling stops when the view changes --------------------------------

function later(view, fn, ms) {
  const timer = setTimeout(() => {
    app.timers.delete(timer);
    if (view === app.view) fn();
  }, ms);
  app.timers.add(timer);
}

function stopTimers() {
  for (const timer of app.timers) clearTimeout(timer);
  app.timers.clear();
}

const interruptKey = (thread) =>
  thread.interrupt ? `${thread.interrupt.id}|${thread.interrupt.value?.error || ""}` : "";
// A running thread still shows the question it was answered from until its next checkpoint:
// it asks only when it is not running.
const asking = (thread) => Boolean(thread.interrupt) && thread.status !== "running";

/** Poll a thread about once a second until its run has moved on from `before` and stopped. */
function watch(view, threadId, before, onUpdate, deadline = Date.now() + 300000) {
  const tick = async () => {
    let thread;
    try {
      thread = await api("GET", threadPath(threadId));
    } catch (error) {
      say(`Could not refresh the thread: ${error.message}`);
      return;
    }
    if (view !== app.view) return;
    onUpdate(thread);
    const moved =
      !before ||
      thread.status !== before.status ||
      interruptKey(thread) !== interruptKey(before) ||
      (thread.checkpoints || []).length !== (before.checkpoints || []).length;
    if ((thread.status === "running" || !moved) && Date.now() < deadline) later(view, tick, 1000);
  };
  later(view, tick, before ? 500 : 1000);
}

// -- sign-in and routing -------------------------------------------------------------------

async function signIn(problem) {
  try {
    app.me = await api("GET", "/console/api/me");
    app.scenarios = (await api("GET", "/console/api/scenarios")).scenarios;
  } catch (error) {
    if (!(error instanceof Refusal) || ![401, 403].includes(error.status)) throw error;
    const hadKey = Boolean(sessionStorage.getItem(KEY_NAME));
    sessionStorage.removeItem(KEY_NAME);
    app.me = null;
    showSignIn(problem || (hadKey ? `That key was refused: ${error.message}` : ""));
    return;
  }
  showWho();
  await route();
}

function showSignIn(problem) {
  showWho();
  const errorId = nextId("error");
  const input = h("input", {
    id: "api-key",
    name: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": problem ? errorId : null,
    "aria-invalid": problem ? "true" : null,
  });
  const form = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "sign-in-title",
      onsubmit: (event) => {
        event.preventDefault();
        sessionStorage.setItem(KEY_NAME, input.value.trim());
        signIn();
      },
    },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "This server needs an API key. It is kept in this tab only (session storage)."),
    h("div", { class: "field" }, h("label", { for: "api-key" }, "API key"), input),
    problem ? h("p", { id: errorId, class: "error", role: "alert" }, problem) : null,
    h("button", { type: "submit" }, "Sign in"),
  );
  screen("Sign in", form);
  input.focus();
}

function showWho() {
  const who = document.getElementById("who");
  const out = document.getElementById("sign-out");
  document.getElementById("nav-operations").hidden = !isReviewer();
  if (!app.me) {
    who.textContent = "Not signed in";
    out.hidden = true;
    return;
  }
  const roles = app.me.roles && app.me.roles.length ? ` (${app.me.roles.join(", ")})` : "";
  who.textContent = app.me.keys ? `Signed in as ${app.me.user}${roles}` : "Local server, no keys";
  out.hidden = !app.me.keys;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/threads";
  const [path, query = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

async function route() {
  stopTimers();
  const view = ++app.view;
  if (!app.me) return;
  const { parts, params } = parseHash();
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === (parts[0] === "thread" ? "threads" : parts[0] || "threads")) {
      link.setAttribute("aria-current", "page");
    } else link.removeAttribute("aria-current");
  }
  try {
    if (parts[0] === "thread" && parts[1]) await showThread(decodeURIComponent(parts[1]), view);
    else if (parts[0] === "inbox") await showInbox(view);
    else if (parts[0] === "new") showNew(params, view);
    else if (parts[0] === "operations") await showOperations(view);
    else await showThreads(params, view);
  } catch (error) {
    if (error instanceof Refusal && error.status === 401) return signIn("Your key was refused.");
    if (view !== app.view) return;
    screen("Error", h("h1", {}, "Something went wrong"), h("p", { class: "error" }, error.message));
  }
  if (view === app.view) {
    main.dataset.route = location.hash || "#/threads"; // the view on screen is this address's
    const heading = main.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus();
    }
  }
}

// -- forms made from JSON schemas ----------------------------------------------------------

function resolve(schema, root) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve((root.$defs || root.definitions || {})[name], root);
  }
  return schema || {};
}

/** What kind of control a property needs: string, text, number, boolean, enum, lines, json. */
function describeField(name, raw, root, required) {
  let schema = resolve(raw, root);
  let nullable = false;
  const union = schema.anyOf || schema.oneOf;
  if (union) {
    const branches = union.map((b) => resolve(b, root)).filter((b) => b.type !== "null");
    nullable = branches.length < union.length;
    if (branches.length === 1) schema = { ...branches[0], ...schema, anyOf: undefined };
  }
  let kind = "json";
  if (schema.enum) kind = "enum";
  else if (schema.type === "string") kind = schema.maxLength > 300 ? "text" : "string";
  else if (schema.type === "integer" || schema.type === "number") kind = "number";
  else if (schema.type === "boolean") kind = "boolean";
  else if (schema.type === "array" && resolve(schema.items, root).type === "string") kind = "lines";
  else if (!schema.type && !union) kind = "text";
  return {
    name,
    kind,
    schema,
    nullable,
    required,
    label: schema.title || humanize(name),
    hint: schema.description || "",
  };
}

function schemaFields(schema) {
  const root = resolve(schema, schema);
  const required = new Set(root.required || []);
  return Object.entries(root.properties || {}).map(([name, prop]) =>
    describeField(name, prop, schema, required.has(name)),
  );
}

/** A labelled control for one field; `value` prefills it. Returns the wrapper element. */
function fieldControl(field, value, prefix) {
  const id = `${prefix}-${field.name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const start = value === undefined ? field.schema.default : value;
  const common = {
    id,
    name: field.name,
    "data-kind": field.kind,
    "aria-describedby": field.hint || field.kind === "lines" || field.kind === "json" ? hintId : null,
    required: field.required,
  };
  let control;
  if (field.kind === "boolean") {
    control = h("input", { ...common, type: "checkbox", checked: Boolean(start) });
  } else if (field.kind === "enum") {
    control = h(
      "select",
      common,
      !field.required || start === undefined ? h("option", { value: "" }, "(default)") : null,
      field.schema.enum.map((option) => h("option", { value: option }, String(option))),
    );
    control.value = start === undefined || start === null ? "" : String(start);
  } else if (field.kind === "number") {
    control = h("input", {
      ...common,
      type: "number",
      step: field.schema.type === "integer" ? "1" : "any",
      min: field.schema.minimum,
      max: field.schema.maximum,
      value: start === undefined || start === null ? "" : String(start),
    });
  } else if (field.kind === "string") {
    control = h("input", {
      ...common,
      type: "text",
      value: start === undefined || start === null ? "" : String(start),
    });
  } else {
    const text =
      start === undefined || start === null
        ? ""
        : field.kind === "lines"
          ? (Array.isArray(start) ? start : [start]).join("\n")
          : field.kind === "json"
            ? JSON.stringify(start, null, 2)
            : String(start);
    const rows = field.kind === "text" && field.name !== "text" ? 3 : 6;
    control = h("textarea", { ...common, rows, value: text });
  }
  const extra = field.kind === "lines" ? " One per line." : field.kind === "json" ? " JSON." : "";
  const label = h("label", { for: id }, field.label, field.required ? " (required)" : "");
  const hint = common["aria-describedby"]
    ? h("span", { id: hintId, class: "hint" }, (field.hint + extra).trim())
    : null;
  const error = h("p", { id: errorId, class: "field-error", hidden: true });
  const wrapper =
    field.kind === "boolean"
      ? h("div", { class: "field check" }, control, label, hint, error)
      : h("div", { class: "field" }, label, hint, control, error);
  wrapper.field = field;
  wrapper.control = control;
  return wrapper;
}

class FieldProblem extends Error {
  constructor(name, message) {
    super(`${name}: ${message}`);
    this.field = name;
  }
}

/** The value a control holds, or `undefined` to leave the field out. */
function readField(wrapper) {
  const { field, control } = wrapper;
  const text = control.value;
  switch (field.kind) {
    case "boolean":
      return control.checked;
    case "number":
      if (text.trim() === "") return undefined;
      return Number.isNaN(Number(text)) ? text : Number(text);
    case "lines": {
      const items = text.split("\n").map((line) => line.trim()).filter(Boolean);
      return items.length || field.required ? items : undefined;
    }
    case "json":
      if (text.trim() === "") return undefined;
      try {
        return JSON.parse(text);
      } catch (error) {
        throw new FieldProblem(field.name, `not valid JSON (${error.message})`);
      }
    default:
      return text === "" && !field.required ? undefined : text;
  }
}

function readFields(wrappers) {
  const values = {};
  for (const wrapper of wrappers) {
    const value = readField(wrapper);
    if (value !== undefined) values[wrapper.field.name] = value;
  }
  return values;
}

/** Show a refusal at the top of `form` and next to each field it names. */
function showRefusal(form, message, wrappers) {
  clearRefusal(form, wrappers);
  const box = form.querySelector(".form-error");
  box.textContent = message;
  box.hidden = false;
  const named = wrappers.filter((w) => new RegExp(`(^|[^\\w])${w.field.name}([^\\w]|$)`).test(message));
  // a refusal that names no field belongs to the only field there is, if there is one
  for (const wrapper of named.length || wrappers.length !== 1 ? named : wrappers) {
    const error = wrapper.querySelector(".field-error");
    error.textContent = message;
    error.hidden = false;
    wrapper.control.setAttribute("aria-invalid", "true");
    const described = wrapper.control.getAttribute("aria-describedby") || "";
    wrapper.control.setAttribute("aria-describedby", `${described} ${error.id}`.trim());
  }
}

function clearRefusal(form, wrappers) {
  const box = form.querySelector(".form-error");
  box.textContent = "";
  box.hidden = true;
  for (const wrapper of wrappers) {
    const error = wrapper.querySelector(".field-error");
    error.hidden = true;
    error.textContent = "";
    wrapper.control.removeAttribute("aria-invalid");
    const described = (wrapper.control.getAttribute("aria-describedby") || "")
      .split(" ")
      .filter((id) => id && id !== error.id)
      .join(" ");
    if (described) wrapper.control.setAttribute("aria-describedby", described);
    else wrapper.control.removeAttribute("aria-describedby");
  }
}

const formError = () => h("p", { class: "form-error error", role: "alert", hidden: true });

// -- threads list --------------------------------------------------------------------------

async function showThreads(params, view) {
  const filters = {};
  for (const name of ["scenario", "status", "owner", "q"]) filters[name] = params.get(name) || "";
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  query.set("limit", "200");
  const { threads } = await api("GET", `/console/api/threads?${query}`);
  if (view !== app.view) return;

  const choose = (name, label, options) => {
    const id = `filter-${name}`;
    const select = h(
      "select",
      { id, name, onchange: () => form.requestSubmit() },
      options.map(([value, text]) => h("option", { value }, text)),
    );
    select.value = filters[name];
    return h("div", { class: "field" }, h("label", { for: id }, label), select);
  };
  const type = (name, label, kind) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: `filter-${name}` }, label),
      h("input", { id: `filter-${name}`, name, type: kind, value: filters[name] }),
    );
  const form = h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter threads",
      onsubmit: (event) => {
        event.preventDefault();
        const chosen = new URLSearchParams();
        for (const [name, value] of new FormData(form)) if (value) chosen.set(name, value);
        const next = `#/threads${chosen.toString() ? `?${chosen}` : ""}`;
        if (location.hash === next) route();
        else location.hash = next;
      },
    },
    choose("scenario", "Scenario", [["", "Any scenario"], ...app.scenarios.map((s) => [s.name, s.name])]),
    choose("status", "Status", [["", "Any status"], ...STATUSES]),
    isReviewer() && app.me.keys ? type("owner", "Owner", "text") : null,
    type("q", "Text", "search"),
    h("button", { type: "submit" }, "Filter"),
  );
  const table = h("div", { class: "table-wrap" });
  const fill = (rows) => table.replaceChildren(threadTable(rows));
  fill(threads);
  screen(
    "Threads",
    h("h1", {}, "Threads"),
    form,
    h("p", { class: "count" }, `${threads.length} thread${threads.length === 1 ? "" : "s"}`),
    table,
  );
  const refresh = async () => {
    const again = await api("GET", `/console/api/threads?${query}`);
    if (view !== app.view) return;
    fill(again.threads);
    if (again.threads.some((t) => t.status === "running")) later(view, refresh, 2000);
  };
  if (threads.some((t) => t.status === "running")) later(view, refresh, 2000);
}

function threadTable(threads) {
  if (!threads.length) return h("p", {}, "No threads match.");
  const head = ["Thread", "Scenario", "Status", "Owner", "Outcome", "Cost", "Tokens", "Size", "Updated"];
  return h(
    "table",
    { class: "threads" },
    h("caption", { class: "visually-hidden" }, "Threads"),
    h("thead", {}, h("tr", {}, head.map((name) => h("th", { scope: "col" }, name)))),
    h(
      "tbody",
      {},
      threads.map((t) =>
        h(
          "tr",
          {},
          h(
            "th",
            { scope: "row" },
            h("a", { href: `#/thread/${encodeURIComponent(t.thread_id)}` }, t.input || t.thread_id),
          ),
          h("td", {}, t.scenario || "–"),
          h("td", {}, statusBadge(t.status, t.waiting_for)),
          h("td", {}, t.owner || "–"),
          h("td", {}, t.outcome || "–"),
          h("td", { class: "num" }, money(t.cost)),
          h("td", { class: "num" }, number(t.tokens)),
          h("td", { class: "num" }, bytes(t.size)),
          h("td", {}, when(t.updated_at)),
        ),
      ),
    ),
  );
}

// -- one thread ----------------------------------------------------------------------------

async function showThread(id, view) {
  const thread = await api("GET", threadPath(id));
  if (view !== app.view) return;
  const parts = {
    summary: h("section", { "aria-labelledby": "summary-title" }),
    gate: h("section", { class: "gate", "aria-label": "Waiting for a person" }),
    graph: h("section", { "aria-labelledby": "graph-title" }),
    result: h("section", { "aria-labelledby": "result-title" }),
    agents: h("section", { "aria-labelledby": "agents-title" }),
    timeline: h("section", { "aria-labelledby": "timeline-title" }),
    checkpoints: h("section", { "aria-labelledby": "checkpoints-title" }),
    fork: h("section", { class: "fork", "aria-label": "Fork" }),
  };
  let gateShown = null;
  let current = thread;
  const heading = h("h1", { class: "thread-title" });
  const crumb = h("span");
  const update = (latest) => {
    current = latest;
    const scenario = scenarioNamed(latest.scenario);
    const headline = latest.input && scenario ? latest.input[scenario.primary_field] : "";
    heading.textContent = headline || `Thread ${latest.thread_id}`;
    crumb.textContent = latest.scenario ? ` / ${latest.scenario}` : "";
    put(parts.summary, ...summaryPart(latest));
    put(parts.graph, ...graphPart(latest));
    put(parts.result, ...resultPart(latest));
    put(parts.agents, ...agentsPart(latest));
    put(parts.timeline, ...timelinePart(latest));
    put(parts.checkpoints, ...checkpointsPart(latest, openFork));
    const gateKey = asking(latest) ? interruptKey(latest) : "";
    if (gateKey !== gateShown) {
      gateShown = gateKey;
      put(parts.gate, ...(asking(latest) ? gatePart(latest, view, afterAnswer) : []));
      parts.gate.hidden = !asking(latest);
    }
  };
  const afterAnswer = (before) => watch(view, id, before, update);
  const openFork = (checkpoint) => {
    put(parts.fork, ...forkPart(current, checkpoint, view, afterAnswer));
    parts.fork.querySelector("h2").focus();
  };
  screen(
    "Thread",
    h("p", { class: "crumbs" }, h("a", { href: "#/threads" }, "Threads"), crumb),
    heading,
    parts.summary,
    parts.gate,
    parts.graph,
    parts.result,
    parts.agents,
    parts.timeline,
    parts.checkpoints,
    parts.fork,
  );
  update(thread);
  if (thread.status === "running") watch(view, id, null, update);
  // a run just started on a new thread: nothing is stored yet, so wait for it to move
  else if (thread.status === "idle") watch(view, id, thread, update, Date.now() + 60000);
}

function definitionList(entries) {
  return h(
    "dl",
    {},
    entries.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

function summaryPart(thread) {
  const totals = thread.totals || {};
  return [
    h("h2", { id: "summary-title", class: "visually-hidden" }, "Summary"),
    definitionList([
      ["Thread", h("code", {}, thread.thread_id)],
      ["Scenario", thread.scenario],
      ["Status", statusBadge(thread.status, thread.interrupt?.value?.kind)],
      ["Owner", thread.owner || "–"],
      ["Outcome", thread.outcome || "–"],
      ["Cost", money(totals.cost)],
      ["Tokens", `${number(totals.tokens_in)} in, ${number(totals.tokens_out)} out`],
      ["Model calls", `${number(totals.calls)} (${number(totals.cache_hits)} from cache)`],
      ["Size", bytes(thread.size)],
    ]),
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        {},
        h("h3", {}, "Input"),
        definitionList(Object.entries(thread.input || {}).map(([k, v]) => [humanize(k), shown(v)])),
      ),
      h(
        "div",
        {},
        h("h3", {}, "Settings"),
        Object.keys(thread.settings || {}).length
          ? definitionList(Object.entries(thread.settings).map(([k, v]) => [humanize(k), shown(v)]))
          : h("p", {}, "The server's defaults."),
      ),
    ),
  ];
}

function graphPart(thread) {
  const scenario = scenarioNamed(thread.scenario);
  const current = thread.current || [];
  const now = current.length ? `Now at: ${current.join(", ")}.` : "No node is running or waiting.";
  return [
    h("h2", { id: "graph-title" }, "Graph"),
    h("p", { class: "now" }, now),
    scenario && scenario.graph ? graphPicture(scenario, current) : h("p", {}, "No graph."),
  ];
}

/** The scenario's graph as SVG: boxes where the server laid them out, current nodes marked. */
function graphPicture(scenario, current) {
  const graph = scenario.graph;
  const titleId = nextId("graph");
  const width = graph.node_width || 140;
  const height = graph.node_height || 36;
  const boxes = new Map(
    graph.nodes.map((node) => [
      node.id,
      { ...node, x: node.x + width / 2, y: node.y + height / 2, width, height },
    ]),
  );
  const picture = svg(
    "svg",
    {
      class: "graph",
      viewBox: `0 0 ${graph.width} ${graph.height}`,
      width: graph.width,
      height: graph.height,
      role: "img",
      "aria-labelledby": titleId,
    },
    svg(
      "title",
      { id: titleId },
      `The ${scenario.name} graph.${current.length ? ` Current: ${current.join(", ")}.` : ""}`,
    ),
    svg(
      "defs",
      {},
      svg(
        "marker",
        {
          id: `${titleId}-arrow`,
          viewBox: "0 0 10 10",
          refX: 9,
          refY: 5,
          markerWidth: 7,
          markerHeight: 7,
          orient: "auto",
        },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }),
      ),
    ),
  );
  for (const edge of graph.edges) {
    const a = boxes.get(edge.source);
    const b = boxes.get(edge.target);
    if (!a || !b || a === b) continue;
    const [x1, y1] = borderPoint(a, b.x - a.x, b.y - a.y);
    const [x2, y2] = borderPoint(b, a.x - b.x, a.y - b.y);
    picture.append(
      svg("line", {
        x1,
        y1,
        x2,
        y2,
        class: edge.conditional ? "edge conditional" : "edge",
        "marker-end": `url(#${titleId}-arrow)`,
      }),
    );
  }
  for (const node of boxes.values()) {
    const isCurrent = current.includes(node.id);
    picture.append(
      svg(
        "g",
        { class: `node ${node.kind || "node"}${isCurrent ? " current" : ""}`, "data-node": node.id },
        svg("rect", {
          x: node.x - node.width / 2,
          y: node.y - node.height / 2,
          width: node.width,
          height: node.height,
          rx: node.kind === "node" ? 5 : 18,
        }),
        svg(
          "text",
          { x: node.x, y: node.y, "text-anchor": "middle", "dominant-baseline": "central" },
          node.label || node.id,
        ),
      ),
    );
  }
  return h("div", { class: "graph-wrap" }, picture);
}

/** Where a line from the centre of `box` in direction (dx, dy) leaves the box. */
function borderPoint(box, dx, dy) {
  if (!dx && !dy) return [box.x, box.y];
  const scale = Math.min(
    dx ? box.width / 2 / Math.abs(dx) : Infinity,
    dy ? box.height / 2 / Math.abs(dy) : Infinity,
  );
  return [box.x + dx * scale, box.y + dy * scale];
}

function resultPart(thread) {
  const result = thread.result;
  const published = thread.values && thread.values.published;
  if (!result || !result.text) {
    return [h("h2", { id: "result-title" }, "Result"), h("p", {}, "No result yet.")];
  }
  return [
    h("h2", { id: "result-title" }, RESULT_NAMES[result.kind] || "Result"),
    result.title ? h("h3", { class: "result-title" }, result.title) : null,
    published && published.files
      ? h("p", { class: "published" }, "Published: ", published.files.map((f, i) => [i ? ", " : "", h("code", {}, f)]))
      : null,
    h("pre", { class: "result" }, result.text),
  ];
}

function agentsPart(thread) {
  const agents = thread.agents || [];
  const totals = thread.totals || {};
  const cells = (row) => [
    h("td", { class: "num" }, number(row.calls)),
    h("td", { class: "num" }, number(row.tokens_in)),
    h("td", { class: "num" }, number(row.tokens_out)),
    h("td", { class: "num" }, money(row.cost)),
    h("td", { class: "num" }, seconds(row.seconds)),
    h("td", { class: "num" }, number(row.errors)),
  ];
  const head = ["Agent", "Calls", "Tokens in", "Tokens out", "Cost", "Time", "Errors"];
  return [
    h("h2", { id: "agents-title" }, "Tokens and cost per agent"),
    agents.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, head.map((name) => h("th", { scope: "col" }, name)))),
            h("tbody", {}, agents.map((a) => h("tr", {}, h("th", { scope: "row" }, a.agent), cells(a)))),
            h("tfoot", {}, h("tr", {}, h("th", { scope: "row" }, "All agents"), cells(totals))),
          ),
        )
      : h("p", {}, "No model calls yet."),
  ];
}

function timelinePart(thread) {
  const events = thread.timeline || [];
  if (!events.length) {
    return [h("h2", { id: "timeline-title" }, "Timeline"), h("p", {}, "Nothing recorded yet.")];
  }
  const starts = events.map((e) => Number(e.start)).filter(Number.isFinite);
  const ends = events.map((e) => Number(e.end ?? e.start)).filter(Number.isFinite);
  const t0 = Math.min(...starts);
  const span = Math.max(0.001, Math.max(...ends) - t0);
  const width = 160;
  const bar = (e) => {
    const x = ((Number(e.start) - t0) / span) * width;
    const w = Math.max(2, ((Number(e.end ?? e.start) - Number(e.start)) / span) * width);
    return svg(
      "svg",
      { class: "bar", width, height: 12, viewBox: `0 0 ${width} 12`, "aria-hidden": "true" },
      svg("rect", { x: 0, y: 5, width, height: 2, class: "track" }),
      svg("rect", { x: Math.min(x, width - 2), y: 1, width: Math.min(w, width - x), height: 10, class: `kind-${e.kind}` }),
    );
  };
  const head = ["Agent", "What", "Model", "Start", "Time", "Outcome", "Tokens", "Cost", "When"];
  return [
    h("h2", { id: "timeline-title" }, "Timeline"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "timeline" },
        h("thead", {}, h("tr", {}, head.map((name) => h("th", { scope: "col" }, name)))),
        h(
          "tbody",
          {},
          events.map((e) =>
            h(
              "tr",
              { class: `kind-${e.kind}` },
              h("th", { scope: "row" }, e.agent || "–"),
              h("td", {}, h("span", { class: `kind kind-${e.kind}` }, humanize(e.kind || "event"))),
              h("td", {}, e.model || "–"),
              h("td", { class: "num" }, `+${(Number(e.start) - t0).toFixed(2)} s`),
              h("td", { class: "num" }, seconds(e.seconds)),
              h("td", {}, e.outcome || "–"),
              h("td", { class: "num" }, e.tokens_in || e.tokens_out ? `${number(e.tokens_in)} / ${number(e.tokens_out)}` : "–"),
              h("td", { class: "num" }, e.cost ? money(e.cost) : "–"),
              h("td", {}, bar(e)),
            ),
          ),
        ),
      ),
    ),
  ];
}

function checkpointsPart(thread, openFork) {
  const checkpoints = thread.checkpoints || [];
  // a thread is forked by its owner (a reviewer reads other people's threads, never writes them)
  const mayFork = !app.me.keys || thread.owner === app.me.user;
  const head = ["Step", "Source", "Next", "Created", "Checkpoint", mayFork ? "Fork" : null];
  return [
    h("h2", { id: "checkpoints-title" }, "Checkpoints"),
    checkpoints.length
      ? h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "checkpoints" },
            h("thead", {}, h("tr", {}, head.filter(Boolean).map((name) => h("th", { scope: "col" }, name)))),
            h(
              "tbody",
              {},
              checkpoints.map((c) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row", class: "num" }, String(c.step)),
                  h("td", {}, c.source || "–"),
                  h("td", {}, (c.next || []).join(", ") || "–"),
                  h("td", {}, when(c.created_at)),
                  h("td", {}, h("code", {}, String(c.checkpoint_id).slice(-12))),
                  mayFork &&
                  h(
                    "td",
                    {},
                    h(
                      "button",
                      {
                        type: "button",
                        class: "small",
                        "aria-label": `Fork from step ${c.step}`,
                        onclick: () => openFork(c),
                      },
                      "Fork from here",
                    ),
                  ),
                ),
              ),
            ),
          ),
        )
      : h("p", {}, "No checkpoints."),
  ];
}

function forkPart(thread, checkpoint, view, afterAnswer) {
  const scenario = scenarioNamed(thread.scenario);
  const prefix = nextId("fork");
  const wrappers = schemaFields(scenario.input_schema).map((field) =>
    fieldControl(field, (thread.input || {})[field.name], prefix),
  );
  const original = readFields(wrappers);
  const form = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        clearRefusal(form, wrappers);
        try {
          const edited = readFields(wrappers);
          const changed = {};
          for (const [name, value] of Object.entries(edited)) {
            if (JSON.stringify(value) !== JSON.stringify(original[name])) changed[name] = value;
          }
          let from = checkpoint.checkpoint_id;
          if (Object.keys(changed).length) {
            const written = await api("POST", `/threads/${encodeURIComponent(thread.thread_id)}/state`, {
              values: changed,
              checkpoint_id: checkpoint.checkpoint_id,
            });
            from = written.checkpoint.checkpoint_id;
          }
          await startRun(thread.thread_id, { assistant_id: thread.scenario, checkpoint_id: from });
          say(`Forked from step ${checkpoint.step}; the run has started.`);
          form.closest("section").replaceChildren(h("p", {}, `Forked from step ${checkpoint.step}.`));
          afterAnswer(thread);
        } catch (error) {
          showRefusal(form, error.message, wrappers);
          say(`The fork was refused: ${error.message}`);
        }
      },
    },
    formError(),
    wrappers,
    h("button", { type: "submit" }, "Start the fork"),
  );
  return [
    h("h2", { tabindex: "-1" }, `Fork from step ${checkpoint.step}`),
    h("p", {}, "Edit the input fields; the run continues from this checkpoint with them."),
    form,
  ];
}

// -- gates: the question and the form made from its answer schema -------------------------

/**
 * Each kind of answer a gate takes: a key, a description, its fields, and how the answer is made.
 * An object told apart by its `action` const answers `{action, ...fields}`; a bare string
 * (a const, or each value of an enum) answers itself; another object answers its fields.
 */
function answerVariants(schema) {
  const union = schema.oneOf || schema.anyOf || [schema];
  return union.flatMap((branch) => {
    const variant = resolve(branch, schema);
    const description = variant.description || "";
    if (variant.const !== undefined || variant.enum) {
      const literals = variant.const !== undefined ? [variant.const] : variant.enum;
      return literals.map((literal) => ({ action: String(literal), description, fields: [], answer: () => literal }));
    }
    const properties = variant.properties || {};
    const required = new Set(variant.required || []);
    const action = properties.action ? resolve(properties.action, schema) : null;
    const key = action ? (action.const ?? (action.enum || [])[0]) : variant.title || "answer";
    return [
      {
        action: String(key),
        description,
        fields: Object.entries(properties)
          .filter(([name]) => name !== "action")
          .map(([name, prop]) => describeField(name, prop, schema, required.has(name))),
        answer: (values) => (action ? { action: key, ...values } : values),
      },
    ];
  });
}

function gateQuestion(value) {
  const parts = [];
  if (value.kind === "plan_review") {
    if (value.question) parts.push(h("p", {}, "Question: ", value.question));
    parts.push(
      h("p", {}, "Planned sub-questions:"),
      h("ol", { class: "plan" }, (value.plan || []).map((item) => h("li", {}, planText(item)))),
    );
  } else if (value.kind === "content_approval") {
    if (value.title) parts.push(h("h3", { class: "draft-title" }, value.title));
    if (value.word_count !== undefined) parts.push(h("p", {}, `${value.word_count} words`));
    parts.push(h("pre", { class: "result draft" }, value.draft || ""));
    if (value.sources && value.sources.length) {
      parts.push(h("p", {}, "Sources:"), h("ul", { class: "sources" }, value.sources.map((s) => h("li", {}, s))));
    }
  } else if (value.kind === "halted") {
    parts.push(h("p", {}, value.question || ""), h("p", {}, "Reason: ", value.reason || ""));
    if (value.node) parts.push(h("p", {}, "Stopped at: ", h("code", {}, value.node)));
  } else if (value.kind === "solver_help") {
    parts.push(h("p", {}, "Task: ", h("code", {}, value.task || "")), h("p", {}, "Reason: ", value.reason || ""));
    if (value.detail && Object.keys(value.detail).length) {
      parts.push(h("pre", { class: "detail" }, JSON.stringify(value.detail, null, 2)));
    }
  } else {
    parts.push(h("pre", { class: "detail" }, JSON.stringify(value, null, 2)));
  }
  return parts;
}

const planText = (item) => (typeof item === "string" ? item : item.question || JSON.stringify(item));

/** What a variant's fields start with: the plan for an edited plan, the draft for an edit. */
function prefill(value, field) {
  if (value.kind === "plan_review" && field.name === "subquestions") return (value.plan || []).map(planText);
  if (value.kind === "content_approval" && field.name === "text") return value.draft;
  if (value.kind === "content_approval" && field.name === "title") return value.title;
  return undefined;
}

function gatePart(thread, view, afterAnswer, heading = "h2") {
  const value = thread.interrupt.value || {};
  const kind = value.kind || thread.waiting_for;
  const scenario = scenarioNamed(thread.scenario);
  const title = `Waiting for a person: ${GATE_NAMES[kind] || humanize(kind)}`;
  const parts = [h(heading, {}, title), ...gateQuestion(value)];
  if (!isReviewer()) {
    if (value.error) parts.push(h("p", { class: "error" }, `The last answer was refused: ${value.error}`));
    parts.push(h("p", { class: "note" }, "Only a reviewer can answer this."));
    return parts;
  }
  const schema = scenario && scenario.gates && scenario.gates[kind];
  if (!schema) {
    parts.push(h("p", { class: "error" }, "This server publishes no answer form for this gate."));
    return parts;
  }
  parts.push(gateForm(thread, kind, schema, view, afterAnswer));
  return parts;
}

function gateForm(thread, kind, schema, view, afterAnswer) {
  const value = thread.interrupt.value || {};
  const prefix = nextId("gate");
  const variants = answerVariants(schema);
  const groups = new Map();
  const last = value.error ? app.answers.get(thread.thread_id) : undefined;
  const radios = variants.map((variant) => {
    const id = `${prefix}-action-${variant.action}`;
    const again = last && last.key === variant.action;
    const wrappers = variant.fields.map((field) =>
      fieldControl(field, again ? last.values[field.name] : prefill(value, field), `${prefix}-${variant.action}`),
    );
    const group = wrappers.length
      ? h("fieldset", { class: "variant", hidden: true, disabled: true }, h("legend", {}, humanize(variant.action)), wrappers)
      : null;
    groups.set(variant.action, { group, wrappers, variant });
    return h(
      "div",
      { class: "choice" },
      h("input", {
        type: "radio",
        id,
        name: "action",
        value: variant.action,
        "aria-describedby": variant.description ? `${id}-hint` : null,
        onchange: () => choose(variant.action),
      }),
      h("label", { for: id }, humanize(variant.action)),
      variant.description ? h("span", { id: `${id}-hint`, class: "hint" }, ` ${variant.description}`) : null,
    );
  });
  const choose = (action) => {
    for (const [name, { group }] of groups) {
      if (!group) continue;
      group.hidden = name !== action;
      group.disabled = name !== action;
    }
  };
  const allWrappers = () => [...groups.values()].flatMap((g) => g.wrappers);
  const button = h("button", { type: "submit" }, "Send answer");
  const form = h(
    "form",
    {
      class: "gate-form",
      novalidate: true,
      "data-gate": kind,
      onsubmit: async (event) => {
        event.preventDefault();
        clearRefusal(form, allWrappers());
        const picked = form.querySelector("input[name=action]:checked");
        if (!picked) {
          showRefusal(form, "Choose an answer first.", []);
          return;
        }
        const { wrappers, variant } = groups.get(picked.value);
        button.disabled = true;
        try {
          const values = readFields(wrappers);
          app.answers.set(thread.thread_id, { key: picked.value, values });
          const answer = variant.answer(values);
          await startRun(thread.thread_id, { assistant_id: thread.scenario, command: { resume: answer } });
          say(`Answer sent (${humanize(picked.value)}); the run goes on.`);
          form.replaceChildren(h("p", { class: "note" }, `Answered: ${humanize(picked.value)}. Waiting for the run…`));
          afterAnswer(thread);
        } catch (error) {
          button.disabled = false;
          showRefusal(form, error.message, wrappers);
          say(`The answer was refused: ${error.message}`);
        }
      },
    },
    h("fieldset", { class: "actions" }, h("legend", {}, "Answer"), radios),
    [...groups.values()].map((g) => g.group),
    formError(),
    button,
  );
  if (value.error) {
    // the gate refused the last answer and asks again: that answer, with the reason by its field
    const again = last && groups.get(last.key);
    if (again) {
      form.querySelector(`input[name=action][value="${CSS.escape(last.key)}"]`).checked = true;
      choose(last.key);
    }
    showRefusal(form, `The last answer was refused: ${value.error}`, again ? again.wrappers : []);
  }
  return form;
}

// -- inbox ---------------------------------------------------------------------------------

async function showInbox(view) {
  if (!isReviewer()) {
    screen(
      "Inbox",
      h("h1", {}, "Inbox"),
      h("p", { class: "note" }, "Only reviewers answer the questions runs ask. Your runs that wait for a person are listed under Threads (status: waiting for a human)."),
    );
    return;
  }
  const { threads } = await api("GET", "/console/api/threads?status=waiting&limit=200");
  const details = await Promise.all(threads.map((t) => api("GET", threadPath(t.thread_id)).catch(() => null)));
  if (view !== app.view) return;
  const waiting = details.filter((t) => t && t.interrupt);
  const cards = waiting.map((thread) => inboxCard(thread, view));
  screen(
    "Inbox",
    h("h1", {}, "Inbox"),
    h("p", { class: "count" }, waiting.length ? `${waiting.length} run${waiting.length === 1 ? "" : "s"} waiting for a person` : "Nothing is waiting for a person."),
    cards,
  );
  if (!waiting.length) later(view, () => route(), 3000);
}

function inboxCard(thread, view) {
  const card = h("article", { class: "card inbox-item", "data-thread": thread.thread_id });
  let shownKey = null;
  const render = (latest) => {
    const scenario = scenarioNamed(latest.scenario);
    const title = (latest.input && scenario && latest.input[scenario.primary_field]) || latest.thread_id;
    const key = `${interruptKey(latest)}|${latest.status}`;
    if (key === shownKey) return;
    shownKey = key;
    const headingId = nextId("inbox");
    card.setAttribute("aria-labelledby", headingId);
    const body = asking(latest)
      ? gatePart(latest, view, (before) => watch(view, latest.thread_id, before, render), "h3")
      : [
          h("p", {}, statusBadge(latest.status), latest.outcome ? ` Outcome: ${latest.outcome}.` : ""),
          latest.result && latest.result.title ? h("p", {}, `${RESULT_NAMES[latest.result.kind] || "Result"}: ${latest.result.title}`) : null,
        ];
    put(
      card,
      h(
        "h2",
        { id: headingId },
        h("a", { href: `#/thread/${encodeURIComponent(latest.thread_id)}` }, `${latest.scenario}: ${title}`),
      ),
      h("p", { class: "meta" }, `Owner: ${latest.owner || "–"} · thread ${latest.thread_id}`),
      ...body,
    );
  };
  render(thread);
  return card;
}

// -- new run -------------------------------------------------------------------------------

function showNew(params, view) {
  const names = app.scenarios.map((s) => s.name);
  const chosen = names.includes(params.get("scenario")) ? params.get("scenario") : names[0];
  const scenario = scenarioNamed(chosen);
  const select = h(
    "select",
    {
      id: "new-scenario",
      name: "scenario",
      onchange: () => {
        location.hash = `#/new?scenario=${encodeURIComponent(select.value)}`;
      },
    },
    names.map((name) => h("option", { value: name }, name)),
  );
  select.value = chosen;
  if (!scenario) {
    screen("New run", h("h1", {}, "New run"), h("p", {}, "This server has no scenarios."));
    return;
  }
  const prefix = nextId("new");
  const wrappers = schemaFields(scenario.input_schema).map((field) => fieldControl(field, undefined, prefix));
  const button = h("button", { type: "submit" }, "Start run");
  const form = h(
    "form",
    {
      class: "new-run",
      novalidate: true,
      "aria-labelledby": "new-form-title",
      onsubmit: async (event) => {
        event.preventDefault();
        clearRefusal(form, wrappers);
        let threadId = null;
        button.disabled = true;
        try {
          const input = readFields(wrappers);
          threadId = (await api("POST", "/threads", {})).thread_id;
          await startRun(threadId, { assistant_id: scenario.name, input });
          say("The run has started.");
          location.hash = `#/thread/${encodeURIComponent(threadId)}`;
        } catch (error) {
          button.disabled = false;
          if (threadId) await api("DELETE", `/threads/${encodeURIComponent(threadId)}`).catch(() => null);
          showRefusal(form, error.message, wrappers);
          say(`The run was refused: ${error.message}`);
        }
      },
    },
    h("h2", { id: "new-form-title" }, `Input of a ${scenario.name} run`),
    scenario.description ? h("p", {}, scenario.description) : null,
    formError(),
    wrappers,
    button,
  );
  screen(
    "New run",
    h("h1", {}, "New run"),
    h("div", { class: "field" }, h("label", { for: "new-scenario" }, "Scenario"), select),
    form,
  );
}

// -- operations (reviewers): the run queue, workers, leader, events ------------------------

const QUEUE_STATUSES = ["queued", "running", "waiting", "done", "failed"];
const DELIVERY_STATUSES = ["pending", "started", "waiting", "done", "dead", "duplicate"];

async function showOperations(view) {
  let ops;
  try {
    ops = await api("GET", "/console/api/operations");
  } catch (error) {
    if (!(error instanceof Refusal) || error.status !== 403) throw error;
    screen("Operations", h("h1", {}, "Operations"), h("p", { class: "error" }, error.message));
    return;
  }
  if (view !== app.view) return;
  const body = h("div", { class: "operations" });
  screen("Operations", h("h1", {}, "Operations"), body);
  const refresh = async () => {
    try {
      ops = await api("GET", "/console/api/operations");
    } catch (error) {
      say(`Could not refresh the operations view: ${error.message}`);
    }
    if (view !== app.view) return;
    put(body, ...operationsParts(ops));
    later(view, refresh, 2000);
  };
  put(body, ...operationsParts(ops));
  later(view, refresh, 2000);
}

function operationsParts(ops) {
  const postgres = ops.database === "postgresql";
  const leader = ops.leader;
  return [
    definitionList([
      ["Database", postgres ? "PostgreSQL" : "SQLite"],
      ["Leader", leader ? `${leader.worker} (epoch ${leader.epoch}, since ${when(leader.since)})` : "–"],
    ]),
    h("section", { "aria-labelledby": "queue-title" }, h("h2", { id: "queue-title" }, "Run queue"), queuePart(ops)),
    h("section", { "aria-labelledby": "events-title" }, h("h2", { id: "events-title" }, "Recent events"), eventsTable(ops.events || [])),
    h(
      "section",
      { "aria-labelledby": "subscriptions-title" },
      h("h2", { id: "subscriptions-title" }, "Subscriptions"),
      subscriptionsTable(ops.subscriptions || {}),
    ),
  ];
}

/** A table with a hidden caption, column headings (a name, or [name, class]) and its rows. */
function dataTable(className, caption, head, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: className },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, head.map((name) => {
        const [text, cls] = Array.isArray(name) ? name : [name, null];
        return h("th", { scope: "col", class: cls }, text);
      }))),
      h("tbody", {}, rows),
    ),
  );
}

function queuePart(ops) {
  if (!ops.queue) return h("p", { class: "note" }, "The run queue and workers exist on PostgreSQL; this server keeps its runs in SQLite and runs them itself.");
  const workers = ops.workers || [];
  const runs = ops.runs || [];
  return [
    definitionList(QUEUE_STATUSES.map((status) => [humanize(status), number(ops.queue[status])])),
    h("h3", {}, "Workers running threads"),
    workers.length
      ? dataTable("workers", "Workers running threads", ["Worker", ["Running", "num"]], workers.map((w) =>
          h("tr", {}, h("th", { scope: "row" }, w.worker), h("td", { class: "num" }, number(w.running))),
        ))
      : h("p", {}, "No worker is running a thread."),
    h("h3", {}, "Newest runs"),
    runs.length
      ? dataTable(
          "runs",
          "Newest runs",
          ["Thread", "Scenario", "Status", "Worker", ["Attempts", "num"], "Error", "Submitted", "Started", "Finished"],
          runs.map((r) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, h("code", {}, r.thread_id)),
              h("td", {}, r.scenario || "–"),
              h("td", {}, statusBadge(r.status)),
              h("td", {}, r.worker || "–"),
              h("td", { class: "num" }, number(r.attempts)),
              h("td", {}, r.error || "–"),
              h("td", { class: "time" }, when(r.submitted_at)),
              h("td", { class: "time" }, when(r.started_at)),
              h("td", { class: "time" }, when(r.finished_at)),
            ),
          ),
        )
      : h("p", {}, "The queue has no runs yet."),
  ];
}

function eventsTable(events) {
  if (!events.length) return h("p", {}, "No events yet.");
  return dataTable(
    "events",
    "Recent events",
    ["Event", "Source", "Time", "Data", "Deliveries"],
    events.map((e) =>
      h(
        "tr",
        { "data-event": e.id },
        h("th", { scope: "row" }, e.type, h("br"), h("code", {}, e.id)),
        h("td", {}, e.source || "–"),
        h("td", { class: "time" }, when(e.time)),
        h("td", {}, h("pre", { class: "detail event-data" }, JSON.stringify(e.data, null, 2))),
        h("td", {}, deliveriesList(e)),
      ),
    ),
  );
}

function deliveriesList(event) {
  const deliveries = event.deliveries || [];
  if (!deliveries.length) return event.routed ? "No subscription" : "Not routed yet";
  return h(
    "ul",
    { class: "deliveries" },
    deliveries.map((d) =>
      h(
        "li",
        { "data-subscription": d.subscription },
        h("strong", {}, d.subscription),
        `: ${d.status}`,
        d.attempts ? `, ${d.attempts} attempt${d.attempts === 1 ? "" : "s"}` : "",
        d.thread_id ? [", thread ", h("code", {}, d.thread_id)] : "",
        d.error ? h("span", { class: "error" }, ` ${d.error}`) : "",
      ),
    ),
  );
}

function subscriptionsTable(subscriptions) {
  const names = Object.keys(subscriptions).sort();
  if (!names.length) return h("p", {}, "No deliveries yet.");
  return dataTable(
    "subscriptions",
    "Deliveries per subscription and status",
    ["Subscription", ...DELIVERY_STATUSES.map((s) => [humanize(s), "num"])],
    names.map((name) =>
      h(
        "tr",
        { "data-subscription": name },
        h("th", { scope: "row" }, name),
        DELIVERY_STATUSES.map((status) => h("td", { class: "num" }, number(subscriptions[name][status] || 0))),
      ),
    ),
  );
}

// -- start ---------------------------------------------------------------------------------

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_NAME);
  app.me = null;
  stopTimers();
  app.view++;
  say("Signed out.");
  showSignIn("");
});
signIn().catch((error) => {
  screen("Error", h("h1", {}, "The console could not start"), h("p", { class: "error" }, error.message));
});
