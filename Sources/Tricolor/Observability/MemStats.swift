import CTricolor
import Glibc

/// Go's runtime.MemStats, with the same meanings. Read with `Heap.memStats()`, which
/// stops the world briefly so the numbers are consistent with one another:
/// HeapIdle + HeapInuse == HeapSys and HeapObjects == Mallocs − Frees hold exactly.
public struct MemStats: Sendable, Codable, Equatable {
    /// Bytes of allocated heap objects (== HeapAlloc).
    public var alloc: UInt64 = 0
    /// Cumulative bytes allocated for heap objects (slot sizes, as in Go).
    public var totalAlloc: UInt64 = 0
    /// Bytes obtained from the OS: heap, stacks and runtime metadata.
    public var sys: UInt64 = 0
    /// Cumulative count of heap objects allocated (tiny allocations included, as in Go).
    public var mallocs: UInt64 = 0
    /// Cumulative count of heap objects freed.
    public var frees: UInt64 = 0
    /// Bytes of allocated heap objects: reachable ones plus unreachable ones not yet swept.
    public var heapAlloc: UInt64 = 0
    /// Bytes of heap memory obtained from the OS (grown into the Ready state).
    public var heapSys: UInt64 = 0
    /// Bytes in spans with no objects: free pages of the page heap, and the empty spans
    /// a sweep kept in their size class for reuse (Go's page heap would hold those).
    public var heapIdle: UInt64 = 0
    /// Bytes in in-use spans: spans with at least one object, or cached by a mutator.
    public var heapInuse: UInt64 = 0
    /// Bytes of idle pages returned to the OS (`madvise(MADV_DONTNEED)` accepted), by the
    /// background scavenger, under a memory limit, or by ``Heap/freeOSMemory()``; pages
    /// reused since are no longer counted.
    public var heapReleased: UInt64 = 0
    /// Allocated heap objects (Mallocs − Frees).
    public var heapObjects: UInt64 = 0
    /// Bytes in stack spans: the shadow stacks (Go's StackInuse), including free stacks
    /// cached for reuse. StackSys is the same (Tricolor allocates no OS thread stacks).
    public var stackInuse: UInt64 = 0
    /// Bytes of memory obtained for shadow stacks (the same as `stackInuse` here).
    public var stackSys: UInt64 = 0
    /// Bytes of span structures and their bitmaps.
    public var mSpanInuse: UInt64 = 0
    /// Bytes obtained for span structures and other fixed-size runtime metadata.
    public var mSpanSys: UInt64 = 0
    /// Bytes of mutator caches.
    public var mCacheInuse: UInt64 = 0
    /// Bytes obtained for mutator caches (the same as `mCacheInuse` here).
    public var mCacheSys: UInt64 = 0
    /// Bytes of other collector metadata (page allocator, arena tables, type registry).
    public var gcSys: UInt64 = 0
    /// Bytes of other runtime data: global and handle slots, the type table.
    public var otherSys: UInt64 = 0
    /// Heap goal of the next cycle.
    public var nextGC: UInt64 = 0
    /// Wall-clock time the last collection finished, ns since 1970 (0 if none).
    public var lastGC: UInt64 = 0
    /// Cumulative nanoseconds of stop-the-world pauses since the heap was created.
    public var pauseTotalNs: UInt64 = 0
    /// Circular buffer of recent pause times; the most recent is PauseNs[(NumGC+255)%256].
    public var pauseNs: [UInt64] = Array(repeating: 0, count: 256)
    /// Circular buffer of the times recent pauses ended, ns since 1970, indexed like `pauseNs`.
    public var pauseEnd: [UInt64] = Array(repeating: 0, count: 256)
    /// Completed collection cycles.
    public var numGC: UInt32 = 0
    /// Cycles started by `Heap.collect()` rather than by the pacer.
    public var numForcedGC: UInt32 = 0
    /// Share of the available CPU time (GOMAXPROCS × wall time since the heap was created)
    /// spent in the collector, as of the end of the last cycle (Go computes it there
    /// too): the pauses × min(GOMAXPROCS, CPUs), assists, and background marking except
    /// idle marking, which Go leaves out as free.
    public var gcCPUFraction: Double = 0
    /// Always true, as in Go ("GC is enabled even if GOGC=off"): with GOGC off a memory
    /// limit may still start cycles.
    public var enableGC: Bool = true
    /// Allocations and frees per size class, indexed by class; entry 0 is Go's class 0 (size
    /// 0). Large objects are not counted here, as in Go.
    public var bySize: [SizeClassStats] = []

    /// One size class's counts (Go's `MemStats.BySize` entry).
    public struct SizeClassStats: Sendable, Codable, Equatable {
        /// The largest object size, in bytes, that this class holds.
        public var size: UInt32
        /// Cumulative objects allocated in this class.
        public var mallocs: UInt64
        /// Cumulative objects freed in this class.
        public var frees: UInt64
    }
}

extension Heap {
    /// Go's runtime.ReadMemStats.
    public func memStats() -> MemStats {
        withWorldStopped { readMemStatsLocked() }
    }

    /// With the world stopped.
    func readMemStatsLocked() -> MemStats {
        var m = MemStats()
        // Objects handed out from spans still cached, not yet counted by uncacheAccounting.
        var cachedAllocs = [UInt](repeating: 0, count: SizeClassTable.numSizeClasses)
        var tiny: UInt = 0
        var nMutators: UInt = 0
        forEachMutator { st in
            for i in 0..<MCache.slotCount {
                let s = st.pointee.mcache.pointee.spans[i]
                if s != emptySpan {
                    cachedAllocs[s.pointee.spanClass.sizeClass] += s.countAllocated() - s.pointee.allocCountBeforeCache
                }
            }
            tiny += st.pointee.mcache.pointee.tinyAllocs
            nMutators += 1
        }
        var totalAlloc: UInt64 = 0, totalFree: UInt64 = 0, mallocs: UInt64 = 0, frees: UInt64 = 0
        m.bySize = []
        for c in 0..<SizeClassTable.numSizeClasses {
            let size = UInt64(SizeClassTable.classToSize[c])
            let a = UInt64(heapStats.smallAllocs[c].load(.relaxed) + cachedAllocs[c])
            let f = UInt64(heapStats.smallFrees[c].load(.relaxed))
            if c > 0 {
                totalAlloc += a * size; totalFree += f * size
                mallocs += a; frees += f
            }
            m.bySize.append(.init(size: UInt32(size), mallocs: a, frees: f))
        }
        mallocs += UInt64(heapStats.largeAllocCount.load(.relaxed)); frees += UInt64(heapStats.largeFreeCount.load(.relaxed))
        totalAlloc += UInt64(heapStats.largeAllocBytes.load(.relaxed)); totalFree += UInt64(heapStats.largeFreeBytes.load(.relaxed))
        let tinyAllocs = UInt64(heapStats.tinyAllocCount.load(.relaxed) + tiny)
        // Go counts tiny allocations as both allocated and freed: the 16-byte blocks are
        // the heap objects.
        m.mallocs = mallocs + tinyAllocs
        m.frees = frees + tinyAllocs
        m.totalAlloc = totalAlloc
        m.heapAlloc = totalAlloc - totalFree
        m.alloc = m.heapAlloc
        m.heapObjects = m.mallocs - m.frees
        // Stack spans come out of the heap's pages: Go counts them in StackInuse and
        // not in HeapSys (HeapSys = HeapInuse + HeapIdle, heap memory proper).
        let stacks = UInt64(heapStats.stackInuse.load(.relaxed))
        m.heapSys = UInt64(heapStats.heapSys.load(.relaxed)) - stacks
        // Spans kept empty in their class are idle, as they would be in Go's page heap.
        m.heapInuse = UInt64(heapStats.heapInuseReported)
        m.heapIdle = m.heapSys - m.heapInuse
        m.heapReleased = UInt64(heapStats.heapReleased.load(.relaxed))
        m.stackInuse = stacks
        m.stackSys = stacks
        heapLock.withLock {
            m.mSpanInuse = UInt64(spanAlloc.inUse + meta.inUse)
            m.mSpanSys = UInt64(spanAlloc.sys + meta.sys)
            m.gcSys = UInt64(pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8 + work.capacity * 8)
        }
        m.mCacheInuse = UInt64(nMutators) * UInt64(MemoryLayout<MutatorState>.stride + MCache.bytes)
        m.mCacheSys = m.mCacheInuse
        m.otherSys = UInt64(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes }) + UInt64(typesLock.withLock { typeNames.count } * MemoryLayout<TypeInfo>.stride)
        m.sys = m.heapSys + m.stackSys + m.mSpanSys + m.mCacheSys + m.gcSys + m.otherSys
        let goal = gcController.heapGoal.load(.relaxed)
        if goal == UInt.max {
            // GOGC off and no memory limit: Go 1.19's goal is then the memory limit's
            // with the limit at its maximum, math.MaxInt64 less the memory that is not
            // heap and Go 1.19's 1 MiB of headroom.
            let mappedReady = m.sys - min(m.sys, m.heapReleased)
            let heapFree = m.heapIdle - min(m.heapIdle, m.heapReleased)
            let nonHeap = mappedReady - min(mappedReady, heapFree + m.heapAlloc)
            m.nextGC = UInt64(Int64.max) - nonHeap - (1 << 20)
        } else {
            m.nextGC = UInt64(goal)
        }
        statsLock.withLock {
            m.lastGC = lastGC
            m.pauseTotalNs = pauseTotalNs
            m.pauseNs = pauseNs
            m.pauseEnd = pauseEnd
            m.numForcedGC = numForcedGC
            m.gcCPUFraction = lastGCCPUFraction
        }
        m.numGC = UInt32(marking.numGC.load(.relaxed))
        m.enableGC = true
        return m
    }

    /// Go's debug.ReadGCStats. With `pauseQuantiles` = q > 0, `GCStats.pauseQuantiles`
    /// holds q quantiles of `pause` computed as Go does (for q = 5: minimum, 25%, 50%,
    /// 75%, maximum). q must be in 0…`GCStats.maxPauseQuantiles` (1 024, four times the
    /// 256 cycles `pause` holds, so more would only repeat entries); anything else is a
    /// fatal error naming it, rather than an array of that size built under the stats
    /// lock.
    public func gcStats(pauseQuantiles q: Int = 0) -> GCStats {
        if _slowPath(q < 0 || q > GCStats.maxPauseQuantiles) { badPauseQuantiles(q) }
        return statsLock.withLock {
            var s = GCStats()
            s.numGC = Int(marking.numGC.load(.relaxed))
            s.lastGC = lastGC
            s.pauseTotal = pauseTotalNs
            let n = min(Int(marking.numGC.load(.relaxed)), 256)
            // Most recent first, as in Go.
            for k in 0..<n {
                let i = Int((marking.numGC.load(.relaxed) &- 1 &- UInt(k)) % 256)
                s.pause.append(pauseNs[i])
                s.pauseEnd.append(pauseEnd[i])
            }
            // Oldest first.
            s.allPauses = Array(pauses[pausesHead...] + pauses[..<pausesHead])
            s.allPausesStopping = Array(pausesStopping[pausesHead...] + pausesStopping[..<pausesHead])
            s.pausesRecorded = pausesRecorded
            s.stopRescues = Int(sched.stopRescues.load(.relaxed))
            s.lastNativeStackScanBytes = UInt64(lastNativeScanBytes)
            s.lastConservativeRoots = Int(lastConservativeRoots)
            s.nativeStackScanBytes = UInt64(totalNativeScanBytes)
            s.nativeStackScansSkipped = Int(marking.nativeScansSkipped.load(.relaxed))
            s.stacksGrown = Int(marking.stacksGrown.load(.relaxed))
            s.stacksShrunk = Int(marking.stacksShrunk.load(.relaxed))
            s.pauseQuantiles = GCStats.quantiles(of: s.pause, count: q)
            return s
        }
    }

    /// `gcStats(pauseQuantiles:)` was asked for a count outside its range.
    @inline(never)
    private func badPauseQuantiles(_ q: Int) -> Never {
        runtimeFatal("gcStats: pauseQuantiles \(q) is outside 0...\(GCStats.maxPauseQuantiles)")
    }

    // MARK: recording (called by the collector)

    /// How many individual pauses `gcStats()` keeps (`GCStats.allPauses`): 65 536, about
    /// 30 000 cycles, 1 MiB. Go keeps the last 256 per-cycle totals (`GCStats.pause`,
    /// kept here too); the individual pauses are ours, for quantiles.
    public static let pauseHistoryLimit = 65_536

    /// A stop-the-world pause of `ns` just ended (the world may still be stopped).
    func recordPause(_ ns: UInt64) {
        let stopping = min(ns, lastStopWaitNs)   // written by stopTheWorld for this pause
        statsLock.withLock {
            // A bounded history: a long-running program records pauses forever.
            if pauses.count < Heap.pauseHistoryLimit {
                pauses.append(ns)
                pausesStopping.append(stopping)
            } else {
                pauses[pausesHead] = ns
                pausesStopping[pausesHead] = stopping
                pausesHead = pausesHead + 1 == Heap.pauseHistoryLimit ? 0 : pausesHead + 1
            }
            pausesRecorded += 1
            cyclePauseNs = cyclePauseNs.saturatingAdd(ns)
        }
        limiterPause(ns)
    }

    /// With the world still stopped at the end of mark termination, so that a reader of
    /// MemStats sees the new NumGC together with its pause (as in Go). Products with
    /// GOMAXPROCS saturate (GOMAXPROCS may be configured as large as Int.max).
    func finishCycleStats() {
        let wallEnd = tc_walltime_ns()
        statsLock.withLock {
            let i = Int((marking.numGC.load(.relaxed) &- 1) % 256)
            pauseNs[i] = cyclePauseNs
            pauseEnd[i] = wallEnd
            pauseTotalNs = pauseTotalNs.saturatingAdd(cyclePauseNs)
            lastGC = wallEnd
            cyclePauseNs = 0
            // Go's gcMarkTermination: the pauses count for the CPUs they stop
            // (stwprocs, min(GOMAXPROCS, CPUs)); idle marking is left out as free.
            let pauseCPU = cycle.stw1Ns.saturatingAdd(cycle.stw2Ns).saturatingMultiply(UInt64(workerProcs))
            let bgMark = UInt64(marking.bgMarkTimeNs.load(.relaxed))
            let markCPU = UInt64(marking.assistTimeNs.load(.relaxed)).saturatingAdd(bgMark - min(bgMark, cycle.idleNs))
            gcCPUNs = gcCPUNs.saturatingAdd(pauseCPU).saturatingAdd(markCPU)
            lastGCCPUFraction = Double(gcCPUNs) / (Double(max(1, tc_nanotime() - startTime)) * Double(gomaxprocs))
        }
        cycle.assistNs = UInt64(marking.assistTimeNs.load(.relaxed))
        let bg = UInt64(marking.bgMarkTimeNs.load(.relaxed))
        cycle.bgNs = bg - min(bg, cycle.idleNs)
        marking.cyclesCompleted.store(marking.cyclesCompleted.load(.relaxed) + 1, .releasing)
    }
}

/// Go's runtime/debug.GCStats, plus the individual pauses (the last
/// `Heap.pauseHistoryLimit` of them).
public struct GCStats: Sendable, Codable, Equatable {
    /// Wall-clock time the last collection finished, ns since 1970 (0 if none).
    public var lastGC: UInt64 = 0
    /// Completed collection cycles.
    public var numGC: Int = 0
    /// Cumulative nanoseconds of stop-the-world pauses.
    public var pauseTotal: UInt64 = 0
    /// Recent per-cycle pause totals (both pauses of a cycle, as Go counts them), most recent first (at most 256).
    public var pause: [UInt64] = []
    /// The times those pauses ended, ns since 1970, in the same order as `pause`.
    public var pauseEnd: [UInt64] = []
    /// Go's PauseQuantiles: quantiles of `pause`, as many as asked of
    /// `Heap.gcStats(pauseQuantiles:)`; see `quantiles(of:count:)`.
    public var pauseQuantiles: [UInt64] = []
    /// The individual stop-the-world pauses (two or more per cycle), oldest first: all of
    /// them, or the last `Heap.pauseHistoryLimit` once more were recorded
    /// (`pausesRecorded` says how many). Not in Go.
    public var allPauses: [UInt64] = []
    /// Stop-the-world pauses recorded since the heap was created (`allPauses` holds the
    /// last of them). Not in Go.
    public var pausesRecorded: Int = 0
    /// For each entry of `allPauses`, the part of it spent stopping: from the stop
    /// request until every mutator was at a safepoint or in a blocking region (Go 1.22's
    /// `/sched/pauses/stopping/gc` metric). The rest of the pause is the collector's
    /// work with the world stopped.
    public var allPausesStopping: [UInt64] = []
    /// Stops that found a mutator runnable but kept off its CPU by the OS for 50 µs and
    /// moved it onto the stopping thread's CPU (see `Heap.stopTheWorld`). Not in Go.
    public var stopRescues: Int = 0
    /// Native stack bytes the last cycle scanned conservatively. Not in Go.
    public var lastNativeStackScanBytes: UInt64 = 0
    /// Objects the last cycle found only through the conservative scan of native stacks
    /// and registers (conservative roots). Not in Go.
    public var lastConservativeRoots: Int = 0
    /// Native stack bytes scanned conservatively, summed over all cycles. Not in Go.
    public var nativeStackScanBytes: UInt64 = 0
    /// Native stack scans skipped because a mutator's stack pointer was outside its
    /// thread's stack (a signal or fiber stack). Not in Go.
    public var nativeStackScansSkipped: Int = 0
    /// Shadow stacks grown by copying into one twice as large (Go's newstack). Not in Go's
    /// statistics.
    public var stacksGrown: Int = 0
    /// Shadow stacks halved by copying when a scan found them mostly unused (Go's
    /// shrinkstack). Not in Go's statistics.
    public var stacksShrunk: Int = 0

    /// The most quantiles `Heap.gcStats(pauseQuantiles:)` computes: four per entry of
    /// `pause` (256 cycles) is already more than distinct answers.
    public static let maxPauseQuantiles = 1024

    /// `count` quantiles of `pauses` by Go's ReadGCStats formula: sorted ascending,
    /// entry i < count−1 is sorted[len × i / (count−1)] and the last is the maximum
    /// (count = 5: minimum, 25%, 50%, 75%, maximum). All zero for no pauses; empty for
    /// count ≤ 0; count = 1 gives just the maximum.
    public static func quantiles(of pauses: [UInt64], count: Int) -> [UInt64] {
        if count <= 0 { return [] }
        if pauses.isEmpty { return Array(repeating: 0, count: count) }
        let sorted = pauses.sorted()
        let nq = count - 1
        var q = [UInt64](repeating: 0, count: count)
        for i in 0..<nq { q[i] = sorted[sorted.count * i / nq] }
        q[nq] = sorted[sorted.count - 1]
        return q
    }

    /// The q-quantile (0…1) of the individual stop-the-world pauses (`allPauses`, two or
    /// more per cycle, the last `Heap.pauseHistoryLimit`), nearest rank rounded to the closest index. Not Go's: Go's
    /// quantiles are per cycle (`pauseQuantiles`). A `q` outside 0…1 is clamped (below 0
    /// the minimum, above 1 the maximum) and NaN gives the minimum.
    public func stopTheWorldPauseQuantile(_ q: Double) -> UInt64 {
        if allPauses.isEmpty { return 0 }
        let sorted = allPauses.sorted()
        let i = min(sorted.count - 1, max(0, Int(saturating: (q * Double(sorted.count - 1)).rounded())))
        return sorted[i]
    }
}
