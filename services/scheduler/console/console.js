// The scheduler's console: a page that speaks to this scheduler's own API (JSON-RPC on `/`,
// device data through `/api/scheduler/*`), with the token kept for the tab.
"use strict";

const ERROR_TYPES = {4000: "ValueError", 4001: "UnauthorizedError", 4003: "NotAuthorizedError",
  4004: "NotFoundError", 4009: "AlreadyExistsError", 5000: "RuntimeError"};
const REFRESH_MS = 5000;
const PAGE_SIZE = 100;

const state = {
  token: sessionStorage.getItem("scheduler.token") || "",
  admin: sessionStorage.getItem("scheduler.admin") || "",
  timer: null,
  stream: null,
};

class ApiError extends Error {
  constructor(type, message, status) { super(message); this.type = type; this.status = status; }
}

// ---- small helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "style") el.setAttribute("style", value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function toast(message, error) {
  const box = h("div", {class: error ? "error" : ""}, message);
  document.getElementById("toast").append(box);
  setTimeout(() => box.remove(), 6000);
}

const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

// Building a formatter costs far more than using one: one per zone, kept.
const formatters = new Map();
function absolute(at, zone) {
  if (!at) return "–";
  const key = zone || browserZone;
  let format = formatters.get(key);
  if (!format) {
    format = new Intl.DateTimeFormat("en-GB", {timeZone: key, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short"});
    formatters.set(key, format);
  }
  return format.format(new Date(at));
}

function relative(at) {
  if (!at) return "";
  const secs = Math.round((new Date(at).getTime() - Date.now()) / 1000);
  const abs = Math.abs(secs);
  if (abs < 2) return "just now";
  const [n, unit] = abs < 60 ? [abs, "s"] : abs < 3600 ? [Math.round(abs / 60), "min"]
    : abs < 86400 ? [Math.round(abs / 3600), "h"] : [Math.round(abs / 86400), "d"];
  return secs >= 0 ? `in ${n} ${unit}` : `${n} ${unit} ago`;
}

function when(at, zone) {
  if (!at) return h("span", {class: "muted"}, "–");
  const local = zone && zone !== browserZone
    ? h("div", {class: "muted"}, `${absolute(at)} here`) : null;
  return h("span", {title: new Date(at).toISOString()}, absolute(at, zone), " ",
    h("span", {class: "muted"}, `(${relative(at)})`), local);
}

function duration(secs) {
  if (secs === null || secs === undefined) return "–";
  if (secs < 60) return `${secs.toFixed(1)} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s`;
  return `${Math.floor(secs / 3600)} h ${Math.round((secs % 3600) / 60)} min`;
}

function statusBadge(status) {
  const kind = {dispatched: "ok", completed: "ok", active: "ok", running: "ok",
    failed: "bad", timeout: "bad", killed: "bad", skipped: "warn", coalesced: "warn",
    cancelled: "idle", paused: "warn", pending: "idle", buffered: "idle", preempted: "warn",
    open: "bad", resolved: "ok", late: "bad", failing: "bad", missing: "bad"}[status] || "idle";
  return h("span", {class: `status s-${kind}`}, status);
}

// ---- talking to the scheduler --------------------------------------------------------

function headers(admin) {
  const token = admin ? state.admin : state.token;
  const out = {"Content-Type": "application/json"};
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

function setToken(token, admin) {
  if (admin) { state.admin = token; sessionStorage.setItem("scheduler.admin", token); }
  else { state.token = token; sessionStorage.setItem("scheduler.token", token); }
}

// Asks for a token in the dialog; resolves to it, or to null when dismissed (or when the
// operator leaves the page).
function askToken(why, admin, refused) {
  return new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const cancel = document.getElementById("token-cancel");
    const input = document.getElementById("token-input");
    document.getElementById("token-title").textContent = admin ? "Admin token needed" : "Token needed";
    const explanation = document.getElementById("token-why");
    explanation.textContent = why;
    explanation.classList.toggle("refused", !!refused);
    input.value = "";
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      form.removeEventListener("submit", submit);
      cancel.removeEventListener("click", dismiss);
      dialog.removeEventListener("close", dismiss);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const submit = (event) => { event.preventDefault(); done(input.value.trim() || null); };
    const dismiss = () => done(null);
    form.addEventListener("submit", submit);
    cancel.addEventListener("click", dismiss);
    dialog.addEventListener("close", dismiss);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

// Sends until the scheduler takes the token: each token typed is tried, and a refused one
// brings the prompt back saying so, until the operator gives up (Cancel).
async function withToken(send, admin) {
  for (;;) {
    const response = await send();
    if (response.status !== 401) return response;
    const tried = admin ? state.admin : state.token;
    const why = tried
      ? "That token was refused. Check it and give it again."
      : admin ? "This action needs the admin token."
        : "This scheduler asks for a token; it is kept for this tab only.";
    const token = await askToken(why, admin, !!tried);
    if (!token) throw new ApiError("UnauthorizedError", tried ? "the token was refused" : "no token given", 401);
    setToken(token, admin);
  }
}

let rpcId = 0;
// A JSON-RPC call. With `admin`, the call carries the admin token, asked for when there is
// none yet or when it is refused (unless `prompt` is false).
async function rpc(method, params, options = {}) {
  const admin = !!options.admin;
  const prompt = options.prompt !== false;
  if (admin && !state.admin) {
    const token = prompt ? await askToken("This action needs the admin token.", true) : null;
    if (!token) throw new ApiError("UnauthorizedError", "the admin token is needed", 401);
    setToken(token, true);
  }
  const body = JSON.stringify({jsonrpc: "2.0", id: ++rpcId, method, params: params || {}});
  const response = await withToken(() => fetch("/", {method: "POST", headers: headers(admin), body}), admin);
  const answer = await response.json();
  if (answer.error) {
    const type = (answer.error.data && answer.error.data.type) || ERROR_TYPES[answer.error.code] || "Error";
    if (type === "UnauthorizedError" && admin && prompt) {
      const token = await askToken("That admin token was refused. Check it and give it again.", true, true);
      if (token) { setToken(token, true); return rpc(method, params, options); }
    }
    throw new ApiError(type, answer.error.message, response.status);
  }
  return answer.result;
}

async function rest(path, options) {
  const method = (options && options.method) || "GET";
  const response = await withToken(() => fetch(path, {method, headers: headers(false)}), false);
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const message = value && (value.detail || value.error || JSON.stringify(value));
    throw new ApiError(`HTTP ${response.status}`, typeof message === "string" ? message : JSON.stringify(message), response.status);
  }
  return value;
}

// ---- the trigger in plain words ------------------------------------------------------

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const DAY_NAMES = {sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6};
const MONTHS = ["", "January", "February", "March", "April", "May", "June", "July", "August",
  "September", "October", "November", "December"];
const MONTH_NAMES = {jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12};
const MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"};

function pad(n) { return String(n).padStart(2, "0"); }

function listWords(field, names, lookup) {
  return field.split(",").map((part) => {
    const value = (text) => {
      const key = text.toLowerCase();
      const n = lookup && key in lookup ? lookup[key] : Number(text);
      return names ? names[n] || text : text;
    };
    const [range, step] = part.split("/");
    const [a, b] = range.split("-");
    let words = b !== undefined ? `${value(a)} to ${value(b)}` : range === "*" ? "every" : value(a);
    if (step) words = `every ${step}${range === "*" ? "" : ` from ${words}`}`;
    return words;
  }).join(", ");
}

function describeCron(expression, zone) {
  let text = (expression || "").trim();
  text = MACROS[text.toLowerCase()] || text;
  const parts = text.split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) return expression;
  const [sec, min, hour, dom, month, dow] = parts.length === 6 ? parts : ["0", ...parts];
  const plain = (f) => /^\d+$/.test(f);
  let time;
  if (plain(min) && hour.split(",").every(plain)) {
    time = "at " + hour.split(",").map((h) => `${pad(h)}:${pad(min)}${sec !== "0" ? ":" + pad(sec) : ""}`).join(", ");
  } else if (min.startsWith("*/") && hour === "*") {
    time = `every ${min.slice(2)} minutes`;
  } else if (min === "*" && hour === "*") {
    time = "every minute";
  } else if (plain(min) && hour === "*") {
    time = `at minute ${min} of every hour`;
  } else if (plain(min) && hour.startsWith("*/")) {
    time = `at minute ${min} every ${hour.slice(2)} hours`;
  } else {
    time = `at minute ${min}, hour ${hour}`;
  }
  if (sec !== "0" && !plain(min)) time = `at second ${sec}, ${time}`;
  const days = [];
  if (dow !== "*") days.push(`on ${listWords(dow, DAYS, DAY_NAMES)}`);
  if (dom !== "*") days.push(`on day ${listWords(dom)} of the month`);
  if (month !== "*") days.push(`in ${listWords(month, MONTHS, MONTH_NAMES)}`);
  const words = [time, ...(days.length ? [days.join(dow !== "*" && dom !== "*" ? " or " : " ")] : []), zone]
    .filter(Boolean).join(", ").replace(/, (on|in) /g, " $1 ").replace(/^(.*?) (on|in) /, "$1 $2 ");
  return parts.some((f) => f.startsWith("H")) ? `${words} (H: chosen by the schedule's id)` : words;
}

function describeTrigger(trigger) {
  if (!trigger) return "";
  switch (trigger.type) {
    case "cron": return describeCron(trigger.expression, trigger.timezone);
    case "interval": return `every ${duration(trigger.every_secs).replace(".0 s", " s")}`;
    case "daily_times": return `every day at ${trigger.times.join(", ")}, ${trigger.timezone}`;
    case "once": return `once, at ${absolute(trigger.at, "UTC")}`;
    default: return trigger.type;
  }
}

function triggerExpression(trigger) {
  if (!trigger) return "";
  if (trigger.type === "cron") return trigger.expression;
  if (trigger.type === "interval") return `${trigger.every_secs}s`;
  if (trigger.type === "daily_times") return trigger.times.join(",");
  if (trigger.type === "once") return trigger.at;
  return "";
}

function targetText(target) {
  if (!target) return "";
  const bits = ["endpoint", "runner", "device", "pool", "method", "path", "channel", "graph_id", "job_type", "task"]
    .map((k) => target[k]).filter(Boolean);
  return `${target.type}${bits.length ? " " + bits.join(" ") : ""}`;
}

// ---- pages ---------------------------------------------------------------------------

const main = () => document.getElementById("main");

function page(title, ...children) {
  const root = main();
  root.replaceChildren(h("h1", {}, title), ...children);
  document.title = `${title} · Scheduler console`;
}

function showError(container, error) {
  container.replaceChildren(h("p", {class: "s-bad", role: "alert"}, `${error.type || "Error"}: ${error.message}`));
}

function live(refresh) {
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    if (document.getElementById("live").checked && !document.hidden) refresh().catch(() => {});
  }, REFRESH_MS);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", {class: "muted"}, empty || "Nothing here.");
  return h("div", {class: "table-wrap"}, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", {scope: "col"}, x)))),
    h("tbody", {}, rows)));
}

function formValues(form) {
  return Object.fromEntries([...new FormData(form).entries()].map(([k, v]) => [k, String(v).trim()]));
}

// Schedules: a filtered, paged table.
async function schedulesPage(query) {
  const filters = h("form", {class: "filters", id: "schedule-filters"},
    h("label", {}, "Owner", h("input", {name: "owner", value: query.get("owner") || ""})),
    h("label", {}, "Target kind", h("select", {name: "target_type"},
      ["", "graph_execution", "rpc", "http", "redis_publish", "device_job", "system_task"]
        .map((v) => h("option", {value: v, selected: query.get("target_type") === v}, v || "any")))),
    h("label", {}, "Paused", h("select", {name: "paused"},
      [["", "any"], ["true", "paused"], ["false", "not paused"]].map(([v, t]) =>
        h("option", {value: v, selected: query.get("paused") === v}, t)))),
    h("label", {}, "Tag", h("input", {name: "tag", value: query.get("tag") || ""})),
    h("button", {type: "submit"}, "Filter"),
    h("button", {type: "button", class: "secondary", onclick: () => { location.hash = "#/schedules/new"; }}, "New schedule"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams(Object.entries(formValues(filters)).filter(([, v]) => v));
    location.hash = `#/schedules?${params}`;
  });
  const body = h("div", {id: "schedules"});
  page("Schedules", filters, body);
  const cursors = [null];
  const load = async (cursor) => {
    const params = {limit: PAGE_SIZE};
    for (const key of ["owner", "target_type", "tag"]) if (query.get(key)) params[key] = query.get(key);
    if (query.get("paused")) params.paused = query.get("paused") === "true";
    if (cursor) params.cursor = cursor;
    const result = await rpc("list_schedules", params);
    const rows = result.schedules.map((s) => h("tr", {"data-id": s.id},
      h("td", {}, h("a", {href: `#/schedule/${encodeURIComponent(s.id)}?owner=${encodeURIComponent(s.owner)}`}, s.name || s.id),
        h("div", {class: "muted mono"}, s.id)),
      h("td", {}, s.owner),
      h("td", {}, describeTrigger(s.trigger), h("div", {class: "muted mono"}, triggerExpression(s.trigger))),
      h("td", {class: "mono"}, targetText(s.target)),
      h("td", {}, s.paused ? h("span", {}, statusBadge("paused"), s.paused_reason ? h("div", {class: "muted"}, s.paused_reason) : null) : statusBadge("active")),
      h("td", {}, when(s.next_run_time, s.timezone)),
      h("td", {}, s.last_run ? h("span", {}, statusBadge(s.last_run.status), h("div", {class: "muted"}, relative(s.last_run.scheduled_time))) : h("span", {class: "muted"}, "–")),
      h("td", {}, (s.tags || []).join(", "))));
    const pager = h("div", {class: "actions"},
      cursors.length > 1 ? h("button", {class: "secondary", onclick: () => { cursors.pop(); load(cursors[cursors.length - 1]); }}, "Previous page") : null,
      result.next_cursor ? h("button", {class: "secondary", onclick: () => { cursors.push(result.next_cursor); load(result.next_cursor); }}, "Next page") : null);
    body.replaceChildren(
      table(["Schedule", "Owner", "Trigger", "Target", "State", "Next run", "Last run", "Tags"], rows, "No schedules match."),
      pager);
  };
  try { await load(null); } catch (error) { showError(body, error); }
  live(() => load(cursors[cursors.length - 1]));
}

// Create and edit: a form with a live preview and the API's messages at their fields.
function fieldFor(message) {
  const m = message.toLowerCase();
  if (m.includes("exclude") || m.includes("calendar")) return "exclude";
  if (m.includes("zone")) return "timezone";
  if (m.includes("cron") || m.includes("expression")) return "expression";
  if (m.includes("daily_times") || m.includes("times")) return "times";
  if (m.includes("interval")) return "every_secs";
  if (m.includes("start_at") || m.includes("end_at") || m.includes("instant")) return "at";
  if (m.includes("policy")) return "policy";
  if (m.includes("owner")) return "owner";
  if (m.includes("target") || m.includes("endpoint") || m.includes("runner") || m.includes("job_type")) return "target";
  if (m.includes(" id") || m.startsWith("id")) return "id";
  if (m.includes("name")) return "name";
  return "form";
}

async function scheduleForm(existing) {
  const t = existing ? existing.trigger : {type: "cron", expression: "0 9 * * 1-5", timezone: browserZone};
  const field = (label, name, input) => h("label", {class: name === "target" || name === "policy" ? "wide" : ""},
    label, input, h("span", {class: "field-error", id: `error-${name}`, "aria-live": "polite"}));
  const form = h("form", {class: "form card", id: "schedule-form", novalidate: true},
    field("Id (optional)", "id", h("input", {name: "id", value: existing ? existing.id : "", disabled: !!existing})),
    field("Name", "name", h("input", {name: "name", value: existing ? existing.name : ""})),
    field("Owner", "owner", h("input", {name: "owner", value: existing ? existing.owner : "", required: true, disabled: !!existing})),
    field("Trigger", "type", h("select", {name: "type"}, ["cron", "interval", "daily_times", "once"].map((v) =>
      h("option", {value: v, selected: t.type === v}, v)))),
    field("Cron expression", "expression", h("input", {name: "expression", value: t.expression || "", class: "mono"})),
    field("Time zone", "timezone", h("input", {name: "timezone", value: t.timezone || "UTC"})),
    field("Every (seconds)", "every_secs", h("input", {name: "every_secs", type: "number", min: "1", value: t.every_secs || ""})),
    field("Daily times (HH:MM, comma-separated)", "times", h("input", {name: "times", value: (t.times || []).join(",")})),
    field("Once at (RFC 3339)", "at", h("input", {name: "at", value: t.at || ""})),
    field("Skip the dates of calendars (comma-separated)", "exclude", h("input", {name: "exclude", value: (t.exclude || []).join(",")})),
    field("Tags (comma-separated)", "tags", h("input", {name: "tags", value: existing ? (existing.tags || []).join(",") : ""})),
    field("Target (JSON)", "target", h("textarea", {name: "target"}, JSON.stringify(existing ? existing.target
      : {type: "rpc", endpoint: "backend", method: "cleanup", params: {}}, null, 2))),
    field("Policy (JSON, optional)", "policy", h("textarea", {name: "policy"}, existing ? JSON.stringify(existing.policy) : "")),
    h("div", {class: "wide"}, h("h2", {}, "Next 5 fire times"),
      h("p", {class: "muted", id: "preview-words"}), h("ol", {class: "preview", id: "preview"})),
    h("span", {class: "field-error wide", id: "error-form", role: "alert"}),
    h("div", {class: "actions wide"}, h("button", {type: "submit"}, existing ? "Save changes" : "Create schedule"),
      h("button", {type: "button", class: "secondary", onclick: () => history.back()}, "Cancel")));
  page(existing ? `Edit ${existing.name}` : "New schedule", form);

  const values = () => formValues(form);
  const trigger = () => {
    const v = values();
    const list = (text) => text.split(",").map((x) => x.trim()).filter(Boolean);
    // What the form does not edit (the window) is kept as it was.
    const kept = {start_at: t.start_at, end_at: t.end_at, exclude: list(v.exclude || "")};
    switch (v.type) {
      case "cron": return {type: "cron", expression: v.expression, timezone: v.timezone || "UTC", ...kept};
      case "interval": return {type: "interval", every_secs: Number(v.every_secs), ...kept};
      case "daily_times": return {type: "daily_times", times: list(v.times), timezone: v.timezone || "UTC", ...kept};
      default: return {type: "once", at: v.at, ...kept};
    }
  };
  const clearErrors = () => form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
  const showAt = (name, message) => {
    const target = form.querySelector(`#error-${name}`) || form.querySelector("#error-form");
    target.textContent = message;
  };
  const toggle = () => {
    const type = values().type;
    const shown = {cron: ["expression", "timezone"], interval: ["every_secs"], daily_times: ["times", "timezone"], once: ["at"]}[type];
    for (const name of ["expression", "timezone", "every_secs", "times", "at"]) {
      form.querySelector(`[name=${name}]`).closest("label").hidden = !shown.includes(name);
    }
  };
  let previewTimer = null;
  const preview = async () => {
    const list = form.querySelector("#preview");
    const words = form.querySelector("#preview-words");
    const tr = trigger();
    words.textContent = describeTrigger(tr);
    for (const name of ["expression", "timezone"]) form.querySelector(`#error-${name}`).textContent = "";
    if (tr.type !== "cron") {
      list.replaceChildren(h("li", {class: "muted"}, "Shown for cron triggers; the schedule lists its own once saved."));
      return;
    }
    try {
      // An H field becomes a value chosen by the schedule's id: the one given, if any.
      const hashKey = (existing ? existing.id : values().id) || undefined;
      const times = await rpc("next_fire_times", {cron: tr.expression, timezone: tr.timezone, count: 5, hash_key: hashKey, exclude: tr.exclude});
      list.replaceChildren(...times.map((at) => h("li", {}, absolute(at, tr.timezone), " ",
        h("span", {class: "muted"}, `(${absolute(at)} here, ${relative(at)})`))));
    } catch (error) {
      list.replaceChildren();
      showAt(fieldFor(error.message) === "timezone" ? "timezone" : "expression", error.message);
    }
  };
  form.addEventListener("input", () => { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 250); });
  form.querySelector("[name=type]").addEventListener("change", () => { toggle(); preview(); });
  toggle();
  preview();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    const v = values();
    let target, policy;
    try { target = JSON.parse(v.target); } catch (e) { showAt("target", `not JSON: ${e.message}`); return; }
    try { policy = v.policy ? JSON.parse(v.policy) : undefined; } catch (e) { showAt("policy", `not JSON: ${e.message}`); return; }
    if (!existing && !v.owner) { showAt("owner", "owner is needed: the user the schedule belongs to"); return; }
    const tags = v.tags ? v.tags.split(",").map((x) => x.trim()).filter(Boolean) : [];
    try {
      const saved = existing
        ? await rpc("update_schedule", {id: existing.id, owner: existing.owner, name: v.name || undefined, trigger: trigger(), target, policy, tags})
        : await rpc("create_schedule", {id: v.id || undefined, name: v.name || undefined, owner: v.owner, trigger: trigger(), target, policy, tags});
      toast(`Saved ${saved.name}`);
      location.hash = `#/schedule/${encodeURIComponent(saved.id)}?owner=${encodeURIComponent(saved.owner)}`;
    } catch (error) {
      showAt(fieldFor(error.message), `${error.type}: ${error.message}`);
    }
  });
}

// One schedule: what it is, what comes, what ran; its actions.
async function schedulePage(id, query) {
  const owner = query.get("owner") || "";
  const body = h("div", {});
  page("Schedule", body);
  const load = async () => {
    const s = await rpc("get_schedule", {id, owner});
    const runs = await rpc("list_runs", {schedule_id: id, owner, limit: 50});
    const history = await rpc("list_changes", {schedule_id: id, limit: 20});
    const incidents = await rpc("list_alerts", {schedule_id: id, owner: owner || undefined, limit: 20});
    const excluded = (s.trigger && s.trigger.exclude) || [];
    const calendars = excluded.length ? await rpc("list_calendars", {}) : [];
    const skips = excluded.map((name) => {
      const c = calendars.find((c) => c.name === name);
      const days = c ? [...c.dates, ...c.weekdays].join(", ") : "";
      return h("div", {class: "calendar"}, h("strong", {}, name),
        c ? ` (${c.zone}): ${days || "no date yet"}` : " (not configured: its occurrences cannot be planned)");
    });
    document.querySelector("h1").textContent = s.name || s.id;
    const reason = h("input", {id: "pause-reason", placeholder: "reason (kept and shown)", "aria-label": "Pause reason"});
    const act = async (label, call) => {
      try { await call(); toast(label); await load(); } catch (error) { toast(`${error.type}: ${error.message}`, true); }
    };
    const actions = h("div", {class: "actions"},
      h("button", {class: "secondary", onclick: () => { location.hash = `#/schedules/edit/${encodeURIComponent(id)}?owner=${encodeURIComponent(owner)}`; }}, "Edit"),
      s.paused
        ? h("button", {id: "resume", onclick: () => act("Resumed", () => rpc("resume_schedule", {id, owner}))}, "Resume")
        : h("span", {}, reason, " ", h("button", {id: "pause", onclick: () => act("Paused", () => rpc("pause_schedule", {id, owner, reason: reason.value || undefined}))}, "Pause")),
      h("button", {id: "run-now", onclick: () => act("Queued a run now", () => rpc("trigger_schedule", {id, owner}))}, "Run now"),
      h("button", {class: "danger", id: "delete", onclick: () => {
        if (confirm(`Delete the schedule ${s.name}? Its runs stay in the ledger.`)) {
          rpc("delete_schedule", {id, owner}).then(() => { toast("Deleted"); location.hash = "#/schedules"; },
            (error) => toast(`${error.type}: ${error.message}`, true));
        }
      }}, "Delete"));
    const backfill = h("form", {class: "filters", id: "backfill"},
      h("label", {}, "From (UTC)", h("input", {type: "datetime-local", name: "start", required: true})),
      h("label", {}, "To (UTC)", h("input", {type: "datetime-local", name: "end", required: true})),
      h("button", {type: "submit"}, "Backfill"));
    backfill.addEventListener("submit", (event) => {
      event.preventDefault();
      const v = formValues(backfill);
      act("Backfill queued", async () => {
        const result = await rpc("backfill_schedule", {id, owner, start: new Date(v.start + "Z").toISOString(), end: new Date(v.end + "Z").toISOString()});
        toast(`Queued ${result.queued}, ${result.already_in_ledger} already in the ledger`);
      });
    });
    const info = h("dl", {class: "kv card"},
      h("dt", {}, "Id"), h("dd", {class: "mono"}, s.id),
      h("dt", {}, "Owner"), h("dd", {}, s.owner),
      h("dt", {}, "Trigger"), h("dd", {}, describeTrigger(s.trigger), " ", h("code", {}, triggerExpression(s.trigger))),
      h("dt", {}, "Skips the dates of"), h("dd", {id: "skips"}, ...(skips.length ? skips : ["–"])),
      h("dt", {}, "Target"), h("dd", {}, h("code", {}, JSON.stringify(s.target))),
      h("dt", {}, "Policy"), h("dd", {}, h("code", {}, JSON.stringify(s.policy))),
      h("dt", {}, "State"), h("dd", {}, s.paused ? statusBadge("paused") : statusBadge("active"), s.paused_reason ? ` ${s.paused_reason}` : ""),
      h("dt", {}, "Tags"), h("dd", {}, (s.tags || []).join(", ") || "–"));
    const times = s.next_fire_times || [];
    const upcoming = times.length
      ? h("ol", {class: "preview"}, times.map((at) => h("li", {}, when(at, s.timezone))))
      : h("p", {class: "muted", id: "upcoming-none"}, s.paused
        ? "None while the schedule is paused: resuming it fires from then on."
        : "None: the trigger fires no more.");
    const rows = runs.runs.map((r) => {
      const lag = r.finished_at ? (new Date(r.finished_at) - new Date(r.scheduled_time)) / 1000 : null;
      return h("tr", {}, h("td", {}, statusBadge(r.status)), h("td", {}, when(r.scheduled_time, s.timezone)),
        h("td", {}, when(r.finished_at, s.timezone)), h("td", {}, lag === null ? "–" : duration(lag)),
        h("td", {}, r.attempts), h("td", {class: "mono"}, r.detail || "–"));
    });
    const short = (v) => { const text = JSON.stringify(v) ?? "null"; return text.length > 60 ? `${text.slice(0, 59)}…` : text; };
    // A field that came into being (a created schedule's) reads as its value; a changed one as
    // before → after.
    const changed = (c) => Object.entries(c.changes || {})
      .filter(([, pair]) => !(pair && typeof pair === "object" && pair.before === null && pair.after === null))
      .map(([field, pair]) => {
        if (!pair || typeof pair !== "object" || !("before" in pair)) return `${field}: ${short(pair)}`;
        if (pair.before === null && ["create", "import", "sync"].includes(c.action)) return `${field} = ${short(pair.after)}`;
        return `${field}: ${short(pair.before)} → ${short(pair.after)}`;
      }).join("; ");
    const changes = history.changes.map((c) => h("tr", {}, h("td", {}, when(c.at, s.timezone)), h("td", {}, c.action),
      h("td", {}, c.actor), h("td", {}, c.route), h("td", {class: "mono"}, changed(c) || "–")));
    const alerts = incidents.map((a) => h("tr", {}, h("td", {}, statusBadge(a.kind)), h("td", {}, statusBadge(a.state)),
      h("td", {}, when(a.opened_at, s.timezone)), h("td", {}, when(a.resolved_at, s.timezone)),
      h("td", {}, a.summary), h("td", {class: "mono"}, a.state === "open" ? a.last_error || "–" : a.resolution || "–")));
    body.replaceChildren(actions, info,
      h("h2", {}, "Alerts"), h("div", {id: "alerts"}, table(["Kind", "State", "Opened", "Resolved", "What happened", "Last error / resolution"], alerts,
        "No incident: its work has happened as its checks ask (policy.alerts).")),
      h("h2", {}, "Upcoming"), upcoming,
      h("h2", {}, "Runs"), h("div", {id: "runs"}, table(["Status", "Scheduled", "Finished", "Lag", "Attempts", "Detail"], rows, "No runs yet.")),
      h("h2", {}, "History"), h("div", {id: "history"}, table(["When", "Action", "Who", "Route", "What changed"], changes, "No change recorded.")),
      h("h2", {}, "Backfill"), backfill);
  };
  try { await load(); } catch (error) { showError(body, error); }
  live(async () => { if (!document.activeElement || !body.contains(document.activeElement)) await load(); });
}

// A device's name with its runner's, when the farm has several runners.
function onRunner(name, runner, status) {
  return runner && (status.runners || []).length > 1 ? `${name} · ${runner}` : name;
}

// Devices and pools, and the queue.
async function devicesPage(query) {
  const filter = h("input", {id: "queue-filter", placeholder: "phone, pool or job type", value: query.get("q") || "", "aria-label": "Filter the queue"});
  const cards = h("div", {class: "grid", id: "devices"});
  const queue = h("div", {id: "queue"});
  page("Devices and pools", cards, h("h2", {}, "Queue"), h("div", {class: "filters"}, h("label", {}, "Filter", filter)), queue);
  const kill = (job) => async () => {
    if (!confirm(`Kill ${job.job_type} (${job.id})?`)) return;
    try { await rest(`/api/scheduler/queue/${encodeURIComponent(job.id)}/kill`, {method: "POST"}); toast("Kill sent"); load(); }
    catch (error) { toast(`${error.type}: ${error.message}`, true); }
  };
  const card = (name, state, running, pending) => h("div", {class: "card", "data-device": name},
    h("strong", {}, name), " ", h("span", {class: "muted"}, state),
    running.length ? running.map((job) => h("div", {},
      h("div", {}, h("a", {href: `#/logs/${encodeURIComponent(job.id)}`}, job.job_type), " ",
        h("span", {class: "muted"}, `running ${duration((Date.now() - new Date(job.started_at)) / 1000)}`)),
      job.progress ? h("div", {class: "progress", title: `${job.progress.percent}% ${job.progress.message || ""}`},
        h("div", {style: `width:${job.progress.percent}%`})) : null,
      h("button", {class: "danger", onclick: kill(job)}, "Kill"))) : h("div", {class: "muted"}, "idle"),
    h("div", {class: "muted"}, `${pending} pending`));
  const load = async () => {
    const status = await rest("/api/scheduler/status");
    cards.replaceChildren(
      ...status.devices.map((d) => card(onRunner(d.label ? `${d.serial} (${d.label})` : d.serial, d.runner, status), d.state, d.running ? [d.running] : [], d.pending)),
      ...status.pools.map((p) => card(onRunner(`pool:${p.name}`, p.runner, status), `${p.running.length}/${p.concurrency} running`, p.running, p.pending)));
    const jobs = await rest("/api/scheduler/queue");
    const q = filter.value.toLowerCase();
    const rows = jobs.filter((j) => !q || `${j.device} ${j.job_type}`.toLowerCase().includes(q)).map((j) => h("tr", {},
      h("td", {}, j.device, j.runner ? h("div", {class: "muted"}, j.runner) : null), h("td", {}, j.job_type), h("td", {}, j.priority), h("td", {}, when(j.enqueued_at)),
      h("td", {}, h("button", {class: "secondary", onclick: kill(j)}, "Remove"))));
    queue.replaceChildren(table(["Queue", "Job type", "Priority", "Enqueued", ""], rows, "Nothing waits."));
  };
  filter.addEventListener("input", () => load().catch(() => {}));
  try { await load(); } catch (error) { showError(cards, error); }
  live(load);
}

// The fleet: every runner and its phones, their health and quarantine.
const PHONE_STATES = ["idle", "busy", "held", "quarantined", "offline", "unreachable"];
function phoneBadge(state) {
  const kind = {idle: "ok", busy: "ok", held: "warn", quarantined: "bad", offline: "idle", unreachable: "bad"}[state] || "idle";
  return h("span", {class: `status s-${kind}`}, state);
}

async function fleetPage(query) {
  const tags = h("input", {id: "fleet-tags", placeholder: "tiktok, sim", value: query.get("tags") || "", "aria-label": "Phones carrying these tags"});
  const stateFilter = h("select", {id: "fleet-state", "aria-label": "State"}, h("option", {value: ""}, "any"),
    ...PHONE_STATES.map((s) => h("option", {value: s, selected: query.get("state") === s}, s)));
  const filters = h("form", {class: "filters"}, h("label", {}, "Tags", tags), h("label", {}, "State", stateFilter),
    h("button", {type: "submit"}, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/fleet?${new URLSearchParams(Object.entries({tags: tags.value, state: stateFilter.value}).filter(([, v]) => v))}`;
  });
  const runners = h("div", {class: "grid", id: "runners"});
  const phones = h("div", {id: "phones"});
  page("Fleet", filters, runners, h("h2", {}, "Phones"), phones);
  const act = (phone, quarantine) => async () => {
    let params = {runner: phone.runner, serial: phone.serial};
    if (quarantine) {
      const reason = prompt(`Why is ${phone.serial} quarantined?`, "");
      if (reason === null) return;
      params = {...params, reason: reason || null};
    }
    try {
      await rpc(quarantine ? "quarantine_device" : "release_device", params, {admin: true});
      toast(`${phone.serial} ${quarantine ? "quarantined" : "released"}`);
      load();
    } catch (error) { toast(`${error.type}: ${error.message}`, true); }
  };
  const load = async () => {
    const params = {};
    const wanted = tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (wanted.length) params.tags = wanted;
    if (stateFilter.value) params.state = stateFilter.value;
    const fleet = await rpc("list_fleet", params);
    runners.replaceChildren(...fleet.runners.map((r) => h("div", {class: "card", "data-runner": r.name},
      h("strong", {}, r.name), " ", r.reports_as && r.reports_as !== r.name ? h("span", {class: "muted"}, r.reports_as) : null, " ",
      h("span", {class: `status s-${r.reachable ? "ok" : "bad"}`}, r.reachable ? "reachable" : "unreachable"),
      h("div", {class: "muted"}, `${r.phones} phone${r.phones === 1 ? "" : "s"} · seen ${r.last_seen ? relative(r.last_seen) : "never"}`),
      r.error ? h("div", {class: "s-bad"}, r.error) : null)));
    const rows = fleet.phones.map((p) => {
      const health = p.health || {};
      const battery = health.battery_percent == null ? "–" : `${health.battery_percent} %${health.charging ? " ⚡" : ""}`;
      const temperature = health.temperature_celsius == null ? "–" : `${health.temperature_celsius.toFixed(1)} °C`;
      const why = p.quarantine ? `${p.quarantine.reason} (by ${p.quarantine.by}, ${relative(p.quarantine.since)})` : p.held || "";
      return h("tr", {"data-phone": `${p.runner}/${p.serial}`},
        h("td", {}, h("strong", {}, p.serial), p.label ? h("div", {class: "muted"}, p.label) : null,
          health.model ? h("div", {class: "muted"}, `${health.model}, Android ${health.android_version || "?"}`) : null),
        h("td", {}, p.runner),
        h("td", {}, p.tags.map((t) => h("span", {class: "tag"}, t))),
        h("td", {}, phoneBadge(p.state), why ? h("div", {class: "muted"}, why) : null),
        h("td", {}, battery), h("td", {}, temperature),
        h("td", {}, p.running ? h("a", {href: `#/logs/${encodeURIComponent(p.running.id)}`}, p.running.job_type) : h("span", {class: "muted"}, "–")),
        h("td", {}, String(p.queued)),
        h("td", {}, p.state === "unreachable" ? null : p.quarantine
          ? h("button", {class: "secondary", "data-action": "release", onclick: act(p, false)}, "Release")
          : h("button", {class: "secondary", "data-action": "quarantine", onclick: act(p, true)}, "Quarantine")));
    });
    phones.replaceChildren(table(["Phone", "Runner", "Tags", "State", "Battery", "Temperature", "Running", "Queued", ""], rows, "No phone matches."));
  };
  try { await load(); } catch (error) { showError(phones, error); }
  live(load);
}

// What will fire over the next 24 h: a bar per minute that has occurrences, the busiest
// minutes named, and the first occurrences listed.
const PREVIEW_HOURS = 24;
const PREVIEW_LISTED = 20;
async function previewPage(query) {
  const owner = h("input", {id: "preview-owner", value: query.get("owner") || "", "aria-label": "Owner"});
  const tag = h("input", {id: "preview-tag", value: query.get("tag") || "", "aria-label": "Tag"});
  const filters = h("form", {class: "filters"}, h("label", {}, "Owner", owner), h("label", {}, "Tag", tag),
    h("button", {type: "submit"}, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/preview?${new URLSearchParams(Object.entries({owner: owner.value, tag: tag.value}).filter(([, v]) => v))}`;
  });
  const summary = h("p", {id: "preview-summary", class: "muted"});
  const chart = h("div", {class: "card preview-chart", id: "preview-chart", role: "img", "aria-label": "Occurrences per minute over the next 24 hours"});
  const axis = h("div", {class: "preview-axis"});
  const busiest = h("div", {id: "preview-busiest"});
  const fires = h("div", {id: "preview-fires"});
  page("What will fire", filters, summary, chart, axis, h("h2", {}, "The busiest minutes"), busiest,
    h("h2", {}, "The first occurrences"), fires);
  const load = async () => {
    const from = new Date();
    const to = new Date(from.getTime() + PREVIEW_HOURS * 3600 * 1000);
    const params = {from: from.toISOString(), to: to.toISOString(), limit: PREVIEW_LISTED};
    if (owner.value) params.owner = owner.value;
    if (tag.value) params.tag = tag.value;
    const preview = await rpc("preview_fires", params);
    const span = to.getTime() - from.getTime();
    const most = Math.max(1, ...preview.per_minute.map((m) => m.count));
    summary.textContent = `${preview.total} occurrence${preview.total === 1 ? "" : "s"} in the next ${PREVIEW_HOURS} h, ` +
      `in ${preview.per_minute.length} minute${preview.per_minute.length === 1 ? "" : "s"}; the busiest has ${preview.busiest.length ? preview.busiest[0].count : 0}.`;
    chart.replaceChildren(...preview.per_minute.map((m) => {
      const left = Math.max(0, (new Date(m.minute).getTime() - from.getTime()) / span * 100);
      return h("div", {class: "preview-bar", title: `${absolute(m.minute)}: ${m.count}`,
        style: `left: ${left.toFixed(3)}%; height: ${(m.count / most * 100).toFixed(1)}%`});
    }));
    axis.replaceChildren(...[0, 6, 12, 18, 24].map((hours) =>
      h("span", {}, absolute(new Date(from.getTime() + hours * 3600 * 1000)).slice(12, 17))));
    busiest.replaceChildren(table(["Minute", "Occurrences"], preview.busiest.map((m) =>
      h("tr", {"data-minute": m.minute}, h("td", {}, `${absolute(m.minute)} `, h("span", {class: "muted"}, `(${relative(m.minute)})`)),
        h("td", {}, String(m.count)))), "Nothing falls due in the next 24 h."));
    fires.replaceChildren(table(["At", "Schedule", "Owner", "Target"], preview.fires.map((f) =>
      h("tr", {}, h("td", {}, absolute(f.at)),
        h("td", {}, h("a", {href: `#/schedule/${encodeURIComponent(f.schedule_id)}?owner=${encodeURIComponent(f.owner)}`}, f.name)),
        h("td", {}, f.owner), h("td", {}, f.target_type))), "Nothing falls due in the next 24 h."));
  };
  try { await load(); } catch (error) { showError(busiest, error); }
  live(load);
}

// The last 24 h per phone, bars coloured by job type.
const PALETTE = ["#2457c5", "#1e7f4f", "#b3261e", "#9a6400", "#7b3fb0", "#00838f", "#c2185b", "#5d6d00", "#6d4c41", "#3949ab"];
function colour(type, types) {
  if (!types.has(type)) types.set(type, PALETTE[types.size % PALETTE.length]);
  return types.get(type);
}

// A timeline bar's least width and the gap kept after it on its lane (percent of 24 h), and
// the height of a lane (px).
const MIN_BAR = 0.5;
const GAP = 0.15;
const LANE = 18;

async function timelinePage() {
  const body = h("div", {class: "timeline card", id: "timeline"});
  const legend = h("div", {class: "legend", id: "legend"});
  page("Timeline, last 24 h", legend, body);
  const tooltip = h("div", {id: "tooltip", hidden: true});
  document.body.append(tooltip);
  const load = async () => {
    const phones = await rest("/api/scheduler/timeline?hours=24");
    const end = Date.now();
    const start = end - 24 * 3600 * 1000;
    const types = new Map();
    const rows = phones.map((phone) => {
      // Each bar is at least MIN_BAR wide; a bar that would overlap the one before it on a
      // lane goes to the next lane down, so runs seconds apart each stay visible and clickable.
      const laneEnds = [];
      const bars = phone.runs.map((run) => {
        const from = Math.max(new Date(run.started_at).getTime(), start);
        const to = run.ended_at ? new Date(run.ended_at).getTime() : end;
        const width = Math.max(((to - from) / (end - start)) * 100, MIN_BAR);
        // A bar that ends now keeps its least width inside the track.
        const left = Math.min(((from - start) / (end - start)) * 100, 100 - width);
        let lane = laneEnds.findIndex((laneEnd) => laneEnd <= left);
        if (lane < 0) { lane = laneEnds.length; laneEnds.push(0); }
        laneEnds[lane] = left + width + GAP;
        const text = `${run.job_type} · ${run.status} · ${absolute(run.started_at)} · ${duration((to - new Date(run.started_at)) / 1000)}`;
        return h("button", {class: "tl-bar", style: `left:${left}%;width:${width}%;top:${3 + lane * LANE}px;background:${colour(run.job_type, types)}`,
          "aria-label": text, "data-job": run.job_id});
      });
      return h("div", {class: "tl-row"},
        h("div", {class: "tl-label", title: phone.runner ? `${phone.serial} on ${phone.runner}` : phone.serial}, phone.label || phone.serial),
        h("div", {class: "tl-track", style: `height:${6 + Math.max(laneEnds.length, 1) * LANE - 2}px`}, bars));
    });
    // One set of listeners for every bar: hover shows the run, a click opens its log.
    body.onmouseover = (event) => {
      const bar = event.target.closest(".tl-bar");
      if (!bar) { tooltip.hidden = true; return; }
      tooltip.textContent = bar.getAttribute("aria-label");
      tooltip.hidden = false;
      tooltip.style.left = `${event.clientX + 12}px`;
      tooltip.style.top = `${event.clientY + 12}px`;
    };
    body.onmouseleave = () => { tooltip.hidden = true; };
    body.onclick = (event) => {
      const bar = event.target.closest(".tl-bar");
      if (bar) { tooltip.hidden = true; location.hash = `#/logs/${encodeURIComponent(bar.dataset.job)}`; }
    };
    const hours = [0, 6, 12, 18, 24].map((n) => absolute(new Date(start + n * 3600 * 1000)).slice(12, 17));
    body.replaceChildren(...rows, h("div", {class: "tl-axis"}, h("div", {}), h("div", {}, hours.map((x) => h("span", {}, x)))));
    if (!phones.length) body.replaceChildren(h("p", {class: "muted"}, "No phones."));
    legend.replaceChildren(...[...types.entries()].map(([type, c]) => h("span", {style: `--c:${c}`}, type)));
  };
  try { await load(); } catch (error) { showError(body, error); }
  live(load);
}

// Recent device runs.
async function runsPage(query) {
  const filters = h("form", {class: "filters", id: "run-filters"},
    h("label", {}, "Phone", h("input", {name: "device", value: query.get("device") || ""})),
    h("label", {}, "Status", h("select", {name: "status"}, ["", "completed", "failed", "timeout", "killed", "cancelled", "preempted"]
      .map((v) => h("option", {value: v, selected: query.get("status") === v}, v || "any")))),
    h("label", {}, "Job type", h("input", {name: "job_type", value: query.get("job_type") || ""})),
    h("button", {type: "submit"}, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/runs?${new URLSearchParams(Object.entries(formValues(filters)).filter(([, v]) => v))}`;
  });
  const body = h("div", {});
  page("Device runs", filters, body);
  const load = async () => {
    const params = new URLSearchParams({limit: "200"});
    for (const key of ["device", "status", "job_type"]) if (query.get(key)) params.set(key, query.get(key));
    const runs = await rest(`/api/scheduler/history?${params}`);
    body.replaceChildren(table(["Job", "Phone", "Status", "Started", "Duration", "Exit code", "Error"], runs.map((r) => h("tr", {},
      h("td", {}, h("a", {href: `#/logs/${encodeURIComponent(r.id)}`}, r.job_type), h("div", {class: "muted mono"}, r.id)),
      h("td", {}, r.device, r.runner ? h("div", {class: "muted"}, r.runner) : null), h("td", {}, statusBadge(r.status)), h("td", {}, when(r.started_at)),
      h("td", {}, duration(r.duration_secs)), h("td", {}, r.exit_code ?? "–"), h("td", {}, r.error || "–"))), "No runs."));
  };
  try { await load(); } catch (error) { showError(body, error); }
  live(load);
}

// A run's log, followed while it runs.
async function logsPage(jobId) {
  const out = h("pre", {class: "log", id: "log", "aria-live": "polite"});
  const status = h("p", {class: "muted", id: "log-status"}, "Reading…");
  page(`Log of ${jobId}`, status, out);
  const controller = new AbortController();
  state.stream = controller;
  try {
    const response = await withToken(() => fetch(`/api/scheduler/queue/${encodeURIComponent(jobId)}/logs/follow`,
      {headers: headers(false), signal: controller.signal}), false);
    if (!response.ok) throw new ApiError(`HTTP ${response.status}`, await response.text(), response.status);
    status.textContent = "Following the log live.";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let line;
      while ((line = buffer.indexOf("\n")) >= 0) {
        const text = buffer.slice(0, line);
        buffer = buffer.slice(line + 1);
        if (!text.trim()) continue;
        const chunk = JSON.parse(text);
        if (chunk.error) throw new ApiError("Error", chunk.error);
        out.textContent += chunk.data;
        out.scrollTop = out.scrollHeight;
        if (chunk.eof) status.textContent = "The job has ended; this is its whole log.";
      }
    }
    if (!status.textContent.startsWith("The job")) status.textContent = "The log ended.";
  } catch (error) {
    if (error.name !== "AbortError") status.replaceChildren(h("span", {class: "s-bad"}, `${error.type || "Error"}: ${error.message}`));
  }
}

// Watches.
async function watchesPage(query) {
  const filters = h("form", {class: "filters", id: "watch-filters"},
    h("label", {}, "Status", h("select", {name: "status_filter"}, ["", "active", "completed", "failed", "cancelled"]
      .map((v) => h("option", {value: v, selected: query.get("status_filter") === v}, v || "any")))),
    h("label", {}, "Workflow", h("input", {name: "workflow_id", value: query.get("workflow_id") || ""})),
    h("button", {type: "submit"}, "Filter"));
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/watches?${new URLSearchParams(Object.entries(formValues(filters)).filter(([, v]) => v))}`;
  });
  const cancelWorkflow = h("form", {class: "filters", id: "cancel-workflow"},
    h("label", {}, "Workflow to cancel", h("input", {name: "workflow_id", required: true})),
    h("button", {type: "submit", class: "danger"}, "Cancel workflow"));
  const body = h("div", {});
  page("Watches", filters, body, h("h2", {}, "Cancel a workflow"), cancelWorkflow);
  const load = async () => {
    const params = {limit: PAGE_SIZE};
    for (const key of ["status_filter", "workflow_id"]) if (query.get(key)) params[key] = query.get(key);
    const result = await rpc("list_watches", params);
    body.replaceChildren(table(["Watch", "User", "Workflow", "Check", "Status", "Attempts", "Next run", "Message", ""],
      result.watches.map((w) => h("tr", {"data-watch": w.id},
        h("td", {class: "mono"}, w.id), h("td", {}, w.user_id), h("td", {}, w.workflow_id || "–"), h("td", {}, w.job_type),
        h("td", {}, statusBadge(w.status)), h("td", {}, `${w.attempts}/${w.max_attempts}`), h("td", {}, when(w.next_run_at)),
        h("td", {}, w.message || "–"),
        h("td", {}, w.status === "active" ? h("button", {class: "secondary", onclick: async () => {
          try { await rpc("cancel_watch", {job_id: w.id}); toast("Cancelled"); load(); }
          catch (error) { toast(`${error.type}: ${error.message}`, true); }
        }}, "Cancel") : ""))), "No watches."));
  };
  cancelWorkflow.addEventListener("submit", async (event) => {
    event.preventDefault();
    const {workflow_id} = formValues(cancelWorkflow);
    if (!confirm(`Cancel every active watch of ${workflow_id}?`)) return;
    try { const n = await rpc("cancel_workflow", {workflow_id}); toast(`Cancelled ${n} watches`); load(); }
    catch (error) { toast(`${error.type}: ${error.message}`, true); }
  });
  try { await load(); } catch (error) { showError(body, error); }
  live(load);
}

// The system: this replica, the registry, the figures that matter.
const TASKS = ["process_existing_batches", "process_weekly_summary", "report_late_executions", "report_block_error_rates", "cleanup_expired_files"];

function metricSum(text, name) {
  return text.split("\n").filter((l) => l.startsWith(name) && !l.startsWith("#"))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/).pop() || 0), 0);
}

async function systemPage() {
  const status = h("div", {class: "card", id: "status"});
  const figures = h("div", {class: "grid", id: "figures"});
  const registry = h("div", {id: "registry"});
  const calendars = h("div", {id: "calendars"});
  const tasks = h("div", {class: "actions", id: "tasks"}, TASKS.map((task) => h("button", {class: "secondary", onclick: async () => {
    try { const result = await rpc(`execute_${task}`, {}, {admin: true}); toast(`${task}: ${JSON.stringify(result)}`); }
    catch (error) { toast(`${error.type}: ${error.message}`, true); }
  }}, `Run ${task}`)));
  page("System", status, figures, h("h2", {}, "Run a system task now (admin)"), tasks,
    h("h2", {}, "Exclusion calendars"), calendars, h("h2", {}, "Registry"), registry);
  const load = async () => {
    const s = await rpc("get_scheduler_status", {});
    status.replaceChildren(h("dl", {class: "kv"},
      h("dt", {}, "Leader"), h("dd", {}, s.leader ? "this replica" : "another replica"),
      h("dt", {}, "Database"), h("dd", {}, s.database, " ", statusBadge(s.database_ok ? "ok" : "down")),
      h("dt", {}, "Up since"), h("dd", {}, when(s.started_at)),
      h("dt", {}, "Next run"), h("dd", {}, when(s.next_run_time)),
      ...s.jobstores.flatMap((j) => [h("dt", {}, j.name), h("dd", {}, `${j.backend}, ${j.schedules ?? "?"} schedules${j.active ? "" : " (not active here)"}`)])));
    const metrics = await (await fetch("/metrics", {headers: headers(false)})).text();
    const fires = metricSum(metrics, "scheduler_occurrences_total");
    const failures = metricSum(metrics, "scheduler_dispatch_failures_total");
    const lagSum = metricSum(metrics, "scheduler_dispatch_lag_seconds_sum");
    const lagCount = metricSum(metrics, "scheduler_dispatch_lag_seconds_count");
    const overdue = metricSum(metrics, "scheduler_oldest_overdue_seconds");
    calendars.replaceChildren(table(["Calendar", "Zone", "Excluded dates", "Excluded weekdays"],
      (await rpc("list_calendars", {})).map((c) => h("tr", {}, h("td", {}, c.name), h("td", {}, c.zone),
        h("td", {}, c.dates.join(", ") || "–"), h("td", {}, c.weekdays.join(", ") || "–"))),
      "No calendars: [calendars.<name>] in the configuration declares one."));
    figures.replaceChildren(...[["Fires", fires], ["Dispatch failures", failures],
      ["Mean lag", lagCount ? `${((lagSum / lagCount) * 1000).toFixed(0)} ms` : "–"], ["Oldest overdue", `${overdue.toFixed(1)} s`]]
      .map(([label, value]) => h("div", {class: "card"}, h("div", {class: "muted"}, label), h("strong", {}, value))));
    try {
      const r = await rpc("get_registry", {}, {admin: true, prompt: false});
      registry.replaceChildren(table(["Schedule", "Jobstore", "Owner", "Trigger", "State", "Next run"],
        r.schedules.map((e) => h("tr", {}, h("td", {class: "mono"}, e.id), h("td", {}, e.jobstore), h("td", {}, e.owner),
          h("td", {}, describeTrigger(e.trigger)), h("td", {}, e.paused ? statusBadge("paused") : statusBadge("active")),
          h("td", {}, when(e.next_run_time)))), "No declared schedules."),
      h("h2", {}, "System tasks"), table(["Task", "Jobstore", "Enabled", "Next run"], r.system_tasks.map((t) => h("tr", {},
        h("td", {}, t.task), h("td", {}, t.jobstore), h("td", {}, t.enabled ? "yes" : `no: ${t.disabled_reason || ""}`),
        h("td", {}, when(t.next_run_time)))), "No system tasks."));
    } catch (error) {
      if (error.type !== "UnauthorizedError") { showError(registry, error); return; }
      registry.replaceChildren(h("p", {class: "muted"}, "The registry is for the admin."),
        h("button", {id: "admin-registry", onclick: async () => {
          try { await rpc("get_registry", {}, {admin: true}); await load(); }
          catch (e) { showError(registry, e); }
        }}, "Enter the admin token"));
    }
  };
  try { await load(); } catch (error) { showError(status, error); }
  live(load);
}

// ---- open incidents, shown above every page ------------------------------------------

const INCIDENTS_SHOWN = 20;

// The link to an incident's schedule.
function alertSchedule(a) {
  return h("a", {href: `#/schedule/${encodeURIComponent(a.schedule_id)}?owner=${encodeURIComponent(a.owner)}`},
    a.schedule_name || a.schedule_id);
}

// Fills the banner with the open incidents the token may see; without a token that is taken,
// the banner stays hidden rather than asking (the page asks).
async function openIncidents() {
  const banner = document.getElementById("incidents");
  let open;
  try {
    const body = JSON.stringify({jsonrpc: "2.0", id: ++rpcId, method: "list_alerts",
      params: {state: "open", limit: INCIDENTS_SHOWN}});
    const answer = await (await fetch("/", {method: "POST", headers: headers(false), body})).json();
    if (answer.error) throw new Error(answer.error.message);
    open = answer.result;
  } catch {
    banner.hidden = true;
    return;
  }
  banner.hidden = !open.length;
  const more = open.length === INCIDENTS_SHOWN ? "+" : "";
  banner.replaceChildren(
    h("strong", {}, `${open.length}${more} open incident${open.length === 1 ? "" : "s"}`),
    h("ul", {}, open.map((a) => h("li", {}, statusBadge(a.kind), " ", alertSchedule(a),
      ` (${a.owner}): ${a.summary} · since ${relative(a.opened_at)}`))));
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  clearInterval(state.timer);
  if (state.stream) { state.stream.abort(); state.stream = null; }
  document.getElementById("tooltip")?.remove();
  const dialog = document.getElementById("token-dialog");
  if (dialog.open) dialog.close();
  const [path, search] = (location.hash.slice(1) || "/schedules").split("?");
  const query = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const name = parts[0] === "schedule" ? "schedules" : parts[0] === "logs" ? "runs" : parts[0];
  document.querySelectorAll("nav a").forEach((a) => a.toggleAttribute("aria-current", a.dataset.page === name));
  document.querySelectorAll("nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  try {
    if (parts[0] === "schedules" && parts[1] === "new") return await scheduleForm(null);
    if (parts[0] === "schedules" && parts[1] === "edit") return await scheduleForm(await rpc("get_schedule", {id: parts[2], owner: query.get("owner") || ""}));
    if (parts[0] === "schedule") return await schedulePage(parts[1], query);
    if (parts[0] === "devices") return await devicesPage(query);
    if (parts[0] === "fleet") return await fleetPage(query);
    if (parts[0] === "timeline") return await timelinePage();
    if (parts[0] === "preview") return await previewPage(query);
    if (parts[0] === "runs") return await runsPage(query);
    if (parts[0] === "logs") return await logsPage(parts[1]);
    if (parts[0] === "watches") return await watchesPage(query);
    if (parts[0] === "system") return await systemPage();
    return await schedulesPage(query);
  } catch (error) {
    page("Error", h("p", {class: "s-bad", role: "alert"}, `${error.type || "Error"}: ${error.message}`));
  }
}

window.addEventListener("hashchange", () => { route(); openIncidents(); });
setInterval(() => {
  if (document.getElementById("live").checked && !document.hidden) openIncidents();
}, REFRESH_MS);
route();
openIncidents();
