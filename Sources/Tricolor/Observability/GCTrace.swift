import CTricolor
import Glibc

// gctrace: one line per cycle on stderr in Go's format (runtime/mgc.go):
//   gc N @S.SSSs P%: a+b+c ms clock, w+x/y/z+v ms cpu, h0->h1->h2 MB, G MB goal, S MB stacks, L MB globals, N P
// a: pause #1 (sweep termination); b: concurrent mark; c: pause #2 (mark termination);
// w, v: the pauses × min(GOMAXPROCS, CPUs) (Go's stwprocs); x: assist CPU; y: background
// mark CPU; z: idle mark CPU (a worker's marking beyond the 25% share while a CPU would
// otherwise idle); h0: heapLive at the start; h1: heapLive at mark termination;
// h2: marked (live) bytes; G: the goal at the end of the cycle (Go's lastHeapGoal);
// S: shadow-stack bytes; L: global and handle slot bytes; P%: GC's share of GOMAXPROCS ×
// wall time since start, as of the end of this cycle, idle marking left out (Go's
// gc_cpu_fraction).
// Where we differ: x, y and z are thread CPU time; Go measures them as wall time while a
// worker or assist holds a P. Our collector threads are not Ps, and CPU time does not
// count time a worker spent descheduled.

extension Heap {
    func printTrace(_ t: CycleTrace) {
        func ms(_ ns: UInt64) -> String { formatDecimal(Double(ns) / 1e6) }
        func mb(_ b: UInt) -> UInt { b >> 20 }
        let procs = UInt64(gomaxprocs)
        let stwProcs = UInt64(workerProcs)   // Go's stwprocs: min(GOMAXPROCS, CPUs)
        let since = Double(t.tSweepTerm - startTime) / 1e9
        let pct = statsLock.withLock { Int(lastGCCPUFraction * 100) }
        let markWall = t.tMarkTerm > t.tMark ? t.tMarkTerm - t.tMark : 0
        var line = "gc \(t.number) @\(String(format3: since))s \(pct)%: "
        line += "\(ms(t.stw1Ns))+\(ms(markWall))+\(ms(t.stw2Ns)) ms clock, "
        line += "\(ms(t.stw1Ns.saturatingMultiply(stwProcs)))+\(ms(t.assistNs))/\(ms(t.bgNs))/\(ms(t.idleNs))+\(ms(t.stw2Ns.saturatingMultiply(stwProcs))) ms cpu, "
        line += "\(mb(t.heap0))->\(mb(t.heap1))->\(mb(t.heap2)) MB, \(mb(t.goal)) MB goal, "
        line += "\(mb(t.stacks)) MB stacks, \(mb(t.globals)) MB globals, \(procs) P"
        if t.forced { line += " (forced)" }
        line += "\n"
        writeStderr(line)
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

/// What gctrace reports about one cycle.
struct CycleTrace {
    var number = 0
    var forced = false
    var tSweepTerm: UInt64 = 0      // pause #1 requested
    var tMark: UInt64 = 0           // concurrent mark began
    var tMarkTerm: UInt64 = 0       // pause #2 requested
    var stw1Ns: UInt64 = 0
    var stw2Ns: UInt64 = 0
    var assistNs: UInt64 = 0
    var bgNs: UInt64 = 0            // the workers' marking within the 25% share
    var idleNs: UInt64 = 0          // the workers' marking beyond it (Go's idle workers)
    var heap0: UInt = 0             // heapLive at the start
    var heap1: UInt = 0             // heapLive at mark termination
    var heap2: UInt = 0             // marked (live) bytes
    var goal: UInt = 0
    var stacks: UInt = 0
    var globals: UInt = 0
}
