#!/usr/bin/env python3
"""Write the fuzzer's seed corpus (Fuzz/corpus/): small programs in the driver's byte code.

Each operation is one opcode byte followed by its argument bytes (Program.swift, `step`).
The programs cover one feature each, so that libFuzzer starts from inputs that already
reach the collector's interesting states; a few seeded random programs are added.
Run it again after changing the opcode table: python3 Fuzz/make-corpus.py
"""
import os
import random

# Opcode → name and argument count, as in Driver.step (Program.swift).
OPS = {
    "alloc": (0, 4),        # type, dest, d1, d2
    "array": (3, 5),        # type, count selector, dest, d1, d2
    "bytes": (4, 4),        # size selector, dest, d1, d2
    "store": (5, 4),        # holder, elem, word, value (value % 8 == 0: null)
    "load": (7, 3),
    "storeWord": (8, 4),
    "loadWord": (9, 3),
    "push": (10, 1),        # slots - 1
    "pop": (11, 0),
    "slot": (12, 3),        # frame, slot, value
    "global": (13, 2),      # global, value
    "handle": (14, 1),      # value
    "changeHandle": (15, 2),
    "collect": (16, 0),
    "gogc": (17, 1),        # off, 0, 1, 5, 10, 25, 100, 300
    "memlimit": (18, 1),    # off, 1M, 4M, 16M, 64M, 1G, read
    "detach": (19, 0),
    "hooks": (20, 1),       # 0 alloc, 1 alloc+stacks, 2 -alloc, 3 free, 4 -free, 5 none
    "observe": (21, 1),     # 0 heapProfile, 1 memStats, 2 gcStats, 3 memProfile
    "churn": (22, 2),       # n = 1 + 8 * b, flags
    "safepoint": (23, 1),   # even: safepoint, odd: blocking
    "copy": (24, 4),
    "verify": (25, 0),
}


def program(*ops):
    out = bytearray()
    for op in ops:
        name, *args = op if isinstance(op, tuple) else (op,)
        code, n = OPS[name]
        args = list(args) + [0] * (n - len(args))
        assert len(args) == n, op
        out.append(code)
        out.extend(a & 0xFF for a in args)
    return bytes(out)


# dest: 0 frame slot, 1 global, 2 handle, 3 pointer word of a reachable object.
SEEDS = {
    "tree": program(
        ("push", 3), ("alloc", 1, 0), ("alloc", 1, 3, 0, 0), ("alloc", 2, 3, 1, 1),
        ("alloc", 2, 3, 2, 5), ("alloc", 3, 3, 3, 2), ("churn", 40), "collect",
        ("store", 0, 0, 1, 9), ("churn", 80, 1), "collect", ("load", 1, 0, 0), "verify"),
    "roots": program(
        ("alloc", 1, 1, 0), ("alloc", 2, 2, 0), ("push", 7), ("alloc", 4, 0, 0, 3),
        ("global", 3, 9), ("handle", 17), ("slot", 0, 5, 25), "collect", ("changeHandle", 0, 0),
        ("global", 0, 0), "collect", "pop", "collect", "verify"),
    "detach": program(
        ("push", 2), ("alloc", 1, 0), ("alloc", 7, 1, 1), ("alloc", 1, 2), ("store", 1, 0, 0, 9),
        "detach", ("handle", 9), "collect", ("churn", 30), "detach", "collect", "verify"),
    "gogc-flips": program(
        ("alloc", 1, 1), ("gogc", 1), ("churn", 60, 3), ("gogc", 0), ("churn", 60, 1),
        ("memlimit", 1), ("churn", 100, 3), ("memlimit", 0), ("gogc", 6), "collect"),
    "hooks": program(
        ("hooks", 3), ("hooks", 0), ("push", 4), ("alloc", 2, 0), ("bytes", 5, 0, 0, 1),
        ("churn", 50, 2), "collect", ("hooks", 1), ("array", 1, 3, 3), ("hooks", 2),
        ("churn", 90), ("observe", 0), ("hooks", 4), "collect"),
    "large": program(
        ("push", 8), ("alloc", 9, 0), ("alloc", 8, 0, 0, 1), ("array", 7, 5, 0, 0, 2),
        ("bytes", 35, 0, 0, 3), ("bytes", 32, 0, 0, 4), ("store", 0, 0, 2, 9),
        ("storeWord", 1, 0, 7, 3), "collect", ("slot", 0, 0, 0), "collect", "verify"),
    "bytes-and-tiny": program(
        ("push", 8), ("bytes", 1, 0), ("bytes", 3, 0, 0, 1), ("bytes", 9, 0, 0, 2),
        ("alloc", 5, 0, 0, 3), ("alloc", 6, 0, 0, 4), ("array", 6, 7, 0, 0, 5),
        ("bytes", 0, 1), ("churn", 20, 2), "collect", ("slot", 0, 1, 0), "collect", "verify"),
    "barrier-during-mark": program(
        ("gogc", 2), ("push", 4), ("alloc", 2, 0), ("alloc", 2, 3), ("alloc", 1, 3),
        ("churn", 200, 1), ("store", 0, 0, 0, 9), ("store", 1, 0, 1, 17), ("slot", 0, 0, 0),
        ("churn", 200, 1), ("copy", 1, 0, 0, 0), ("churn", 200, 3), "collect", "verify"),
    "observe": program(
        ("alloc", 1, 1), ("observe", 0), ("observe", 1), ("observe", 2), ("observe", 3),
        ("safepoint", 0), ("safepoint", 9), "verify"),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    rng = random.Random(20240611)
    for i in range(4):
        with open(os.path.join(out, f"random-{i}"), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(400)))
    print(f"wrote {len(SEEDS) + 4} files to {out}")


if __name__ == "__main__":
    main()
