import CTricolor
import Glibc

// gctrace: one line per cycle on stderr in Go's format (runtime/mgc.go):
//   gc N @S.SSSs P%: a+b+c ms clock, w+x/y/z+v ms cpu, h0->h1->h2 MB, G MB goal, S MB stacks, L MB globals, N P
// The collector is stop-the-world for now: a is the sweep-termination part of the pause,
// b the marking done inside the pause, c mark termination; cpu figures equal clock.

extension Heap {
    func printTrace(_ t: CycleTrace) {
        func ms(_ ns: UInt64) -> String { formatDecimal(Double(ns) / 1e6) }
        func mb(_ b: UInt) -> Int { Int(b >> 20) }
        let since = Double(t.start - startTime) / 1e9
        let pct = statsLock.withLock { Int((Double(gcCPUNs) / Double(max(1, tc_nanotime() - startTime))) * 100) }
        let globals = UInt(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes })
        var line = "gc \(t.number) @\(String(format3: since))s \(pct)%: "
        line += "\(ms(t.sweepTermNs))+\(ms(t.markNs))+\(ms(t.markTermNs)) ms clock, "
        line += "\(ms(t.sweepTermNs))+0/\(ms(t.markNs))/0+\(ms(t.markTermNs)) ms cpu, "
        line += "\(mb(t.heapStart))->\(mb(t.heapStart))->\(mb(t.heapMarked)) MB, \(mb(t.goal)) MB goal, "
        line += "\(mb(t.stacks - min(t.stacks, globals))) MB stacks, \(mb(globals)) MB globals, \(gcMaxProcs) P"
        if t.forced { line += " (forced)" }
        line += "\n"
        line.withCString { p in _ = write(2, p, strlen(p)) }
    }
}

/// Go's gctrace prints times with two significant fractional digits for small values
/// (e.g. 0.012, 1.2, 15): it uses strconv with a precision that depends on magnitude.
func formatDecimal(_ v: Double) -> String {
    if v >= 10 { return String(Int(v.rounded())) }
    if v >= 1 { return trimmed(v, 1) }
    if v >= 0.1 { return trimmed(v, 2) }
    return trimmed(v, 3)
}

private func trimmed(_ v: Double, _ digits: Int) -> String {
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let n = Int((v * scale).rounded())
    var s = String(n / Int(scale)) + "." + String(repeating: "0", count: max(0, digits - String(n % Int(scale)).count)) + String(n % Int(scale))
    while s.hasSuffix("0") { s.removeLast() }
    if s.hasSuffix(".") { s.removeLast() }
    return s
}

extension String {
    init(format3 v: Double) {
        let n = Int((v * 1000).rounded())
        let frac = String(n % 1000)
        self = String(n / 1000) + "." + String(repeating: "0", count: 3 - frac.count) + frac
    }
}
