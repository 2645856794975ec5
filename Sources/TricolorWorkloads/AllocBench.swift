import Tricolor

/// Allocation microbenchmark: ns per 16-byte object, typed (two pointer words) and
/// pointer-free, median of `runs` runs of `objects` allocations each.
///
/// Two settings:
/// - "no GC": GOGC off on a heap warmed by a first pass and a collection, so each run
///   reuses already-faulted pages. This is the fast path plus span refills plus the
///   zeroing of reused spans: what one allocation costs when no cycle runs.
/// - "with GC": GOGC=100 and nothing kept alive: the steady state of a program that
///   allocates short-lived objects, with the collector's (small) share included.
public enum AllocBench {
    public static func run(objects: Int = 10_000_000, runs: Int = 7, memProfileRate: Int = 512 * 1024) throws -> [String] {
        var lines: [String] = []
        for gc in [false, true] {
            let heap = try Heap(configuration: Configuration(gcPercent: gc ? 100 : nil, memProfileRate: memProfileRate))
            let node = try heap.register(TypeLayout(name: "bench.Node", size: 16, pointerWords: [0, 1]))
            heap.withMutator { m in
                func measure(_ name: String, _ body: () -> UInt) {
                    if !gc { _ = body(); heap.collect() }  // fault the pages in once
                    var samples: [Double] = []
                    var sink: UInt = 0
                    for _ in 0..<runs {
                        let t0 = monotonicSeconds()
                        sink &+= body()
                        samples.append((monotonicSeconds() - t0) * 1e9 / Double(objects))
                        if !gc { heap.collect() }
                    }
                    samples.sort()
                    lines.append("\(name), \(gc ? "with GC" : "no GC"): median \(String(format2: samples[runs / 2])) ns/object (min \(String(format2: samples[0])), max \(String(format2: samples[runs - 1]))) [sink \(sink & 1)]")
                }
                measure("typed 16 B (2 pointer words)") {
                    var x: UInt = 0
                    for _ in 0..<objects { x &+= m.allocate(node).address }
                    return x
                }
                measure("pointer-free 16 B") {
                    var x: UInt = 0
                    for _ in 0..<objects { x &+= m.allocateBytes(16).address }
                    return x
                }
            }
        }
        return lines
    }
}
