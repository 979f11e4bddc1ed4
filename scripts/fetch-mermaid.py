#!/usr/bin/env python3
"""Fetch Mermaid's browser bundle (mermaid.min.js) from the npm registry for the report tests.

The tests hand every counterexample diagram evsim writes to Mermaid's own parser, in headless
Chromium. The bundle is pinned by version and by the registry's sha512 integrity, and kept in
target/test-tools/ (never committed). Only Python's standard library is used: no Node.js needed.

Usage: scripts/fetch-mermaid.py [DEST]   (default: target/test-tools/mermaid/mermaid.min.js)
"""
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request

VERSION = "11.12.1"
URL = f"https://registry.npmjs.org/mermaid/-/mermaid-{VERSION}.tgz"
INTEGRITY = "sha512-UlIZrRariB11TY1RtTgUWp65tphtBv4CSq7vyS2ZZ2TgoMjs2nloq+wFqxiwcxlhHUvs7DPGgMjs2aeQxz5h9g=="


def main() -> int:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "test-tools", "mermaid", "mermaid.min.js")
    stamp = dest + ".version"
    if os.path.exists(dest) and os.path.exists(stamp) and open(stamp).read().strip() == VERSION:
        return 0
    print(f"fetching mermaid {VERSION} from the npm registry", file=sys.stderr)
    data = urllib.request.urlopen(URL, timeout=120).read()
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        print(f"error: {URL} does not match its pinned integrity ({digest})", file=sys.stderr)
        return 2
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        bundle = tar.extractfile("package/dist/mermaid.min.js").read()
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as f:
        f.write(bundle)
    with open(stamp, "w") as f:
        f.write(VERSION + "\n")
    print(f"wrote {dest} ({len(bundle)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
