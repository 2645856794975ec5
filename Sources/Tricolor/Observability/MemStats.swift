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
    public var heapAlloc: UInt64 = 0
    /// Bytes of heap memory obtained from the OS (grown into the Ready state).
    public var heapSys: UInt64 = 0
    /// Bytes in spans with no objects.
    public var heapIdle: UInt64 = 0
    /// Bytes in in-use spans.
    public var heapInuse: UInt64 = 0
    /// Bytes of idle spans returned to the OS (the scavenger runs under a memory limit).
    public var heapReleased: UInt64 = 0
    public var heapObjects: UInt64 = 0
    /// Bytes of shadow stacks.
    public var stackInuse: UInt64 = 0
    public var stackSys: UInt64 = 0
    /// Bytes of span structures and their bitmaps.
    public var mSpanInuse: UInt64 = 0
    public var mSpanSys: UInt64 = 0
    /// Bytes of mutator caches.
    public var mCacheInuse: UInt64 = 0
    public var mCacheSys: UInt64 = 0
    /// Bytes of other collector metadata (page allocator, arena tables, type registry).
    public var gcSys: UInt64 = 0
    public var otherSys: UInt64 = 0
    /// Heap goal of the next cycle.
    public var nextGC: UInt64 = 0
    /// Wall-clock time the last collection finished, ns since 1970 (0 if none).
    public var lastGC: UInt64 = 0
    public var pauseTotalNs: UInt64 = 0
    /// Circular buffer of recent pause times; the most recent is PauseNs[(NumGC+255)%256].
    public var pauseNs: [UInt64] = Array(repeating: 0, count: 256)
    public var pauseEnd: [UInt64] = Array(repeating: 0, count: 256)
    public var numGC: UInt32 = 0
    public var numForcedGC: UInt32 = 0
    public var gcCPUFraction: Double = 0
    public var enableGC: Bool = true
    public var bySize: [SizeClassStats] = []

    public struct SizeClassStats: Sendable, Codable, Equatable {
        public var size: UInt32
        public var mallocs: UInt64
        public var frees: UInt64
    }
}

extension Heap {
    /// Go's runtime.ReadMemStats.
    public func memStats() -> MemStats {
        let caller = currentMutator()
        while !stopTheWorld(caller) {}
        defer { startTheWorld(caller) }
        return readMemStatsLocked()
    }

    /// With the world stopped.
    func readMemStatsLocked() -> MemStats {
        var m = MemStats()
        // Objects handed out from spans still cached, not yet counted by uncacheAccounting.
        var cachedAllocs = [UInt](repeating: 0, count: SizeClassTable.numSizeClasses)
        var tiny: UInt = 0
        var stacks: UInt = 0
        var nMutators: UInt = 0
        var p = mutators
        while let st = p {
            for i in 0..<SpanClass.count {
                let s = st.pointee.spans[i]
                if s != emptySpan {
                    cachedAllocs[s.pointee.spanClass.sizeClass] += s.countAllocated() - s.pointee.allocCountBeforeCache
                }
            }
            tiny += st.pointee.tinyAllocs
            stacks += UInt(st.pointee.stackCap * 8)
            nMutators += 1
            p = st.pointee.next
        }
        var totalAlloc: UInt64 = 0, totalFree: UInt64 = 0, mallocs: UInt64 = 0, frees: UInt64 = 0
        m.bySize = []
        for c in 0..<SizeClassTable.numSizeClasses {
            let size = UInt64(SizeClassTable.classToSize[c])
            let a = UInt64(load(HeapWord.smallAllocBase.rawValue + c) + cachedAllocs[c])
            let f = UInt64(load(HeapWord.smallFreeBase + c))
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
        m.heapSys = UInt64(heapStats.heapSys.load(.relaxed))
        m.heapInuse = UInt64(heapStats.heapInuse.load(.relaxed))
        m.heapIdle = m.heapSys - m.heapInuse
        m.heapReleased = UInt64(heapStats.heapReleased.load(.relaxed))
        m.stackInuse = UInt64(stacks)
        m.stackSys = UInt64(stacks)
        heapLock.withLock {
            m.mSpanInuse = UInt64(spanAlloc.inUse + meta.inUse)
            m.mSpanSys = UInt64(spanAlloc.sys + meta.sys)
            m.gcSys = UInt64(pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8 + work.capacity * 8)
        }
        m.mCacheInuse = UInt64(nMutators) * UInt64(MemoryLayout<MutatorState>.stride + SpanClass.count * 8)
        m.mCacheSys = m.mCacheInuse
        m.otherSys = UInt64(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes }) + UInt64(typesLock.withLock { typeNames.count } * MemoryLayout<TypeInfo>.stride)
        m.sys = m.heapSys + m.stackSys + m.mSpanSys + m.mCacheSys + m.gcSys + m.otherSys
        let goal = gcController.heapGoal.load(.relaxed)
        m.nextGC = goal == UInt.max ? 0 : UInt64(goal)
        statsLock.withLock {
            m.lastGC = lastGC
            m.pauseTotalNs = pauseTotalNs
            m.pauseNs = pauseNs
            m.pauseEnd = pauseEnd
            m.numForcedGC = numForcedGC
            m.gcCPUFraction = gcCPUFraction
        }
        m.numGC = UInt32(marking.numGC.load(.relaxed))
        m.enableGC = pacer.gcPercent != nil
        return m
    }

    @inline(__always) func load(_ index: Int) -> UInt { tc_load_relaxed(words + index) }

    /// Share of the available CPU (GOMAXPROCS × wall time since the heap was created)
    /// spent in the collector: pauses × procs, assists and background marking (statsLock).
    var gcCPUFraction: Double {
        Double(gcCPUNs) / (Double(max(1, tc_nanotime() - startTime)) * Double(gomaxprocs))
    }

    /// Go's debug.GCStats.
    public func gcStats() -> GCStats {
        statsLock.withLock {
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
            s.allPauses = pauses
            s.stopRescues = Int(sched.stopRescues.load(.relaxed))
            return s
        }
    }
}

/// Go's runtime/debug.GCStats, plus every pause recorded since the heap was created.
public struct GCStats: Sendable, Codable, Equatable {
    public var lastGC: UInt64 = 0
    public var numGC: Int = 0
    public var pauseTotal: UInt64 = 0
    /// Recent per-cycle pause totals (both pauses of a cycle, as Go counts them), most recent first (at most 256).
    public var pause: [UInt64] = []
    public var pauseEnd: [UInt64] = []
    /// Every stop-the-world pause in order (two or more per cycle), for quantiles.
    public var allPauses: [UInt64] = []
    /// Stops that found a mutator runnable but kept off its CPU by the OS for 50 µs and
    /// moved it onto the stopping thread's CPU (see `Heap.stopTheWorld`). Not in Go.
    public var stopRescues: Int = 0

    /// The q-quantile (0…1) of all recorded pauses, in nanoseconds.
    public func pauseQuantile(_ q: Double) -> UInt64 {
        if allPauses.isEmpty { return 0 }
        let sorted = allPauses.sorted()
        let i = min(sorted.count - 1, max(0, Int((q * Double(sorted.count - 1)).rounded())))
        return sorted[i]
    }
}
