import CTricolor
import Glibc

// Sweeping (Go's mgcsweep.go). After mark termination every in-use span is unswept.
// Spans are swept lazily: a mutator that needs a span sweeps one from its class's
// central list (cacheSpan), and the next cycle finishes whatever is left before it
// stops the world (sweepOne loop in gcStart).
//
// Sweeping one small span: the mark table (a byte per slot) is packed into mark bits and
// cleared, objects that were allocated and are not marked are freed (their memory
// zeroed, or poisoned under clobberfree), then the mark bits become the alloc bits — a
// pointer swap — and the old alloc bits, zeroed, are the next sweep's mark bits.
// A span left with no objects returns to the page heap. A large span is either kept
// (marked) or freed whole.

let clobberPattern: UInt64 = 0xdeadbeef_deadbeef

extension Heap {
    /// Sweep a span the caller owns (sweepgen == sg-1). With `preserve` the span is left
    /// to the caller even if empty; otherwise it goes back to a central list or the heap.
    /// Returns false if the span was freed.
    @discardableResult
    func sweepSpan(_ s: UnsafeMutablePointer<MSpan>, preserve: Bool) -> Bool {
        let sg = sweepgen
        runtimeCheck(s.loadSweepgen() == sg &- 1, "tricolor: sweeping a span not owned by the sweeper (sweepgen \(s.loadSweepgen()), heap \(sg))")
        sweep.pagesSwept.add(s.pointee.npages, .relaxed)
        heapStats.spansSwept.add(1, .relaxed)
        let spc = s.pointee.spanClass
        // A span kept empty by the last sweep is decided afresh (and not kept twice).
        let wasKeptEmpty = s.pointee.keptEmpty != 0
        if wasKeptEmpty {
            s.pointee.keptEmpty = 0
            heapStats.keptEmptyBytes.sub(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        }
        // Specials (Runtime/Specials.swift), before the mark bits become the alloc bits:
        // finalizer objects are revived (marked), so that their heap-profile records
        // stay and the profile counts them live, as Go does.
        if _slowPath(s.specialsBits != 0) { sweepSpecials(s) }   // atomic: a mutator may add one meanwhile
        // From here on the marks are read packed, from gcmarkBits; the table is clear
        // for the next cycle.
        s.packMarks()
        let freeHook = currentHooks()?.onFree
        if quarantineCycles != 0 { return sweepSpanQuarantined(s, preserve: preserve, freeHook: freeHook) }
        if s.pointee.isLarge {
            if s.pointee.gcmarkBits![0] & 1 != 0 {
                s.pointee.gcmarkBits![0] = 0
                s.storeSweepgen(sg)
                if !preserve {
                    let c = centrals + Int(spc.raw)
                    c.pointee.lock.withLock { c.pointee.push(MCentral.fullSwept(sg), s) }
                }
                return true
            }
            let size = s.pointee.limit - s.pointee.startAddr
            if let freeHook {
                let bytes = Int(s.pointee.npages << SizeClassTable.pageShiftU)
                let event = FreeEvent(address: s.pointee.startAddr, slotSize: bytes, sizeClass: 0,
                                      typeName: typeName(UInt16(truncatingIfNeeded: s.pointee.largeType) & ~arrayTypeBit))
                HookGuard.run { freeHook(event) }
            }
            heapStats.largeFreeCount.add(1, .relaxed)
            heapStats.largeFreeBytes.add(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
            if configuration.clobberFree { clobber(s.pointee.startAddr, size) }
            freeSpan(s)
            return false
        }

        let words = Int(s.pointee.bitmapWords)
        let mark = s.pointee.gcmarkBits!
        let elemSize = s.pointee.elemSize
        let base = s.pointee.startAddr
        var nfreed: UInt = 0
        var nalloc: UInt = 0
        for w in 0..<words { nalloc += UInt(mark[w].nonzeroBitCount) }
        // An empty span stays in its class once, within this sweep's budget
        // (`takeKeepEmptyBudget`): its dead objects are cleared here, on the sweeper, and
        // the next refill of the class takes it from the central list with no page-heap
        // round trip and nothing to zero. Otherwise it goes straight back to the page
        // heap and is zeroed when reused, so its dead objects are not cleared here.
        let keepEmpty = nalloc == 0 && !preserve && !wasKeptEmpty && takeKeepEmptyBudget(s.pointee.npages)
        let freeWhole = nalloc == 0 && !preserve && !configuration.clobberFree && !keepEmpty
        for w in 0..<words {
            let lo = UInt(w) * 64
            // slots allocated before this cycle's mark
            let allocated = s.allocatedWord(w)
            var dead = allocated & ~mark[w]
            nfreed += UInt(dead.nonzeroBitCount)
            if let freeHook, dead != 0 { callFreeHook(freeHook, s, lo, dead) }
            if freeWhole { continue }
            // Clear each run of consecutive dead slots with one memset.
            while dead != 0 {
                let first = UInt(dead.trailingZeroBitCount)
                let run = UInt((~(dead >> UInt64(first))).trailingZeroBitCount)
                dead = run + first >= 64 ? 0 : dead & ~(((1 << UInt64(run)) - 1) << UInt64(first))
                let p = base + (lo + first) * elemSize
                if configuration.clobberFree {
                    clobber(p, run * elemSize)
                } else {
                    memset(UnsafeMutableRawPointer(bitPattern: p)!, 0, Int(run * elemSize))
                }
            }
        }
        if nfreed > 0 {
            heapStats.smallFrees[spc.sizeClass].add(nfreed, .relaxed)
        }
        return publishSweptSpan(s, nalloc: nalloc, sweepgen: sg, preserve: preserve, keepEmpty: keepEmpty)
    }

    /// The end of sweeping a small-object span (here and in the checked mode's
    /// quarantine sweep): the mark bits become the alloc bits, the span is marked swept,
    /// and unless the caller keeps it (`preserve`) it goes back to the page heap when
    /// empty (after `beforeFree`; with `keepEmpty`, to its central list, marked
    /// `keptEmpty`) or to its central list. Returns whether the span lives.
    func publishSweptSpan(_ s: UnsafeMutablePointer<MSpan>, nalloc: UInt, sweepgen sg: UInt32, preserve: Bool,
                          keepEmpty: Bool = false, beforeFree: () -> Void = {}) -> Bool {
        let mark = s.pointee.gcmarkBits!
        let alloc = s.pointee.allocBits!
        s.pointee.allocBits = mark
        s.pointee.gcmarkBits = alloc
        alloc.initialize(repeating: 0, count: Int(s.pointee.bitmapWords))
        s.pointee.allocCount = nalloc
        s.primeAllocCache()
        s.storeSweepgen(sg)
        if internalChecks { s.checkInvariants() }
        if preserve { return true }
        if nalloc == 0 {
            if !keepEmpty {
                beforeFree()
                freeSpan(s)
                return false
            }
            heapStats.spansKeptEmpty.add(1, .relaxed)
            heapStats.keptEmptyBytes.add(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        }
        s.pointee.keptEmpty = keepEmpty ? 1 : 0
        let spc = s.pointee.spanClass
        let c = centrals + Int(spc.raw)
        c.pointee.lock.withLock {
            c.pointee.push(nalloc == s.pointee.nelems ? MCentral.fullSwept(sg) : MCentral.partialSwept(sg), s)
        }
        return true
    }

    /// Take `pages` from this sweep phase's budget of empty spans to keep (set at mark
    /// termination). False when it is spent.
    func takeKeepEmptyBudget(_ pages: UInt) -> Bool {
        let budget = sweep.keepEmptyPages
        var left = budget.load(.relaxed)
        while left >= pages {
            if budget.compareExchange(expected: left, desired: left - pages) { return true }
            left = budget.load(.relaxed)
        }
        return false
    }

    /// `sweepSpan`, counted in activeSweepers so that `collect()` can wait for sweeps
    /// other threads are in the middle of (Go's sweep.active).
    func sweepSpanCounted(_ s: UnsafeMutablePointer<MSpan>, preserve: Bool) -> Bool {
        sweeperEnter()
        defer { sweeperExit() }
        return sweepSpan(s, preserve: preserve)
    }

    /// Count the calling thread as a sweeper (activeSweepers), which sweep termination
    /// and `collect()` wait out. Never park in between.
    @inline(__always) func sweeperEnter() { sweep.activeSweepers.add(1, .acquiringAndReleasing) }
    @inline(__always) func sweeperExit() { sweep.activeSweepers.sub(1, .acquiringAndReleasing) }

    /// The free hook, for each dead slot in one 64-slot word of a span being swept.
    @inline(never)
    func callFreeHook(_ hook: @Sendable (FreeEvent) -> Void, _ s: UnsafeMutablePointer<MSpan>, _ lo: UInt, _ dead: UInt64) {
        var d = dead
        let spc = s.pointee.spanClass
        while d != 0 {
            let i = lo + UInt(d.trailingZeroBitCount)
            d &= d - 1
            let tid: UInt16 = spc.noscan ? 0 : s.pointee.typeIDs![Int(i)] & ~arrayTypeBit
            let event = FreeEvent(address: s.pointee.startAddr + i * s.pointee.elemSize, slotSize: Int(s.pointee.elemSize),
                                  sizeClass: spc.sizeClass, typeName: typeName(tid))
            HookGuard.run { hook(event) }
        }
    }

    func clobber(_ p: UInt, _ n: UInt) {
        let w = UnsafeMutablePointer<UInt64>(bitPattern: p)!
        w.initialize(repeating: clobberPattern, count: Int(n / 8))
    }

    /// Sweep one unswept span from any central list (Go's sweepone). False when none is left.
    func sweepOne(force: Bool = false) -> Bool {
        // Counted in activeSweepers so sweep termination can wait for sweeps that
        // threads outside the stopped world (the background sweeper) still run; once
        // sweep termination has begun only it may sweep (force).
        sweeperEnter()
        defer { sweeperExit() }
        if !force && (phase != .off || sweep.sweepBlocked.load(.relaxed) != 0) { return false }
        // Walk the (span class, partial/full) unswept sets with an index that only moves
        // forward within a sweep phase (Go's sweep.centralIndex).
        let sg = sweepgen
        let indexWord = sweep.sweepIndex.address
        while true {
            let i = tc_load_acquire(indexWord)
            if i >= UInt(2 * SpanClass.count) { return false }
            let c = centrals + Int(i / 2)
            let set = i % 2 == 0 ? MCentral.partialUnswept(sg) : MCentral.fullUnswept(sg)
            var span: UnsafeMutablePointer<MSpan>? = nil
            if c.pointee.peek(set) {
                c.pointee.lock.lock()
                span = c.pointee.pop(set)
                c.pointee.lock.unlock()
            }
            guard let s = span else {
                _ = tc_cas(indexWord, i, i + 1)
                continue
            }
            if s.tryAcquireForSweep(sg) { sweepSpan(s, preserve: false) }
            return true
        }
    }

    /// Sweep everything still unswept (Go's finishsweep). Returns spans swept.
    @discardableResult
    /// A mutator `caller` (at a full safepoint) answers stop requests between spans, so a
    /// long sweep never holds up another thread's pause.
    func finishSweep(force: Bool = false, caller: UnsafeMutablePointer<MutatorState>? = nil) -> Int {
        defer { sweepDoneWakeScavenger() }
        var n = 0
        while true {
            if let c = caller, sched.attention.load(.relaxed) & Attention.stop != 0 {
                gcSafepoint(c)
                if phase != .off { break }
            }
            if !sweepOne(force: force) { break }
            n += 1
        }
        return n
    }
}
