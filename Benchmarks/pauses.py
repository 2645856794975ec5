#!/usr/bin/env python3
"""Stop-the-world pauses from gctrace lines (Go's or Tricolor's, same format) on stdin:
each cycle's 'a+b+c ms clock' field holds two pauses, a (sweep termination) and c
(mark termination). Prints how many, and their p50, p99 and max in microseconds,
with quantiles taken as Tricolor's summary line takes them (GCStats.pauseQuantile)."""
import re, sys
pat = re.compile(r'^gc \d+ @[\d.]+s \d+%: ([\d.]+)\+[\d.]+\+([\d.]+) ms clock')
pauses = []
for line in sys.stdin:
    m = pat.match(line.strip())
    if m:
        pauses += [float(m.group(1)) * 1000, float(m.group(2)) * 1000]
if not pauses:
    print("no cycles"); sys.exit(1)
pauses.sort()
def q(p):
    return pauses[min(len(pauses) - 1, max(0, round(p * (len(pauses) - 1))))]
print(f"pauses={len(pauses)} p50_us={q(0.5):.0f} p99_us={q(0.99):.0f} max_us={pauses[-1]:.0f}")
