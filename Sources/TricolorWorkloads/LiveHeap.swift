import Tricolor

/// Pause measurement with a large live heap (the Tricolor side of
/// Benchmarks/go/liveheap): about `liveMiB` MiB of 48-byte nodes (two pointers and 32
/// bytes of payload), each linked to its predecessor and to a random node among the
/// previous 1024, all reachable from one big pointer array; then `seconds` of
/// short-lived garbage — per step one binary tree of depth 5…8 of 16-byte nodes and one
/// pointer-free buffer of 1…32 KiB, each stored into a 64-slot ring. Reports the
/// stop-the-world pauses of the cycles that ran during the garbage phase.
public enum LiveHeap {
    public static func run(heap: Heap, liveMiB: Int, seconds: Double, output: (String) -> Void) throws -> [(String, String)] {
        let node = try heap.register(TypeLayout(name: "liveheap.Node", size: 48, pointerWords: [0, 1]))
        let ptr = try heap.register(TypeLayout(name: "liveheap.Slot", size: 8, pointerWords: [0]))
        let tnode = try heap.register(BinaryTrees.layout())
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        var result: [(String, String)] = []
        heap.withMutator { m in
            let roots = m.pushFrame(slots: 3)
            let n = (liveMiB << 20) / (48 + 8)
            let tBuild = monotonicSeconds()
            roots[0] = m.allocateArray(ptr, count: n)
            for i in 0..<n {
                let nd = m.allocate(node)
                m.storeWord(nd, 2, i)
                m.store(roots[0], i, nd)
                if i > 0 {
                    m.store(nd, 1, m.load(roots[0], i - 1))
                    m.store(nd, 0, m.load(roots[0], i - 1 - Int(next() % UInt64(min(i, 1024)))))
                }
            }
            heap.collect()
            let buildS = monotonicSeconds() - tBuild
            let before = heap.gcStats()
            roots[1] = m.allocateArray(ptr, count: 64)   // ring of trees
            roots[2] = m.allocateArray(ptr, count: 64)   // ring of buffers
            let t0 = monotonicSeconds()
            var steps = 0
            var checksum = 0
            while monotonicSeconds() - t0 < seconds {
                for k in 0..<64 {
                    let t = BinaryTrees.make(m, tnode, 5 + Int(next() % 4))
                    if !m.load(t, 0).isNull { checksum += 1 }
                    m.store(roots[1], Int(next() % 64), t)
                    let b = m.allocateBytes(1024 + Int(next() % (31 * 1024)))
                    b.rawPointer.storeBytes(of: UInt8(k), as: UInt8.self)
                    m.store(roots[2], Int(next() % 64), b)
                }
                steps += 64
            }
            let elapsed = monotonicSeconds() - t0
            // The live structure must be intact.
            var ok = true
            for i in stride(from: 0, to: n, by: max(1, n / 1000)) where m.loadWord(m.load(roots[0], i), 2) != i { ok = false }
            let after = heap.gcStats()
            let pauses = Array(after.allPauses.suffix(min(after.allPauses.count, after.pausesRecorded - before.pausesRecorded))).sorted()
            func q(_ f: Double) -> UInt64 { pauses.isEmpty ? 0 : pauses[min(pauses.count - 1, Int((f * Double(pauses.count)).rounded(.up)) - 1 < 0 ? 0 : Int((f * Double(pauses.count)).rounded(.up)) - 1)] }
            func us(_ ns: UInt64) -> String { String(format2: Double(ns) / 1000) }
            output("live \(liveMiB) MiB in \(n) nodes, built in \(String(format2: buildS)) s; \(steps) garbage steps in \(String(format2: elapsed)) s; live data \(ok ? "intact" : "DAMAGED") (\(checksum & 1))")
            result = [("steady_numgc", String(after.numGC - before.numGC)), ("steady_npauses", String(pauses.count)),
                      ("steady_pause_p50_us", us(q(0.5))), ("steady_pause_p99_us", us(q(0.99))), ("steady_pause_max_us", us(pauses.last ?? 0))]
            m.popFrame(roots)
        }
        return result
    }
}
