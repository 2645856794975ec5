#!/usr/bin/env python3
# Lists the public symbols of Tricolor, TricolorProfiling and TricolorHeapDump that have no doc comment,
# from the symbol graphs `swift package dump-symbol-graph` writes, and exits 1 if there
# are any. @_spi symbols are skipped (they are not public API), and so are members a
# protocol's default implementation supplies (`!=`, `hashValue`): the protocol documents
# them.
#
#   swift package dump-symbol-graph --minimum-access-level public
#   Scripts/undocumented-symbols.py .build/$(uname -m)-unknown-linux-gnu/symbolgraph
import glob, json, os, sys

directory = sys.argv[1] if len(sys.argv) > 1 else f".build/{os.uname().machine}-unknown-linux-gnu/symbolgraph"
modules = ["Tricolor", "TricolorProfiling", "TricolorHeapDump"]
total = undocumented = 0
for module in modules:
    files = glob.glob(os.path.join(directory, module + ".symbols.json")) + glob.glob(os.path.join(directory, module + "@*.symbols.json"))
    if not files:
        sys.exit(f"undocumented-symbols: no symbol graph for {module} in {directory}")
    for path in sorted(files):
        for s in json.load(open(path))["symbols"]:
            if s.get("accessLevel") not in ("public", "open") or s.get("spi"):
                continue
            if "::SYNTHESIZED::" in s["identifier"]["precise"]:
                continue      # supplied by a protocol's default implementation
            total += 1
            if not s.get("docComment"):
                undocumented += 1
                where = s.get("location", {}).get("uri", "?").split("/Sources/")[-1]
                print(f"undocumented: {module} {s['kind']['identifier']} {'.'.join(s['pathComponents'])} ({where})")
print(f"public symbols: {total}, undocumented: {undocumented}")
sys.exit(1 if undocumented else 0)
