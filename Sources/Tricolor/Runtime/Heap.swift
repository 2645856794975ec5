import CTricolor
import Glibc

/// A garbage-collected heap: Go's mheap, the collector and its pacer, behind one object.
///
/// Threads that touch the heap attach as a `Mutator` (Go's P + G). Objects are allocated
/// from a mutator, referenced by `Ref`, and kept alive by roots: the mutators' shadow
/// stacks, global root slots and handles. A collection starts automatically when the
/// heap reaches its goal (GOGC) or when `collect()` is called.
///
/// The heap's hot state is read by code inlined into the caller, so it is kept in
/// runtime-owned memory behind unsafe pointers; no lock and no reference counting is on
/// the allocation fast path.
public final class Heap: @unchecked Sendable {
    // MARK: read by inlined code
    /// The words shared between threads without a common lock, typed and grouped as Go
    /// groups them; each field says who writes it, who reads it and with what ordering
    /// (HeapShared.swift).
    let shared: HeapShared
    var sched: SchedShared { shared.sched }
    var marking: MarkingShared { shared.marking }
    var gcController: GCControllerShared { shared.gcController }
    var sweep: SweepShared { shared.sweep }
    var limiter: LimiterShared { shared.limiter }
    var heapStats: HeapStatsShared { shared.heapStats }
    var flags: FlagsShared { shared.flags }
    /// The shared zero-size object: every 0-byte allocation returns its address.
    @usableFromInline let zeroBase: UInt
    @usableFromInline let sizeToClass8: UnsafeMutablePointer<UInt8>
    @usableFromInline let sizeToClass128: UnsafeMutablePointer<UInt8>
    @usableFromInline let emptySpan: UnsafeMutablePointer<MSpan>
    /// Stop-the-world rescue records (thread id, saved CPU mask), used by the one
    /// thread stopping the world; preallocated so that path neither allocates nor
    /// instantiates metadata (which costs page faults, measured at 100+ µs).
    let rescueTids: UnsafeMutablePointer<UInt64>
    let rescueMasks: UnsafeMutableRawPointer
    static let maxRescues = 16

    // Stored `var`s below are marked `@exclusivity(unchecked)`: each is protected by a
    // runtime lock or a stopped world (written next to it), which Swift's dynamic
    // exclusivity checks cannot see and would only add a call per access to (measured:
    // the allocation slow path reads several of them per refill). The package sets no
    // compiler flags (it must be usable by version), so this is per property.

    // MARK: configuration
    /// The configuration the heap was created with. Settings that can change later
    /// (`setGCPercent(_:)`, `setMemoryLimit(_:)`) are not reflected here.
    public let configuration: Configuration
    let procs: Int
    /// CPUs for the collector's own threads: min(GOMAXPROCS, CPUs this process may run
    /// on). GOMAXPROCS can be any value (the pacer counts it as Go does), but the mark
    /// workers are threads, and more of them than CPUs only compete with each other.
    let workerProcs: Int
    let checked: Bool
    /// Stamped into every `ObjectType` this heap registers, so that a type used with
    /// another heap is caught (one compare on the typed slow paths, in every mode). 1…127,
    /// from a process-wide counter: heaps 127 apart share a tag, which only weakens the
    /// check, never makes it fire wrongly.
    let typeTag: UInt8
    /// `Configuration.internalChecks` / `expensiveChecks` (the tiered self-checks).
    let internalChecks: Bool
    let expensiveChecks: Bool
    /// Allocation must take the slow path (checked mode, clobberfree).
    let debugSlowPath: Bool
    /// Checked mode's quarantine length in cycles (0: no quarantine). Immutable.
    let quarantineCycles: UInt32
    /// `Configuration.gcStress` (0: off). Immutable.
    let gcStress: Int
    /// The stop-the-world watchdog period in ns (0: off). Immutable.
    let stwWatchdogNs: UInt64

    // MARK: address space and arenas (heap lock)
    let arenaBase: UInt
    let reservedBytes: UInt
    let numArenas: Int
    /// One entry per 64 MiB arena of the reservation; nil until the arena is mapped.
    let arenas: UnsafeMutablePointer<UnsafeMutablePointer<HeapArena>?>
    /// The same arenas' page→span tables (`HeapArena.spans`), nil until mapped: `spanOf`
    /// reaches a span in two dependent loads instead of three, on the marker's path for
    /// every pointer it follows. Written (release) with `arenas` when an arena is mapped,
    /// under the heap lock; read without a lock.
    let arenaSpans: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>?>
    @exclusivity(unchecked) var mappedArenas = 0
    @exclusivity(unchecked) var pages: PageAlloc
    @exclusivity(unchecked) var spanAlloc = FixAlloc(size: MemoryLayout<MSpan>.stride)
    let meta = MetaAlloc()
    let heapLock = RuntimeLock(rank: .mheap)
    /// Growth in progress and the grower thread's requests (heap lock; HeapGrowth.swift).
    @exclusivity(unchecked) var growth = GrowthState()
    /// The grower waits on it with the heap lock.
    let growthCond = RuntimeCond()
    /// The background scavenger's goal and requests (heap lock; Scavenger.swift).
    @exclusivity(unchecked) var scav = ScavengerState()
    /// The scavenger waits on it with the heap lock.
    let scavCond = RuntimeCond()
    /// `GODEBUG=scavtrace=1` (set at creation).
    let scavtrace: Bool
    /// `Configuration.backgroundHeapGrowth` (set at creation).
    let backgroundHeapGrowth: Bool
    /// `Configuration.transparentHugePages` (set at creation).
    let transparentHugePages: Bool

    // MARK: stacks (stack lock; Allocator/StackAlloc.swift)
    let stackLock = RuntimeLock(rank: .stackpool)
    /// Per order (2, 4, 8, 16 KiB): stack-pool spans with at least one free stack,
    /// linked by `MSpan.next` (Go's stackpool).
    let stackPool: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>
    /// Per log2(pages): free large stack spans kept while marking (Go's stackLarge).
    let stackLarge: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>
    /// Scan native stacks conservatively (`Configuration.conservativeStackScan`).
    let conservativeStacks: Bool
    /// Halve mostly unused shadow stacks at GC (`GODEBUG=gcshrinkstackoff=1` clears it).
    let shrinkStacks: Bool

    // MARK: central lists (one per span class)
    let centrals: UnsafeMutablePointer<MCentral>

    // MARK: types (types lock)
    let types: UnsafeMutablePointer<TypeInfo>
    @exclusivity(unchecked) var typeNames: [String] = ["<bytes>"]
    let typesLock = RuntimeLock(rank: .types)
    /// Per cache slot (`MCache.slotCount`): its span class (`SpanClass.raw`; a class slot
    /// is its own class) and, for a type's own slot, the type's id (0 otherwise). Written
    /// under the types lock when a type gets its slot, before the `ObjectType` that names
    /// the slot is handed out. `slotType` is read without a lock by mutators refilling
    /// the slot, which hold that `ObjectType` and so were handed it after the write;
    /// `slotClass` by `MCache.checkSlots`, with the world stopped.
    let slotClass: UnsafeMutablePointer<UInt8>
    let slotType: UnsafeMutablePointer<UInt16>
    /// Type slots this heap took from the process's pool (`Heap.claimTypeSlot`), given
    /// back at deinit. Types lock.
    @exclusivity(unchecked) var typeSlotsHeld: UInt64 = 0

    // MARK: world stop (sched lock)
    let schedLock = RuntimeLock(rank: .sched)
    let stateChanged = RuntimeCond()
    let worldStarted = RuntimeCond()
    @exclusivity(unchecked) var stwActive = false
    @exclusivity(unchecked) var mutators: UnsafeMutablePointer<MutatorState>? = nil {   // attached, linked by `next`
        didSet { debugNoteMutators() }   // the debug descriptor's mirror (attach/detach only)
    }
    /// This heap's slot in the debug descriptor (Observability/DebugDescriptor.swift), nil
    /// if all slots were taken. Set at the end of init, cleared in deinit.
    @exclusivity(unchecked) var debugSlot: UnsafeMutablePointer<tc_debug_heap>? = nil
    @exclusivity(unchecked) var freeMutators: UnsafeMutablePointer<MutatorState>? = nil

    // MARK: roots
    let globalsLock = RuntimeLock(rank: .globals)
    @exclusivity(unchecked) var globalSlots: RootSlotTable
    @exclusivity(unchecked) var handleSlots: RootSlotTable

    // MARK: collector state
    /// Goal, trigger and cons/mark (gc: the thread that owns the stopped world, or the
    /// setters under statsLock).
    @exclusivity(unchecked) var pacer: Pacer
    /// The global grey list.
    let work = WorkList()
    /// Held by the one thread trying to finish the mark phase (tryLock only).
    let markDoneLock = RuntimeLock(rank: .markDone)
    @exclusivity(unchecked) var markStartTime: UInt64 = 0
    @exclusivity(unchecked) var maxStackScan: UInt = 0
    @exclusivity(unchecked) var cycle = CycleTrace()
    // Background threads (started, the list, shutting down, sweep requested: bgLock).
    let bgLock = RuntimeLock(rank: .background)
    let bgCond = RuntimeCond()
    @exclusivity(unchecked) var backgroundStarted = false
    @exclusivity(unchecked) var backgroundThreads: [pthread_t] = []
    @exclusivity(unchecked) var shuttingDown = false
    /// What the collector threads share with the deinit: whether they pin the heap
    /// during each unit of work, and whether a deinit on one of them freed it
    /// (`collectorUnit`, Collector/GCWorkers.swift).
    let collectorControl = CollectorThreadControl(pins: Heap.collectorThreadsPinHeap)
    /// Collector threads running now (for tests and diagnostics).
    var backgroundThreadCount: Int { bgLock.withLock { backgroundThreads.count } }
    @exclusivity(unchecked) var sweepRequested = false
    /// The GC CPU limiter's bucket (limiterLock); see Collector/Pacing.swift.
    @exclusivity(unchecked) var cpuLimiter: GCCPULimiter
    let limiterLock = RuntimeLock(rank: .limiter)
    // Statistics (statsLock).
    @exclusivity(unchecked) var numForcedGC: UInt32 = 0
    @exclusivity(unchecked) var pauseNs = [UInt64](repeating: 0, count: 256)
    @exclusivity(unchecked) var pauseEnd = [UInt64](repeating: 0, count: 256)
    @exclusivity(unchecked) var pauseTotalNs: UInt64 = 0
    @exclusivity(unchecked) var cyclePauseNs: UInt64 = 0
    @exclusivity(unchecked) var lastGC: UInt64 = 0
    /// The last `Heap.pauseHistoryLimit` stop-the-world pauses, for quantiles: filled in
    /// order, then a ring whose oldest entry is at `pausesHead` (statsLock).
    @exclusivity(unchecked) var pauses: [UInt64] = []
    /// The stopping part of each entry of `pauses`, at the same index (statsLock).
    @exclusivity(unchecked) var pausesStopping: [UInt64] = []
    @exclusivity(unchecked) var pausesHead = 0
    /// Pauses recorded since the heap was created (statsLock).
    @exclusivity(unchecked) var pausesRecorded = 0
    /// How long the last stopTheWorld waited for the mutators (written by the stopping
    /// thread with the sched lock held, read by the same thread in `recordPause`).
    @exclusivity(unchecked) var lastStopWaitNs: UInt64 = 0
    @exclusivity(unchecked) var lastNativeScanBytes: UInt = 0     // conservative scan of the last cycle
    @exclusivity(unchecked) var lastConservativeRoots: UInt = 0
    @exclusivity(unchecked) var totalNativeScanBytes: UInt = 0
    let startTime = tc_nanotime()
    let statsLock = RuntimeLock(rank: .stats)
    @exclusivity(unchecked) var nextMutatorID = 0
    @exclusivity(unchecked) var gcCPUNs: UInt64 = 0
    /// GC CPU fraction as of the end of the last cycle (statsLock), as Go stores it.
    @exclusivity(unchecked) var lastGCCPUFraction: Double = 0
    /// Allocation-path counts of detached mutators (statsLock).
    let pathTotals: UnsafeMutablePointer<UInt64>

    // MARK: object lifecycle (Runtime/Specials.swift, Finalizers.swift, Pool.swift)
    /// Finalizer, weak-handle, cleanup and box records (their own lock).
    let specials = SpecialsTable()
    /// The finalizer thread's queue and state (its own lock).
    let finalizerQueue = FinalizerQueue()
    /// The registry of live pools, and the counts of pools gone (poolsLock).
    let poolsLock = RuntimeLock(rank: .pools)
    @exclusivity(unchecked) var pools: [ObjectIdentifier: PoolStorage] = [:]
    @exclusivity(unchecked) var retiredPoolHits = 0
    @exclusivity(unchecked) var retiredPoolMisses = 0
    /// Pool indices of detached mutators, for reuse, and the next new one (sched lock).
    @exclusivity(unchecked) var freePoolIndices: [Int] = []
    @exclusivity(unchecked) var nextPoolIndex = 0

    // MARK: profiling and hooks
    let memProfiler = MemProfiler()
    let hooksLock = RuntimeLock(rank: .hooks)
    @exclusivity(unchecked) var hooks: HookBox? = nil                  // hooksLock
    @exclusivity(unchecked) var allocHookInstalled = false             // changed with the world stopped

    /// Creates a heap: reserves `configuration.reservedAddressSpace` bytes of address space
    /// (memory is committed only as the heap grows) and maps the runtime's metadata. The
    /// collector's background threads (mark workers and the sweeper) start with the first
    /// collection.
    ///
    /// The heap is freed, with all its memory, when its last reference is dropped. An
    /// attached mutator holds a reference, so a heap is never freed under one: the last
    /// detach frees it. A collector thread also holds one while it works (its share of
    /// a mark phase, a sweep): a heap dropped then is freed by that thread a moment
    /// later, when the work ends.
    ///
    /// - Parameter configuration: GOGC, memory limit, debugging modes and the rest;
    /// `Configuration.fromEnvironment(_:)` reads them as Go does.
    /// - Throws: `ConfigurationError` when a value is out of range, naming it;
    /// `HeapError.outOfMemory` when the address space or metadata cannot be mapped. Nothing
    /// stays mapped after a throw.
    public init(configuration: Configuration = Configuration()) throws {
        try configuration.validate()
        self.configuration = configuration
        // Go's default GOMAXPROCS: the CPUs in the affinity mask.
        let cpus = Int(tc_usable_cpus())
        procs = configuration.gomaxprocs ?? cpus
        workerProcs = min(procs, cpus)
        checked = configuration.checked
        typeTag = UInt8(tc_fetch_add(Heap.nextTypeTag, 1) % 127 + 1)
        internalChecks = configuration.internalChecks
        expensiveChecks = configuration.expensiveChecks
        debugSlowPath = configuration.checked || configuration.clobberFree || configuration.gcStress > 0
        quarantineCycles = configuration.checked ? UInt32(configuration.quarantineCycles) : 0
        gcStress = configuration.gcStress
        stwWatchdogNs = UInt64(configuration.stopTheWorldWatchdogMilliseconds ?? 0) * 1_000_000
        conservativeStacks = configuration.conservativeStackScan
        shrinkStacks = configuration.shrinkStacks
        scavtrace = configuration.scavtrace
        backgroundHeapGrowth = configuration.backgroundHeapGrowth
        transparentHugePages = configuration.transparentHugePages
        stackPool = .allocate(capacity: StackAlloc.orders)
        stackPool.initialize(repeating: nil, count: StackAlloc.orders)
        stackLarge = .allocate(capacity: StackAlloc.largeBuckets)
        stackLarge.initialize(repeating: nil, count: StackAlloc.largeBuckets)
        pacer = Pacer(gcPercent: configuration.gcPercent, memoryLimit: configuration.memoryLimit ?? Int.max)
        cpuLimiter = GCCPULimiter(now: tc_nanotime(), procs: procs,
                                  backgroundUtilization: MarkWorkerPlan(.init(procs: procs, configuredWorkers: configuration.markWorkers)).backgroundUtilization)

        // What can fail comes first, each step undoing the ones before it when it
        // fails, so that a failed init leaves nothing mapped.
        // Address space: one reservation, arena aligned.
        let arenaBytes = HeapArena.bytes
        let want = (configuration.reservedAddressSpace + arenaBytes - 1) / arenaBytes * arenaBytes
        guard let raw = SysMemory.reserve(want + arenaBytes) else {
            throw HeapError.outOfMemory("cannot reserve \(want) bytes of address space")
        }
        guard let pa = PageAlloc(pages: want / SizeClassTable.pageSize) else {
            SysMemory.free(raw, want + arenaBytes)
            throw HeapError.outOfMemory("cannot map page allocator metadata")
        }
        let typesBytes = maxTypes * MemoryLayout<TypeInfo>.stride
        guard let tp = SysMemory.allocMetadata(typesBytes) else {
            pa.destroy()
            SysMemory.free(raw, want + arenaBytes)
            throw HeapError.outOfMemory("cannot map type registry")
        }
        types = tp.bindMemory(to: TypeInfo.self, capacity: maxTypes)
        pages = pa
        let alignedBase = (UInt(bitPattern: raw) + UInt(arenaBytes) - 1) & ~UInt(arenaBytes - 1)
        arenaBase = alignedBase
        reservedBytes = UInt(want)
        numArenas = want / arenaBytes
        reservationStart = raw
        reservationBytes = want + arenaBytes
        arenas = .allocate(capacity: numArenas)
        arenas.initialize(repeating: nil, count: numArenas)
        arenaSpans = .allocate(capacity: numArenas)
        arenaSpans.initialize(repeating: nil, count: numArenas)

        pathTotals = .allocate(capacity: AllocPathCounters.words)
        pathTotals.initialize(repeating: 0, count: AllocPathCounters.words)
        shared = HeapShared()

        // Tables the fast path reads, copied out of Swift arrays once.
        sizeToClass8 = .allocate(capacity: SizeClassTable.sizeToClass8.count)
        sizeToClass8.initialize(from: SizeClassTable.sizeToClass8, count: SizeClassTable.sizeToClass8.count)
        sizeToClass128 = .allocate(capacity: SizeClassTable.sizeToClass128.count)
        sizeToClass128.initialize(from: SizeClassTable.sizeToClass128, count: SizeClassTable.sizeToClass128.count)
        emptySpan = .allocate(capacity: 1)
        rescueTids = .allocate(capacity: Heap.maxRescues)
        rescueMasks = .allocate(byteCount: Heap.maxRescues * Int(TC_CPU_MASK_BYTES), alignment: 8)
        emptySpan.initialize(to: .empty)
        let zb = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        zb.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
        zeroBase = UInt(bitPattern: zb)

        centrals = .allocate(capacity: SpanClass.count)
        for i in 0..<SpanClass.count { (centrals + i).initialize(to: MCentral(spanClass: SpanClass(raw: UInt8(i)))) }
        slotClass = .allocate(capacity: MCache.slotCount)
        slotType = .allocate(capacity: MCache.slotCount)
        for i in 0..<MCache.slotCount { slotClass[i] = i < SpanClass.count ? UInt8(i) : 0; slotType[i] = 0 }

        globalSlots = RootSlotTable()
        handleSlots = RootSlotTable()
        sweep.sweepgen.store(0, .relaxed)
        limiter.windowStart.store(UInt(cpuLimiter.lastUpdate), .relaxed)
        flags.maxStack.store(UInt(StackAlloc.defaultMaxStack), .relaxed)
        let (trig, goal) = pacer.trigger()
        gcController.trigger.store(gcDisabled ? UInt.max : trig, .relaxed)
        gcController.heapGoal.store(goal, .relaxed)
        // Checked mode ranks this heap's locks (and only this heap's).
        if checked { enableLockRanking() }
        registerDebugDescriptor()
    }

    let reservationStart: UnsafeMutableRawPointer
    let reservationBytes: Int

    /// Frees everything the heap holds: its collector threads are stopped (a cycle in
    /// progress is abandoned: nothing can reach its objects any more), and its memory
    /// goes back to the OS: arenas, page allocator metadata, span and bitmap chunks,
    /// the type registry, locks and tables.
    ///
    /// No mutator is attached here: each attached one holds a reference to the heap
    /// (see `attach`). The collector threads hold none, except during a unit of work
    /// when they pin the heap (`collectorUnit`): then this runs on that thread.
    deinit {
        // First: the finalizer thread is attached, and detaches as it stops.
        stopFinalizerThread()
        unregisterDebugDescriptor()
        if backgroundStarted {
            // A collector thread that pins the heap may run this deinit when it unpins
            // at the end of a unit of work (`collectorUnit`), and `stopBackgroundThreads`
            // lets it end. Anywhere else on a collector thread (a pinned thread's
            // releases inside its unit are never the last; a thread of a heap created
            // without pins, a test seam, could) the thread would go on using the freed
            // heap.
            if tc_get_collector_unpinning() == 0 {
                if backgroundThreads.contains(where: { pthread_equal($0, pthread_self()) != 0 }) {
                    runtimeFatal("a heap's last reference was dropped on its own collector thread")
                }
            }
            stopBackgroundThreads()
        }
        // Only now: a sweep on a collector thread could still have moved records.
        releaseLifecycleLeftovers()
        var m = freeMutators
        while let s = m { m = s.pointee.next; s.pointee.releaseStorage(); s.deinitialize(count: 1); s.deallocate() }
        var a = mutators
        while let s = a { a = s.pointee.next; s.pointee.releaseStorage(); s.deinitialize(count: 1); s.deallocate() }
        for i in 0..<numArenas { if let h = arenas[i] { h.pointee.destroy(); h.deallocate() } }
        arenas.deallocate()
        arenaSpans.deallocate()
        pages.destroy()
        SysMemory.free(reservationStart, reservationBytes)
        // Spans and their bitmaps live in these chunks.
        spanAlloc.destroy()
        meta.destroy()
        for i in 0..<SpanClass.count { centrals[i].lock.destroy(); centrals[i].heads.deallocate() }
        centrals.deallocate()
        Heap.releaseTypeSlots(typeSlotsHeld)
        slotClass.deallocate()
        slotType.deallocate()
        for i in 0..<typeNames.count {
            types[i].ptrWords?.deallocate()
            types[i].ptrMask?.deallocate()
        }
        SysMemory.free(UnsafeMutableRawPointer(types), maxTypes * MemoryLayout<TypeInfo>.stride)
        globalSlots.destroy(); handleSlots.destroy()
        sizeToClass8.deallocate(); sizeToClass128.deallocate(); emptySpan.deallocate()
        rescueTids.deallocate(); rescueMasks.deallocate()
        UnsafeMutableRawPointer(bitPattern: zeroBase)!.deallocate()
        shared.destroy()
        pathTotals.deallocate()
        stackPool.deallocate(); stackLarge.deallocate()
        pools = [:]
        for l in [heapLock, stackLock, typesLock, schedLock, globalsLock, markDoneLock, bgLock, statsLock, hooksLock, limiterLock, poolsLock] { l.destroy() }
        for c in [stateChanged, worldStarted, bgCond, growthCond, scavCond] { c.destroy() }
    }

    // MARK: atomic words

    var sweepgen: UInt32 { UInt32(truncatingIfNeeded: sweep.sweepgen.load(.acquiring)) }

    // MARK: types

    /// Register a layout. Sizes are rounded up to 8 bytes; pointer words must lie inside
    /// the object. Returns the handle that allocation takes.
    public func register(_ layout: TypeLayout) throws -> ObjectType {
        guard layout.size >= 0 else { throw HeapError.invalidLayout("type \(layout.name): negative size \(layout.size)") }
        guard layout.size <= (1 << 32) - 8 else { throw HeapError.invalidLayout("type \(layout.name): size \(layout.size) is too large (at most 4 GiB - 8 bytes)") }
        let size = (layout.size + 7) & ~7
        let wordsCount = size / 8
        for w in layout.pointerWords where w < 0 || w >= wordsCount {
            throw HeapError.invalidLayout("type \(layout.name): pointer word \(w) outside the object's \(wordsCount) words")
        }
        if Set(layout.pointerWords).count != layout.pointerWords.count {
            throw HeapError.invalidLayout("type \(layout.name): pointer word listed twice")
        }
        return try typesLock.withLock {
            let id = typeNames.count
            guard id < maxTypes else { throw HeapError.invalidLayout("type \(layout.name): more than \(maxTypes - 1) types registered") }
            var info = TypeInfo(size: UInt(max(size, 8)), ptrWords: nil, numPtrWords: layout.pointerWords.count, ptrMask: nil)
            if !layout.pointerWords.isEmpty {
                let sorted = layout.pointerWords.sorted()
                let pw = UnsafeMutablePointer<UInt32>.allocate(capacity: sorted.count)
                for (i, w) in sorted.enumerated() { pw[i] = UInt32(w) }
                info.ptrWords = pw
                let maskWords = (wordsCount + 63) / 64
                let mask = UnsafeMutablePointer<UInt64>.allocate(capacity: maskWords)
                mask.initialize(repeating: 0, count: maskWords)
                for w in sorted { mask[w / 64] |= 1 << UInt64(w % 64) }
                info.ptrMask = mask
                if wordsCount <= 64 { info.smallPtrBits = mask[0] }
            }
            types[id] = info
            typeNames.append(layout.name)
            debugNoteType(id, layout.name)
            let noscan = layout.pointerWords.isEmpty
            let small = size <= SizeClassTable.maxSmallSize
            let spc = small && size > 0 ? SpanClass(sizeClass: SizeClassTable.sizeToClass(size), noscan: noscan)
                                         : SpanClass(sizeClass: 0, noscan: noscan)
            // A small type with pointers gets a cache slot of its own while there are
            // any (`MCache.firstTypeSlot`): its spans' type ids are filled in when a span
            // is cached there, so the fast path stores none per object.
            var slot = Int(spc.raw)
            if small && size > 0 && !noscan && size <= Tuning.typeSlotMaxSize, let k = Heap.claimTypeSlot() {
                typeSlotsHeld |= 1 << UInt64(k)
                slot = MCache.firstTypeSlot + 2 * k
                slotClass[slot] = spc.raw
                slotType[slot] = UInt16(id)
            }
            let t = ObjectType(id: UInt16(id), size: size, cacheSlot: slot, isSmall: small, heapTag: typeTag)
            types[id].objectTypeBits = t.bits
            return t
        }
    }

    func typeName(_ id: UInt16) -> String { typesLock.withLock { Int(id) < typeNames.count ? typeNames[Int(id)] : "<type \(id)>" } }

    // MARK: the address → span map (Go's spanOf)

    @inline(__always)
    func spanOf(_ p: UInt) -> UnsafeMutablePointer<MSpan>? {
        let off = p &- arenaBase
        if off >= reservedBytes { return nil }
        guard let t = arenaSpans[Int(off >> HeapArena.logBytes)] else { return nil }
        return t[Int((off >> SizeClassTable.pageShiftU) & UInt(HeapArena.pagesPerArena - 1))]
    }

}

/// An error thrown by the heap: creation failed, or a layout was rejected. Misuse (a foreign
/// address, a wrong thread) is not an error but a runtime fatal error in checked mode.
public enum HeapError: Error, CustomStringConvertible, Equatable {
    /// The address space or the runtime's metadata could not be mapped; the text says which.
    case outOfMemory(String)
    /// `Heap.register(_:)` rejected a `TypeLayout`; the text names the type and the problem
    /// (negative or too large size, a pointer word outside the object or listed twice, too many
    /// types).
    case invalidLayout(String)
    /// An argument a call rejects; the text names it.
    case invalidArgument(String)
    public var description: String {
        switch self {
        case .outOfMemory(let s): return "out of memory: \(s)"
        case .invalidLayout(let s): return "invalid layout: \(s)"
        case .invalidArgument(let s): return "invalid argument: \(s)"
        }
    }
}

extension Heap {
    /// Type slots in use by any heap of the process, bit k for slot
    /// `MCache.firstTypeSlot + 2k`. Process-wide rather than per heap so that a type used
    /// with a heap that did not register it never finds a span of another class in its
    /// slot: the slot is empty there, and the first allocation takes the slow path, whose
    /// owner check traps (`checkTypeOwner`). Claimed by compare-and-swap at registration,
    /// given back at heap deinit.
    nonisolated(unsafe) static let typeSlotsInUse: UnsafeMutablePointer<UInt> = {
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// The lowest free type slot's number k (slot `MCache.firstTypeSlot + 2k`), now taken;
    /// nil when all `MCache.typeSlots` are in use.
    static func claimTypeSlot() -> Int? {
        while true {
            let used = tc_load_acquire(UnsafeRawPointer(typeSlotsInUse))
            let free = ~used & ((1 << UInt(MCache.typeSlots)) - 1)
            if free == 0 { return nil }
            let k = free.trailingZeroBitCount
            if tc_cas(UnsafeMutableRawPointer(typeSlotsInUse), used, used | 1 << UInt(k)) { return k }
        }
    }

    static func releaseTypeSlots(_ held: UInt64) {
        if held != 0 { _ = tc_and64(UnsafeMutableRawPointer(typeSlotsInUse), ~held) }
    }

    /// Source of `typeTag`s (relaxed fetch-add at heap creation).
    nonisolated(unsafe) static let nextTypeTag: UnsafeMutablePointer<UInt> = {
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
}
