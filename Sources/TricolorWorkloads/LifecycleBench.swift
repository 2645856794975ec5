import CTricolor
import Glibc
import Tricolor

/// `tricolor bench lifecycle`: what finalizers, weak references and pools cost
/// (issue #13). Go's counterpart is Benchmarks/go/lifecycle (Go 1.19: finalizers and
/// sync.Pool; it has no weak pointers, which arrived in Go 1.24).
///
/// - finalizer: `objects` 24-byte nodes, each given a finalizer that counts; then
///   dropped, one collection queues every finalizer, the thread runs them, a second
///   collection frees the objects. Reported: ns per setFinalizer (allocation excluded:
///   a run without finalizers is subtracted), and ns per object for the whole life
///   (allocate, set, collect, run, collect) against plain allocate-and-collect.
/// - weak: makeWeak on each of `objects` nodes (the first, which allocates the handle)
///   and again (the shared handle found), `value` on each, then drop and collect.
/// - pool: two mutators, each `poolOps` times get a 4 KiB buffer, write its first word,
///   put it back; ns per get+put pair (each mutator's wall time / its pairs, median).
public enum LifecycleBench {
    public struct Result {
        public var objects: Int
        public var setFinalizerNs: Double
        public var finalizerLifeNs: Double
        public var plainLifeNs: Double
        public var makeWeakNs: Double
        public var makeWeakAgainNs: Double
        public var weakValueNs: Double
        public var poolPairNs: Double
        public var poolHitRate: Double
    }

    final class Counter: @unchecked Sendable {
        let word = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        init() { word.initialize(to: 0) }
        deinit { word.deallocate() }
        func add() { _ = tc_fetch_add(word, 1) }
        var value: UInt { tc_load_acquire(word) }
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    public static func run(objects: Int = 200_000, poolOps: Int = 2_000_000, runs: Int = 5) throws -> Result {
        var setNs: [Double] = [], lifeNs: [Double] = [], plainNs: [Double] = []
        var mkNs: [Double] = [], mk2Ns: [Double] = [], valNs: [Double] = [], poolNs: [Double] = []
        var hitRate = 0.0
        var config = Configuration(gcPercent: nil)
        config.conservativeStackScan = false
        for _ in 0..<runs {
            // Finalizers, and the same life without them.
            for withFinalizers in [false, true] {
                let heap = try Heap(configuration: config)
                let node = try heap.register(TypeLayout(name: "bench.Node", size: 24, pointerWords: [0, 1]))
                let count = Counter()
                let arr = try heap.register(TypeLayout(name: "bench.Slot", size: 8, pointerWords: [0]))
                heap.withMutator { m in
                    m.withFrame(slots: 1) { f in
                        f[0] = m.allocateArray(arr, count: objects)
                        let t0 = tc_nanotime()
                        for i in 0..<objects { m.store(f[0], i, m.allocate(node)) }
                        let t1 = tc_nanotime()
                        if withFinalizers {
                            for i in 0..<objects { m.setFinalizer(m.load(f[0], i)) { _, _ in count.add() } }
                        }
                        let t2 = tc_nanotime()
                        f[0] = .null
                        heap.collect()
                        heap.waitForFinalizers()
                        heap.collect()
                        let t3 = tc_nanotime()
                        if withFinalizers {
                            precondition(count.value == UInt(objects), "finalizers run: \(count.value)")
                            setNs.append(Double(t2 - t1) / Double(objects))
                            lifeNs.append(Double(t3 - t0) / Double(objects))
                        } else {
                            plainNs.append(Double(t3 - t0) / Double(objects))
                        }
                    }
                }
            }
            // Weak references.
            do {
                let heap = try Heap(configuration: config)
                let node = try heap.register(TypeLayout(name: "bench.Node", size: 24, pointerWords: [0, 1]))
                let arr = try heap.register(TypeLayout(name: "bench.Slot", size: 8, pointerWords: [0]))
                heap.withMutator { m in
                    m.withFrame(slots: 2) { f in
                        f[0] = m.allocateArray(arr, count: objects)
                        f[1] = m.allocateArray(arr, count: objects)
                        for i in 0..<objects { m.store(f[0], i, m.allocate(node)) }
                        let t0 = tc_nanotime()
                        for i in 0..<objects { m.store(f[1], i, m.makeWeak(m.load(f[0], i)).handle) }
                        let t1 = tc_nanotime()
                        var same = 0
                        for i in 0..<objects where m.makeWeak(m.load(f[0], i)).handle == m.load(f[1], i) { same += 1 }
                        let t2 = tc_nanotime()
                        var live = 0
                        for i in 0..<objects where !m.value(WeakRef(handle: m.load(f[1], i))).isNull { live += 1 }
                        let t3 = tc_nanotime()
                        precondition(same == objects && live == objects)
                        f[0] = .null
                        heap.collect()
                        var gone = 0
                        for i in 0..<objects where m.value(WeakRef(handle: m.load(f[1], i))).isNull { gone += 1 }
                        precondition(gone == objects)
                        mkNs.append(Double(t1 - t0) / Double(objects))
                        mk2Ns.append(Double(t2 - t1) / Double(objects))
                        valNs.append(Double(t3 - t2) / Double(objects))
                    }
                }
            }
            // Pool: two mutators.
            do {
                let heap = try Heap(configuration: Configuration(gcPercent: 100))
                let pool = heap.makePool { m in m.allocateBytes(4096) }
                let times = UnsafeMutablePointer<Double>.allocate(capacity: 2)
                defer { times.deallocate() }
                nonisolated(unsafe) let t = times
                runThreads(2) { k in
                    heap.withMutator { m in
                        let t0 = tc_nanotime()
                        for i in 0..<poolOps {
                            let b = pool.get(m)
                            m.storeWord(b, 0, i)
                            pool.put(m, b)
                        }
                        t[k] = Double(tc_nanotime() - t0) / Double(poolOps)
                    }
                }
                poolNs.append((times[0] + times[1]) / 2)
                let (h, miss) = pool.hitsAndMisses
                hitRate = Double(h) / Double(h + miss)
            }
        }
        return Result(objects: objects, setFinalizerNs: median(setNs), finalizerLifeNs: median(lifeNs), plainLifeNs: median(plainNs),
                      makeWeakNs: median(mkNs), makeWeakAgainNs: median(mk2Ns), weakValueNs: median(valNs),
                      poolPairNs: median(poolNs), poolHitRate: hitRate)
    }

    public static func format(_ r: Result) -> String {
        func f(_ x: Double) -> String {
            let c = Int((x * 10).rounded())
            return (c < 0 ? "-" : "") + "\(abs(c) / 10).\(abs(c) % 10)"
        }
        return """
        lifecycle objects=\(r.objects) set_finalizer_ns=\(f(r.setFinalizerNs)) life_with_finalizer_ns=\(f(r.finalizerLifeNs)) life_plain_ns=\(f(r.plainLifeNs)) finalizer_extra_ns=\(f(r.finalizerLifeNs - r.plainLifeNs))
        lifecycle weak make_ns=\(f(r.makeWeakNs)) make_again_ns=\(f(r.makeWeakAgainNs)) value_ns=\(f(r.weakValueNs))
        lifecycle pool mutators=2 buffer=4096 get_put_ns=\(f(r.poolPairNs)) hit_rate=\(f(r.poolHitRate * 100))%
        """
    }
}
