import CTricolor
import Glibc

// The heap's shared state: the words that several threads read and write without a
// common lock (Go's gcController fields, work counters, mheap_.sweepgen, heapStats).
//
// Each word is an `AtomicWord` (or `AtomicDouble`): a handle on 8 bytes of memory the
// runtime mapped itself, never Swift's heap, never moved, touched only through the C
// atomics in CTricolor, so ThreadSanitizer and the language's memory model see every
// access as the atomic it is. The ordering is named at every call.
//
// The words are grouped as Go groups them, each group starting on a cache line of its
// own: `sched` (stop-the-world), `marking` (Go's `work`), `gcController` (the pacer's
// published outputs), `sweep`, `limiter`, `heapStats` and `flags`. Each field says
// who writes it, who reads it, and what orders those accesses.
//
// Invariants: the block lives exactly as long as its heap; only the fields below exist
// (no untyped indexes); counters only grow except where a field says otherwise.

/// Memory orderings of the operations below, named as in swift-atomics.
@usableFromInline enum LoadOrdering { case relaxed, acquiring }
@usableFromInline enum StoreOrdering { case relaxed, releasing }
@usableFromInline enum UpdateOrdering { case relaxed, acquiringAndReleasing }

/// One shared word. Trivially copyable; copies name the same word.
@usableFromInline @frozen
struct AtomicWord {
    @usableFromInline let address: UnsafeMutablePointer<UInt>

    @usableFromInline init(_ address: UnsafeMutablePointer<UInt>) { self.address = address }

    @inlinable @inline(__always)
    func load(_ o: LoadOrdering) -> UInt {
        o == .acquiring ? tc_load_acquire(address) : tc_load_relaxed(address)
    }
    @inline(__always)
    func store(_ v: UInt, _ o: StoreOrdering) {
        if o == .releasing { tc_store_release(address, v) } else { tc_store_relaxed(address, v) }
    }
    /// Add and return the old value.
    @inline(__always) @discardableResult
    func fetchAdd(_ v: UInt, _ o: UpdateOrdering) -> UInt {
        o == .relaxed ? tc_fetch_add_relaxed(address, v) : tc_fetch_add(address, v)
    }
    @inline(__always) func add(_ v: UInt, _ o: UpdateOrdering) { fetchAdd(v, o) }
    @inline(__always) func sub(_ v: UInt, _ o: UpdateOrdering) { fetchAdd(0 &- v, o) }
    /// Set bits (acquire-release); returns the old value.
    @inline(__always) @discardableResult
    func fetchOr(_ v: UInt) -> UInt { UInt(tc_or64(address, UInt64(v))) }
    /// Clear bits not in `v` (acquire-release); returns the old value.
    @inline(__always) @discardableResult
    func fetchAnd(_ v: UInt) -> UInt { UInt(tc_and64(address, UInt64(v))) }
    /// Acquire-release compare-and-swap.
    @inline(__always)
    func compareExchange(expected: UInt, desired: UInt) -> Bool { tc_cas(address, expected, desired) }
}

/// A shared `Double` (stored as its bit pattern; loads and stores are atomic).
struct AtomicDouble {
    let word: AtomicWord
    @inline(__always) func load(_ o: LoadOrdering) -> Double { Double(bitPattern: UInt64(word.load(o))) }
    @inline(__always) func store(_ v: Double, _ o: StoreOrdering) { word.store(UInt(v.bitPattern), o) }
}

/// A fixed array of shared counters (one per size class).
struct AtomicCounters {
    let base: UnsafeMutablePointer<UInt>
    let count: Int
    @inline(__always) subscript(i: Int) -> AtomicWord { AtomicWord(base + i) }
}

/// Hands out the words of the shared block in order, one cache line per group.
struct SharedWordCarver {
    static let lineWords = 8
    private(set) var used = 0
    let base: UnsafeMutablePointer<UInt>
    let capacity: Int

    mutating func word() -> AtomicWord {
        runtimeCheck(used < capacity, "HeapShared: block too small")
        used += 1
        return AtomicWord(base + used - 1)
    }
    mutating func double() -> AtomicDouble { AtomicDouble(word: word()) }
    mutating func counters(_ n: Int) -> AtomicCounters {
        runtimeCheck(used + n <= capacity, "HeapShared: block too small")
        used += n
        return AtomicCounters(base: base + used - n, count: n)
    }
    /// Start the next group on a fresh cache line.
    mutating func nextLine() { used = (used + SharedWordCarver.lineWords - 1) / SharedWordCarver.lineWords * SharedWordCarver.lineWords }
}

/// Stop-the-world and scheduling (Runtime/StopTheWorld.swift, Attach.swift).
struct SchedShared {
    /// The attention word every mutator polls (`Attention.stop | .gcDuties | .markDone`).
    /// Written: bits set and cleared with acquire-release RMW by the stopper (`stop`), the
    /// cycle (`gcDuties`), the mark worker and mark termination (`markDone`). Read: relaxed
    /// by mutators at safepoints (a stale zero only delays the answer to the next poll;
    /// the sched lock orders the stop itself).
    let attention: AtomicWord
    /// Mutators that left the running state; bumped (relaxed) under the sched lock, read
    /// (relaxed) by a stopper spinning without the lock to notice a park early.
    let parkEvents: AtomicWord
    /// Stops that moved a descheduled mutator onto the stopper's CPU. Written by the one
    /// stopper (relaxed add); read by GCStats.
    let stopRescues: AtomicWord
    /// Mutators attached and not in a blocking region. Updated (relaxed) under the sched
    /// lock; read (relaxed) without it by statistics.
    let activeMutators: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        attention = c.word(); parkEvents = c.word(); stopRescues = c.word(); activeMutators = c.word()
    }
}

/// The cycle and its marking (Go's `work` and gcphase; Collector/).
struct MarkingShared {
    /// `GCPhase`. Written (release) only with the world stopped, by the thread running
    /// sweep or mark termination; read (acquire) anywhere: seeing `.mark` makes the
    /// cycle's setup visible.
    let phase: AtomicWord
    /// Cycles whose mark termination has run (Go's NumGC). Written (release) in pause #2
    /// before the phase turns off; read (relaxed) by `collect()` and statistics.
    let numGC: AtomicWord
    /// Cycles whose statistics are published. Written (release) by the thread finishing
    /// the cycle, after the stats; read (relaxed) by `collect()`.
    let cyclesCompleted: AtomicWord
    /// Bytes marked this cycle. Relaxed adds by markers flushing their gcWork; reset
    /// (release) in pause #1; read in pause #2 (the stop orders it).
    let bytesMarked: AtomicWord
    /// Scan work done this cycle (bytes scanned), as `bytesMarked`.
    let scanWork: AtomicWord
    /// Stack bytes scanned this cycle, as `bytesMarked`.
    let stackScanBytes: AtomicWord
    /// Scan work the background workers did ahead of assists (Go's bgScanCredit): relaxed
    /// adds by workers, compare-and-swap by assists taking credit.
    let bgScanCredit: AtomicWord
    /// Assist and background mark CPU this cycle (ns); relaxed adds, read in pause #2.
    let assistTimeNs: AtomicWord
    let bgMarkTimeNs: AtomicWord
    /// 0 until one marker claims the globals and handles (compare-and-swap), then 1.
    let rootsClaimed: AtomicWord
    /// 1 once globals and handles are scanned (release store by the claimer; read relaxed
    /// by mark termination, which also needs the global list empty).
    let rootsDone: AtomicWord
    /// Ragged-barrier generation. Written (release) by the one thread in `markDone`
    /// (markDone lock); read (relaxed) by mutators at safepoints.
    let flushGen: AtomicWord
    /// Markers currently draining (acquire-release adds around each drain); mark
    /// termination needs it zero and reads it with acquire, so that the marks of every
    /// finished drain happen before the sweep that reads them.
    let activeWorkers: AtomicWord
    /// Mark terminations a mutator ran for the worker; relaxed add, statistics only.
    let markHandoffsTaken: AtomicWord
    /// This cycle: a mutator gave mark termination back to the worker (release store by
    /// that mutator; read relaxed by the worker). Reset in pause #1.
    let handoffRefused: AtomicWord
    /// Cumulative count of those; relaxed add, statistics only.
    let handoffsRefused: AtomicWord
    /// Native stack bytes scanned conservatively this cycle, and objects found that way
    /// (conservative roots); relaxed adds by stack scanners, reset in pause #1, read in
    /// pause #2 (Collector/ConservativeScan.swift).
    let nativeScanBytes: AtomicWord
    let conservativeRoots: AtomicWord
    /// Native stack scans skipped because the stack pointer was outside the thread's
    /// stack (cumulative; relaxed add, statistics only).
    let nativeScansSkipped: AtomicWord
    /// Shadow stacks grown and shrunk by copying (cumulative; relaxed adds by their
    /// owners, statistics only).
    let stacksGrown: AtomicWord
    let stacksShrunk: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        phase = c.word(); numGC = c.word(); cyclesCompleted = c.word()
        bytesMarked = c.word(); scanWork = c.word(); stackScanBytes = c.word(); bgScanCredit = c.word()
        assistTimeNs = c.word(); bgMarkTimeNs = c.word(); rootsClaimed = c.word(); rootsDone = c.word()
        flushGen = c.word(); activeWorkers = c.word(); markHandoffsTaken = c.word()
        handoffRefused = c.word(); handoffsRefused = c.word()
        nativeScanBytes = c.word(); conservativeRoots = c.word(); nativeScansSkipped = c.word()
        stacksGrown = c.word(); stacksShrunk = c.word()
    }
}

/// What the pacer publishes for the allocation paths (Go's gcController fields).
struct GCControllerShared {
    /// Bytes in spans handed to mcaches plus large objects since the last mark (Go's
    /// heapLive). Relaxed adds by mutators at refill/uncache and large allocation; reset
    /// to the marked bytes in pause #2. Read relaxed by the trigger test: a stale value
    /// only moves the trigger by one span.
    let heapLive: AtomicWord
    /// This cycle's heap goal. Written (release) by `commitPacer` with the world stopped or
    /// under the stats lock (memory-limit refresh, setGCPercent); read relaxed.
    let heapGoal: AtomicWord
    /// A cycle starts when heapLive reaches this (`UInt.max`: collector off). As heapGoal.
    let trigger: AtomicWord
    /// Scan work owed per byte allocated while marking (Go's assistWorkPerByte). Written
    /// (release) by `reviseAssistRatio` on any thread; read relaxed by assists: a stale
    /// ratio is revised at the next refill.
    let assistWorkPerByte: AtomicDouble
    /// heapSys when the memory-limit trigger was last recomputed (stats lock).
    let limitTriggerHeapSys: AtomicWord
    /// The scannable part of heapLive (Go's heapScan): bytes of spans of pointerful
    /// classes handed to mcaches and of pointerful large objects since the last mark,
    /// plus the heap scan work that mark did. The assist ratio's bound on the scan work
    /// left. As heapLive: relaxed adds at refill/uncache and large allocation (a stale
    /// value moves the ratio by one span), reset in pause #2.
    let heapScan: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        heapLive = c.word(); heapGoal = c.word(); trigger = c.word()
        assistWorkPerByte = c.double(); limitTriggerHeapSys = c.word(); heapScan = c.word()
    }
}

/// Sweeping (Go's mheap_.sweepgen, sweepPagesPerByte and friends; Collector/Sweep.swift).
struct SweepShared {
    /// Go's mheap_.sweepgen: +2 per cycle, written (release) only in pause #2; read
    /// (acquire) by every sweeper and refill to compare with a span's sweepgen.
    let sweepgen: AtomicWord
    /// Pages swept this cycle; relaxed adds by sweepers, reset in pause #2.
    let pagesSwept: AtomicWord
    /// Proportional sweep basis (pagesSwept and heapLive when the sweep pacer last ran).
    /// Written (release) by `paceSweeper` (world stopped or stats lock); read relaxed by
    /// `deductSweepCredit`.
    let pagesSweptBasis: AtomicWord
    let sweepHeapLiveBasis: AtomicWord
    /// Pages to sweep per byte allocated (Go's sweepPagesPerByte), as the basis.
    let sweepPagesPerByte: AtomicDouble
    /// Threads inside a sweep (acquire-release adds); pause #1 waits for zero.
    let activeSweepers: AtomicWord
    /// 1 from pause #1 until pause #2: no new background sweeps start. Release store with
    /// the world stopped; read relaxed by sweepers before `activeSweepers` is raised.
    let sweepBlocked: AtomicWord
    /// Next central list to look for unswept spans in; relaxed compare-and-swap by sweepers.
    let sweepIndex: AtomicWord
    /// Pages of empty spans this sweep phase may still keep in their classes
    /// (Sweep.swift, "kept empty"). Set in pause #2 (release, world stopped); taken by
    /// sweepers with compare-and-swap, never below zero.
    let keepEmptyPages: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        sweepgen = c.word(); pagesSwept = c.word(); pagesSweptBasis = c.word(); sweepHeapLiveBasis = c.word()
        sweepPagesPerByte = c.double(); activeSweepers = c.word(); sweepBlocked = c.word(); sweepIndex = c.word()
        c.nextLine()
        keepEmptyPages = c.word()
    }
}

/// The GC CPU limiter's words (Go's gcCPULimiter; Policy/CPULimiter.swift is the pure
/// bucket, Collector/Pacing.swift feeds it).
struct LimiterShared {
    /// Assist GC CPU time (ns) pooled since the limiter's last update: relaxed adds by
    /// assists; taken (release store of 0) under the limiter lock by the updater.
    let gcNs: AtomicWord
    /// The limiter's last update (monotonic ns), as gcNs.
    let windowStart: AtomicWord
    /// 1 while the limiter is limiting (GC CPU over its cap): assists stop. Written
    /// (release) under the limiter lock by whoever updates the bucket; read relaxed by
    /// assists.
    let enabled: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        gcNs = c.word(); windowStart = c.word(); enabled = c.word()
    }
}

/// Cumulative counters (Go's heapStats and memstats). Relaxed adds by the thread doing
/// the counted thing (refill, sweep, large allocation, heap growth); read relaxed by
/// MemStats, which stops the world so the set is consistent. The heap-lock fields
/// (`heapInuse`, `heapSys`, `heapReleased`) are written under the heap lock and read
/// relaxed without it.
struct HeapStatsShared {
    let largeAllocCount: AtomicWord, largeAllocBytes: AtomicWord
    let largeFreeCount: AtomicWord, largeFreeBytes: AtomicWord
    let tinyAllocCount: AtomicWord
    /// Bytes in in-use spans (heap lock).
    let heapInuse: AtomicWord
    /// Bytes of heap address space made Ready (heap lock).
    let heapSys: AtomicWord
    /// Bytes of free pages returned to the OS (heap lock).
    let heapReleased: AtomicWord
    /// Bytes in stack spans (Go's stacks_inuse, MemStats.StackInuse): written under the
    /// heap lock by `allocManual`/`freeManual` (relaxed adds), read relaxed.
    let stackInuse: AtomicWord
    /// Span lifecycle and page-heap events (AllocPath.swift).
    let spansCreated: AtomicWord, spansCached: AtomicWord, spansUncached: AtomicWord
    let spansSwept: AtomicWord, spansFreed: AtomicWord
    /// Empty spans a sweep kept in their class (`SweepShared.keepEmptyPages`).
    let spansKeptEmpty: AtomicWord
    /// Bytes of spans kept empty in their class (`MSpan.keptEmpty`): added by the sweep
    /// that keeps one, taken off by the next sweep of it (sweepers' line). Those a refill
    /// cached since are in `keptEmptyBytesTaken` (mutators' line, beside `spansCached`,
    /// which the same refill bumps: a mutator never writes the sweepers' line). MemStats
    /// counts the difference as HeapIdle, where Go's page heap would have it (Go frees an
    /// empty span at once).
    let keptEmptyBytes: AtomicWord
    let keptEmptyBytesTaken: AtomicWord
    let heapGrows: AtomicWord, heapGrowBytes: AtomicWord, bytesReturnedToOS: AtomicWord
    /// Objects allocated / freed per size class (small objects).
    let smallAllocs: AtomicCounters
    let smallFrees: AtomicCounters

    init(_ c: inout SharedWordCarver) {
        // Grouped by writer, one cache line per group: a counter that mutators bump on
        // every span refill must not share a line with one the background sweeper bumps
        // on every span it sweeps, or each refill pays a cache-line transfer (measured:
        // 13% of `tricolor bench alloc` went to one `lock incq` on spansCached while it
        // sat beside spansSwept). Go keeps such counters per P for the same reason.
        // Mutators, at span refill and release:
        c.nextLine()
        spansCached = c.word(); spansUncached = c.word(); tinyAllocCount = c.word(); keptEmptyBytesTaken = c.word()
        // Sweepers:
        c.nextLine()
        spansSwept = c.word(); spansFreed = c.word(); spansKeptEmpty = c.word(); keptEmptyBytes = c.word()
        // Whoever holds the heap lock:
        c.nextLine()
        heapInuse = c.word(); heapSys = c.word(); heapReleased = c.word(); stackInuse = c.word()
        spansCreated = c.word(); heapGrows = c.word(); heapGrowBytes = c.word(); bytesReturnedToOS = c.word()
        // Large objects: allocating mutators and the sweepers that free them.
        c.nextLine()
        largeAllocCount = c.word(); largeAllocBytes = c.word()
        c.nextLine()
        largeFreeCount = c.word(); largeFreeBytes = c.word()
        // Per size class: mutators count allocations when a span leaves their cache,
        // sweepers count frees.
        c.nextLine()
        smallAllocs = c.counters(SizeClassTable.numSizeClasses)
        c.nextLine()
        smallFrees = c.counters(SizeClassTable.numSizeClasses)
    }

    /// Bytes of the spans kept empty in their class now (see `keptEmptyBytes`): counted
    /// in heapInuse, reported as idle. Two relaxed loads, so a moment's skew is clamped.
    var keptEmptyBytesNow: UInt {
        let taken = keptEmptyBytesTaken.load(.relaxed)
        let kept = keptEmptyBytes.load(.relaxed)
        return kept - min(kept, taken)
    }

    /// heapInuse as MemStats reports it: spans kept empty in their class are idle.
    var heapInuseReported: UInt {
        let inuse = heapInuse.load(.relaxed)
        return inuse - min(inuse, keptEmptyBytesNow)
    }
}

/// Mode words.
struct FlagsShared {
    /// 1 while an allocation or free hook is installed. Release store by `setHooks` with
    /// the world stopped; acquire load by sweepers before they read the hook box.
    let hooksInstalled: AtomicWord
    /// The largest shadow stack in bytes (Go's maxstacksize; `Heap.setMaxStack`):
    /// stored (relaxed) by the setter under the stats lock, read relaxed by a mutator
    /// growing its stack.
    let maxStack: AtomicWord

    init(_ c: inout SharedWordCarver) {
        c.nextLine()
        hooksInstalled = c.word(); maxStack = c.word()
    }
}

/// The whole block, owned by one heap.
struct HeapShared {
    static let words = 48 * SharedWordCarver.lineWords
    let block: UnsafeMutablePointer<UInt>
    let sched: SchedShared
    let marking: MarkingShared
    let gcController: GCControllerShared
    let sweep: SweepShared
    let limiter: LimiterShared
    let heapStats: HeapStatsShared
    let flags: FlagsShared

    init() {
        // Cache-line aligned so that groups do not share lines.
        let raw = UnsafeMutableRawPointer.allocate(byteCount: HeapShared.words * 8, alignment: 64)
        block = raw.bindMemory(to: UInt.self, capacity: HeapShared.words)
        block.initialize(repeating: 0, count: HeapShared.words)
        var c = SharedWordCarver(base: block, capacity: HeapShared.words)
        sched = SchedShared(&c)
        marking = MarkingShared(&c)
        gcController = GCControllerShared(&c)
        sweep = SweepShared(&c)
        limiter = LimiterShared(&c)
        heapStats = HeapStatsShared(&c)
        flags = FlagsShared(&c)
    }

    func destroy() { UnsafeMutableRawPointer(block).deallocate() }
}
