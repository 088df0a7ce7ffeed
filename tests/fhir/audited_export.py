#!/usr/bin/env python3
"""Writes a patient's FHIR export that holds its audit log, for the validators: every kind of
`AuditEvent` Hearth writes, from real `hearth` processes on loopback.

A patient node (its daemon listening on loopback) grants a professional, whose name it does not
verify, `append` on notes; the professional syncs, reads the record, writes a note and corrects
it, and syncs again. The patient's `record export --fhir` then holds an AuditEvent for each
session served (an Export), the read, the write (created) and the correction (updated), beside
the Consent of the grant. The export is left in OUT_DIR as audited-export.json.

    python3 tests/fhir/audited_export.py HEARTH_BINARY OUT_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import time

PASS = "audited-export-passphrase-1"


def env():
    e = dict(os.environ, HEARTH_PASSPHRASE=PASS)
    e.pop("HEARTH_HOME", None)
    return e


def hearth(binary, home, *args):
    p = subprocess.run([binary, "--home", home, *args], capture_output=True, text=True, env=env())
    if p.returncode != 0:
        raise RuntimeError(f"hearth {' '.join(args[:3])} exited {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout) if "--json" in args else p.stdout


def start_daemon(binary, home):
    """`hearth run` listening on loopback; returns once it listens."""
    log = open(os.path.join(home, "daemon.log"), "w")
    d = subprocess.Popen([binary, "--home", home, "run", "--listen", "/ip4/127.0.0.1/tcp/0"],
                         stdout=subprocess.DEVNULL, stderr=log, env=env())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if d.poll() is not None:
            raise RuntimeError(f"the daemon exited {d.returncode}")
        if os.path.exists(os.path.join(home, "daemon.json")):
            if hearth(binary, home, "status", "--json").get("listen_addrs"):
                return d
        time.sleep(0.1)
    d.terminate()
    raise RuntimeError("the daemon did not start listening")


def stop_daemon(d):
    d.terminate()
    if d.wait(timeout=20) != 0:
        raise RuntimeError(f"the daemon exited {d.returncode}")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.abspath(os.path.join(out_dir, "audited-export.json"))
    with tempfile.TemporaryDirectory() as work:
        patient, gp = os.path.join(work, "patient"), os.path.join(work, "gp")
        rid = hearth(binary, patient, "init", "--role", "patient", "--name", "Audit Patient",
                     "--json")["record_id"]
        hearth(binary, patient, "record", "add", "notes", "--entry", '{"text": "seen"}', "--json")
        peer = hearth(binary, gp, "init", "--role", "professional", "--name", "Dr Audit",
                      "--json")["peer_id"]
        me = hearth(binary, patient, "id", "--json")["peer_id"]
        d = start_daemon(binary, patient)
        try:
            g = hearth(binary, patient, "grant", "--to", peer, "--sections", "notes", "--ability",
                       "append", "--expires", "30d", "--json")
            hearth(binary, gp, "accept", g["token"])
            hearth(binary, gp, "sync", "--with", me, "--wait", "--json")
            hearth(binary, gp, "record", "show", "--record", rid, "--json")
            e = hearth(binary, gp, "record", "add", "notes", "--record", rid, "--entry",
                       '{"text": "Reviewed."}', "--json")["entry_id"]
            hearth(binary, gp, "record", "correct", e, "--record", rid, "--entry",
                   '{"text": "Reviewed; well."}', "--json")
            hearth(binary, gp, "sync", "--with", me, "--wait", "--json")
        finally:
            stop_daemon(d)
        report = hearth(binary, patient, "record", "export", "--fhir", out, "--json")
    bundle = json.load(open(out))
    kinds = sorted({(r["subtype"][0]["code"], r["action"]) for r in
                    (e["resource"] for e in bundle["entry"])
                    if r["resourceType"] == "AuditEvent"})
    want = [("read", "R"), ("served", "R"), ("wrote", "C"), ("wrote", "U")]
    if kinds != want or report["audit_problems"]:
        print(f"FAIL the audited export: AuditEvents {kinds}, want {want}; "
              f"problems {report['audit_problems']}")
        return 1
    print(f"audited export: {report['audit_events']} AuditEvents in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
