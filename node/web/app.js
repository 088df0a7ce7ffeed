// Hearth web UI: plain DOM, no framework, no build step.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.
"use strict";

// The session's token lives in sessionStorage: per origin (so per port: another server on
// 127.0.0.1 cannot read it, as it could a cookie) and gone when the tab closes.
const TOKEN_KEY = "hearth-session";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  seq: 0, // render counter: a slow answer for an old screen is dropped
  screen: null, // the screen shown now
  touched: new Set(), // ids of form fields the user changed (kept across live refreshes)
  events: null, // the live-update stream's AbortController
  busy: false, // an action is running: live refreshes wait
  pendingRefresh: false,
  renderedAt: 0,
  tokens: new Map(), // grant id -> token, for grants approved in this tab
  qr: new Map(), // QR codes shown: key -> SVG text (kept across refreshes)
  lastRequest: null, // the professional's last access request (token shown on #/ask)
  lastGrant: null, // the patient's last approval (its grant shown on #/requests to hand over)
};

const $ = (sel) => document.querySelector(sel);
const enc = encodeURIComponent;

// ---------------------------------------------------------------- DOM helper

// Properties set directly; everything else is an attribute (true -> "", false/null -> left out).
const PROPS = new Set(["className", "textContent", "htmlFor", "value"]);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "innerHTML" || k === "outerHTML") throw new Error("el(): HTML is never set from strings");
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "on") for (const [type, fn] of Object.entries(v)) node.addEventListener(type, fn);
    else if (PROPS.has(k)) node[k] = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false || c === "") continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One call to the local API: JSON in, JSON (or text, for the QR SVG; a Blob when `blob`) out.
// Every call carries the session's token (no cookies are used, so no other site can ride on
// the session); failures throw ApiError with the server's plain-words message.
async function api(method, path, body, blob) {
  const res = await send(method, path, body);
  if (res.status === 204) return null;
  if (blob) return res.blob();
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

// The request itself, with the token; a failure becomes an ApiError.
async function send(method, path, body, signal) {
  const init = { method, credentials: "omit", cache: "no-store", headers: {}, signal };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "offline", "Hearth is not answering. Is `hearth run` still running on this computer?");
  }
  const type = res.headers.get("Content-Type") || "";
  if (!res.ok) {
    let message = `Something went wrong (error ${res.status}).`;
    let code = "error";
    if (type.includes("json")) {
      const j = await res.json().catch(() => null);
      if (j && j.error) {
        message = j.error.message || message;
        code = j.error.code || code;
      }
    }
    if (res.status === 401) forgetToken();
    throw new ApiError(res.status, code, message);
  }
  return res;
}

function forgetToken() {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

// Live updates: `GET /api/v1/events` read with fetch (EventSource cannot send the token),
// its text/event-stream parsed here; reconnects 2 s after it ends while signed in.
async function listen() {
  const ctl = new AbortController();
  state.events = ctl;
  while (state.events === ctl && state.token) {
    try {
      const res = await send("GET", "/api/v1/events", undefined, ctl.signal);
      const reader = res.body.getReader();
      const text = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += text.decode(value, { stream: true });
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let name = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (name === "changed") onChanged({ data });
        }
      }
    } catch (err) {
      if (err && err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 401) return showSignedOut();
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

// ---------------------------------------------------------------- words

const CLASS_WORDS = {
  demographics: "personal details",
  allergies: "allergies",
  medications: "medicines",
  conditions: "conditions and diagnoses",
  observations: "measurements and test results",
  encounters: "appointments and visits",
  "care-plan": "care plans",
  "social-care/assessments": "social care assessments",
  "social-care/support-plan": "care and support plans",
  carers: "carers",
  notes: "notes",
  documents: "letters and documents",
  "advance-care-plan": "wishes for future care",
};
const LABELS = [
  ["general", "Everyday (general)"],
  ["mental-health", "Mental health (sensitive)"],
  ["sexual-health", "Sexual health (sensitive)"],
  ["safeguarding", "Safeguarding (sensitive)"],
  ["social-care", "Social care (sensitive)"],
];
const LABEL_WORDS = { "mental-health": "mental health", "sexual-health": "sexual health", safeguarding: "safeguarding", "social-care": "social care" };
const PURPOSES = [
  ["direct-care", "direct care"],
  ["social-care", "social care"],
  ["emergency", "emergency treatment"],
  ["research", "research"],
  ["planning", "planning services"],
];
const PURPOSE_WORDS = Object.fromEntries([...PURPOSES, ["proxy", "acting for you as your proxy"]]);
const ABILITY_WORDS = { read: "can see", append: "can see and add to", relay: "can store but not read", admin: "full control of" };
const ROLE_WORDS = { patient: "patient", professional: "health or care professional", relay: "organisation node" };

const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const slug = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, "-");
const purposeWords = (p) => PURPOSE_WORDS[p] || p || "no purpose given";
const abilityWords = (a) => ABILITY_WORDS[a] || a;

function listWords(items) {
  if (!items.length) return "nothing";
  if (items.length === 1) return items[0];
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

// "notes" -> "notes"; "notes:mental-health" -> "notes (mental health, sensitive)".
function sectionWords(name) {
  const [cls, label] = String(name).split(":");
  const base = CLASS_WORDS[cls] || cls;
  if (!label || label === "general") return base;
  if (label === "*") return `${base} (all, sensitive parts included)`;
  return `${base} (${LABEL_WORDS[label] || label}, sensitive)`;
}
const sectionName = (s) => (!s.label || s.label === "general" ? s.class : `${s.class}:${s.label}`);

// "notes (read)" -> {section: "notes", ability: "read"}
function parseScope(text) {
  const m = /^(.*) \((\w+)\)$/.exec(String(text));
  return m ? { section: m[1], ability: m[2] } : { section: String(text), ability: "read" };
}
const scopeListWords = (scopes) =>
  (scopes || []).map(parseScope).map((s) => `${abilityWords(s.ability)} ${sectionWords(s.section)}`).join("; ");

function when(iso) {
  if (!iso) return "an unknown time";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString("en-GB", { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
}

function durationWords(days) {
  const d = Number(days) || 0;
  if (d > 0 && d < 1) return `${Math.round(d * 24)} hours`;
  return d === 1 ? "1 day" : `${Math.round(d)} days`;
}

// Long ids are shortened on screen; the full id is in the title and in data-id.
function idCode(id) {
  const s = String(id || "");
  const short = s.length > 18 ? `${s.slice(0, 10)}…${s.slice(-6)}` : s;
  return el("code", { className: "id", title: s, dataset: { id: s } }, short);
}

const fact = (term, ...desc) => [el("dt", {}, term), el("dd", {}, ...desc)];

// ---------------------------------------------------------------- status, errors, dialogs

function say(text, kind) {
  const box = $("#status-message");
  box.className = `status-message${kind ? ` is-${kind}` : ""}`;
  box.replaceChildren();
  if (text) box.append(el("p", {}, kind === "error" ? el("strong", {}, "Problem: ") : "", text));
}

function fail(err) {
  if (err instanceof ApiError && err.status === 401) return showSignedOut(err.message);
  if (!(err instanceof ApiError)) console.error(err);
  say(err.message || String(err), "error");
}

// Runs an action from a button: disables it meanwhile, shows any error.
async function act(button, fn) {
  if (button) button.disabled = true;
  state.busy = true;
  try {
    await fn();
  } catch (err) {
    fail(err);
  } finally {
    state.busy = false;
    if (button && button.isConnected) button.disabled = false;
    runPendingRefresh();
  }
}

// A button that downloads the record as a FHIR bundle: fetched with the session's token
// (a plain link could not carry it), then saved through a temporary object URL.
function exportButton(rid, text) {
  return el("button", { type: "button", className: "secondary", dataset: { action: "export" }, on: { click: (e) =>
    act(e.currentTarget, async () => {
      const blob = await api("GET", `/api/v1/records/${enc(rid)}/export`, undefined, true);
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: `hearth-${rid.slice(0, 12)}.fhir.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      say("Your record was saved as a FHIR file in your downloads.");
    }) } }, text);
}

// An in-page confirmation (never window.confirm). With `field`, asks for one line of text
// and resolves to it; otherwise resolves to true. Cancel or Escape resolves to false.
function confirmDialog({ title, text, confirmText, field, danger = true }) {
  return new Promise((resolve) => {
    const back = document.activeElement;
    const input = field ? el("input", { type: "text", id: "dialog-input", required: true, maxlength: "1000" }) : null;
    let done = false;
    const close = (value) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      if (back && back.isConnected) back.focus();
      resolve(value);
      runPendingRefresh();
    };
    const confirm = () => {
      if (!input) return close(true);
      if (!input.value.trim()) return input.reportValidity();
      close(input.value.trim());
    };
    const dlg = el("dialog", { className: "dialog", "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" },
      el("h2", { id: "dialog-title" }, title),
      el("p", { id: "dialog-text" }, text),
      input && el("div", { className: "field" }, el("label", { htmlFor: "dialog-input" }, field), input),
      el("div", { className: "actions" },
        el("button", { type: "button", className: danger ? "danger" : "primary", dataset: { action: "confirm" }, on: { click: confirm } }, confirmText),
        el("button", { type: "button", className: "secondary", dataset: { action: "cancel" }, on: { click: () => close(false) } }, "Cancel")));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); close(false); });
    if (input) input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); confirm(); } });
    document.body.append(dlg);
    dlg.showModal();
    (input || dlg.querySelector("[data-action=cancel]")).focus(); // the safe choice has focus
  });
}

// SVG text -> data: URL (the CSP allows images only from 'self' and data:).
function svgDataUrl(svg) {
  const bytes = new TextEncoder().encode(svg);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/svg+xml;base64,${btoa(bin)}`;
}
const qrImage = (svg, alt) => el("img", { className: "qr", src: svgDataUrl(svg), alt });

// A button that shows or hides the QR code of `token` in `box`; kept open across refreshes.
function qrButton(key, token, box, alt) {
  const show = (svg) => box.replaceChildren(qrImage(svg, alt));
  const open = state.qr.has(key);
  if (open) show(state.qr.get(key));
  const button = el("button", { type: "button", className: "secondary", dataset: { action: "qr" }, "aria-expanded": String(open),
    on: { click: () => {
      if (state.qr.has(key)) {
        state.qr.delete(key);
        box.replaceChildren();
        button.setAttribute("aria-expanded", "false");
        button.textContent = "Show as QR code";
        return;
      }
      act(button, async () => {
        const svg = await api("POST", "/api/v1/qr", { text: token });
        state.qr.set(key, svg);
        show(svg);
        button.setAttribute("aria-expanded", "true");
        button.textContent = "Hide QR code";
      });
    } } }, open ? "Hide QR code" : "Show as QR code");
  return button;
}

function copyButton(text) {
  const b = el("button", { type: "button", className: "secondary", on: { click: async () => {
    try {
      await navigator.clipboard.writeText(text);
      say("Copied.");
    } catch {
      say("Could not copy: select the text and copy it yourself.", "error");
    }
  } } }, "Copy");
  return b;
}

// ---------------------------------------------------------------- session

async function start() {
  $("#skip-link").addEventListener("click", (e) => { e.preventDefault(); $("#main").focus(); });
  $("#main").addEventListener("input", touch);
  $("#main").addEventListener("change", touch);
  $("#main").addEventListener("focusout", () => setTimeout(runPendingRefresh, 0));
  window.addEventListener("hashchange", () => {
    if (location.hash.startsWith("#login=")) login();
    else if (state.me) route("nav");
  });
  if (location.hash.startsWith("#login=")) return login();
  if (!state.token) return showSignedOut();
  try {
    signedIn(await api("GET", "/api/v1/session"));
  } catch (err) {
    if (err.status === 401) showSignedOut();
    else showSignedOut(err.message);
  }
}

// The one-time code from `hearth ui` arrives as #login=CODE: exchange it for a session and
// drop it from the address bar at once.
async function login() {
  const code = decodeURIComponent(location.hash.slice("#login=".length));
  history.replaceState(null, "", "/");
  try {
    forgetToken();
    const session = await api("POST", "/api/v1/session", { code });
    state.token = session.token;
    sessionStorage.setItem(TOKEN_KEY, session.token);
    signedIn(session);
  } catch (err) {
    showSignedOut(err.message);
  }
}

function signedIn(session) {
  state.me = session.me;
  const me = state.me;
  $("#who").replaceChildren(
    el("p", {}, "Signed in as ", el("strong", {}, me.name || "(no name)"), `, ${ROLE_WORDS[me.role] || me.role}`),
    el("button", { type: "button", className: "secondary", dataset: { action: "logout" }, on: { click: (e) => logout(e.currentTarget) } }, "Log out"));
  const nav = $("#nav");
  nav.replaceChildren(el("ul", {}, navItems().map(([key, text]) =>
    el("li", {}, el("a", { href: `#/${key}`, dataset: { nav: key } }, text, el("span", { className: "badge", dataset: { badge: key } }))))));
  nav.hidden = false;
  if (!state.events) listen();
  route("nav");
}

function showSignedOut(message) {
  state.me = null;
  forgetToken();
  state.seq++;
  if (state.events) state.events.abort();
  state.events = null;
  $("#who").replaceChildren();
  $("#nav").hidden = true;
  const main = $("#main");
  main.replaceChildren(
    el("h1", { tabindex: "-1" }, "Open Hearth from your computer"),
    el("p", {}, "Open Hearth by running ", el("code", {}, "hearth ui"), " in a terminal on this computer."),
    el("p", {}, "It prints a link that signs you in. The link works once, for two minutes. Nobody else can use this page without it."));
  main.dataset.screen = "signed-out";
  delete main.dataset.loading;
  document.title = "Hearth";
  say(message || "", message ? "error" : undefined);
}

async function logout(button) {
  await act(button, async () => {
    await api("DELETE", "/api/v1/session");
    showSignedOut();
    say("You have logged out.");
  });
}

// ---------------------------------------------------------------- routing

const NAV = {
  patient: [["record", "My record"], ["requests", "Requests"], ["grants", "Who has access"], ["audit", "Who looked"],
    ["devices", "My devices"], ["emergency", "Emergency access"], ["choices", "Research choices"], ["status", "Sync status"]],
  professional: [["patients", "Patients"], ["ask", "Ask for access"], ["emergency", "Emergency access"], ["status", "Sync status"]],
  relay: [["status", "Status"]],
};
const navItems = () => NAV[state.me.role] || NAV.relay;

const SCREENS = {
  patient: { record: screenRecord, requests: screenRequests, grants: screenGrants, audit: screenAudit, devices: screenDevices,
    emergency: screenPatientEmergency, choices: screenChoices, status: screenStatus },
  professional: { patients: screenPatients, patient: screenPatient, ask: screenAsk, emergency: screenProEmergency, status: screenStatus },
  relay: { status: screenStatus },
};
// Screens without server data (forms): a live update never re-renders them.
const STATIC = new Set(["ask", "emergency:professional"]);

// "#/patients/RID?x=y" -> {name: "patient", arg: RID, navKey: "patients", query}
function resolve() {
  const [path, qs] = location.hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const screens = SCREENS[state.me.role] || SCREENS.relay;
  let name = parts[0];
  let arg = null;
  if (name === "patients" && parts[1] && screens.patient) [name, arg] = ["patient", parts[1]];
  if (!screens[name] || name === "patient" && !arg) {
    name = navItems()[0][0];
    history.replaceState(null, "", `#/${name}`);
  }
  return { name, arg, query: new URLSearchParams(qs || ""), navKey: name === "patient" ? "patients" : name, fn: screens[name] };
}

// Renders the current screen. mode "nav": a new screen (loading state, focus to its heading);
// "refresh": the same screen again (live update or after an action), swapped in one step.
async function route(mode = "nav") {
  if (!state.me) return;
  const { name, arg, query, navKey, fn } = resolve();
  const main = $("#main");
  const seq = ++state.seq;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === navKey) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (mode === "nav") {
    main.removeAttribute("data-screen");
    main.dataset.loading = "1";
    main.setAttribute("aria-busy", "true");
    main.replaceChildren(el("p", { className: "loading" }, "Loading…"));
    state.touched.clear();
    state.screen = name;
    say("");
  }
  let nodes;
  let failed = null;
  try {
    nodes = await fn(arg, query);
  } catch (err) {
    if (err.status === 401) return showSignedOut(err.message);
    failed = err;
    nodes = [el("h1", {}, "This page could not be shown"), el("p", { className: "warning" }, err.message),
      el("button", { type: "button", on: { click: () => route("refresh") } }, "Try again")];
  }
  if (seq !== state.seq) return; // another render started meanwhile
  swap(main, nodes, mode);
  main.dataset.screen = name; // set only now: tests wait for it
  delete main.dataset.loading;
  main.removeAttribute("aria-busy");
  if (failed) { main.dataset.error = "1"; say(failed.message, "error"); } else delete main.dataset.error;
  state.renderedAt = Date.now();
  if (state.me.role === "patient") updateBadge();
}

// Replaces main's content, keeping what the user typed (fields they touched) and focus.
function swap(main, nodes, mode) {
  const saved = [...state.touched].map((id) => document.getElementById(id)).filter((f) => f && main.contains(f))
    .map((f) => ({ id: f.id, value: f.value, checked: f.checked, tag: f.tagName }));
  const active = document.activeElement;
  const hadFocus = main.contains(active) && active !== main;
  main.replaceChildren(...nodes.flat(Infinity).filter(Boolean));
  // selects first: changing one may rebuild the fields after it (the entry form)
  saved.sort((a, b) => (b.tag === "SELECT") - (a.tag === "SELECT"));
  for (const s of saved) {
    const f = document.getElementById(s.id);
    if (!f || !main.contains(f)) { state.touched.delete(s.id); continue; }
    if (f.type === "checkbox" || f.type === "radio") f.checked = s.checked;
    else f.value = s.value;
    if (f.tagName === "SELECT") f.dispatchEvent(new Event("change", { bubbles: true }));
  }
  const h1 = main.querySelector("h1");
  if (h1) {
    h1.tabIndex = -1;
    document.title = `${h1.textContent} – Hearth`;
  }
  if (mode === "nav") { if (h1) h1.focus(); return; }
  const again = hadFocus && active.id && document.getElementById(active.id);
  if (again) again.focus();
  else if (hadFocus && h1) h1.focus();
}

function touch(e) {
  if (e.target.id) state.touched.add(e.target.id);
}
function forget(container) {
  for (const f of container.querySelectorAll("[id]")) state.touched.delete(f.id);
}

// ---------------------------------------------------------------- live updates

let refreshTimer = null;
function onChanged(ev) {
  let what = null;
  try { what = JSON.parse(ev.data).what; } catch { /* no data: treat as received */ }
  // A professional's read of a record is itself written down locally (for the patient's
  // audit): a "local" change right after a render is most likely our own doing. Ignoring it
  // avoids a read -> changed -> read loop.
  if (what === "local" && (state.screen === "patient" || Date.now() - state.renderedAt < 1500)) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(liveRefresh, 200);
}

function liveRefresh() {
  if (!state.me || !state.screen) return;
  if (STATIC.has(state.screen) || STATIC.has(`${state.screen}:${state.me.role}`)) return updateBadge();
  const a = document.activeElement;
  const typing = a && $("#main").contains(a) && state.touched.has(a.id) &&
    (a.tagName === "TEXTAREA" || (a.tagName === "INPUT" && !["checkbox", "radio"].includes(a.type)));
  // Never pull the page from under someone typing, answering a dialog or mid-action.
  if (typing || state.busy || document.querySelector("dialog[open]")) {
    state.pendingRefresh = true;
    return;
  }
  route("refresh");
}

function runPendingRefresh() {
  if (!state.pendingRefresh) return;
  state.pendingRefresh = false;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(liveRefresh, 200);
}

// "Requests (2)" in the patient's navigation.
async function updateBadge() {
  const badge = document.querySelector("[data-badge=requests]");
  if (!badge) return;
  try {
    const n = ((await api("GET", "/api/v1/requests")).pending || []).filter((r) => !r.lapsed).length;
    badge.textContent = n ? `(${n} waiting)` : "";
  } catch { /* the badge is a convenience */ }
}

// ---------------------------------------------------------------- record display (both roles)

const MAIN_FIELD = ["text", "name", "substance", "title", "statement", "class", "assessment_type"];
const FIELD_WORDS = { nhs_number: "NHS number", gp_practice: "GP practice", dnacpr: "DNACPR decision in place", birth_date: "Date of birth",
  personal_budget_gbp: "Personal budget (£)", data_base64: "File", content_type: "File type", url: "Link" };
const fieldWords = (k) => FIELD_WORDS[k] || cap(k.replace(/_/g, " "));

function valueWords(k, v) {
  if (k === "data_base64") return `a file is attached (about ${Math.ceil((String(v).length * 0.75) / 1024)} KB)`;
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.map((x) => valueWords("", x)).join("; ");
  if (v && typeof v === "object") {
    if (v.display || v.name) return String(v.display || v.name);
    return Object.entries(v).map(([a, b]) => `${fieldWords(a)}: ${valueWords(a, b)}`).join(", ");
  }
  return String(v);
}

function bodyView(body) {
  if (!body || typeof body !== "object") return el("p", {}, String(body ?? ""));
  const main = MAIN_FIELD.find((k) => typeof body[k] === "string");
  const rest = Object.entries(body).filter(([k, v]) => k !== main && k !== "source" && v != null);
  return el("div", { className: "entry-body" },
    main && el("p", { className: "entry-main" }, body[main]),
    rest.length > 0 && el("dl", { className: "fields" }, rest.map(([k, v]) => fact(fieldWords(k), valueWords(k, v)))));
}

// Who wrote it: ONLY from `verified` (facts this node checked).
function authorView(v, viewer) {
  if (!v || v.basis === "unverified" || !v.basis) {
    return el("p", { className: "byline unverified" }, el("strong", {}, "Unverified writer"),
      v && v.author ? [" (key ", idCode(v.author), ")"] : "", ": Hearth could not check who wrote this.");
  }
  const name = el("strong", {}, v.name || "an unnamed device");
  switch (v.basis) {
    case "patient-device":
      return el("p", { className: "byline" }, "Written by ", name, viewer === "patient" ? " on your device" : " on the patient's own device");
    case "organisation-credential":
      return el("p", { className: "byline" }, "Written by ", name, v.role ? `, ${v.role}` : "", ` — verified by ${v.organisation || "an organisation"}`);
    case "this-node":
      return el("p", { className: "byline" }, "Written by ", name, " on this device");
    default:
      return el("p", { className: "byline" }, "Written by ", name, ` (${v.basis})`);
  }
}

// The writer's own words about itself, shown only as unchecked claims (and only when they
// add something to the verified facts).
function claimView(e) {
  const p = e.provenance || {};
  const v = e.verified;
  if (!p.author_name && !p.author_role) return null;
  const checked = v && v.basis && v.basis !== "unverified";
  if (checked && v.name === p.author_name && (!p.author_role || v.role === p.author_role)) return null;
  const said = [p.author_name && `“${p.author_name}”`, p.author_role].filter(Boolean).join(", ");
  return el("p", { className: "claim" }, `Says they are ${said} (not checked)`);
}

function metaView(e) {
  const v = e.verified || {};
  const p = e.provenance || {};
  const parts = [];
  if (v.received_at) parts.push(`Received ${when(v.received_at)}`);
  else if (p.recorded_at) parts.push(`Says it was written ${when(p.recorded_at)} (not checked)`);
  if (e.version > 1) parts.push(`version ${e.version} (corrected)`);
  return el("p", { className: "meta" }, parts.join(" · "));
}

function entryView(e, rid, viewer) {
  const inError = e.status === "entered-in-error";
  const mine = !inError && e.verified && e.verified.author === state.me.peer_id;
  return el("li", { className: `entry${inError ? " in-error" : ""}`, dataset: { entry: e.id } },
    inError && el("p", { className: "flag" }, el("strong", {}, "Entered in error"),
      e.status_reason ? `: ${e.status_reason}` : "", ". Kept for the record; do not rely on it."),
    bodyView(e.body),
    authorView(e.verified, viewer),
    claimView(e),
    metaView(e),
    (e.disputes || []).map((d) => el("p", { className: "dispute" }, el("strong", {}, "Disputed"),
      ` by ${viewer === "patient" ? "you" : "the patient"}`,
      d.verified && d.verified.name ? ` (device “${d.verified.name}”)` : "",
      ` on ${when(d.disputed_at)}: “${d.reason}”`)),
    (e.concurrent_versions || []).length > 0 && el("p", { className: "flag" },
      "Another version of this entry was written at the same time elsewhere. One of them needs correcting."),
    mine && el("button", { type: "button", className: "secondary small", dataset: { action: "mark-error" },
      on: { click: (ev) => markError(e, rid, ev.currentTarget) } }, "Mark as entered in error"));
}

async function markError(e, rid, button) {
  const reason = await confirmDialog({ title: "Mark this entry as entered in error?",
    text: "The entry stays in the record, marked as a mistake, so that everyone who sees it knows not to rely on it.",
    field: "Why is it wrong?", confirmText: "Mark as entered in error" });
  if (!reason) return;
  await act(button, async () => {
    await api("POST", `/api/v1/records/${enc(rid)}/entries/${enc(e.id)}/mark-error`, { reason });
    say("The entry is now marked as entered in error.");
    await route("refresh");
  });
}

function sectionView(s, rid, viewer) {
  const name = sectionName(s);
  const entries = s.entries || [];
  const hid = `sec-${slug(name)}`;
  return el("section", { className: "record-section", dataset: { sectionView: name }, "aria-labelledby": hid },
    el("h2", { id: hid }, cap(sectionWords(name)), " ", el("span", { className: "count" }, `(${entries.length} ${entries.length === 1 ? "entry" : "entries"})`)),
    entries.length ? el("ul", { className: "entries" }, entries.map((e) => entryView(e, rid, viewer))) : el("p", { className: "empty" }, "No entries yet."));
}

function recordProblems(rec) {
  const errs = rec.errors || [];
  const unapplied = rec.unapplied || [];
  if (!errs.length && !unapplied.length) return null;
  return el("div", { className: "warning-box", role: "group", "aria-label": "Problems reading this record" },
    el("p", {}, el("strong", {}, "Some of this record could not be shown.")),
    el("ul", {},
      errs.map((x) => el("li", {}, `${cap(sectionWords(x.section))}: ${x.error}`)),
      unapplied.map((u) => el("li", {}, `${u.count} change(s) to ${sectionWords(u.section)} could not be applied (${u.reason}).`))));
}

// ---------------------------------------------------------------- adding entries

// Per class: [field, label, kind ("text" | "area" | "date"), required]. A few fields each;
// the full shapes are in docs/ENTRIES.md.
const ENTRY_FIELDS = {
  notes: [["text", "Note", "area", true], ["title", "Title", "text"], ["category", "Category, for example telephone call", "text"]],
  allergies: [["substance", "What causes the reaction", "text", true], ["reaction", "Reaction, for example rash", "text"], ["note", "Anything else", "area"]],
  medications: [["name", "Medicine", "text", true], ["dose", "Dose, for example 500 mg", "text"], ["frequency", "How often", "text"], ["note", "Anything else", "area"]],
  conditions: [["name", "Condition", "text", true], ["onset", "When it started", "date"], ["note", "Anything else", "area"]],
  observations: [["name", "What was measured", "text", true], ["value_text", "Result, in words", "text", true], ["note", "Anything else", "area"]],
  encounters: [["class", "Kind of contact, for example home visit", "text", true], ["start", "Date", "date", true], ["reason", "Why", "text"], ["outcome", "What came of it", "text"]],
  "care-plan": [["title", "Plan title", "text", true], ["description", "What the plan is about", "area"]],
  "social-care/assessments": [["assessment_type", "Kind of assessment", "text", true], ["date", "Date", "date", true], ["summary", "Summary", "area"]],
  "social-care/support-plan": [["title", "Plan title", "text", true], ["note", "Anything else", "area"]],
  carers: [["name", "Their name", "text", true], ["relationship", "Relationship, for example daughter", "text", true], ["phone", "Phone", "text"], ["note", "Anything else", "area"]],
  documents: [["title", "Title", "text", true], ["description", "What it is about", "area"], ["url", "Link to it", "text"]],
  "advance-care-plan": [["statement", "Wishes, in the patient's words", "area", true], ["preferred_place_of_care", "Where to be cared for", "text"], ["note", "Anything else", "area"]],
  demographics: [["name", "Full name", "text", true], ["birth_date", "Date of birth", "date"], ["phone", "Phone", "text"], ["address", "Address", "area"], ["postcode", "Postcode", "text"]],
};

function fieldControl([key, label, kind, required]) {
  const id = `entry-${key}`;
  const ctl = kind === "area" ? el("textarea", { id, rows: "4", required })
    : el("input", { id, type: kind === "date" ? "date" : "text", required });
  return el("div", { className: "field" }, el("label", { htmlFor: id }, label, required ? "" : el("span", { className: "optional" }, " (optional)")), ctl);
}

// `sections`: the sections a professional may add to; null for the patient (any class, with
// a sensitivity label).
function addEntryForm(rid, sections) {
  const fields = el("div", { className: "entry-fields" });
  const values = sections || Object.keys(ENTRY_FIELDS);
  const pick = el("select", { id: "entry-section", on: { change: () => fill() } },
    values.map((v) => el("option", { value: v, selected: v === "notes" }, cap(sectionWords(v)))));
  const fill = () => fields.replaceChildren(...(ENTRY_FIELDS[pick.value.split(":")[0]] || ENTRY_FIELDS.notes).map(fieldControl));
  fill();
  const label = !sections && el("select", { id: "entry-label", "aria-describedby": "entry-label-hint" },
    LABELS.map(([v, w]) => el("option", { value: v }, w)));
  const form = el("form", { className: "card form", id: "entry-form", "aria-labelledby": "entry-form-h",
    on: { submit: (ev) => { ev.preventDefault(); addEntry(rid, form, pick, label, ev.submitter); } } },
    el("h2", { id: "entry-form-h" }, sections ? "Add an entry" : "Add to my record"),
    el("div", { className: "field" }, el("label", { htmlFor: "entry-section" }, sections ? "Section" : "Kind of information"), pick),
    label && el("div", { className: "field" }, el("label", { htmlFor: "entry-label" }, "Sensitivity"), label,
      el("p", { className: "hint", id: "entry-label-hint" }, "Sensitive parts are shared only with people you name them for.")),
    fields,
    el("button", { type: "submit", className: "primary", dataset: { action: "add-entry" } }, "Add entry"));
  return form;
}

async function addEntry(rid, form, pick, label, button) {
  const cls = pick.value.split(":")[0];
  const section = label && label.value !== "general" ? `${cls}:${label.value}` : pick.value;
  const entry = {};
  for (const [key] of ENTRY_FIELDS[cls] || ENTRY_FIELDS.notes) {
    const v = form.querySelector(`#entry-${key}`).value.trim();
    if (v) entry[key] = v;
  }
  await act(button, async () => {
    await api("POST", `/api/v1/records/${enc(rid)}/entries`, { section, entry });
    forget(form);
    form.reset();
    say(`Added to ${sectionWords(section)}.`);
    await route("refresh");
  });
}

// ---------------------------------------------------------------- patient screens

async function screenRecord() {
  const rid = state.me.record_id;
  const rec = await api("GET", `/api/v1/records/${enc(rid)}`);
  const sections = rec.sections || [];
  return [
    el("h1", {}, "My record"),
    el("p", { className: "lede" }, "Everything in your record, by section. Each entry says who wrote it, as checked by Hearth."),
    el("p", {}, "Record number ", idCode(rid), " · ",
      exportButton(rid, "Download my record (FHIR file)")),
    recordProblems(rec),
    addEntryForm(rid, null),
    sections.length ? sections.map((s) => sectionView(s, rid, "patient")) : el("p", { className: "empty" }, "Your record has no entries yet."),
  ];
}

function identityView(idn) {
  if (idn && idn.status === "verified") {
    return el("p", { className: "identity verified" }, el("strong", {}, "✔ Verified by ", idn.organisation, ": "),
      `${idn.name}, ${idn.role}${idn.registration ? ` (${idn.registration})` : ""}. ${idn.organisation} is an organisation you trust.`);
  }
  return el("p", { className: "identity unverified" }, el("strong", {}, "⚠ NOT verified: "),
    `${(idn && idn.reason) || "no proof of who they are"}. Hearth cannot confirm who this is. Only say yes if you know them and expected this request.`);
}

const DURATIONS = [[1, "1 day"], [7, "7 days"], [30, "30 days"], [90, "90 days"]];

function requestCard(r) {
  const key = slug(r.id);
  const hid = `req-${key}-h`;
  // one checkbox per section asked (the highest ability asked for it)
  const rank = { relay: 0, read: 1, append: 2, admin: 3 };
  const asked = new Map();
  for (const s of r.scopes || []) if (!asked.has(s.section) || rank[s.ability] > rank[asked.get(s.section)]) asked.set(s.section, s.ability);
  const days = Number(r.duration_days) || 0;
  const askedValue = Number.isInteger(days) && days > 0 ? `${days}d` : "";
  return el("article", { className: `card request${r.lapsed ? " lapsed" : ""}`, dataset: { request: r.id }, "aria-labelledby": hid },
    el("h2", { id: hid }, r.identity && r.identity.status === "verified"
      ? `${r.identity.name} asks to see your record` : `Someone calling themselves “${r.name || "?"}” asks to see your record`),
    identityView(r.identity),
    r.as_proxy && el("p", { className: "note" }, "You are answering for someone else, as their proxy. Record ", idCode(r.record_id)),
    el("dl", { className: "facts" },
      fact("Why", cap(purposeWords(r.purpose))),
      fact("Reason they gave", r.reason ? `“${r.reason}”` : "none given"),
      fact("For how long", `${durationWords(days)}, from when you say yes`),
      fact("Answer by", when(r.answer_by)),
      fact("Received", when(r.received_at))),
    r.lapsed && el("p", { className: "warning" }, "This request has lapsed: it was not answered in time. You can still say no."),
    el("fieldset", {}, el("legend", {}, "What they would see. Untick anything you do not want to share."),
      [...asked].map(([section, ability], i) => {
        const id = `req-${key}-sec-${i}`;
        return el("div", { className: "check" },
          el("input", { type: "checkbox", id, checked: true, dataset: { section } }),
          el("label", { htmlFor: id }, cap(sectionWords(section)), ` — they ${abilityWords(ability)} it`, el("span", { className: "tech" }, ` (${section})`)));
      })),
    el("div", { className: "field" }, el("label", { htmlFor: `req-${key}-expires` }, "For how long"),
      el("select", { id: `req-${key}-expires`, dataset: { expires: "", asked: askedValue } },
        DURATIONS.filter(([d]) => d < days).map(([d, w]) => el("option", { value: `${d}d` }, w)),
        el("option", { value: askedValue, selected: true }, `${durationWords(days)} (as asked)`))),
    el("div", { className: "field" }, el("label", { htmlFor: `req-${key}-reason` }, "If you say no, a reason", el("span", { className: "optional" }, " (optional)")),
      el("input", { type: "text", id: `req-${key}-reason`, maxlength: "1000" })),
    el("div", { className: "actions" },
      el("button", { type: "button", className: "primary", disabled: r.lapsed, dataset: { action: "approve" }, "aria-describedby": hid,
        on: { click: (e) => approve(r, e.currentTarget) } }, "Approve"),
      el("button", { type: "button", className: "danger", dataset: { action: "deny" }, "aria-describedby": hid,
        on: { click: (e) => deny(r, e.currentTarget) } }, "Deny")));
}

async function approve(r, button) {
  const card = button.closest("[data-request]");
  const boxes = [...card.querySelectorAll("input[type=checkbox][data-section]")];
  const chosen = boxes.filter((b) => b.checked).map((b) => b.dataset.section);
  if (!chosen.length) return say("Tick at least one part of your record, or deny the request.", "error");
  const body = {};
  if (chosen.length < boxes.length) body.sections = chosen.join(","); // narrowed
  const pick = card.querySelector("[data-expires]");
  if (pick && pick.value && pick.value !== pick.dataset.asked) body.expires = pick.value; // shortened
  await act(button, async () => {
    const g = await api("POST", `/api/v1/requests/${enc(r.id)}/approve`, body);
    if (g && g.token) {
      state.tokens.set(g.id, g.token);
      state.lastGrant = { id: g.id, token: g.token, name: r.name, box: el("div", { className: "qr-box" }) };
    }
    forget(card);
    say(`Approved. ${r.name || "They"} can see your ${listWords(chosen.map(sectionWords))} until ${when(g && g.expires)}.`);
    await route("refresh");
  });
}

async function deny(r, button) {
  const card = button.closest("[data-request]");
  const reason = card.querySelector(`#req-${slug(r.id)}-reason`).value.trim();
  await act(button, async () => {
    await api("POST", `/api/v1/requests/${enc(r.id)}/deny`, reason ? { reason } : {});
    forget(card);
    say(`You said no to ${r.name || "the request"}. They get no access.`);
    await route("refresh");
  });
}

function tokenForm({ id, title, help, action, button, onToken }) {
  const form = el("form", { className: "card form", "aria-labelledby": `${id}-h`, on: { submit: (ev) => {
    ev.preventDefault();
    act(ev.submitter, async () => {
      await onToken(form.querySelector(`#${id}`).value.replace(/\s+/g, ""));
      forget(form);
      form.reset();
    });
  } } },
  el("h2", { id: `${id}-h` }, title),
  el("div", { className: "field" }, el("label", { htmlFor: id }, help), el("textarea", { id, rows: "3", required: true, spellcheck: "false", autocomplete: "off" })),
  el("button", { type: "submit", className: "secondary", dataset: { action } }, button));
  return form;
}

async function screenRequests() {
  const pending = (await api("GET", "/api/v1/requests")).pending || [];
  return [
    el("h1", {}, "Requests to see your record"),
    el("p", { className: "lede" }, "Nobody sees your record unless you say yes. You can say yes to only some parts, or for a shorter time."),
    state.lastGrant && grantResult(state.lastGrant),
    pending.length ? el("div", { className: "cards" }, pending.map(requestCard)) : el("p", { className: "empty" }, "No requests are waiting for your answer."),
    tokenForm({ id: "receive-token", title: "Add a request you were given", action: "receive", button: "Add request",
      help: "If someone gave you their request as text (it starts with HEARTH1R), paste it here.",
      onToken: async (token) => {
        const r = await api("POST", "/api/v1/requests/receive", { token });
        say(`Request added. ${r.identity && r.identity.status === "verified" ? "Their identity is verified." : "Their identity is NOT verified."} Read it below before you answer.`);
        await route("refresh");
      } }),
  ];
}

// Who holds a grant, in words that say whether the name is checked: a verified
// organisation credential names them; otherwise the name is only what they said.
function heldBy(g) {
  const idn = g.to_identity;
  if (idn && idn.status === "verified") return `${idn.name} (${idn.role}, verified by ${idn.organisation})`;
  return g.to_name ? `“${g.to_name}” (name not verified)` : "Someone without a name";
}

function grantCard(g) {
  const key = slug(g.id);
  const hid = `grant-${key}-h`;
  const token = g.token || state.tokens.get(g.id);
  const box = el("div", { className: "qr-box" });
  return el("article", { className: "card grant", dataset: { grant: g.id }, "aria-labelledby": hid },
    el("h2", { id: hid }, heldBy(g)),
    el("dl", { className: "facts" },
      fact("They", scopeListWords(g.scopes)),
      fact("Why", cap(purposeWords(g.purpose))),
      fact("Until", when(g.expires)),
      fact("Given", when(g.at)),
      fact("Their key", idCode(g.to))),
    el("div", { className: "actions" },
      token && qrButton(`grant:${g.id}`, token, box, `QR code of the access given to ${heldBy(g)}`),
      el("button", { type: "button", className: "danger", dataset: { action: "revoke" }, "aria-describedby": hid,
        on: { click: (e) => revoke(g, e.currentTarget) } }, "Revoke access")),
    box);
}

async function revoke(g, button) {
  const ok = await confirmDialog({ title: `Stop access for ${heldBy(g)}?`,
    text: "Revoking stops further access from now on. Copies of what they already received stay on their system.",
    confirmText: "Revoke access" });
  if (!ok) return;
  await act(button, async () => {
    await api("POST", `/api/v1/grants/${enc(g.id)}/revoke`, {});
    say(`Access stopped for ${heldBy(g)} from now on. Copies of what they already received stay on their system.`);
    await route("refresh");
  });
}

// One consent-ledger event in words.
function ledgerWords(e, names) {
  const who = (id, name) => name || names.get(id) || `someone (${String(id || "").slice(0, 12)}…)`;
  switch (e.event) {
    case "request": return `${e.identity && e.identity.status === "verified" ? `${e.identity.name} (verified by ${e.identity.organisation})` : `“${e.from_name}” (name not verified)`} asked to ${scopeListWords(e.scopes).replace(/can /g, "")} for ${purposeWords(e.purpose)}.`;
    case "granted": return `You gave ${names.get(e.id) || who(e.to, e.to_name)} access: they ${scopeListWords(e.scopes)} until ${when(e.expires)}.`;
    case "approved": return `${e.by_proxy ? "Your proxy" : "You"} approved a request${e.grant ? ` from ${names.get(e.grant) || "someone"}` : ""}.`;
    case "denied": return `${e.by_proxy ? "Your proxy" : "You"} said no to a request${e.reason ? `: “${e.reason}”` : ""}.`;
    case "revoked": return `You stopped the access of ${names.get(e.id) || "someone"}.`;
    case "trusted": return `You trusted the organisation ${e.name || e.org} to vouch for its staff.`;
    case "consent": return `You ${e.opted_in ? "allowed" : "did not allow"} ${e.purpose} use of your record.`;
    case "contributed": return `A de-identified extract went to ${e.to_name || e.to} for ${purposeWords(e.purpose)}.`;
    case "review": return `You ${e.decision === "accept" ? "accepted" : "rejected"} a late change in ${sectionWords(e.section)}.`;
    default: return `${cap(String(e.event))}.`;
  }
}

async function screenGrants() {
  const events = (await api("GET", "/api/v1/grants")).events || [];
  const granted = events.filter((e) => e.event === "granted");
  const active = granted.filter((g) => g.status === "active");
  const ended = granted.filter((g) => g.status !== "active");
  const names = new Map(granted.map((g) => [g.id, heldBy(g)]));
  return [
    el("h1", {}, "Who has access"),
    el("p", { className: "lede" }, "These people can see parts of your record. Access always ends on the date shown; you can stop it sooner."),
    active.length ? el("div", { className: "cards" }, active.map(grantCard)) : el("p", { className: "empty" }, "Nobody has access to your record at the moment."),
    ended.length > 0 && [el("h2", {}, "Access that has ended"),
      el("ul", { className: "plain" }, ended.map((g) => el("li", { dataset: { grantEnded: g.id } },
        `${heldBy(g)}: ${scopeListWords(g.scopes)} — ${g.status === "revoked" ? "you stopped it" : `ended ${when(g.expires)}`}.`)))],
    events.length > 0 && el("details", { className: "history" }, el("summary", {}, "Full history of your decisions"),
      el("ol", { className: "plain" }, [...events].reverse().map((e) => el("li", { dataset: { ledgerEvent: e.event } },
        el("span", { className: "meta" }, when(e.at), ": "), ledgerWords(e, names))))),
  ];
}

// An audit event in words, from its JSON (names there already say whether they are verified).
function auditWords(ev) {
  if (ev.words) return ev.words;
  const what = listWords((ev.sections || []).map(sectionWords));
  const at = when(ev.at);
  const why = ev.purpose ? `, for ${purposeWords(ev.purpose)}` : "";
  switch (ev.event) {
    case "emergency": {
      const m = ev.emergency || {};
      return `EMERGENCY ACCESS: ${ev.to_name} opened your ${what} on ${at}, sent by ${ev.by_name}, under your emergency arrangement with ${m.org_name || m.org}, until ${when(m.until)}. Reason given: “${m.reason}”.`;
    }
    case "served": return `${ev.to_name} received your ${what} from ${ev.by_name} on ${at}${why}${ev.pushed ? " (sent as it was written)" : ""}.${ev.reported_head == null && !ev.pushed ? " It did not report what its user read." : ""}`;
    case "read": return `${ev.by_name} read your ${what} on ${at}${why} (as their device reports).`;
    case "wrote": {
      const n = (ev.entries || []).length;
      return `${ev.by_name} wrote ${n} ${n === 1 ? "entry" : "entries"} in your ${what} on ${at}${why} (as their device reports).`;
    }
    case "proxy-approved": return `${ev.by_name} approved, on your behalf, the access request of ${ev.requester_name} on ${at} (as their device reports).`;
    case "proxy-denied": return `${ev.by_name} denied, on your behalf, the access request of ${ev.requester_name} on ${at}${ev.reason ? `. Reason given: “${ev.reason}”` : ""} (as their device reports).`;
    default: return `${ev.by_name}: ${ev.event} on ${at}.`;
  }
}

const emergencyUseWords = (u) => `EMERGENCY ACCESS ${u.state || "in use"}: ${u.by_name} since ${when(u.since)}, until ${when(u.until)}. Reason given: “${u.reason}”.`;

function emergencyUses(uses) {
  if (!uses || !uses.length) return null;
  return el("section", { className: "emergency-box", "aria-labelledby": "em-uses-h" },
    el("h2", { id: "em-uses-h" }, "Emergency access to your record"),
    uses.map((u) => el("p", { dataset: { emergencyUse: "" } }, emergencyUseWords(u))));
}

async function screenAudit() {
  const a = await api("GET", "/api/v1/audit");
  const events = a.events || [];
  const problems = a.problems || [];
  return [
    el("h1", {}, "Who looked at my record"),
    el("p", { className: "lede" }, "Every time someone receives, reads or adds to your record, it is written down here, newest first. Names are shown as checked, or say they are not verified."),
    emergencyUses(a.emergency),
    problems.length > 0 && el("section", { className: "warning-box", "aria-labelledby": "problems-h" },
      el("h2", { id: "problems-h" }, "⚠ Warnings about this log"),
      el("ul", {}, problems.map((p) => el("li", { dataset: { auditProblem: Object.keys(p).find((k) => k !== "words") || "" } }, p.words || "A problem was found.")))),
    a.whole === false && !problems.length && el("p", { className: "warning" }, "⚠ This log could not be fully checked."),
    events.length
      ? el("ol", { className: "audit" }, events.map((ev) => el("li", { className: ev.event === "emergency" ? "emergency" : "", dataset: { auditEvent: ev.event || "" } }, auditWords(ev))))
      : el("p", { className: "empty" }, "Nobody else has received or read your record yet."),
  ];
}

async function screenDevices() {
  const devices = (await api("GET", "/api/v1/devices")).devices || [];
  return [
    el("h1", {}, "My devices"),
    el("p", { className: "lede" }, "Your record is kept on these phones and computers. Each can read and add to it."),
    el("ul", { className: "cards" }, devices.map((d) => el("li", { className: `card${d.removed ? " ended" : ""}`, dataset: { device: d.peer_id } },
      el("h2", {}, d.name || "Unnamed device", d.this_device ? " (this device)" : ""),
      el("dl", { className: "facts" },
        fact("Added", when(d.added)),
        d.removed && fact("Removed", when(d.removed)),
        d.holds_root_key && fact("Main key", "This device holds your record's main key: it approves requests and gives access."),
        fact("Key", idCode(d.peer_id)))))),
    el("p", {}, "To add a device, run ", el("code", {}, "hearth device link"), " on this computer and follow the steps. To remove one, run ",
      el("code", {}, "hearth device remove KEY"), "."),
  ];
}

async function screenPatientEmergency() {
  const [list, audit] = await Promise.all([api("GET", "/api/v1/emergency"), api("GET", "/api/v1/audit").catch(() => null)]);
  const arrangements = list.arrangements || [];
  return [
    el("h1", {}, "Emergency access"),
    el("p", { className: "lede" }, "Without an arrangement, nobody can open your record in an emergency. You can arrange in advance for an emergency team to read chosen parts when you cannot answer. Every use is shown to you, with the reason given."),
    emergencyUses(audit && audit.emergency),
    arrangements.length
      ? el("ul", { className: "cards" }, arrangements.map((a) => el("li", { className: "card", dataset: { arrangement: a.org } },
        el("h2", {}, a.org_name || "An organisation"),
        el("dl", { className: "facts" },
          fact("They may read", listWords((a.sections || []).map((s) => sectionWords(parseScope(s).section)))),
          fact("Each use lasts at most", `${Math.round((a.max_duration_ms || 0) / 3600000)} hours`),
          fact("Until", when(a.expires)),
          fact("Organisation key", idCode(a.org))),
        !a.escrowed && el("p", { className: "warning" }, "This works only while one of your devices is online.")))
      )
      : el("p", { className: "empty" }, "You have no emergency arrangements."),
    el("p", {}, "To arrange emergency access, run ", el("code", {}, "hearth emergency arrange --org ORG --name NAME --sections allergies,medications --max-duration 12h --expires 1y"),
      " in a terminal. To cancel one, run ", el("code", {}, "hearth emergency cancel --org ORG"), "."),
  ];
}

const CHOICES = {
  research: ["Medical research", "Let de-identified information from your record count towards medical research. Your name and details are removed; researchers see only counts."],
  planning: ["Planning services", "Let de-identified information from your record count towards planning local health and care services."],
};

async function screenChoices() {
  const c = await api("GET", "/api/v1/consent");
  return [
    el("h1", {}, "Research and planning choices"),
    el("p", { className: "lede" }, "Both are off until you choose. You can change your mind at any time; a change stops further contributions."),
    Object.entries(CHOICES).map(([purpose, [title, text]]) => {
      const now = c[purpose] || {};
      const status = !now.chosen ? "Off: you have not chosen yet."
        : now.opted_in ? `On since ${when(now.since)}.` : `Off: you said no on ${when(now.since)}.`;
      const choose = (choice) => (e) => act(e.currentTarget, async () => {
        await api("POST", "/api/v1/consent", { purpose, choice });
        say(`Saved: ${title.toLowerCase()} is now ${choice}.`);
        await route("refresh");
      });
      return el("section", { className: "card", dataset: { consent: purpose }, "aria-labelledby": `consent-${purpose}-h` },
        el("h2", { id: `consent-${purpose}-h` }, title),
        el("p", {}, text),
        el("p", { className: "choice-status" }, el("strong", {}, "Now: "), status),
        el("div", { className: "actions" },
          el("button", { type: "button", className: "primary", dataset: { choice: "on" }, disabled: now.chosen && now.opted_in, on: { click: choose("on") } }, "Yes, allow"),
          el("button", { type: "button", className: "secondary", dataset: { choice: "off" }, disabled: now.chosen && !now.opted_in, on: { click: choose("off") } }, "No, do not allow")));
    }),
    el("p", {}, `De-identified contributions made so far: ${c.contributions || 0}.`),
  ];
}

// ---------------------------------------------------------------- status (every role)

const REACH = { public: "other devices can reach this one directly", private: "reached through your relays", unknown: "not known yet" };

function sessionState(s) {
  if (s.in_sync) return "in sync";
  if (s.error) return `failed: ${s.error}`;
  const behind = ((s.report && s.report.sections) || []).reduce((n, x) => n + (x.behind || 0), 0);
  return `${behind} change(s) behind`;
}

function syncTable(sessions, recordWords) {
  const sectionsCell = (x) => ((x.report && x.report.sections) || []).map((sec) => el("div", {},
    `${sectionWords(sec.name || sec.section)}: ${sec.behind || sec.ahead ? `${sec.behind || 0} behind, ${sec.ahead || 0} ahead` : "in sync"}`));
  return el("div", { className: "table-wrap" }, el("table", {},
    el("caption", {}, "The last sync with each device, per record"),
    el("thead", {}, el("tr", {}, ["Record", "With", "When", "State", "Sections"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, sessions.map((x) => el("tr", { className: x.in_sync ? "" : "not-in-sync", dataset: { syncRecord: x.record, syncPeer: x.peer } },
      el("td", { dataset: { label: "Record" } }, recordWords(x.record)), el("td", { dataset: { label: "With" } }, idCode(x.peer)),
      el("td", { dataset: { label: "When" } }, when(x.at)), el("td", { dataset: { label: "State" } }, sessionState(x)),
      el("td", { dataset: { label: "Sections" } }, sectionsCell(x)))))));
}

async function screenStatus() {
  const s = await api("GET", "/api/v1/status");
  const connected = s.connected || [];
  const sessions = s.sessions || [];
  const failing = Object.entries(s.known_peers || {}).filter(([, k]) => k.last_error);
  const recordWords = (rid) => (rid === state.me.record_id ? "your record" : idCode(rid));
  return [
    el("h1", {}, "Sync status"),
    (s.emergency_words || []).length > 0 && el("section", { className: "emergency-box", "aria-label": "Emergency access" },
      s.emergency_words.map((w) => el("p", {}, w))),
    !s.running && el("p", { className: "warning" }, "⚠ Hearth's background service is not running: nothing is synced. Start it with ", el("code", {}, "hearth run"), "."),
    el("dl", { className: "facts" },
      fact("This device's key", idCode(s.peer_id)),
      fact("Reachable", REACH[s.reachability] || s.reachability || "not known"),
      fact("Connected devices", String(connected.length))),
    connected.length > 0 && el("ul", { className: "plain", "aria-label": "Connected devices" }, connected.map((p) => el("li", { dataset: { peer: p } }, idCode(p),
      ((s.connections || {})[p] || []).some((a) => a.includes("p2p-circuit")) ? " (through a relay)" : " (directly)"))),
    el("h2", {}, "Records and sections"),
    sessions.length ? syncTable(sessions, recordWords)
      : el("p", { className: "empty" }, "No sync has happened since Hearth started."),
    failing.length > 0 && [el("h2", {}, "Devices that could not be reached"),
      el("ul", { className: "plain" }, failing.map(([p, k]) => el("li", {}, idCode(p), ` — ${k.failures} failed attempt(s): ${k.last_error}`)))],
  ];
}

// ---------------------------------------------------------------- professional screens

const GRANT_WORDS = { active: "active", expired: "ended", revoked: "revoked by the patient" };

async function screenPatients() {
  const patients = (await api("GET", "/api/v1/records")).patients || [];
  const count = new Map();
  for (const p of patients) if (p.name) count.set(p.name, (count.get(p.name) || 0) + 1);
  return [
    el("h1", {}, "Patients"),
    el("p", { className: "lede" }, "The records you hold access to. Always check the record number as well as the name."),
    patients.length ? el("ul", { className: "cards" }, patients.map((p) => el("li", { className: "card patient", dataset: { patient: p.record_id } },
      el("h2", {}, el("a", { href: `#/patients/${enc(p.record_id)}` }, p.name || "Name not shared")),
      el("p", {}, "Record ", idCode(p.record_id)),
      count.get(p.name) > 1 && el("p", { className: "warning" }, "⚠ Another patient has the same name: check the record number."),
      el("p", {}, "Access: ", (p.grants || []).length ? (p.grants || []).map((g) => GRANT_WORDS[g.status] || g.status).join(", ") : "none"),
      el("p", { className: "meta" }, "Sections held: ", (p.sections || []).length ? listWords(p.sections.map(sectionWords)) : "none yet"))))
      : el("p", { className: "empty" }, "You hold no patient records yet. Ask a patient for access first."),
    tokenForm({ id: "accept-token", title: "Add access you were given", action: "accept", button: "Add access",
      help: "If a patient gave you access as text (it starts with HEARTH1G), paste it here.",
      onToken: async (token) => {
        const r = await api("POST", "/api/v1/grants/accept", { token });
        const scopes = ((r.rights && r.rights.scopes) || []).map((s) => `${s.section} (${s.ability})`);
        say(`Access added: you ${scopeListWords(scopes)} until ${when(r.rights && r.rights.expires)}.`);
        await route("refresh");
      } }),
  ];
}

// The sections a professional may add to, from their append scopes ("notes:*" -> notes and
// the labelled notes sections they hold).
function appendSections(scopes, rec) {
  const out = [];
  for (const s of scopes) {
    const [cls, label] = s.section.split(":");
    if (label === "*") {
      out.push(cls);
      for (const sec of rec.sections || []) if (sec.class === cls) out.push(sectionName(sec));
    } else out.push(s.section);
  }
  return [...new Set(out)].filter((n) => ENTRY_FIELDS[n.split(":")[0]]);
}

async function screenPatient(rid) {
  const [rec, list, grants] = await Promise.all([
    api("GET", `/api/v1/records/${enc(rid)}`),
    api("GET", "/api/v1/records").catch(() => null),
    api("GET", "/api/v1/grants").catch(() => null),
  ]);
  const info = ((list && list.patients) || []).find((p) => p.record_id === rid) || {};
  const held = ((grants && grants.events) || []).filter((e) => e.event === "held" && e.record_id === rid);
  const active = held.filter((h) => h.status === "active");
  const canAdd = appendSections(active.flatMap((h) => (h.scopes || []).map(parseScope)).filter((s) => s.ability === "append"), rec);
  const sections = rec.sections || [];
  return [
    el("p", {}, el("a", { href: "#/patients" }, "← All patients")),
    el("h1", {}, info.name || "Name not shared"),
    el("p", { className: "record-id" }, "Record ", idCode(rid)),
    el("section", { className: "card", "aria-labelledby": "access-h" }, el("h2", { id: "access-h" }, "Your access"),
      active.length
        ? el("ul", { className: "plain" }, active.map((h) => el("li", {}, `You ${scopeListWords(h.scopes)} until ${when(h.expires)}.`)))
        : el("p", { className: "warning" }, "You have no current access to this record."),
      el("p", {}, el("a", { href: `#/ask?record=${enc(rid)}` }, "Ask the patient for more access"))),
    recordProblems(rec),
    canAdd.length > 0 && addEntryForm(rid, canAdd),
    sections.length ? sections.map((s) => sectionView(s, rid, "professional"))
      : el("p", { className: "empty" }, "Nothing of this record has reached you yet. It arrives when your device syncs with the patient's."),
  ];
}

// The grant an approval issued, to hand over when the record has no relay to carry it back:
// the professional scans the QR code or pastes the text.
function grantResult(g) {
  return el("section", { className: "card result", id: "grant-result", "aria-labelledby": "grant-result-h" },
    el("h2", { id: "grant-result-h" }, `Access given to ${g.name || "them"}`),
    el("p", {}, "If your record uses a relay, it reaches them by itself. Otherwise show them this QR code, or give them the text (they add it under “Add access you were given”)."),
    el("p", {}, el("code", { className: "token", id: "grant-token" }, g.token)),
    el("div", { className: "actions" }, copyButton(g.token), qrButton(`grant:${g.id}`, g.token, g.box, "QR code of the access you gave")),
    g.box);
}

function requestResult(r) {
  return el("section", { className: "card result", id: "ask-result", "aria-labelledby": "ask-result-h" },
    el("h2", { id: "ask-result-h" }, "Give this request to the patient"),
    el("p", {}, "The patient can scan the QR code, or paste the text into Hearth (Requests, then “Add a request you were given”)."),
    el("p", {}, el("code", { className: "token", id: "request-token" }, r.token)),
    el("div", { className: "actions" }, copyButton(r.token), qrButton(`request:${r.id}`, r.token, r.box, "QR code of your access request")),
    r.box,
    el("p", { className: "meta" }, `Request ${r.id}. If approved at once, access would end ${when(r.expires)}.`));
}

function screenAsk(_arg, query) {
  const classes = Object.keys(CLASS_WORDS);
  const form = el("form", { className: "card form", id: "ask-form", on: { submit: (ev) => { ev.preventDefault(); sendRequest(form, ev.submitter); } } },
    el("div", { className: "field" }, el("label", { htmlFor: "ask-record" }, "Patient's record number"),
      el("p", { className: "hint", id: "ask-record-hint" }, "It starts with r. The patient can read it to you from their Hearth."),
      el("input", { type: "text", id: "ask-record", required: true, spellcheck: "false", autocomplete: "off", "aria-describedby": "ask-record-hint", value: query.get("record") || "" })),
    el("fieldset", {}, el("legend", {}, "Which parts of the record"),
      classes.map((c) => el("div", { className: "check" },
        el("input", { type: "checkbox", id: `ask-sec-${slug(c)}`, dataset: { section: c } }),
        el("label", { htmlFor: `ask-sec-${slug(c)}` }, cap(sectionWords(c))))),
      el("div", { className: "field" }, el("label", { htmlFor: "ask-more" }, "Sensitive parts, if you need them", el("span", { className: "optional" }, " (optional)")),
        el("p", { className: "hint", id: "ask-more-hint" }, "Separated by commas, for example notes:mental-health. Ask only for what you need."),
        el("input", { type: "text", id: "ask-more", "aria-describedby": "ask-more-hint", spellcheck: "false" }))),
    el("fieldset", {}, el("legend", {}, "What you need to do"),
      [["read", "Read only"], ["append", "Read and add entries"]].map(([v, w]) => el("div", { className: "check" },
        el("input", { type: "radio", name: "ability", id: `ask-ability-${v}`, value: v, checked: v === "read" }),
        el("label", { htmlFor: `ask-ability-${v}` }, w)))),
    el("div", { className: "field" }, el("label", { htmlFor: "ask-purpose" }, "Why"),
      el("select", { id: "ask-purpose" }, PURPOSES.map(([v, w]) => el("option", { value: v }, cap(w))))),
    el("div", { className: "field" }, el("label", { htmlFor: "ask-expires" }, "For how long"),
      el("select", { id: "ask-expires" }, [["1d", "1 day"], ["7d", "7 days"], ["30d", "30 days"], ["90d", "90 days"], ["1y", "1 year"]]
        .map(([v, w]) => el("option", { value: v, selected: v === "30d" }, w)))),
    el("div", { className: "field" }, el("label", { htmlFor: "ask-reason" }, "Reason (the patient sees this)"),
      el("textarea", { id: "ask-reason", rows: "3", required: true, maxlength: "1000" })),
    el("button", { type: "submit", className: "primary", dataset: { action: "send-request" } }, "Create the request"));
  return [
    el("h1", {}, "Ask a patient for access"),
    el("p", { className: "lede" }, "The patient decides. They see your name, whether your organisation vouches for you, your reason and exactly what you ask for."),
    form,
    state.lastRequest && requestResult(state.lastRequest),
  ];
}

async function sendRequest(form, button) {
  const q = (sel) => form.querySelector(sel);
  const sections = [...form.querySelectorAll("input[type=checkbox][data-section]:checked")].map((b) => b.dataset.section)
    .concat(q("#ask-more").value.split(/[\s,]+/).filter(Boolean));
  if (!sections.length) return say("Choose at least one part of the record.", "error");
  await act(button, async () => {
    const r = await api("POST", "/api/v1/requests", {
      record: q("#ask-record").value.trim(), sections: sections.join(","), ability: q("input[name=ability]:checked").value,
      purpose: q("#ask-purpose").value, expires: q("#ask-expires").value, reason: q("#ask-reason").value.trim() });
    state.lastRequest = { ...r, box: el("div", { className: "qr-box" }) };
    forget(form);
    say("Request created. Give it to the patient: the text or the QR code below.");
    await route("refresh");
    const result = $("#ask-result");
    if (result) result.querySelector("h2").focus();
  });
}

function screenProEmergency() {
  const form = el("form", { className: "card form", id: "emergency-form", on: { submit: (ev) => { ev.preventDefault(); breakGlass(form, ev.submitter); } } },
    el("div", { className: "field" }, el("label", { htmlFor: "em-record" }, "Patient's record number"),
      el("input", { type: "text", id: "em-record", required: true, spellcheck: "false", autocomplete: "off" })),
    el("div", { className: "field" }, el("label", { htmlFor: "em-reason" }, "Reason (required; the patient and your IG team see it)"),
      el("textarea", { id: "em-reason", rows: "3", required: true, maxlength: "500" })),
    el("div", { className: "field" }, el("label", { htmlFor: "em-duration" }, "For how long"),
      el("select", { id: "em-duration" }, [["1h", "1 hour"], ["4h", "4 hours"], ["12h", "12 hours"], ["24h", "24 hours"], ["72h", "3 days"]]
        .map(([v, w]) => el("option", { value: v, selected: v === "4h" }, w)))),
    el("button", { type: "submit", className: "danger", dataset: { action: "break-glass" } }, "Open the record in an emergency"));
  return [
    el("h1", {}, "Emergency access (break-glass)"),
    el("div", { className: "emergency-box", role: "note" },
      el("p", {}, el("strong", {}, "Use this only when the patient needs urgent care and cannot be asked.")),
      el("p", {}, "The patient will see that you opened their record, when, and the reason you give. Your organisation logs every use first, and its information governance (IG) team reviews it."),
      el("p", {}, "It works only if the patient arranged emergency access with your organisation. You see only the parts they chose, and only for the time given.")),
    form,
    el("div", { id: "emergency-result" }),
  ];
}

async function breakGlass(form, button) {
  const rid = form.querySelector("#em-record").value.trim();
  await act(button, async () => {
    const r = await api("POST", "/api/v1/emergency/access", { record: rid, reason: form.querySelector("#em-reason").value.trim(), duration: form.querySelector("#em-duration").value });
    const sections = listWords((r.sections || []).map((s) => sectionWords(typeof s === "string" ? s : s.section || s.name || "")));
    forget(form);
    form.reset();
    say(`Emergency access open until ${when(r.until)}: ${sections}.`);
    $("#emergency-result").replaceChildren(el("p", { className: "card" }, `Emergency access is open until ${when(r.until)} for ${sections}. `,
      el("a", { href: `#/patients/${enc(r.record_id || rid)}` }, "Open the patient's record")));
  });
}

// ---------------------------------------------------------------- go

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
