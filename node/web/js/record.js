// Hearth web app: showing a record's sections and entries (both roles), with who wrote each
// from verified facts, and adding entries.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.

import { $, LABELS, act, api, cap, confirmDialog, el, enc, fact, idCode, say, sectionName, sectionWords, slug, state, when } from "./core.js";
import { forget, route } from "./app.js";

// ---------------------------------------------------------------- record display (both roles)

export const MAIN_FIELD = ["text", "name", "substance", "title", "statement", "class", "assessment_type"];
export const FIELD_WORDS = { nhs_number: "NHS number", gp_practice: "GP practice", dnacpr: "DNACPR decision in place", birth_date: "Date of birth",
  personal_budget_gbp: "Personal budget (£)", data_base64: "File", content_type: "File type", url: "Link" };
export const fieldWords = (k) => FIELD_WORDS[k] || cap(k.replace(/_/g, " "));

export function valueWords(k, v) {
  if (k === "data_base64") return `a file is attached (about ${Math.ceil((String(v).length * 0.75) / 1024)} KB)`;
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (Array.isArray(v)) return v.map((x) => valueWords("", x)).join("; ");
  if (v && typeof v === "object") {
    if (v.display || v.name) return String(v.display || v.name);
    return Object.entries(v).map(([a, b]) => `${fieldWords(a)}: ${valueWords(a, b)}`).join(", ");
  }
  return String(v);
}

export function bodyView(body) {
  if (!body || typeof body !== "object") return el("p", {}, String(body ?? ""));
  const main = MAIN_FIELD.find((k) => typeof body[k] === "string");
  const rest = Object.entries(body).filter(([k, v]) => k !== main && k !== "source" && v != null);
  return el("div", { className: "entry-body" },
    main && el("p", { className: "entry-main" }, body[main]),
    rest.length > 0 && el("dl", { className: "fields" }, rest.map(([k, v]) => fact(fieldWords(k), valueWords(k, v)))));
}

// Who wrote it: ONLY from `verified` (facts this node checked).
export function authorView(v, viewer) {
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
export function claimView(e) {
  const p = e.provenance || {};
  const v = e.verified;
  if (!p.author_name && !p.author_role) return null;
  const checked = v && v.basis && v.basis !== "unverified";
  if (checked && v.name === p.author_name && (!p.author_role || v.role === p.author_role)) return null;
  const said = [p.author_name && `“${p.author_name}”`, p.author_role].filter(Boolean).join(", ");
  return el("p", { className: "claim" }, `Says they are ${said} (not checked)`);
}

export function metaView(e) {
  const v = e.verified || {};
  const p = e.provenance || {};
  const parts = [];
  if (v.received_at) parts.push(`Received ${when(v.received_at)}`);
  else if (p.recorded_at) parts.push(`Says it was written ${when(p.recorded_at)} (not checked)`);
  if (e.version > 1) parts.push(`version ${e.version} (corrected)`);
  return el("p", { className: "meta" }, parts.join(" · "));
}

export function entryView(e, rid, viewer) {
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

export async function markError(e, rid, button) {
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

export function sectionView(s, rid, viewer) {
  const name = sectionName(s);
  const entries = s.entries || [];
  const hid = `sec-${slug(name)}`;
  return el("section", { className: "record-section", dataset: { sectionView: name }, "aria-labelledby": hid },
    el("h2", { id: hid }, cap(sectionWords(name)), " ", el("span", { className: "count" }, `(${entries.length} ${entries.length === 1 ? "entry" : "entries"})`)),
    entries.length ? el("ul", { className: "entries" }, entries.map((e) => entryView(e, rid, viewer))) : el("p", { className: "empty" }, "No entries yet."));
}

export function recordProblems(rec) {
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
export const ENTRY_FIELDS = {
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

export function fieldControl([key, label, kind, required]) {
  const id = `entry-${key}`;
  const ctl = kind === "area" ? el("textarea", { id, rows: "4", required })
    : el("input", { id, type: kind === "date" ? "date" : "text", required });
  return el("div", { className: "field" }, el("label", { htmlFor: id }, label, required ? "" : el("span", { className: "optional" }, " (optional)")), ctl);
}

// `sections`: the sections a professional may add to; null for the patient (any class, with
// a sensitivity label).
export function addEntryForm(rid, sections) {
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

export async function addEntry(rid, form, pick, label, button) {
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
