import CTricolor
import Tricolor

/// The deep-recursion benchmark for shadow stacks (`tricolor bench stack`): each level of
/// a recursion pushes a frame of `slotsPerFrame` root slots, writes one, and recurses,
/// `depth` levels deep. Run on a freshly attached mutator (its stack starts at 2 KiB and
/// grows by copying, Go's copystack) and again on the same mutator (already grown): the
/// difference is what growth costs. Reported per pushed slot. Go's counterpart is
/// Benchmarks/go/stackgrow (a goroutine recursing with the same frame of locals).
public enum StackBench {
    public struct Result {
        public var depth: Int
        public var slotsPerFrame: Int
        public var freshNsPerSlot: Double     // growth from 2 KiB included
        public var grownNsPerSlot: Double     // the stack already large enough
        public var stacksGrown: Int           // copies per fresh run
    }

    @inline(never)
    static func recurse(_ m: Mutator, _ d: Int, _ slots: Int) -> Int {
        m.withFrame(slots: slots) { f in
            f[0] = Ref(address: 0)
            return d == 0 ? 0 : recurse(m, d - 1, slots) &+ f.count
        }
    }

    public static func run(depth: Int = 16_384, slotsPerFrame: Int = 8, runs: Int = 11) throws -> Result {
        let heap = try Heap(configuration: Configuration(gcPercent: nil))
        var fresh: [Double] = [], grown: [Double] = []
        var copies = 0
        let slots = Double(depth * slotsPerFrame)
        for _ in 0..<runs {
            let before = heap.gcStats().stacksGrown
            heap.withMutator { m in
                let t0 = tc_nanotime()
                let a = recurse(m, depth, slotsPerFrame)
                let t1 = tc_nanotime()
                let b = recurse(m, depth, slotsPerFrame)
                let t2 = tc_nanotime()
                precondition(a == b)
                fresh.append(Double(t1 - t0) / slots)
                grown.append(Double(t2 - t1) / slots)
            }
            copies = heap.gcStats().stacksGrown - before
        }
        fresh.sort(); grown.sort()
        return Result(depth: depth, slotsPerFrame: slotsPerFrame, freshNsPerSlot: fresh[fresh.count / 2],
                      grownNsPerSlot: grown[grown.count / 2], stacksGrown: copies)
    }

    public static func format(_ r: Result) -> String {
        func f(_ x: Double) -> String {
            let c = Int((x * 100).rounded())
            let frac = abs(c) % 100
            return (c < 0 ? "-" : "") + "\(abs(c) / 100)." + (frac < 10 ? "0" : "") + "\(frac)"
        }
        return "stack depth=\(r.depth) slots/frame=\(r.slotsPerFrame) fresh_ns_per_slot=\(f(r.freshNsPerSlot)) grown_ns_per_slot=\(f(r.grownNsPerSlot)) growth_ns_per_slot=\(f(r.freshNsPerSlot - r.grownNsPerSlot)) copies_per_run=\(r.stacksGrown)"
    }
}
