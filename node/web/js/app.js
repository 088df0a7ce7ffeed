// Hearth web app: the entry point: login and session, routing between screens, live updates,
// and the sync status screen every role has.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.

import { $, ROLE_WORDS, TOKEN_KEY, act, api, el, fact, forgetToken, idCode, listen, say, sectionWords, state, when } from "./core.js";
import { screenAudit, screenChoices, screenDevices, screenGrants, screenPatientEmergency, screenRecord, screenRequests } from "./patient.js";
import { screenAsk, screenPatient, screenPatients, screenProEmergency } from "./professional.js";

// ---------------------------------------------------------------- session

export async function start() {
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
export async function login() {
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

export function signedIn(session) {
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

export function showSignedOut(message) {
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

export async function logout(button) {
  await act(button, async () => {
    await api("DELETE", "/api/v1/session");
    showSignedOut();
    say("You have logged out.");
  });
}

// ---------------------------------------------------------------- routing

export const NAV = {
  patient: [["record", "My record"], ["requests", "Requests"], ["grants", "Who has access"], ["audit", "Who looked"],
    ["devices", "My devices"], ["emergency", "Emergency access"], ["choices", "Research choices"], ["status", "Sync status"]],
  professional: [["patients", "Patients"], ["ask", "Ask for access"], ["emergency", "Emergency access"], ["status", "Sync status"]],
  relay: [["status", "Status"]],
};
export const navItems = () => NAV[state.me.role] || NAV.relay;

export const SCREENS = {
  patient: { record: screenRecord, requests: screenRequests, grants: screenGrants, audit: screenAudit, devices: screenDevices,
    emergency: screenPatientEmergency, choices: screenChoices, status: screenStatus },
  professional: { patients: screenPatients, patient: screenPatient, ask: screenAsk, emergency: screenProEmergency, status: screenStatus },
  relay: { status: screenStatus },
};
// Screens without server data (forms): a live update never re-renders them.
export const STATIC = new Set(["ask", "emergency:professional"]);

// "#/patients/RID?x=y" -> {name: "patient", arg: RID, navKey: "patients", query}
export function resolve() {
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
export async function route(mode = "nav") {
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
export function swap(main, nodes, mode) {
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

export function touch(e) {
  if (e.target.id) state.touched.add(e.target.id);
}
export function forget(container) {
  for (const f of container.querySelectorAll("[id]")) state.touched.delete(f.id);
}

// ---------------------------------------------------------------- live updates

let refreshTimer = null;
export function onChanged(ev) {
  let what = null;
  try { what = JSON.parse(ev.data).what; } catch { /* no data: treat as received */ }
  // A professional's read of a record is itself written down locally (for the patient's
  // audit): a "local" change right after a render is most likely our own doing. Ignoring it
  // avoids a read -> changed -> read loop.
  if (what === "local" && (state.screen === "patient" || Date.now() - state.renderedAt < 1500)) return;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(liveRefresh, 200);
}

export function liveRefresh() {
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

export function runPendingRefresh() {
  if (!state.pendingRefresh) return;
  state.pendingRefresh = false;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(liveRefresh, 200);
}

// "Requests (2)" in the patient's navigation.
export async function updateBadge() {
  const badge = document.querySelector("[data-badge=requests]");
  if (!badge) return;
  try {
    const n = ((await api("GET", "/api/v1/requests")).pending || []).filter((r) => !r.lapsed).length;
    badge.textContent = n ? `(${n} waiting)` : "";
  } catch { /* the badge is a convenience */ }
}

// ---------------------------------------------------------------- status (every role)

export const REACH = { public: "other devices can reach this one directly", private: "reached through your relays", unknown: "not known yet" };

export function sessionState(s) {
  if (s.in_sync) return "in sync";
  if (s.error) return `failed: ${s.error}`;
  const behind = ((s.report && s.report.sections) || []).reduce((n, x) => n + (x.behind || 0), 0);
  return `${behind} change(s) behind`;
}

export function syncTable(sessions, recordWords) {
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

export async function screenStatus() {
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

// ---------------------------------------------------------------- go

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
