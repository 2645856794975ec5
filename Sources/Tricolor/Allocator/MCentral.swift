import CTricolor

// MCentral: the spans of one span class that no mutator has cached (Go's mcentral).
// Four sets: partial/full × swept/unswept. Because the heap's sweepgen grows by 2 per
// cycle, the swept and unswept sets trade roles at every mark termination without
// moving a span. Go's sets are lock-free spanSets; ours are intrusive stacks under one
// lock per span class. A refill takes it once per few spans on both sides: it takes up
// to `Tuning.stashBatch` swept spans at once (the rest wait in its `MCache.stash`) and
// hands full spans back `Tuning.uncacheBatch` at a time (`MCache.uncached`).
//
// Invariants: a span is in at most one set; spans in swept(sg) sets have sweepgen == sg.

struct MCentral {
    let lock: RuntimeLock
    let spanClass: SpanClass
    /// [partial0, partial1, full0, full1]
    let heads: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>

    init(spanClass: SpanClass) {
        lock = RuntimeLock(rank: .mcentral)
        self.spanClass = spanClass
        heads = .allocate(capacity: 4)
        heads.initialize(repeating: nil, count: 4)
    }

    static func partialSwept(_ sg: UInt32) -> Int { Int(sg / 2 % 2) }
    static func partialUnswept(_ sg: UInt32) -> Int { 1 - Int(sg / 2 % 2) }
    static func fullSwept(_ sg: UInt32) -> Int { 2 + Int(sg / 2 % 2) }
    static func fullUnswept(_ sg: UInt32) -> Int { 3 - Int(sg / 2 % 2) }

    /// Lock held. Heads are written with relaxed atomic stores so `peek` may read them
    /// without the lock.
    func push(_ set: Int, _ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.next = heads[set]
        tc_store_relaxed(UnsafeMutableRawPointer(heads + set), UInt(bitPattern: s))
    }
    /// Lock held.
    func pop(_ set: Int) -> UnsafeMutablePointer<MSpan>? {
        guard let s = heads[set] else { return nil }
        tc_store_relaxed(UnsafeMutableRawPointer(heads + set), UInt(bitPattern: s.pointee.next))
        s.pointee.next = nil
        return s
    }
    /// Lock-free hint: whether a set looked non-empty.
    func peek(_ set: Int) -> Bool {
        tc_load_relaxed(UnsafeRawPointer(heads + set)) != 0
    }
}

extension UnsafeMutablePointer where Pointee == MSpan {
    /// Take ownership of an unswept span for sweeping (sg-2 → sg-1).
    func tryAcquireForSweep(_ sg: UInt32) -> Bool {
        return tc_cas32(sweepgenAddress, sg &- 2, sg &- 1)
    }
    var sweepgenAddress: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(self) + MemoryLayout<MSpan>.offset(of: \MSpan.sweepgen)!
    }
    func loadSweepgen() -> UInt32 { tc_load32_acquire(sweepgenAddress) }
    func storeSweepgen(_ v: UInt32) { tc_store32_release(sweepgenAddress, v) }
}

extension Heap {
    /// A span with at least one free slot for a mutator cache (Go's cacheSpan):
    /// a swept partial span, else an unswept one swept now, else a fresh span.
    ///
    /// With `stash` (the refilling mutator's cache, whose stash for this class is
    /// empty), a swept partial span comes with up to `Tuning.stashBatch` - 1 more from
    /// the same set, taken under the same lock into the stash for the next refills.
    ///
    /// `st` is the refilling mutator, which is at a full safepoint: if the world is being
    /// stopped while it sweeps, it parks and starts over (the sweep generation may have
    /// moved on meanwhile).
    func cacheSpan(_ spc: SpanClass, _ st: UnsafeMutablePointer<MutatorState>? = nil,
                   stash: UnsafeMutablePointer<MCache>? = nil) -> UnsafeMutablePointer<MSpan>? {
        let c = centrals + Int(spc.raw)
        let sg = sweepgen
        var found: UnsafeMutablePointer<MSpan>? = nil
        func stopRequested() -> Bool { st != nil && sched.attention.load(.relaxed) & Attention.stop != 0 }
        // Counted as a sweeper from before it can take an unswept span until it is done
        // with it, so `collect()` never misses a sweep in flight (not while parked: sweep
        // termination waits for the count with the world stopped).
        var counted = false
        c.pointee.lock.lock()
        if let s = c.pointee.pop(MCentral.partialSwept(sg)) {
            found = s
            if let mc = stash {
                // Take up to a batch of swept spans at once: the rest wait in the
                // mutator's stash, in list order, for its next refills of this class.
                let ci = Int(spc.raw)
                var tail: UnsafeMutablePointer<MSpan>? = nil
                var n: UInt8 = 0
                while n &+ 1 < Tuning.stashBatch, let more = c.pointee.pop(MCentral.partialSwept(sg)) {
                    if let t = tail { t.pointee.next = more } else { mc.pointee.stash[ci] = more }
                    tail = more
                    n &+= 1
                    // The pop brought in its third line; the first two, toward the
                    // refill that takes it (see `MCache.prefetchStashed`).
                    tc_prefetchw(UnsafeRawPointer(more))
                    tc_prefetch(UnsafeRawPointer(more) + 64)
                }
                mc.pointee.stashCount[ci] = n
            }
        } else {
            sweeperEnter()
            counted = true
            // Unswept partial spans first, then unswept full ones (sweeping may free
            // slots in them); at most 100 spans, as Go's spanBudget.
            var budget = 100
            for pass in 0..<2 {
                let set = pass == 0 ? MCentral.partialUnswept(sg) : MCentral.fullUnswept(sg)
                while budget >= 0, found == nil, let s = c.pointee.pop(set) {
                    if stopRequested() {
                        c.pointee.push(set, s)
                        c.pointee.lock.unlock()
                        sweeperExit()
                        gcSafepoint(st!)
                        return cacheSpan(spc, st, stash: stash)
                    }
                    if s.tryAcquireForSweep(sg) {
                        c.pointee.lock.unlock()
                        _ = sweepSpan(s, preserve: true)
                        c.pointee.lock.lock()
                        if s.pointee.allocCount < s.pointee.nelems {
                            found = s
                        } else {
                            c.pointee.push(MCentral.fullSwept(sg), s)
                        }
                    }
                    budget -= 1
                }
            }
        }
        c.pointee.lock.unlock()
        if counted { sweeperExit() }
        if found == nil {
            notePathLevel(.heap)
            found = allocSpan(npages: Int(SizeClassTable.classToAllocNPages[spc.sizeClass]), spanClass: spc)
        }
        return found
    }

    /// Give a cached span back to its central list (Go's uncacheSpan).
    func uncacheSpan(_ s: UnsafeMutablePointer<MSpan>) {
        heapStats.spansUncached.add(1, .relaxed)
        let sg = sweepgen
        let c = centrals + Int(s.pointee.spanClass.raw)
        if s.loadSweepgen() == sg &+ 1 {
            // Cached before the last mark termination: sweep it now.
            s.storeSweepgen(sg &- 1)
            _ = sweepSpanCounted(s, preserve: false)
            return
        }
        s.storeSweepgen(sg)
        c.pointee.lock.withLock {
            let full = s.pointee.allocCount == s.pointee.nelems
            c.pointee.push(full ? MCentral.fullSwept(sg) : MCentral.partialSwept(sg), s)
        }
    }
}

extension Heap {
    /// Spans that sit in central lists kept empty by the sweeper (`MSpan.keptEmpty`),
    /// counted under each central's lock, of one size class or of all, and those in the
    /// calling mutator's own stash (`MCache.stash`; other mutators' stashes are theirs
    /// alone while they run, and so is the caller's while it is in a blocking region,
    /// where a pause may flush it): for tests.
    @_spi(Testing) public func _spansKeptEmptyNow(sizeClass: Int? = nil) -> Int {
        var n = 0
        if let st = currentMutator(), st.pointee.status != .blocking {
            let mc = st.pointee.mcache
            for i in 0..<SpanClass.count where sizeClass == nil || SpanClass(raw: UInt8(i)).sizeClass == sizeClass {
                var s = mc.pointee.stash[i]
                while let span = s {
                    if span.pointee.keptEmpty != 0 { n += 1 }
                    s = span.pointee.next
                }
            }
        }
        for i in 0..<SpanClass.count where sizeClass == nil || SpanClass(raw: UInt8(i)).sizeClass == sizeClass {
            let c = centrals + i
            c.pointee.lock.lock()
            for set in 0..<4 {
                var s = c.pointee.heads[set]
                while let span = s {
                    if span.pointee.keptEmpty != 0 { n += 1 }
                    s = span.pointee.next
                }
            }
            c.pointee.lock.unlock()
        }
        return n
    }
}
