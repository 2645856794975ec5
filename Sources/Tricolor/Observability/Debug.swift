import CTricolor

// Hooks for tests: step a cycle one phase at a time on the calling thread, so barrier
// and sweep-generation cases are deterministic instead of timing races. Use them on a
// heap with `markWorkers: 0` (no background threads) and GOGC off (no automatic
// cycles); otherwise background threads also advance the cycle.

extension Heap {
    /// The collector's phase.
    @_spi(Testing) public var debugPhase: String {
        switch phase { case .off: return "off"; case .mark: return "mark"; case .markTermination: return "markTermination" }
    }

    /// Start a cycle (pause #1) and return with marking enabled and nothing marked yet.
    @_spi(Testing) public func debugStartCycle() {
        runtimeCheck(phase == .off, "debugStartCycle: a cycle is already running")
        gcStart(.forced, caller: currentMutator())
    }

    /// Drain up to `budget` bytes of grey objects on this thread (roots included);
    /// returns the bytes scanned.
    @discardableResult
    @_spi(Testing) public func debugMarkSome(_ budget: Int) -> Int {
        guard phase == .mark else { return 0 }
        var gcw = GCWork()
        defer { gcw.destroy() }
        return Int(drain(&gcw, budget: UInt(budget)))
    }

    /// Finish marking and mark termination on this thread (pause #2).
    @_spi(Testing) public func debugFinishCycle() {
        helpMark(currentMutator())
    }

    /// Sweep up to `n` spans; returns how many were swept.
    @discardableResult
    @_spi(Testing) public func debugSweepSome(_ n: Int) -> Int {
        var k = 0
        while k < n, sweepOne() { k += 1 }
        return k
    }

    /// Whether the object's mark bit is set in the current (or just finished) cycle.
    @_spi(Testing) public func debugIsMarked(_ r: Ref) -> Bool {
        guard let s = spanOf(r.address) else { return false }
        return s.isMarked(s.objectIndex(r.address))
    }

    /// Whether `r` is the start of an allocated object (not freed).
    @_spi(Testing) public func debugIsAllocated(_ r: Ref) -> Bool {
        guard let s = spanOf(r.address), s.pointee.state == MSpanState.inUse.rawValue, r.address < s.pointee.limit else { return false }
        let idx = s.objectIndex(r.address)
        let unswept = s.loadSweepgen() == sweepgen &- 2
        return s.isAllocated(idx) && !(unswept && !s.isMarked(idx))
    }

    /// Spans still waiting to be swept in this sweep phase.
    @_spi(Testing) public var debugUnsweptSpans: Int {
        let sg = sweepgen
        var n = 0
        for i in 0..<SpanClass.count {
            let c = centrals + i
            c.pointee.lock.withLock {
                for set in [MCentral.partialUnswept(sg), MCentral.fullUnswept(sg)] {
                    var p = c.pointee.heads[set]
                    while let s = p { if s.loadSweepgen() == sg &- 2 { n += 1 }; p = s.pointee.next }
                }
            }
        }
        return n
    }

    /// Whether the grower thread runs (Allocator/HeapGrowth.swift).
    @_spi(Testing) public var debugGrowerRunning: Bool { heapLock.withLock { growth.running } }

    /// Fault in every pending piece of growth now, on this thread.
    @_spi(Testing) public func debugFinishPendingGrowth() {
        heapLock.withLock {
            while growth.pendingPages > 0 { _ = faultInPiece(minPages: Heap.growPiecePages, byGrower: true) }
        }
    }

    /// The longest run of free pages, in bytes.
    @_spi(Testing) public var debugLongestFreeRunBytes: Int {
        heapLock.withLock { pages.longestFreeRun << SizeClassTable.pageShift }
    }

    /// The heap's sweep generation (Go's mheap.sweepgen).
    @_spi(Testing) public var debugSweepgen: UInt32 { sweepgen }

    /// The trigger and goal the pacer has set, in bytes.
    @_spi(Testing) public var debugTriggerAndGoal: (trigger: UInt, goal: UInt) { (gcController.trigger.load(.relaxed), gcController.heapGoal.load(.relaxed)) }

    /// heapLive, Go's estimate of the live heap plus allocation since the last mark.
    @_spi(Testing) public var debugHeapLive: UInt { gcController.heapLive.load(.relaxed) }

    /// Check every component's invariants (heap, page allocator, spans in central lists,
    /// the pacing policies, checked mode's frame records).
    @_spi(Testing) public func checkInvariants() {
        checkHeapInvariants()
        checkPolicyInvariants()
        if checked { withWorldStopped { checkFrameRecords() } }
    }

    /// `checkInvariants` inside pause #2 (world stopped, no sweep in flight).
    func checkInvariantsStopped() {
        checkHeapInvariantsStopped()
        checkPolicyInvariants()
        checkSpecialsInvariants()
        checkFrameRecords()
    }
}
