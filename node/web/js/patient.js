// Hearth web app: the patient's screens: record, requests, who has access, who looked,
// devices, emergency arrangements, research choices.
//
// Rules kept throughout: every node is built with el() and textContent, never innerHTML
// (record content is untrusted); no inline handlers or styles (a strict CSP is sent); who
// wrote an entry is shown only from `verified` facts, and the writer's own words are
// labelled as unchecked claims.

import { $, abilityWords, act, api, cap, confirmDialog, copyButton, durationWords, el, enc, exportButton, fact, idCode, listWords, parseScope, purposeWords, qrButton, say, scopeListWords, sectionWords, slug, state, when } from "./core.js";
import { addEntryForm, recordProblems, sectionView } from "./record.js";
import { forget, route } from "./app.js";

// ---------------------------------------------------------------- patient screens

export async function screenRecord() {
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

export function identityView(idn) {
  if (idn && idn.status === "verified") {
    return el("p", { className: "identity verified" }, el("strong", {}, "✔ Verified by ", idn.organisation, ": "),
      `${idn.name}, ${idn.role}${idn.registration ? ` (${idn.registration})` : ""}. ${idn.organisation} is an organisation you trust.`);
  }
  return el("p", { className: "identity unverified" }, el("strong", {}, "⚠ NOT verified: "),
    `${(idn && idn.reason) || "no proof of who they are"}. Hearth cannot confirm who this is. Only say yes if you know them and expected this request.`);
}

export const DURATIONS = [[1, "1 day"], [7, "7 days"], [30, "30 days"], [90, "90 days"]];

export function requestCard(r) {
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

export async function approve(r, button) {
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

export async function deny(r, button) {
  const card = button.closest("[data-request]");
  const reason = card.querySelector(`#req-${slug(r.id)}-reason`).value.trim();
  await act(button, async () => {
    await api("POST", `/api/v1/requests/${enc(r.id)}/deny`, reason ? { reason } : {});
    forget(card);
    say(`You said no to ${r.name || "the request"}. They get no access.`);
    await route("refresh");
  });
}

export function tokenForm({ id, title, help, action, button, onToken }) {
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

export async function screenRequests() {
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
export function heldBy(g) {
  const idn = g.to_identity;
  if (idn && idn.status === "verified") return `${idn.name} (${idn.role}, verified by ${idn.organisation})`;
  return g.to_name ? `“${g.to_name}” (name not verified)` : "Someone without a name";
}

export function grantCard(g) {
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

export async function revoke(g, button) {
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
export function ledgerWords(e, names) {
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

export async function screenGrants() {
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
export function auditWords(ev) {
  if (ev.words) return ev.words;
  const what = listWords((ev.sections || []).map(sectionWords));
  const at = when(ev.at);
  const why = ev.purpose ? `, for ${purposeWords(ev.purpose)}` : "";
  switch (ev.event) {
    case "emergency": {
      const m = ev.emergency || {};
      return `EMERGENCY ACCESS: ${ev.to_name} opened your ${what} on ${at}, sent by ${ev.by_name}, under your emergency arrangement with ${m.org_name || m.org}, until ${when(m.until)}. Reason given: “${m.reason}”.`;
    }
    case "served": return `${ev.to_name} received your ${what} from ${ev.by_name} on ${at}${why}${ev.pushed ? " (sent without their asking)" : ""}.${ev.by_grantee ? ` This is ${ev.by_name}'s own report: your devices and relays did not send it.` : ev.reported_head == null && !ev.pushed ? " It did not report what its user read." : ""}`;
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

export const emergencyUseWords = (u) => `EMERGENCY ACCESS ${u.state || "in use"}: ${u.by_name} since ${when(u.since)}, until ${when(u.until)}. Reason given: “${u.reason}”.`;

export function emergencyUses(uses) {
  if (!uses || !uses.length) return null;
  return el("section", { className: "emergency-box", "aria-labelledby": "em-uses-h" },
    el("h2", { id: "em-uses-h" }, "Emergency access to your record"),
    uses.map((u) => el("p", { dataset: { emergencyUse: "" } }, emergencyUseWords(u))));
}

export async function screenAudit() {
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

export async function screenDevices() {
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
        fact("Key", idCode(d.peer_id))),
      !d.removed && !d.this_device && el("div", { className: "actions" },
        el("button", { type: "button", className: "danger", dataset: { action: "remove-device" },
          on: { click: (e) => removeDevice(d, e.currentTarget) } }, "Remove this device"))))),
    el("section", { className: "card", "aria-labelledby": "link-h" },
      el("h2", { id: "link-h" }, "Add a device"),
      el("p", {}, "Get a one-time code, then on the new phone or computer run ", el("code", {}, "hearth init --join CODE"),
        " (or scan the QR code) while this computer is on. The code works once."),
      el("button", { type: "button", className: "secondary", dataset: { action: "link-device" },
        on: { click: (e) => linkDevice(e.currentTarget) } }, "Get a code"),
      state.linkCode && linkResult(state.linkCode)),
  ];
}

// The one-time device-link code just opened, as text and QR code.
function linkResult(l) {
  return el("div", { id: "link-result" },
    el("p", {}, el("code", { className: "token", id: "link-code" }, l.code)),
    el("div", { className: "actions" }, copyButton(l.code), qrButton(`link:${l.code}`, l.code, l.box, "QR code of the one-time device link code")),
    l.box,
    el("p", { className: "meta" }, `It works once, until ${when(l.expires)}.`));
}

async function linkDevice(button) {
  await act(button, async () => {
    const r = await api("POST", "/api/v1/devices/link", {});
    state.linkCode = { code: r.code, expires: r.expires, box: el("div", { className: "qr-box" }) };
    say("A one-time code is ready: use it on the new device.");
    await route("refresh");
  });
}

async function removeDevice(d, button) {
  const ok = await confirmDialog({ title: `Remove ${d.name || "this device"}?`,
    text: "It will no longer receive your record or be trusted, and your record moves to new keys it does not get. What it already holds stays on it.",
    confirmText: "Remove the device" });
  if (!ok) return;
  await act(button, async () => {
    await api("POST", `/api/v1/devices/${enc(d.peer_id)}/remove`, {});
    say(`${d.name || "The device"} was removed.`);
    await route("refresh");
  });
}

export async function screenPatientEmergency() {
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

export const CHOICES = {
  research: ["Medical research", "Let de-identified information from your record count towards medical research. Your name and details are removed; researchers see only counts."],
  planning: ["Planning services", "Let de-identified information from your record count towards planning local health and care services."],
};

export async function screenChoices() {
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


// The grant an approval issued, to hand over when the record has no relay to carry it back:
// the professional scans the QR code or pastes the text.
export function grantResult(g) {
  return el("section", { className: "card result", id: "grant-result", "aria-labelledby": "grant-result-h" },
    el("h2", { id: "grant-result-h" }, `Access given to ${g.name || "them"}`),
    el("p", {}, "If your record uses a relay, it reaches them by itself. Otherwise show them this QR code, or give them the text (they add it under “Add access you were given”)."),
    el("p", {}, el("code", { className: "token", id: "grant-token" }, g.token)),
    el("div", { className: "actions" }, copyButton(g.token), qrButton(`grant:${g.id}`, g.token, g.box, "QR code of the access you gave")),
    g.box);
}
