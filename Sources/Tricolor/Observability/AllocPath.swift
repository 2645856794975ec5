import CTricolor
import Glibc

// The allocation path, counted: which level of Go's chain served each allocation —
// the cache (mcache), a refill from the central list (mcentral), the central list
// growing from the page heap (mheap), the page heap growing from the OS, or a large
// allocation straight from the page heap — with a latency histogram per level.
//
// Counting every allocation needs every allocation in the slow path, so it is a mode
// (`Configuration.allocPathStats`, `tricolor run … --alloc-path`): mutators' caches run
// in slow mode (see Hooks.swift) and each allocation is timed with the CPU's cycle
// counter. Off, it costs nothing. Span lifecycle counts (created, cached, uncached,
// swept, freed, returned to the OS) and runtime lock waits are kept always: they are
// bumped on slow paths only.

/// The level of the allocation chain that served an allocation.
public enum AllocPathLevel: Int, CaseIterable, Sendable {
    /// A free slot in the mutator's cached span (Go's nextFreeFast / nextFree).
    case cache
    /// Packed into the mutator's current 16-byte tiny block.
    case tiny
    /// The cache's span was full: refilled from MCentral (a swept or newly swept span).
    case central
    /// MCentral had no span with room: a new span from MHeap's free pages.
    case heap
    /// MHeap had no free pages: the heap grew (arena pages made Ready).
    case os
    /// A large object (> 32 KiB): its own span, straight from MHeap.
    case large

    /// The level's row title in `AllocPathStats.formatted()`, naming Go's structure (`"mcentral
    /// (cache refill)"`).
    public var label: String {
        switch self {
        case .cache: return "mcache (cached span)"
        case .tiny: return "mcache tiny block"
        case .central: return "mcentral (cache refill)"
        case .heap: return "mheap (mcentral grow)"
        case .os: return "OS (mheap grow)"
        case .large: return "mheap large object"
        }
    }
}

/// Counts and latency histograms per level (raw memory, one per mutator, summed on read).
struct AllocPathCounters {
    static let buckets = 40           // log2 of CPU ticks
    static let stride = 1 + buckets
    static let words = AllocPathLevel.allCases.count * stride
    let p: UnsafeMutablePointer<UInt64>

    init() {
        p = .allocate(capacity: AllocPathCounters.words)
        p.initialize(repeating: 0, count: AllocPathCounters.words)
    }
    func destroy() { p.deallocate() }

    @inline(__always)
    func record(_ level: Int, ticks: UInt64) {
        let base = level &* AllocPathCounters.stride
        p[base] &+= 1
        let b = min(AllocPathCounters.buckets - 1, 64 - ticks.leadingZeroBitCount)
        p[base &+ 1 &+ b] &+= 1
    }

    func add(to other: UnsafeMutablePointer<UInt64>) {
        for i in 0..<AllocPathCounters.words { other[i] &+= p[i] }
    }
}

/// Note that the allocation in progress reached `level` (levels only go up).
@inline(__always)
func raisePathLevel(_ st: UnsafeMutablePointer<MutatorState>, _ level: AllocPathLevel) {
    if st.pointee.pathLevel < UInt8(level.rawValue) { st.pointee.pathLevel = UInt8(level.rawValue) }
}

/// What `Heap.allocPathStats()` returns.
public struct AllocPathStats: Sendable, Codable, Equatable {
    /// The count and latency histogram of one level of the allocation chain.
    public struct Level: Sendable, Codable, Equatable {
        /// The level's title, `AllocPathLevel.label`.
        public var name: String
        /// Allocations this level served since the heap was created.
        public var count: UInt64
        /// Latency histogram: `histogram[i]` counts allocations that took less than
        /// `bucketUpperNs[i]` nanoseconds (and at least the previous bound).
        public var histogram: [UInt64]
        /// The upper bound of each histogram bucket, in nanoseconds; bounds double from bucket
        /// to bucket (they are powers of two CPU ticks, converted).
        public var bucketUpperNs: [Double]

        /// Upper bound (ns) of the bucket holding the q-quantile. `q` is clamped to 0…1,
        /// and NaN counts as 0 (the minimum), as in `GCStats.stopTheWorldPauseQuantile`:
        /// a statistics query answers for any input instead of trapping.
        public func quantileNs(_ q: Double) -> Double {
            let total = histogram.reduce(0, +)
            if total == 0 { return 0 }
            let q = q.isNaN ? 0 : min(1, max(0, q))
            let want = UInt64(saturating: (Double(total) * q).rounded(.up))
            var acc: UInt64 = 0
            for (i, c) in histogram.enumerated() {
                acc += c
                if acc >= max(1, want) { return bucketUpperNs[i] }
            }
            return bucketUpperNs.last ?? 0
        }
    }
    /// False when the heap was not configured with `allocPathStats`: then the per-level
    /// counts are empty and only the span and lock counts below are filled in.
    public var enabled: Bool
    /// One entry per `AllocPathLevel`, in its order; empty when `enabled` is false.
    public var levels: [Level]
    // Span lifecycle (always counted).
    /// Spans the page heap (MHeap) handed out, to MCentral or for a large object. Like the
    /// other span and heap counts, counted always.
    public var spansCreated: UInt64
    /// Spans a mutator's cache took from MCentral to allocate from (Go's `cacheSpan`).
    public var spansCached: UInt64
    /// Spans a cache gave back to MCentral (Go's `uncacheSpan`: full, or flushed at a
    /// collection or detach).
    public var spansUncached: UInt64
    /// Spans swept, by the background sweeper, by allocating mutators or at a collection.
    public var spansSwept: UInt64
    /// Spans whose pages went back to the page heap because sweeping found them empty (or a
    /// large object died).
    public var spansFreed: UInt64
    /// Empty spans a sweep kept in their size class for the next refill instead of
    /// returning them to the page heap (a span is kept once: still unused at the next
    /// sweep, it is freed).
    public var spansKeptEmpty: UInt64 = 0
    /// Times the page heap grew: ran out of free pages and made more of its reserved address
    /// space Ready.
    public var heapGrows: UInt64
    /// Bytes the page heap grew by, in total.
    public var heapGrowBytes: UInt64
    /// Bytes of free pages given back to the OS (`madvise`) by the scavenger, in total.
    public var bytesReturnedToOS: UInt64
    /// Pieces of fresh (or released) memory faulted in ahead of use by the grower thread
    /// (2 MiB each), and by allocating mutators that found no free page (128 KiB or what
    /// the span needs; Allocator/HeapGrowth.swift).
    public var piecesFaultedInBackground: UInt64 = 0
    /// See `piecesFaultedInBackground`.
    public var piecesFaultedByMutators: UInt64 = 0
    /// The longest a mutator's allocation spent faulting in a piece itself, in ns.
    public var maxMutatorFaultNs: UInt64 = 0
    /// Time the background scavenger spent releasing pages, ns, and the bytes it released.
    public var scavengerBackgroundNs: UInt64 = 0
    /// See `scavengerBackgroundNs`.
    public var scavengerBackgroundBytes: UInt64 = 0
    /// Runtime lock waits (always counted), one entry per lock kind that ever waited.
    public var locks: [LockWaitStats]
}

extension Heap {
    /// Counts per allocation level (when enabled), span lifecycle and lock waits.
    /// Stops the world briefly to read every mutator's counters.
    public func allocPathStats() -> AllocPathStats {
        var total = [UInt64](repeating: 0, count: AllocPathCounters.words)
        withWorldStopped {
            total.withUnsafeMutableBufferPointer { t in
                statsLock.withLock { for i in 0..<AllocPathCounters.words { t[i] = pathTotals[i] } }
                forEachMutator { m in m.pointee.pathCounters?.add(to: t.baseAddress!) }
            }
        }
        let nsPerTick = CPUTicks.nsPerTick
        var levels: [AllocPathStats.Level] = []
        if configuration.allocPathStats {
            for l in AllocPathLevel.allCases {
                let base = l.rawValue * AllocPathCounters.stride
                let hist = Array(total[(base + 1)...(base + AllocPathCounters.buckets)])
                let bounds = (0..<AllocPathCounters.buckets).map { Double(UInt64(1) << UInt64($0)) * nsPerTick }
                levels.append(.init(name: l.label, count: total[base], histogram: hist, bucketUpperNs: bounds))
            }
        }
        var result = AllocPathStats(
            enabled: configuration.allocPathStats, levels: levels,
            spansCreated: UInt64(heapStats.spansCreated.load(.relaxed)), spansCached: UInt64(heapStats.spansCached.load(.relaxed)),
            spansUncached: UInt64(heapStats.spansUncached.load(.relaxed)), spansSwept: UInt64(heapStats.spansSwept.load(.relaxed)),
            spansFreed: UInt64(heapStats.spansFreed.load(.relaxed)), heapGrows: UInt64(heapStats.heapGrows.load(.relaxed)),
            heapGrowBytes: UInt64(heapStats.heapGrowBytes.load(.relaxed)), bytesReturnedToOS: UInt64(heapStats.bytesReturnedToOS.load(.relaxed)),
            locks: LockWaits.snapshot())
        result.spansKeptEmpty = UInt64(heapStats.spansKeptEmpty.load(.relaxed))
        heapLock.withLock {
            result.piecesFaultedInBackground = UInt64(growth.piecesByGrower)
            result.piecesFaultedByMutators = UInt64(growth.piecesByMutators)
            result.maxMutatorFaultNs = growth.maxMutatorFaultNs
            result.scavengerBackgroundNs = scav.backgroundNs
            result.scavengerBackgroundBytes = UInt64(scav.backgroundBytes)
        }
        return result
    }

    /// Record the level and latency of one allocation (allocation-path mode).
    @inline(__always)
    func recordAllocPath(_ st: UnsafeMutablePointer<MutatorState>, start: UInt64) {
        guard let c = st.pointee.pathCounters else { return }
        c.record(Int(st.pointee.pathLevel), ticks: tc_cputicks() &- start)
    }

    /// Raise the level reached by the current thread's allocation (MHeap calls this;
    /// it runs on the allocating mutator's thread, when there is one).
    @inline(__always)
    func notePathLevel(_ level: AllocPathLevel) {
        guard configuration.allocPathStats, let cur = tc_get_current_mutator() else { return }
        raisePathLevel(cur.assumingMemoryBound(to: MutatorState.self), level)
    }
}

extension AllocPathStats {
    /// The table `tricolor run … --alloc-path` prints.
    public func formatted() -> String {
        var out = "allocation path: mcache -> mcentral -> mheap -> OS\n"
        func ns(_ v: Double) -> String {
            if v >= 1e6 { return fixed(v / 1e6, 1) + "ms" }
            if v >= 1e3 { return fixed(v / 1e3, 1) + "us" }
            return fixed(v, 0) + "ns"
        }
        if enabled {
            let total = levels.reduce(0) { $0 + $1.count }
            out += "  level                          allocations    share      p50      p99      max\n"
            for l in levels {
                let share = total == 0 ? 0 : Double(l.count) * 100 / Double(total)
                let maxNs = l.histogram.lastIndex(where: { $0 != 0 }).map { l.bucketUpperNs[$0] } ?? 0
                var row = "  " + l.name.rightPad(28)
                row += String(l.count).leftPad(15)
                row += (fixed(share, 3) + "%").leftPad(9)
                row += ns(l.quantileNs(0.5)).leftPad(9)
                row += ns(l.quantileNs(0.99)).leftPad(9)
                row += ns(maxNs).leftPad(9)
                out += row + "\n"
            }
            out += "  (latencies are bucket upper bounds, powers of two in CPU cycles; in this mode every\n"
            out += "   allocation runs the outlined slow path, so 'mcache' is slower than the inlined fast path)\n"
        } else {
            out += "  (per-allocation levels not counted: run with --alloc-path)\n"
        }
        out += "spans: \(spansCreated) created, \(spansCached) cached, \(spansUncached) uncached, "
            + "\(spansSwept) swept, \(spansFreed) freed to the page heap, \(spansKeptEmpty) kept empty in their class\n"
        out += "page heap: grew \(heapGrows) times (\(heapGrowBytes >> 20) MiB), returned \(bytesReturnedToOS >> 10) KiB to the OS\n"
        out += "growth: \(piecesFaultedInBackground) pieces of 2 MiB faulted in ahead by the grower, \(piecesFaultedByMutators) of \((Heap.mutatorFaultPages * SizeClassTable.pageSize) >> 10) KiB by allocating threads (longest \(ns(Double(maxMutatorFaultNs))))\n"
        out += "scavenger: released \(scavengerBackgroundBytes >> 10) KiB in the background in \(ns(Double(scavengerBackgroundNs)))\n"
        if locks.isEmpty {
            out += "runtime locks: no contention\n"
        } else {
            out += "runtime locks: lock        waits   total wait    max wait\n"
            for l in locks {
                var row = "               " + l.lock.rightPad(10)
                row += String(l.waits).leftPad(7)
                row += ns(Double(l.totalWaitNs)).leftPad(13)
                row += ns(Double(l.maxWaitNs)).leftPad(12)
                out += row + "\n"
            }
        }
        return out
    }
}

/// `v` with `decimals` digits after the point (no Foundation in the runtime).
func fixed(_ v: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let r = (abs(v) * scale).rounded()
    let whole = Int(r / scale)
    var frac = String(Int(r - Double(whole) * scale))
    while frac.count < decimals { frac = "0" + frac }
    return (v < 0 ? "-" : "") + String(whole) + (decimals > 0 ? "." + frac : "")
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
    func rightPad(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}

/// Converts CPU ticks to nanoseconds, calibrated once against the monotonic clock.
enum CPUTicks {
    static let nsPerTick: Double = {
        let n0 = tc_nanotime(), t0 = tc_cputicks()
        tc_sleep_ns(20_000_000)
        let n1 = tc_nanotime(), t1 = tc_cputicks()
        if t1 <= t0 { return 1 }
        return Double(n1 - n0) / Double(t1 - t0)
    }()
}
