import Tricolor

/// Allocation fast-path microbenchmark: ns per 16-byte object, typed (two pointer
/// words) and pointer-free, median of 7 runs. The objects are dropped at once, so the
/// collector runs often with almost nothing live; its cost is included.
public enum AllocBench {
    public static func run(objects: Int = 20_000_000, runs: Int = 7) throws -> [String] {
        let heap = try Heap(configuration: Configuration(gcPercent: 100))
        let node = try heap.register(TypeLayout(name: "bench.Node", size: 16, pointerWords: [0, 1]))
        var lines: [String] = []
        heap.withMutator { m in
            func measure(_ name: String, _ body: () -> UInt) {
                var samples: [Double] = []
                var sink: UInt = 0
                for _ in 0..<runs {
                    let t0 = monotonicSeconds()
                    sink &+= body()
                    samples.append((monotonicSeconds() - t0) * 1e9 / Double(objects))
                }
                samples.sort()
                lines.append("\(name): median \(String(format2: samples[runs / 2])) ns/object (min \(String(format2: samples[0])), max \(String(format2: samples[runs - 1]))) sink=\(sink & 1)")
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
        lines.append("numgc=\(heap.gcStats().numGC)")
        return lines
    }
}
