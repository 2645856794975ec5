import CTricolor
import Glibc

// The quarantine of freed objects, checked mode only (issue #11 part 5; the idea of
// AddressSanitizer's quarantine and of V8's and cppgc's zapped free memory, applied to
// Go's sweeper in Collector/Sweep.swift).
//
// Without it a stale `Ref` (one kept in a Swift local, not in a frame, across a
// collection) points at a slot that the allocator hands out again within a few
// allocations; checked mode then sees a live object of the same type and cannot tell.
// With it, a slot the sweeper finds dead is not freed but held:
//
//  1. its memory is poisoned: data words hold 0xdeadbeef_deadbeef, pointer words hold
//     null (so that a marker reaching the slot through a stale conservative root finds
//     nothing to follow, and checked marking reports no bad pointer);
//  2. it stays allocated in its span (its bit is kept in the new alloc bits), so the
//     allocator cannot hand it out;
//  3. its quarantine entry records the GC cycle whose mark found it dead.
//
// A later sweep releases it once `quarantineCycles` more cycles have completed: its
// memory is zeroed (every free slot is zero, Malloc.swift) and its bit dropped. A large
// object is held whole the same way (its span is kept, on the full swept list).
// `Heap.checkRef` consults the entry first, so any checked access through a `Ref` to a
// quarantined slot traps naming the type, the address and the cycle that freed it.
//
// Accounting (MemStats identities stay exact): a quarantined object is freed, it only
// cannot be reused yet. It is counted as freed (Frees, BySize[].Frees, the large free
// counters) when it enters the quarantine, and not again at release; the free hook runs
// then too. So HeapAlloc = TotalAlloc − freed bytes and HeapObjects = Mallocs − Frees
// exclude quarantined objects (HeapObjects is the live objects, as without the
// quarantine), while their slots stay in HeapInuse, like any free slot of an in-use
// span: HeapAlloc ≤ HeapInuse holds, with the quarantine in the difference. Inside the
// span, a held slot's alloc bit stays set (so `allocCount` counts it): that is what
// keeps the allocator off it; the cached-span arithmetic of ReadMemStats
// (countAllocated − allocCountBeforeCache) cancels it out.
//
// Table layout, one per span in heap metadata (MetaAlloc, heap lock), created at the
// span's first checked sweep and freed with the span:
//   bitmapWords × UInt64   bit i set ⇔ slot i is in quarantine (sweeper writes, relaxed)
//   nelems × UInt32        entry of slot i: the cycle that freed it, | inQuarantine while
//                          held; 0 if never freed under checked mode (sweeper writes
//                          with release; checkRef reads with acquire inside its
//                          sweepgen-bracketed read, so a half-swept span is never judged)
//
// Invariants: a slot's quarantine bit is set ⇔ its entry has `inQuarantine` ⇔ it is
// held; a held slot is allocated in the span's alloc bits; a slot is held for at least
// `quarantineCycles` completed cycles.

enum Quarantine {
    /// Entry flag: the slot is held now (the rest of the entry is the cycle).
    static let inQuarantine: UInt32 = 1 << 31
    /// The default number of cycles a freed object stays in quarantine.
    static let defaultCycles = 3
    /// Offset of `MSpan.quarantine`, for its atomic accesses (computed, not a lazily
    /// initialized static: folds to a constant, no `swift_once` per check).
    @inline(__always) static var fieldOffset: Int { MemoryLayout<MSpan>.offset(of: \MSpan.quarantine)! }
}

extension Heap {
    /// The quarantine table of `s`, or nil (any thread; acquire).
    @inline(__always)
    func loadQuarantineTable(_ s: UnsafeMutablePointer<MSpan>) -> UnsafeMutableRawPointer? {
        UnsafeMutableRawPointer(bitPattern: tc_load_acquire(UnsafeRawPointer(s) + Quarantine.fieldOffset))
    }

    /// Slot `idx`'s quarantine entry (0: never freed in checked mode). Any thread.
    @inline(__always)
    func quarantineEntry(_ s: UnsafeMutablePointer<MSpan>, _ idx: UInt) -> UInt32 {
        guard let q = loadQuarantineTable(s) else { return 0 }
        return tc_load32_acquire(q + Int(s.pointee.bitmapWords) * 8 + Int(idx) * 4)
    }

    /// The type name of slot `idx` of `s` (kept while the slot is held: the type array
    /// entry is rewritten only when the slot is allocated again).
    func quarantineTypeName(_ s: UnsafeMutablePointer<MSpan>, _ idx: UInt) -> String {
        if s.pointee.spanClass.noscan { return s.pointee.spanClass == .tiny ? "<tiny bytes>" : "<bytes>" }
        let tid = s.pointee.isLarge ? UInt16(truncatingIfNeeded: s.pointee.largeType) : s.pointee.typeIDs![Int(idx)]
        let name = typeName(tid & ~arrayTypeBit)
        return tid & arrayTypeBit != 0 ? "[\(name)]" : name
    }

    /// The table of `s`, created zeroed if it has none. The caller owns the span (sweeping it).
    private func quarantineTable(_ s: UnsafeMutablePointer<MSpan>) -> UnsafeMutableRawPointer {
        if let q = loadQuarantineTable(s) { return q }
        let bytes = Int(s.pointee.bitmapWords) * 8 + Int(s.pointee.nelems) * 4
        let q = heapLock.withLock { meta.alloc(bytes) }
        guard let q else { runtimeFatal("out of memory: the quarantine table of a span (\(bytes) bytes)") }
        memset(q, 0, bytes)
        tc_store_release(UnsafeMutableRawPointer(s) + Quarantine.fieldOffset, UInt(bitPattern: q))
        return q
    }

    /// Free the table of a span that is about to be freed. The caller owns the span.
    private func releaseQuarantineTable(_ s: UnsafeMutablePointer<MSpan>) {
        guard let q = loadQuarantineTable(s) else { return }
        tc_store_release(UnsafeMutableRawPointer(s) + Quarantine.fieldOffset, 0)
        let bytes = Int(s.pointee.bitmapWords) * 8 + Int(s.pointee.nelems) * 4
        heapLock.withLock { meta.free(q, bytes) }
    }

    /// Fill slot `idx` of `s` with poison: pointer words null, the others 0xdeadbeef….
    private func poisonSlot(_ s: UnsafeMutablePointer<MSpan>, _ idx: UInt) {
        let large = s.pointee.isLarge
        let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
        let bytes = large ? s.pointee.limit &- s.pointee.startAddr : s.pointee.elemSize
        let words = Int(bytes / 8)
        let w = UnsafeMutablePointer<UInt64>(bitPattern: base)!
        if s.pointee.spanClass.noscan {
            clobber(base, bytes)
            return
        }
        let tid = (large ? UInt16(truncatingIfNeeded: s.pointee.largeType) : s.pointee.typeIDs![Int(idx)]) & ~arrayTypeBit
        let t = types + Int(tid)
        let typeWords = max(1, Int(t.pointee.size / 8))
        if t.pointee.numPtrWords == typeWords {   // all pointers (list and tree nodes): all null
            memset(UnsafeMutableRawPointer(w), 0, words * 8)
            return
        }
        var inType = 0   // k % typeWords, without a division per word
        for k in 0..<words {
            tc_store_relaxed(UnsafeMutableRawPointer(w + k), t.pointee.isPointerWord(inType) ? 0 : UInt(clobberPattern))
            inType += 1
            if inType == typeWords { inType = 0 }
        }
    }

    /// `sweepSpan` in checked mode: as there, except that dead objects enter the
    /// quarantine and held ones leave it when old enough (see the top of this file).
    /// The caller owns the span (sweepgen == sg − 1). Returns false if the span was freed.
    func sweepSpanQuarantined(_ s: UnsafeMutablePointer<MSpan>, preserve: Bool,
                              freeHook: (@Sendable (FreeEvent) -> Void)?) -> Bool {
        let sg = sweepgen
        let cycle = UInt32(truncatingIfNeeded: marking.numGC.load(.relaxed)) & ~Quarantine.inQuarantine
        let keep = quarantineCycles
        let spc = s.pointee.spanClass
        let q = quarantineTable(s)
        let words = Int(s.pointee.bitmapWords)
        let held = q.assumingMemoryBound(to: UInt64.self)
        let entries = (q + words * 8).assumingMemoryBound(to: UInt32.self)
        func setEntry(_ i: UInt, _ v: UInt32) { tc_store32_release(UnsafeMutableRawPointer(entries + Int(i)), v) }
        func age(_ i: UInt) -> UInt32 { cycle &- (entries[Int(i)] & ~Quarantine.inQuarantine) }

        if s.pointee.isLarge {
            let isHeld = held[0] & 1 != 0
            if isHeld && age(0) >= keep {
                // Release: the span goes back to the page heap (zeroed when reused).
                setEntry(0, entries[0] & ~Quarantine.inQuarantine)
                tc_store_relaxed(UnsafeMutableRawPointer(held), 0)
                releaseQuarantineTable(s)
                freeSpan(s)
                return false
            }
            if !isHeld && s.pointee.gcmarkBits![0] & 1 == 0 {   // packed by sweepSpan
                if let freeHook {
                    let event = FreeEvent(address: s.pointee.startAddr, slotSize: Int(s.pointee.npages << SizeClassTable.pageShiftU),
                                          sizeClass: 0, typeName: typeName(UInt16(truncatingIfNeeded: s.pointee.largeType) & ~arrayTypeBit))
                    HookGuard.run { freeHook(event) }
                }
                heapStats.largeFreeCount.add(1, .relaxed)
                heapStats.largeFreeBytes.add(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
                poisonSlot(s, 0)
                setEntry(0, cycle | Quarantine.inQuarantine)
                tc_store_relaxed(UnsafeMutableRawPointer(held), 1)
            }
            // Live, newly held or still held: the span stays, on the full swept list.
            s.pointee.gcmarkBits![0] = 0
            s.storeSweepgen(sg)
            if !preserve {
                let c = centrals + Int(spc.raw)
                c.pointee.lock.withLock { c.pointee.push(MCentral.fullSwept(sg), s) }
            }
            return true
        }

        let mark = s.pointee.gcmarkBits!
        let elemSize = s.pointee.elemSize
        let base = s.pointee.startAddr
        var nfreed: UInt = 0
        var nalloc: UInt = 0
        for w in 0..<words {
            let lo = UInt(w) * 64
            let wasHeld = held[w]
            let dead = s.allocatedWord(w) & ~mark[w] & ~wasHeld
            if let freeHook, dead != 0 { callFreeHook(freeHook, s, lo, dead) }
            nfreed += UInt(dead.nonzeroBitCount)
            var nowHeld = wasHeld | dead
            var d = dead
            while d != 0 {
                let i = lo + UInt(d.trailingZeroBitCount)
                d &= d &- 1
                poisonSlot(s, i)
                setEntry(i, cycle | Quarantine.inQuarantine)
            }
            var h = wasHeld
            while h != 0 {
                let bit = UInt64(h.trailingZeroBitCount)
                h &= h &- 1
                let i = lo + UInt(bit)
                if age(i) >= keep {
                    memset(UnsafeMutableRawPointer(bitPattern: base + i * elemSize)!, 0, Int(elemSize))
                    setEntry(i, entries[Int(i)] & ~Quarantine.inQuarantine)
                    nowHeld &= ~(1 << bit)
                }
            }
            tc_store_relaxed(UnsafeMutableRawPointer(held + w), UInt(nowHeld))
            // Held slots stay allocated; released ones become free even if a stale
            // conservative root marked them.
            mark[w] = (mark[w] & ~wasHeld) | nowHeld
            nalloc += UInt(mark[w].nonzeroBitCount)
        }
        if nfreed > 0 { heapStats.smallFrees[spc.sizeClass].add(nfreed, .relaxed) }
        // The mark bits become the alloc bits, as in sweepSpan.
        return publishSweptSpan(s, nalloc: nalloc, sweepgen: sg, preserve: preserve) { releaseQuarantineTable(s) }
    }
}
