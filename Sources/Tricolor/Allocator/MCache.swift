import CTricolor
import Glibc

// MCache: a mutator's private cache of spans, one per span class and one per type slot
// (Go's mcache.go; see `slotCount`).
//
// The inlined fast path (Malloc.swift) allocates from `alloc[slot]` without a lock
// or an atomic: only the owning mutator touches its cache while it runs. When the cached
// span is full, `refill` hands it back to its central list (through a batch of full
// spans, `uncached`, eight at a time) and takes another span with free slots: the next
// one of its `stash`, else from the central list (MCentral.cacheSpan, which takes up to
// four swept spans at once and stashes the rest), sweeping or growing the heap as
// needed. At every cycle's pauses, and at detach, `releaseAll` flushes every span,
// batch and stash back, so that the sweeper and the next cycle see exact counts.
//
// The cache also holds the tiny allocator's block and the heap profile's sampling state
// (MemProfile.swift), as Go's mcache does.
//
// Invariants:
// - `spans[i]` is `emptySpan` or an in-use span of the slot's class (`Heap.slotClass`:
//   class i for i < SpanClass.count) whose sweepgen is heap.sweepgen + 3 ("swept and
//   cached"); no span is in two slots or in a cache and a central list at once; in a
//   type slot, every free slot of the span holds the type's id (`checkSlots`);
// - `uncached[i]` lists `uncachedCount[i]` < `Tuning.uncacheBatch` full spans of class i
//   swept this cycle (sweepgen == heap.sweepgen), in no cache and no central list; every
//   pause empties it before mark termination moves the sweep generation;
// - `stash[i]` lists `stashCount[i]` < `Tuning.stashBatch` spans of class i with a free
//   slot, swept this cycle, in no cache and no central list, emptied like `uncached`;
// - `alloc[i]` is `spans[i]`, or `emptySpan` for every slot in slow mode (`slowAlloc`);
// - the tiny block, when set, is a 16-byte slot of the cached tiny span's class.
// Protection: the owning mutator, while it runs; anyone else only with the world
// stopped (pause #1, pause #2, MemStats) or while the mutator is detaching.

/// A mutator's span cache (Go's mcache). Lives in its own allocation, reached from the
/// mutator state; never in Swift's heap.
@usableFromInline
struct MCache {
    /// Cache slots: one per span class (slot i is class i, as Go's mcache.alloc), then
    /// type slots, one per small type with pointers while they last (`Heap.register`).
    /// A span in a type slot is of the type's class and gets the type's id in every free
    /// slot when it is cached, so the fast path stores no id per object. Type slots are
    /// odd, from 137 (`firstTypeSlot`) to 255: 60, shared by the process's heaps
    /// (`Heap.claimTypeSlot`). Go has no such slots: its heap bitmap is written per
    /// object, as our type ids are in class slots.
    static let slotCount = 256
    static let firstTypeSlot = SpanClass.count + 1
    static let typeSlots = (slotCount - firstTypeSlot + 1) / 2
    /// `toSample` of a type slot no span has been cached in yet.
    static let sampleUnset = Int.min
    /// Bytes of one cache and its arrays (MemStats.MCacheInuse).
    static let bytes = MemoryLayout<MCache>.stride + slotCount * 3 * 8 + SpanClass.count * 2 * (8 + 1)
        + StackAlloc.orders * MemoryLayout<StackFreeList>.stride

    /// What the inlined fast path allocates from, per cache slot (Go's
    /// mcache.alloc[numSpanClasses], plus the type slots).
    @usableFromInline let alloc: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>>
    /// The spans this cache holds, per cache slot. `alloc` holds the same spans, except
    /// in slow mode (`slowAlloc`: checked mode, clobberfree, an allocation hook, the
    /// allocation-path counters), where `alloc` stays all empty so that every allocation
    /// takes the slow path.
    let spans: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>>
    var slowAlloc = false
    // The tiny allocator (Go's tiny, tinyoffset, tinyAllocs).
    var tiny: UInt = 0
    var tinyOffset: UInt = 0
    var tinyAllocs: UInt = 0
    // Heap profile sampling (MemProfile.swift).
    /// Per cache slot: objects to allocate before the next sampled one (`sampleUnset`
    /// until `Heap.initSampling` at attach, and for a type slot until its first span).
    let toSample: UnsafeMutablePointer<Int>
    /// Bytes of tiny and large allocations before the next sample (Go's nextSample).
    var nextSampleBytes = 0
    var rngState: UInt64 = 1
    /// The heap's MemProfileRate (0: off), here so the slow path need not touch the heap.
    var profRate = 0
    /// Free stacks per order (Go's mcache.stackcache; Allocator/StackAlloc.swift).
    let stackCache: UnsafeMutablePointer<StackFreeList>
    /// Per span class: full spans this mutator handed back since the last flush, linked
    /// through `MSpan.next`, and how many. Swept (sweepgen == the heap's), full, in no
    /// central list. Go pushes each full span onto its central set at once; we push them
    /// `Tuning.uncacheBatch` at a time under one lock (`flushUncached`), and all of them
    /// at every pause and at detach (`releaseAll`), before mark termination moves the
    /// sweep generation, so the next cycle's sweep finds every one in its unswept set.
    /// Why: the background sweeper takes the same lock to publish the spans it sweeps,
    /// and each refill's lock round trip moved the lock's and the list's cache lines
    /// between the two cores (BENCHMARKS.md, "Where the typed case's slow path goes").
    /// Protection: the owning mutator, or anyone with the world stopped.
    let uncached: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>
    let uncachedCount: UnsafeMutablePointer<UInt8>
    /// Per span class: swept spans with free slots that this mutator took from its
    /// central list together with the span it cached (up to `Tuning.stashBatch` in all),
    /// linked through `MSpan.next` in the order the refills will take them, and how
    /// many. Swept (sweepgen == the heap's), not full, in no cache and no central list;
    /// flushed back to the list's swept partial set with the batches (`releaseAll`).
    /// Go takes one span per refill from a lock-free set; we take several under one
    /// lock, and each refill prefetches the next stashed span (`prefetchStashed`), whose
    /// lines the background sweeper wrote last on the other core (BENCHMARKS.md, "The
    /// take side of a refill").
    /// Protected like `uncached`.
    let stash: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>
    let stashCount: UnsafeMutablePointer<UInt8>
    unowned(unsafe) let heap: Heap

    init(heap: Heap) {
        self.heap = heap
        alloc = .allocate(capacity: MCache.slotCount)
        alloc.initialize(repeating: heap.emptySpan, count: MCache.slotCount)
        spans = .allocate(capacity: MCache.slotCount)
        spans.initialize(repeating: heap.emptySpan, count: MCache.slotCount)
        toSample = .allocate(capacity: MCache.slotCount)
        toSample.initialize(repeating: MCache.sampleUnset, count: MCache.slotCount)
        stackCache = .allocate(capacity: StackAlloc.orders)
        stackCache.initialize(repeating: StackFreeList(), count: StackAlloc.orders)
        uncached = .allocate(capacity: SpanClass.count)
        uncached.initialize(repeating: nil, count: SpanClass.count)
        uncachedCount = .allocate(capacity: SpanClass.count)
        uncachedCount.initialize(repeating: 0, count: SpanClass.count)
        stash = .allocate(capacity: SpanClass.count)
        stash.initialize(repeating: nil, count: SpanClass.count)
        stashCount = .allocate(capacity: SpanClass.count)
        stashCount.initialize(repeating: 0, count: SpanClass.count)
    }

    func destroy() {
        alloc.deallocate()
        spans.deallocate()
        toSample.deallocate()
        stackCache.deallocate()
        uncached.deallocate()
        uncachedCount.deallocate()
        stash.deallocate()
        stashCount.deallocate()
    }
}

extension UnsafeMutablePointer where Pointee == MCache {
    /// A free slot of span class `spc` from cache slot `slot` (the class's, or a type's
    /// own of that class), refilling the slot if its span is full (Go's mcache.nextFree);
    /// with `sample`, whether this object is a heap profile sample (see MemProfile.swift).
    /// nil only when memory cannot be had and `canFail`.
    func nextFree(slot ci: Int, _ spc: SpanClass, for st: UnsafeMutablePointer<MutatorState>, canFail: Bool, size: Int,
                  sample: Bool) -> (UnsafeMutablePointer<MSpan>, UInt, Bool)? {
        let spans = pointee.spans
        let profiling = pointee.profRate != 0
        var s = spans[ci]
        if profiling && (s.pointee.allocCache | s.pointee.heldCache) != 0 { disarmSample(self, s, ci) }
        var idx = s.nextFreeIndex()
        // A refill can run a collection whose pauses flush this cache again: retry.
        while idx == s.pointee.nelems {
            guard refill(slot: ci, spc, for: st) else {
                if canFail { return nil }
                pointee.heap.throwOutOfMemory(size)
            }
            s = spans[ci]
            idx = s.nextFreeIndex()
        }
        var sampled = false
        if profiling {
            if sample {
                if pointee.toSample[ci] <= 0 {
                    sampled = true
                    pointee.toSample[ci] = sampleDistance(self, elemSize: s.pointee.elemSize)
                } else {
                    pointee.toSample[ci] -= 1
                }
            }
            armSample(self, s, ci)
        }
        return (s, idx, sampled)
    }

    /// Replace the full span of cache slot `slotIndex` (of span class `spc`) in the
    /// mutator's cache (Go's mcache.refill). May start a collection first and pay mark
    /// assists. False when no memory can be had.
    func refill(slot slotIndex: Int, _ spc: SpanClass, for st: UnsafeMutablePointer<MutatorState>) -> Bool {
        // The heap as a guaranteed (+0) reference: no retain/release on this path.
        Unmanaged.passUnretained(pointee.heap)._withUnsafeGuaranteedRef { refill(slotIndex, spc, for: st, heap: $0) }
    }

    private func refill(_ slotIndex: Int, _ spc: SpanClass, for st: UnsafeMutablePointer<MutatorState>, heap: Heap) -> Bool {
        let slot = pointee.spans + slotIndex
        let fastSlot = pointee.alloc + slotIndex
        let old = slot.pointee
        if old != heap.emptySpan {
            if pointee.profRate != 0 { disarmSample(self, old, slotIndex) }
            heap.uncacheAccounting(old)
            slot.pointee = heap.emptySpan
            fastSlot.pointee = heap.emptySpan
            let sg = heap.sweepgen
            if old.pointee.allocCount == old.pointee.nelems && old.loadSweepgen() == sg &+ 3 {
                // Full and swept this cycle (the usual reason for a refill): into the
                // batch (`uncached`). A span cached before the last mark termination
                // (sg+1) still needs its sweep, which `uncacheSpan` does now.
                heap.heapStats.spansUncached.add(1, .relaxed)
                old.storeSweepgen(sg)
                let ci = Int(spc.raw)
                old.pointee.next = pointee.uncached[ci]
                pointee.uncached[ci] = old
                pointee.uncachedCount[ci] &+= 1
                if pointee.uncachedCount[ci] >= Tuning.uncacheBatch { flushUncached(ci, heap: heap) }
            } else {
                heap.uncacheSpan(old)
            }
        }
        raisePathLevel(st, .central)
        heap.refreshMemoryLimitTrigger()
        heap.maybeTriggerGC(st)
        let spanBytes = UInt(SizeClassTable.classToAllocNPages[spc.sizeClass]) << SizeClassTable.pageShiftU
        heap.deductSweepCredit(spanBytes)
        let ci = Int(spc.raw)
        let s: UnsafeMutablePointer<MSpan>
        if let top = pointee.stash[ci] {
            pointee.stash[ci] = top.pointee.next
            pointee.stashCount[ci] &-= 1
            top.pointee.next = nil
            // Every pause empties the stash before the sweep generation moves.
            runtimeCheck(top.loadSweepgen() == heap.sweepgen,
                         "mcache: a stashed span is of sweep generation \(top.loadSweepgen()), the heap's is \(heap.sweepgen)")
            s = top
        } else {
            guard let t = heap.cacheSpan(spc, st, stash: self) else { return false }
            s = t
        }
        heap.heapStats.spansCached.add(1, .relaxed)
        if s.pointee.keptEmpty != 0 {
            s.pointee.keptEmpty = 0
            heap.heapStats.keptEmptyBytesTaken.add(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        }
        if slotIndex >= SpanClass.count {
            // A type's own slot: every free slot gets the type's id now, so the fast
            // path stores none (see `ObjectType.bits`). Its sampling countdown starts
            // here: the type may have been registered after this mutator attached.
            s.fillFreeTypeIDs(heap.slotType[slotIndex])
            if pointee.toSample[slotIndex] == MCache.sampleUnset {
                pointee.toSample[slotIndex] = pointee.profRate == 0 ? Int.max / 2 : sampleDistance(self, elemSize: s.pointee.elemSize)
            }
        } else if let ids = s.pointee.typeIDs {
            s.setFilledType(0)   // its allocations store any type's id
            // The fast path stores a type id per object; bring the array in now, as the
            // zeroing of the span did for the objects, instead of one miss per 32 slots.
            let raw = UnsafeRawPointer(ids)
            for off in stride(from: 0, to: Int(s.pointee.nelems) * 2, by: 64) { tc_prefetchw(raw + off) }
        }
        let sg = heap.sweepgen
        if heap.internalChecks { s.checkInvariants() }
        s.storeSweepgen(sg &+ 3)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        let claimed = (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize
        heap.gcController.heapLive.add(claimed, .relaxed)
        if !spc.noscan { heap.gcController.heapScan.add(claimed, .relaxed) }
        if heap.phase == .mark {
            if s.pointee.allocCount == 0 {
                // Empty, and every slot about to be pre-marked: all it will hold this
                // phase is black, so the barrier may skip pointers into it
                // (`MutatorState.blackBase`). A range kept from an earlier span of this
                // phase stays valid too; the newest one is the likelier target.
                st.pointee.setBlackRange(s)
            }
            heap.preBlacken(s)
            slot.pointee = s
            if !pointee.slowAlloc { fastSlot.pointee = s }
            prefetchStashed(ci)
            heap.reviseAssistRatio()
            heap.assist(st, bytes: claimed)
        } else {
            slot.pointee = s
            if !pointee.slowAlloc { fastSlot.pointee = s }
            prefetchStashed(ci)
        }
        return true
    }

    /// Flush a mutator's cache (Go's mcache.releaseAll).
    func releaseAll() {
        Unmanaged.passUnretained(pointee.heap)._withUnsafeGuaranteedRef { releaseAll(heap: $0) }
    }

    /// Hand span class `ci`'s batch of full spans to its central list, under one lock,
    /// oldest first, so the list ends up in the order one push per span would give.
    /// Runs on the owning mutator, or with the world stopped (`releaseAll`): no pause
    /// can fall between the batching and this push (taking the central lock is not a
    /// blocking region), so every span is still of the heap's sweep generation and goes
    /// to the swept set; the background sweeper never needs to look for it this cycle.
    func flushUncached(_ ci: Int, heap: Heap) {
        let p = pointee.uncached[ci]
        pointee.uncached[ci] = nil
        pointee.uncachedCount[ci] = 0
        pushBack(p, class: ci, to: MCentral.fullSwept, heap: heap, what: "batched full span")
    }

    /// Push a list of this cache's spans of class `ci` (ours alone now) onto its central
    /// list's set `set(sg)` under one lock, last first, so the list's first span ends up
    /// the list's first again. Each must be of the heap's sweep generation (see
    /// `flushUncached`); `what` names the spans in the message if one is not.
    private func pushBack(_ list: UnsafeMutablePointer<MSpan>?, class ci: Int, to set: (UInt32) -> Int, heap: Heap, what: String) {
        var p = list
        var reversed: UnsafeMutablePointer<MSpan>? = nil
        while let s = p {
            p = s.pointee.next
            s.pointee.next = reversed
            reversed = s
        }
        let sg = heap.sweepgen
        let c = heap.centrals + ci
        c.pointee.lock.lock()
        while let s = reversed {
            reversed = s.pointee.next
            runtimeCheck(s.loadSweepgen() == sg, "mcache: a \(what) is of sweep generation \(s.loadSweepgen()), the heap's is \(sg)")
            c.pointee.push(set(sg), s)
        }
        c.pointee.lock.unlock()
    }

    /// Bring the next stashed span of class `ci` toward this core while the current span
    /// is used up: the lines of the span the refill and the fast path write (the first:
    /// the window and counts; the third: sweepgen and the cache bookkeeping) and the one
    /// they read (the second: bounds and the bitmaps' addresses), its alloc bits and, for
    /// a scan span, its slot type ids, which the fast path writes. The background
    /// sweeper wrote most of these last, on the other core.
    @inline(__always)
    func prefetchStashed(_ ci: Int) {
        guard let n = pointee.stash[ci] else { return }
        let raw = UnsafeRawPointer(n)
        tc_prefetchw(raw)
        tc_prefetch(raw + 64)
        tc_prefetchw(raw + 128)
        if let ab = n.pointee.allocBits { tc_prefetch(UnsafeRawPointer(ab)) }
        if let ids = n.pointee.typeIDs {
            let r = UnsafeRawPointer(ids)
            for off in stride(from: 0, to: Int(n.pointee.nelems) * 2, by: 64) { tc_prefetchw(r + off) }
        }
    }

    /// Give span class `ci`'s stash back to its central list's swept partial set, so
    /// that the list's first span is the one the stash would have given next.
    func flushStash(_ ci: Int, heap: Heap) {
        let p = pointee.stash[ci]
        pointee.stash[ci] = nil
        pointee.stashCount[ci] = 0
        pushBack(p, class: ci, to: MCentral.partialSwept, heap: heap, what: "stashed span")
    }

    /// The batches' invariants (`uncached`): as many spans as counted, fewer than a
    /// batch, each in use, of its class, full, and of sweep generation `sg`. World
    /// stopped (`checkHeapInvariantsStopped`); `mutator` names the owner in messages.
    func checkUncached(sweepgen sg: UInt32, mutator: Int) {
        checkLists(pointee.uncached, pointee.uncachedCount, limit: Tuning.uncacheBatch, full: true, sweepgen: sg, mutator: mutator)
    }

    /// The stashes' invariants (`stash`): as many spans as counted, fewer than a batch,
    /// each in use, of its class, with a free slot, and of sweep generation `sg`. World
    /// stopped (`checkHeapInvariantsStopped`); `mutator` names the owner in messages.
    func checkStash(sweepgen sg: UInt32, mutator: Int) {
        checkLists(pointee.stash, pointee.stashCount, limit: Tuning.stashBatch, full: false, sweepgen: sg, mutator: mutator)
    }

    /// Per span class, a list of spans and its count: fewer than `limit`, each in use, of
    /// the class, full (`full`) or with a free slot, and of sweep generation `sg`.
    private func checkLists(_ heads: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>, _ counts: UnsafeMutablePointer<UInt8>,
                            limit: UInt8, full: Bool, sweepgen sg: UInt32, mutator: Int) {
        let name = full ? "batch" : "stash"
        for i in 0..<SpanClass.count {
            var n = 0
            var p = heads[i]
            while let s = p {
                runtimeCheck(n < Int(limit), "mcache: mutator \(mutator)'s \(name) for class \(i) holds more than it may (its links loop?)")
                runtimeCheck(s.pointee.state == MSpanState.inUse.rawValue,
                             "mcache: span in mutator \(mutator)'s \(name) for class \(i) is not in use (state \(s.pointee.state))")
                runtimeCheck(s.pointee.spanClass.raw == UInt8(i),
                             "mcache: span in mutator \(mutator)'s \(name) for class \(i) is of class \(s.pointee.spanClass.raw)")
                runtimeCheck((s.pointee.allocCount == s.pointee.nelems) == full && s.loadSweepgen() == sg,
                             "mcache: span in mutator \(mutator)'s \(name) is not \(full ? "full" : "with a free slot") and swept (\(s.pointee.allocCount) of \(s.pointee.nelems), sweepgen \(s.loadSweepgen()), heap \(sg))")
                n += 1
                p = s.pointee.next
            }
            runtimeCheck(n == Int(counts[i]) && n < Int(limit),
                         "mcache: mutator \(mutator)'s \(name) for class \(i) holds \(n) spans, counted \(counts[i])")
        }
    }

    /// The slots' invariants: each holds the empty span or an in-use span of the slot's
    /// class, and a span in a type's own slot has that type's id in every free slot
    /// (what the fast path, which stores none there, relies on). World stopped.
    func checkSlots(heap: Heap, mutator: Int) {
        for i in 0..<MCache.slotCount {
            let s = pointee.spans[i]
            if s == heap.emptySpan { continue }
            runtimeCheck(s.pointee.state == MSpanState.inUse.rawValue && s.pointee.spanClass.raw == heap.slotClass[i],
                         "mcache: mutator \(mutator)'s slot \(i) holds a span of class \(s.pointee.spanClass.raw) in state \(s.pointee.state), not an in-use span of class \(heap.slotClass[i])")
            guard i >= SpanClass.count, let ids = s.pointee.typeIDs else { continue }
            let want = heap.slotType[i]
            for w in 0..<Int(s.pointee.bitmapWords) {
                var free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
                while free != 0 {
                    let j = w * 64 + free.trailingZeroBitCount
                    free &= free &- 1
                    runtimeCheck(ids[j] == want, "mcache: mutator \(mutator)'s slot \(i) for type \(want): free slot \(j) of its span has type id \(ids[j])")
                }
            }
        }
    }

    private func releaseAll(heap: Heap) {
        for i in 0..<SpanClass.count where pointee.uncachedCount[i] != 0 { flushUncached(i, heap: heap) }
        for i in 0..<SpanClass.count where pointee.stashCount[i] != 0 { flushStash(i, heap: heap) }
        for i in 0..<MCache.slotCount {
            let s = pointee.spans[i]
            if s != heap.emptySpan {
                if pointee.profRate != 0 { disarmSample(self, s, i) }
                heap.uncacheAccounting(s)
                pointee.spans[i] = heap.emptySpan
                pointee.alloc[i] = heap.emptySpan
                heap.uncacheSpan(s)
            }
        }
        pointee.tiny = 0
        pointee.tinyOffset = 0
        heap.heapStats.tinyAllocCount.add(pointee.tinyAllocs, .relaxed)
        pointee.tinyAllocs = 0
    }
}

extension Heap {
    /// Stats for a span leaving a cache: objects allocated from it while cached, and the
    /// free slots refill had counted into heapLive in advance. Withdraws the pre-marks
    /// of slots that stayed free (allocate-black) and counts the new objects as marked.
    func uncacheAccounting(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.allocCount = s.countAllocated()
        let n = s.pointee.allocCount - s.pointee.allocCountBeforeCache
        heapStats.smallAllocs[s.pointee.spanClass.sizeClass].add(n, .relaxed)
        let unused = (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize
        gcController.heapLive.sub(unused, .relaxed)
        if !s.pointee.spanClass.noscan { gcController.heapScan.sub(unused, .relaxed) }
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        if s.pointee.blackened != 0 {
            for w in 0..<Int(s.pointee.bitmapWords) {
                let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
                if free != 0 { s.setMarkBytes(word: w, slots: free, to: 0) }
            }
            marking.bytesMarked.add(n * s.pointee.elemSize, .relaxed)
            s.pointee.blackened = 0
        }
    }

    /// Allocate-black for a span cached during marking: every free slot is pre-marked, so
    /// whatever is allocated from it before it leaves the cache is black.
    func preBlacken(_ s: UnsafeMutablePointer<MSpan>) {
        for w in 0..<Int(s.pointee.bitmapWords) {
            let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
            if free != 0 { s.setMarkBytes(word: w, slots: free, to: 1) }
        }
        s.pointee.blackened = 1
    }
}
