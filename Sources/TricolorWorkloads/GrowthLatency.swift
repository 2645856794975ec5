import CTricolor
import Tricolor

/// The heap-growth latency benchmark (`tricolor bench growth`; Go's side is
/// Benchmarks/go/growth). A message ring whose heap grows from empty to about `mib`
/// MiB while every operation is timed:
///
/// - one operation allocates a message, a 32-byte header (a pointer to the payload, a
///   spare pointer word, a sequence number) and a
///   pointer-free payload of 64…1024 bytes, and stores it into the next slot of a ring
///   (a pointer array) of `mib` MiB / 600 bytes slots;
/// - the first pass over the ring fills it: the heap grows to its size, and every
///   growth of the heap, every first touch of fresh memory and every assist lands on
///   some operation;
/// - a second pass replaces every message (steady state: the collector reclaims the
///   first pass's messages while the heap stays at its size).
///
/// Reported per phase: p50, p99, p99.99 and the worst operation, and how many
/// operations took over 1 ms. Timing uses the monotonic clock around each operation
/// (about 20 ns of overhead, included in every figure alike).
public enum GrowthLatency {
    public struct Phase {
        public var name: String
        public var ops: Int
        public var p50: UInt64, p99: UInt64, p9999: UInt64, max: UInt64
        public var over1ms: Int
        public var seconds: Double
    }

    public struct Result {
        public var mib: Int
        public var slots: Int
        public var phases: [Phase]
        public var peakHeapSys: UInt64
        public var heapGrows: UInt64
        public var piecesInBackground: UInt64
        public var piecesByMutator: UInt64
        public var maxMutatorFaultNs: UInt64
    }

    public static func run(heap: Heap, mib: Int) throws -> Result {
        precondition(mib >= 1)
        let header = try heap.register(TypeLayout(name: "growth.Message", size: 32, pointerWords: [0, 1]))
        let slotType = try heap.register(TypeLayout(name: "growth.Slot", size: 8, pointerWords: [0]))
        let slots = max(1, (mib << 20) / 600)
        var rng: UInt64 = 0x2545_F491_4F6C_DD1D
        var phases: [Phase] = []
        var times = [UInt64](repeating: 0, count: slots)
        heap.withMutator { m in
            let roots = m.pushFrame(slots: 1)
            roots[0] = m.allocateArray(slotType, count: slots)
            for pass in 0..<2 {
                let t0 = tc_nanotime()
                for i in 0..<slots {
                    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17
                    let start = tc_nanotime()
                    let msg = m.allocate(header)
                    m.storeWord(msg, 2, i)
                    let payload = m.allocateBytes(64 + Int(rng % 961))
                    payload.rawPointer.storeBytes(of: UInt8(truncatingIfNeeded: i), as: UInt8.self)
                    m.store(msg, 0, payload)
                    m.store(roots[0], i, msg)
                    times[i] = tc_nanotime() &- start
                }
                let seconds = Double(tc_nanotime() &- t0) / 1e9
                times.sort()
                func q(_ f: Double) -> UInt64 { times[min(times.count - 1, Int(f * Double(times.count)))] }
                phases.append(Phase(name: pass == 0 ? "grow" : "steady", ops: slots, p50: q(0.5), p99: q(0.99), p9999: q(0.9999),
                                    max: times[times.count - 1], over1ms: times.reduce(0) { $0 + ($1 > 1_000_000 ? 1 : 0) }, seconds: seconds))
            }
            // Every message must be intact.
            for i in stride(from: 0, to: slots, by: max(1, slots / 1000)) {
                precondition(m.loadWord(m.load(roots[0], i), 2) == i, "growth: message \(i) damaged")
            }
            m.popFrame(roots)
        }
        let s = heap.memStats()
        let a = heap.allocPathStats()
        return Result(mib: mib, slots: slots, phases: phases, peakHeapSys: s.heapSys, heapGrows: a.heapGrows,
                      piecesInBackground: a.piecesFaultedInBackground, piecesByMutator: a.piecesFaultedByMutators, maxMutatorFaultNs: a.maxMutatorFaultNs)
    }

    public static func format(_ r: Result) -> [String] {
        func us(_ ns: UInt64) -> String {
            let c = Int((Double(ns) / 10).rounded())   // hundredths of a µs
            return "\(c / 100).\(c % 100 < 10 ? "0" : "")\(c % 100)"
        }
        var lines = ["# growth mib=\(r.mib) slots=\(r.slots) heap_sys_mib=\(r.peakHeapSys >> 20) heap_grows=\(r.heapGrows) pieces_background=\(r.piecesInBackground) pieces_mutator=\(r.piecesByMutator) max_mutator_fault_us=\(us(r.maxMutatorFaultNs))"]
        for p in r.phases {
            lines.append("growth phase=\(p.name) ops=\(p.ops) p50_us=\(us(p.p50)) p99_us=\(us(p.p99)) p9999_us=\(us(p.p9999)) max_us=\(us(p.max)) over_1ms=\(p.over1ms) ms=\(Int(p.seconds * 1000))")
        }
        return lines
    }
}
