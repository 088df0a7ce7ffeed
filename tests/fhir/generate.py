#!/usr/bin/env python3
"""Writes synthetic FHIR R4 bundles made by the PyPI package `carebundle` (0.5.x) into a folder:
every profile the package offers (carebundle.PROFILES) times many seeds, plus multi-visit
histories. Used by tests/fhir/roundtrip.py in CI.

    python3 tests/fhir/generate.py OUT_DIR [--seeds N]
"""
import argparse
import os
import sys

import carebundle


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per profile (default 8)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    profiles = sorted(carebundle.PROFILES)
    if not profiles:
        print("carebundle offers no profiles", file=sys.stderr)
        return 1
    n = 0
    for profile in profiles:
        for seed in range(1, args.seeds + 1):
            sex = "F" if seed % 2 else "M"
            bundle = carebundle.generate_bundle(profile=profile, seed=seed, sex=sex)
            with open(os.path.join(args.out, f"{profile}-seed{seed}.json"), "w") as f:
                f.write(carebundle.to_json(bundle))
            n += 1
    for seed in range(1, max(2, args.seeds // 2) + 1):
        bundle = carebundle.generate_history(seed=seed, visits=3 + seed % 4)
        with open(os.path.join(args.out, f"history-seed{seed}.json"), "w") as f:
            f.write(carebundle.to_json(bundle))
        n += 1
    print(f"wrote {n} bundles for profiles {', '.join(profiles)} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
