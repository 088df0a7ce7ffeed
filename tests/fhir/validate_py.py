#!/usr/bin/env python3
"""Validates FHIR R4 bundles with the PyPI package fhir.resources (8.x, fhir.resources.R4B).

    python3 tests/fhir/validate_py.py FILE...
"""
import sys

from fhir.resources.R4B.bundle import Bundle


def main():
    files = sys.argv[1:]
    if not files:
        print("no files to validate", file=sys.stderr)
        return 2
    passed = failed = 0
    for f in files:
        try:
            with open(f) as fh:
                Bundle.model_validate_json(fh.read())
            passed += 1
        except Exception as e:  # a validation error: report it, go on
            failed += 1
            print(f"FAIL {f}: {str(e)[:2000]}")
    print(f"fhir.resources R4B: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
