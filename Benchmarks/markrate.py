#!/usr/bin/env python3
"""Mark throughput from gctrace lines (Go's or Tricolor's, same format) on stdin:
MB of live (marked) heap per CPU-millisecond of marking, where marking CPU is the
assist + background + idle parts of the 'ms cpu' field (x+y+z). Prints the median
over cycles that marked at least --min-mb MB, and how many cycles that was."""
import re, sys, statistics
min_mb = float(sys.argv[1]) if len(sys.argv) > 1 else 8.0
pat = re.compile(r'^gc \d+ @[\d.]+s \d+%: [\d.]+\+[\d.]+\+[\d.]+ ms clock, [\d.]+\+([\d.]+)/([\d.]+)/([\d.]+)\+[\d.]+ ms cpu, (\d+)->(\d+)->(\d+) MB')
rates = []
for line in sys.stdin:
    m = pat.match(line.strip())
    if not m:
        continue
    x, y, z = (float(m.group(i)) for i in (1, 2, 3))
    marked = float(m.group(6))
    cpu = x + y + z
    if marked >= min_mb and cpu > 0:
        rates.append(marked / cpu)
if not rates:
    print("no cycles"); sys.exit(1)
print(f"cycles={len(rates)} median_mb_per_cpu_ms={statistics.median(rates):.3f} min={min(rates):.3f} max={max(rates):.3f}")
