#!/usr/bin/env python3
"""Round-trips FHIR bundles through the real `hearth` binary, one fresh patient node per bundle:

1. import the bundle: every resource becomes an entry;
2. import it again: nothing is written;
3. export --fhir: every imported resource comes back unchanged (the Patient keeps its clinical
   facts; it may gain the record's own name and NHS number);
4. export --fhir --rebuild (built from the typed fields alone): same codes, values, units,
   dates and statuses for every resource;
5. import the export into the same record: nothing is written;
6. mark one entry of each resource type in error and export --include-in-error: each comes
   back with FHIR's entered-in-error status (types with no status to say so stay out);
7. a second node that imported the export of step 3 imports that one: the same entries are
   marked entered in error there, once.

Before exporting, the patient grants a professional two things and revokes one, so every export
also holds the grants as `Consent` resources (one active, one inactive) for the validators.

The exports are left in OUT_DIR for the validators (validate_py.py, validate.js).

    python3 tests/fhir/roundtrip.py HEARTH_BINARY OUT_DIR BUNDLE_DIR...
"""
import json
import os
import subprocess
import sys
import tempfile

PASS = "roundtrip-passphrase-1"


def hearth(binary, home, *args):
    env = dict(os.environ, HEARTH_PASSPHRASE=PASS)
    env.pop("HEARTH_HOME", None)
    p = subprocess.run([binary, "--home", home, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"hearth {' '.join(args[:3])} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout) if "--json" in args else p.stdout


def clinical(r):
    """Type, codes, values and units, dates and statuses of a resource (as core/tests/fhir.rs)."""
    out = set()
    rt = r.get("resourceType", "")
    out.add(f"type={rt}")

    def first_code(c):
        for x in (c or {}).get("coding", []) or []:
            if x.get("system") and x.get("code"):
                return f"{x['system']}|{x['code']}"
        return None

    for key in ("code", "medicationCodeableConcept", "vaccineCode"):
        c = first_code(r.get(key))
        if c:
            out.add(f"code={c}")

    def quantity(q, at):
        if isinstance(q, dict) and isinstance(q.get("value"), (int, float)):
            out.add(f"{at}value={float(q['value'])}")
            if q.get("system") == "http://unitsofmeasure.org":
                unit = q.get("code") or q.get("unit")
            else:
                unit = q.get("unit") or q.get("code")
            if unit:
                out.add(f"{at}unit={unit}")

    quantity(r.get("valueQuantity"), "")
    for i, c in enumerate(r.get("component", []) or []):
        code = first_code(c.get("code"))
        if code:
            out.add(f"component{i}.code={code}")
        quantity(c.get("valueQuantity"), f"component{i}.")
    for key in ("onsetDateTime", "abatementDateTime", "authoredOn", "birthDate", "occurrenceDateTime"):
        if isinstance(r.get(key), str):
            out.add(f"{key}={r[key][:10]}")
    if isinstance(r.get("effectiveDateTime"), str):
        v = r["effectiveDateTime"]
        out.add(f"effective={v[:10] if rt == 'DiagnosticReport' else v}")
    for key in ("period", "effectivePeriod"):
        for end in ("start", "end"):
            v = (r.get(key) or {}).get(end)
            if isinstance(v, str):
                out.add(f"{key}.{end}={v if rt == 'Encounter' else v[:10]}")
    for key in ("clinicalStatus", "verificationStatus"):
        codings = (r.get(key) or {}).get("coding") or []
        if codings and codings[0].get("code"):
            out.add(f"{key}={codings[0]['code']}")
    if rt == "Observation" and r.get("status") in ("final", "preliminary", "amended", "registered"):
        out.add(f"status={r['status']}")
    if r.get("gender"):
        out.add(f"gender={r['gender']}")
    return out


def by_url(bundle):
    return {e["fullUrl"]: e["resource"] for e in bundle.get("entry", []) if "fullUrl" in e}


def professional(binary, work):
    """The peer id of one professional node, made once per run, to grant to."""
    home = os.path.join(work, "_professional")
    return hearth(binary, home, "init", "--role", "professional", "--name", "Dr Round", "--json")["peer_id"]


def grant_and_revoke(binary, home, peer):
    hearth(binary, home, "grant", "--to", peer, "--sections", "notes,notes:mental-health,medications",
           "--ability", "read", "--expires", "30d", "--json")
    g = hearth(binary, home, "grant", "--to", peer, "--sections", "observations", "--ability", "append",
               "--expires", "1d", "--purpose", "social-care", "--json")
    hearth(binary, home, "grant", "revoke", g["id"], "--json")


NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def init_as(binary, home, bundle):
    """A fresh patient node for the bundle's own patient: an import compares the bundle's
    Patient with the record's demographics (NHS number, else name and birth date) and refuses
    another person's data, so the record is made for the person the bundle is about."""
    patient = next((e["resource"] for e in bundle.get("entry", [])
                    if e.get("resource", {}).get("resourceType") == "Patient"), {})
    names = patient.get("name") or [{}]
    n = next((x for x in names if x.get("use") == "official"), names[0])
    name = n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""]).strip() or "Round Trip"
    args = ["init", "--role", "patient", "--name", name]
    nhs = [i["value"] for i in patient.get("identifier", []) if i.get("system") == NHS_SYSTEM]
    if nhs:
        args += ["--nhs-number", nhs[0]]
    hearth(binary, home, *args, "--json")
    if patient.get("birthDate"):
        entry = json.dumps({"name": name, "birth_date": patient["birthDate"]})
        hearth(binary, home, "record", "add", "demographics", "--entry", entry, "--json")


def check(binary, bundle_path, out_dir, work, prefix, peer):
    name = prefix + os.path.splitext(os.path.basename(bundle_path))[0]
    home = os.path.join(work, name)
    original = json.load(open(bundle_path))
    n = len(original.get("entry", []))
    init_as(binary, home, original)
    first = hearth(binary, home, "record", "import", "--fhir", bundle_path, "--json")
    assert first["imported"] == n and first["written"] == n, f"first import: {first['imported']} of {n}"
    again = hearth(binary, home, "record", "import", "--fhir", bundle_path, "--json")
    assert again["written"] == 0, f"second import wrote {again['written']}"
    grant_and_revoke(binary, home, peer)
    exported = os.path.join(out_dir, f"{name}.json")
    rebuilt = os.path.join(out_dir, f"{name}.rebuilt.json")
    hearth(binary, home, "record", "export", "--fhir", exported, "--json")
    hearth(binary, home, "record", "export", "--fhir", rebuilt, "--rebuild", "--json")
    got = by_url(json.load(open(exported)))
    statuses = sorted(r["status"] for r in got.values() if r["resourceType"] == "Consent")
    assert statuses == ["active", "inactive"], f"the grants as Consent: {statuses}"
    got_rebuilt = by_url(json.load(open(rebuilt)))
    for e in original.get("entry", []):
        url, res = e["fullUrl"], e["resource"]
        assert url in got, f"{res['resourceType']} {url} missing from the export"
        if res["resourceType"] == "Patient":
            assert clinical(got[url]) >= clinical(res), f"Patient {url} lost clinical content"
        else:
            assert got[url] == res, f"{res['resourceType']} {url} changed on the way through"
        want, have = clinical(res), clinical(got_rebuilt.get(url, {}))
        assert want <= have if res["resourceType"] == "Patient" else want == have, (
            f"{res['resourceType']} {url} rebuilt: lost {sorted(want - have)}, gained {sorted(have - want)}"
        )
    back = hearth(binary, home, "record", "import", "--fhir", exported, "--json")
    assert back["written"] == 0, f"importing the export wrote {back['written']}"
    # A second patient node holding the export learns of the retractions from the next one.
    other = home + "-b"
    init_as(binary, other, original)
    hearth(binary, other, "record", "import", "--fhir", exported, "--json")
    in_error_path = check_in_error(binary, home, out_dir, name)
    retracting = hearth(binary, other, "record", "import", "--fhir", in_error_path, "--json")
    marked = sum(1 for e in json.load(open(in_error_path))["entry"] if in_error(e["resource"]))
    assert retracting["marked_in_error"] == marked, f"retracted {retracting['marked_in_error']} of {marked}"
    # Nothing new: every resource is one node B holds (some are new versions, their references
    # to the retracted resources now resolving instead of being cut to display text).
    assert retracting["imported"] == 0, f"the retracting import made {retracting['imported']} new entries"
    again = hearth(binary, other, "record", "import", "--fhir", in_error_path, "--json")
    assert again["marked_in_error"] == 0 and again["written"] == 0, "the retractions again changed something"


NO_STATUS = {"Patient", "Practitioner", "PractitionerRole", "RelatedPerson", "Organization", "Location"}


def in_error(r):
    """Whether a resource says entered-in-error, as its type says it."""
    verification = ((r.get("verificationStatus") or {}).get("coding") or [{}])[0].get("code")
    return "entered-in-error" in (r.get("status"), r.get("lifecycleStatus"), verification)


def check_in_error(binary, home, out_dir, name):
    """Marks one entry of each resource type in error, then exports with --include-in-error:
    each is written with FHIR's entered-in-error status (the file is left for the validators)."""
    shown = hearth(binary, home, "record", "show", "--json")
    marked = {}
    for section in shown["sections"]:
        for e in section["entries"]:
            src = (e.get("body") or {}).get("source") or {}
            rt, url = src.get("resource_type"), src.get("full_url")
            if rt and url and rt not in marked:
                hearth(binary, home, "record", "mark-error", e["id"], "--reason", "wrong patient", "--json")
                marked[rt] = url
    path = os.path.join(out_dir, f"{name}.in-error.json")
    report = hearth(binary, home, "record", "export", "--fhir", path, "--include-in-error", "--json")
    got = by_url(json.load(open(path)))
    expected = {rt: url for rt, url in marked.items() if rt not in NO_STATUS}
    assert report["in_error"] == len(expected), f"in error: {report['in_error']} of {len(expected)}"
    for rt, url in expected.items():
        r = got.get(url)
        assert r is not None, f"{rt} {url} in error is missing from the export"
        assert in_error(r), f"{rt} {url} does not say entered-in-error"
        if rt in ("Condition", "AllergyIntolerance"):
            assert "clinicalStatus" not in r, f"{rt} {url} keeps a clinicalStatus"
    return path


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out_dir, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    bundles = []
    for k, d in enumerate(dirs):
        if not os.path.isdir(d):
            print(f"no such folder of bundles: {d}", file=sys.stderr)
            return 1
        bundles += sorted((f"{k}-", os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".json"))
    if not bundles:
        print("no bundles found", file=sys.stderr)
        return 1
    passed = failed = 0
    with tempfile.TemporaryDirectory() as work:
        peer = professional(binary, work)
        for prefix, b in bundles:
            try:
                check(binary, b, out_dir, work, prefix, peer)
                passed += 1
            except (AssertionError, RuntimeError) as e:
                failed += 1
                print(f"FAIL {os.path.basename(b)}: {e}")
    print(f"fhir round trip: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
