import Glibc
@_spi(Testing) import Tricolor

/// Allocation microbenchmark: ns per 16-byte object, typed (two pointer words) and
/// pointer-free, median of `runs` runs of `objects` allocations each.
///
/// Two settings:
/// - "no GC": GOGC off on a heap warmed by a first pass and a collection, so each run
///   reuses already-faulted pages. This is the fast path plus span refills plus the
///   zeroing of reused spans: what one allocation costs when no cycle runs.
/// - "with GC": GOGC=100 and nothing kept alive: the steady state of a program that
///   allocates short-lived objects, with the collector's (small) share included.
///
/// Each case is measured twice. First plain: the whole cost of an allocation, slow path
/// included. Then with the slow path timed (`Mutator._timeSlowPath`), which splits that
/// cost into the inlined fast path (an allocation served from the cache's 64-slot window:
/// the time outside slow-path calls over the allocations made outside them) and the
/// slow path amortized over all allocations (window refills every 64 objects, span
/// refills every 512, sweeping, collections).
///
/// The configuration comes from the environment first (`GODEBUG=gctrace=1` works), then
/// GOGC and the sampling rate are set per case.
public enum AllocBench {
    public struct Result: Sendable {
        public var name: String
        public var withGC: Bool
        /// Whole allocation, ns per object: median, min, max over the runs.
        public var median: Double, min: Double, max: Double
        /// From the timed runs (medians): ns per fast-path allocation, slow-path ns per
        /// object (amortized), slow-path calls per 1000 objects.
        public var fastPath: Double, slowPathAmortized: Double, slowCallsPerThousand: Double
    }

    public static func run(objects: Int = 10_000_000, runs: Int = 7, memProfileRate: Int = 512 * 1024,
                           cases: [Bool] = [false, true]) throws -> [Result] {
        var results: [Result] = []
        for gc in cases {
            var configuration = try Configuration.fromEnvironment()
            configuration.gcPercent = gc ? 100 : nil
            configuration.memProfileRate = memProfileRate
            let heap = try Heap(configuration: configuration)
            let node = try heap.register(TypeLayout(name: "bench.Node", size: 16, pointerWords: [0, 1]))
            heap.withMutator { m in
                // The bodies take the mutator as a parameter, as user code would: captured
                // by the closure instead, its cache pointer would be reloaded from the
                // closure context after every type-id store (the compiler cannot rule
                // out aliasing), which costs typed allocations about 1.5 ns.
                func measure(_ name: String, _ body: (Mutator) -> UInt) {
                    if !gc { _ = body(m); heap.collect() }  // fault the pages in once
                    var whole: [Double] = [], fast: [Double] = [], slow: [Double] = [], calls: [Double] = []
                    var sink: UInt = 0
                    for timed in [false, true] {
                        for _ in 0..<runs {
                            m._timeSlowPath(timed)
                            let t0 = monotonicSeconds()
                            sink &+= body(m)
                            let ns = (monotonicSeconds() - t0) * 1e9
                            let (n, slowNs) = m._slowPathTime
                            m._timeSlowPath(false)
                            if timed {
                                fast.append((ns - slowNs) / Double(max(1, objects - Int(n))))
                                slow.append(slowNs / Double(objects))
                                calls.append(Double(n) * 1000 / Double(objects))
                            } else {
                                whole.append(ns / Double(objects))
                            }
                            if !gc { heap.collect() }
                        }
                    }
                    if sink == 1 { print("", terminator: "") }  // keep the allocations
                    whole.sort()
                    results.append(Result(name: name, withGC: gc, median: median(whole), min: whole[0], max: whole[runs - 1],
                                          fastPath: median(fast), slowPathAmortized: median(slow),
                                          slowCallsPerThousand: median(calls)))
                }
                measure("typed 16 B (2 pointer words)") { m in
                    var x: UInt = 0
                    for _ in 0..<objects { x &+= m.allocate(node).address }
                    return x
                }
                measure("pointer-free 16 B") { m in
                    var x: UInt = 0
                    for _ in 0..<objects { x &+= m.allocateBytes(16).address }
                    return x
                }
            }
        }
        return results
    }

    public static func format(_ r: Result) -> String {
        "\(r.name), \(r.withGC ? "with GC" : "no GC"): median \(String(format2: r.median)) ns/object " +
        "(min \(String(format2: r.min)), max \(String(format2: r.max))); " +
        "fast path \(String(format2: r.fastPath)) ns + slow path \(String(format2: r.slowPathAmortized)) ns/object " +
        "(\(String(format2: r.slowCallsPerThousand)) calls per 1000)"
    }

    private static func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
}
