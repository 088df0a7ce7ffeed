// Hearth web app: the professional's screens: patients held, one patient, asking for access,
// emergency access.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.

import { $, CLASS_WORDS, PURPOSES, act, api, cap, copyButton, el, enc, idCode, listWords, parseScope, qrButton, say, scopeListWords, sectionName, sectionWords, slug, state, when } from "./core.js";
import { ENTRY_FIELDS, addEntryForm, recordProblems, sectionView } from "./record.js";
import { tokenForm } from "./patient.js";
import { forget, route } from "./app.js";

// ---------------------------------------------------------------- professional screens

export const GRANT_WORDS = { active: "active", expired: "ended", revoked: "revoked by the patient" };

export async function screenPatients() {
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
export function appendSections(scopes, rec) {
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

export async function screenPatient(rid) {
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

export function requestResult(r) {
  return el("section", { className: "card result", id: "ask-result", "aria-labelledby": "ask-result-h" },
    el("h2", { id: "ask-result-h" }, "Give this request to the patient"),
    el("p", {}, "The patient can scan the QR code, or paste the text into Hearth (Requests, then “Add a request you were given”)."),
    el("p", {}, el("code", { className: "token", id: "request-token" }, r.token)),
    el("div", { className: "actions" }, copyButton(r.token), qrButton(`request:${r.id}`, r.token, r.box, "QR code of your access request")),
    r.box,
    el("p", { className: "meta" }, `Request ${r.id}. If approved at once, access would end ${when(r.expires)}.`));
}

export function screenAsk(_arg, query) {
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

export async function sendRequest(form, button) {
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

export function screenProEmergency() {
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

export async function breakGlass(form, button) {
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
