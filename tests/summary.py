#!/usr/bin/env python3
"""Prints the closing line of a test run from meson's testlog.json:
'N passed, N failed, N skipped', and exits 1 when any test failed or none ran."""
import json
import sys


def main() -> int:
    path = sys.argv[1]
    passed = failed = skipped = 0
    failed_names = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            t = json.loads(line)
            result = t.get("result", "")
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
                failed_names.append(f"{t.get('name')} ({result})")
    for name in failed_names:
        print(f"failed: {name}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
