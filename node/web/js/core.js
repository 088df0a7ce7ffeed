// Hearth web app: what every screen uses: the DOM helper, the API client (the session's
// token on every call), plain words for sections, purposes and times, status messages,
// dialogs, QR codes.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.

import { onChanged, resolve, runPendingRefresh, showSignedOut } from "./app.js";

// The session's token lives in sessionStorage: per origin (so per port: another server on
// 127.0.0.1 cannot read it, as it could a cookie) and gone when the tab closes.
export const TOKEN_KEY = "hearth-session";

export const state = {
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
  linkCode: null, // the device-link code opened in this tab (shown on #/devices)
  lastGrant: null, // the patient's last approval (its grant shown on #/requests to hand over)
};

export const $ = (sel) => document.querySelector(sel);
export const enc = encodeURIComponent;

// ---------------------------------------------------------------- DOM helper

// Properties set directly; everything else is an attribute (true -> "", false/null -> left out).
export const PROPS = new Set(["className", "textContent", "htmlFor", "value"]);

export function el(tag, attrs, ...children) {
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

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One call to the local API: JSON in, JSON (or text, for the QR SVG; a Blob when `blob`) out.
// Every call carries the session's token (no cookies are used, so no other site can ride on
// the session); failures throw ApiError with the server's plain-words message.
export async function api(method, path, body, blob) {
  const res = await send(method, path, body);
  if (res.status === 204) return null;
  if (blob) return res.blob();
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? res.json() : res.text();
}

// The request itself, with the token; a failure becomes an ApiError.
export async function send(method, path, body, signal) {
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

export function forgetToken() {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
}

// Live updates: `GET /api/v1/events` read with fetch (EventSource cannot send the token),
// its text/event-stream parsed here; reconnects 2 s after it ends while signed in.
export async function listen() {
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

export const CLASS_WORDS = {
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
export const LABELS = [
  ["general", "Everyday (general)"],
  ["mental-health", "Mental health (sensitive)"],
  ["sexual-health", "Sexual health (sensitive)"],
  ["safeguarding", "Safeguarding (sensitive)"],
  ["social-care", "Social care (sensitive)"],
];
export const LABEL_WORDS = { "mental-health": "mental health", "sexual-health": "sexual health", safeguarding: "safeguarding", "social-care": "social care" };
export const PURPOSES = [
  ["direct-care", "direct care"],
  ["social-care", "social care"],
  ["emergency", "emergency treatment"],
  ["research", "research"],
  ["planning", "planning services"],
];
export const PURPOSE_WORDS = Object.fromEntries([...PURPOSES, ["proxy", "acting for you as your proxy"]]);
export const ABILITY_WORDS = { read: "can see", append: "can see and add to", relay: "can store but not read", admin: "full control of" };
export const ROLE_WORDS = { patient: "patient", professional: "health or care professional", relay: "organisation node" };

export const cap = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
export const slug = (s) => String(s).replace(/[^A-Za-z0-9_-]/g, "-");
export const purposeWords = (p) => PURPOSE_WORDS[p] || p || "no purpose given";
export const abilityWords = (a) => ABILITY_WORDS[a] || a;

export function listWords(items) {
  if (!items.length) return "nothing";
  if (items.length === 1) return items[0];
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

// "notes" -> "notes"; "notes:mental-health" -> "notes (mental health, sensitive)".
export function sectionWords(name) {
  const [cls, label] = String(name).split(":");
  const base = CLASS_WORDS[cls] || cls;
  if (!label || label === "general") return base;
  if (label === "*") return `${base} (all, sensitive parts included)`;
  return `${base} (${LABEL_WORDS[label] || label}, sensitive)`;
}
export const sectionName = (s) => (!s.label || s.label === "general" ? s.class : `${s.class}:${s.label}`);

// "notes (read)" -> {section: "notes", ability: "read"}
export function parseScope(text) {
  const m = /^(.*) \((\w+)\)$/.exec(String(text));
  return m ? { section: m[1], ability: m[2] } : { section: String(text), ability: "read" };
}
export const scopeListWords = (scopes) =>
  (scopes || []).map(parseScope).map((s) => `${abilityWords(s.ability)} ${sectionWords(s.section)}`).join("; ");

export function when(iso) {
  if (!iso) return "an unknown time";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toLocaleString("en-GB", { weekday: "short", day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
}

export function durationWords(days) {
  const d = Number(days) || 0;
  if (d > 0 && d < 1) return `${Math.round(d * 24)} hours`;
  return d === 1 ? "1 day" : `${Math.round(d)} days`;
}

// Long ids are shortened on screen; the full id is in the title and in data-id.
export function idCode(id) {
  const s = String(id || "");
  const short = s.length > 18 ? `${s.slice(0, 10)}…${s.slice(-6)}` : s;
  return el("code", { className: "id", title: s, dataset: { id: s } }, short);
}

export const fact = (term, ...desc) => [el("dt", {}, term), el("dd", {}, ...desc)];

// ---------------------------------------------------------------- status, errors, dialogs

export function say(text, kind) {
  const box = $("#status-message");
  box.className = `status-message${kind ? ` is-${kind}` : ""}`;
  box.replaceChildren();
  if (text) box.append(el("p", {}, kind === "error" ? el("strong", {}, "Problem: ") : "", text));
}

export function fail(err) {
  if (err instanceof ApiError && err.status === 401) return showSignedOut(err.message);
  if (!(err instanceof ApiError)) console.error(err);
  say(err.message || String(err), "error");
}

// Runs an action from a button: disables it meanwhile, shows any error.
export async function act(button, fn) {
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
export function exportButton(rid, text) {
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
export function confirmDialog({ title, text, confirmText, field, danger = true }) {
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
export function svgDataUrl(svg) {
  const bytes = new TextEncoder().encode(svg);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return `data:image/svg+xml;base64,${btoa(bin)}`;
}
export const qrImage = (svg, alt) => el("img", { className: "qr", src: svgDataUrl(svg), alt });

// A button that shows or hides the QR code of `token` in `box`; kept open across refreshes.
export function qrButton(key, token, box, alt) {
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

export function copyButton(text) {
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
