import CTricolor
import Glibc

// MHeap: the page heap (Go's mheap). Hands out runs of 8 KiB pages as spans and takes
// them back. Growing the heap from the OS is Allocator/HeapGrowth.swift; returning pages
// to it is Allocator/Scavenger.swift. Everything here runs with the heap lock held,
// except faulting in memory for small-object spans and zeroing a span whose pages may
// hold garbage, which happen with the lock dropped.
//
// Invariants (checkHeapInvariants):
// - every page of an in-use span maps back to that span in its arena's spans table;
// - free pages map to nil, and so do the reserved pages of growth in progress (in use
//   in the page allocator, no span: `growth.reservedPages`);
// - HeapInuse == pages in in-use spans × 8 KiB; HeapSys == grown pages × 8 KiB;
// - HeapReleased == pages marked scavenged × 8 KiB: only releases the OS accepted.

extension Heap {
    /// Allocate a span of `npages` for span class `spc`. nil when the heap cannot grow:
    /// the reservation is exhausted or the OS refuses memory (out of memory); the heap
    /// is unchanged then. The span's memory is zero on return.
    ///
    /// Memory is touched only where it must be: pages fresh from the OS or returned to
    /// it are already zero and are not cleared (Go's needzero), and only memory for
    /// small-object spans is faulted in ahead of use (Allocator/HeapGrowth.swift), never
    /// a large object's own pages, which may never be touched at all. A small-object
    /// span that reuses pages returned to the OS faults them in inside a blocking region,
    /// so that no stop-the-world waits for its page faults.
    /// - Precondition: the heap lock is NOT held.
    func allocSpan(npages: Int, spanClass spc: SpanClass) -> UnsafeMutablePointer<MSpan>? {
        heapLock.lock()
        guard let (page, scavengedPages) = allocPages(npages, prefault: spc.sizeClass != 0) else {
            heapLock.unlock()
            return nil
        }
        guard let raw = spanAlloc.alloc() else {
            pages.free(page, npages)
            heapLock.unlock()
            return nil
        }
        let s = raw.bindMemory(to: MSpan.self, capacity: 1)
        let base = arenaBase + UInt(page) << SizeClassTable.pageShiftU
        let bytes = UInt(npages) << SizeClassTable.pageShiftU
        var span = MSpan.empty
        span.startAddr = base
        span.npages = UInt(npages)
        span.spanClass = spc
        let c = spc.sizeClass
        if c == 0 {
            span.elemSize = bytes
            span.nelems = 1
            span.divMul = 0
        } else {
            span.elemSize = UInt(SizeClassTable.classToSize[c])
            span.nelems = bytes / span.elemSize
            span.divMul = SizeClassTable.classToDivMagic[c]
        }
        span.limit = base + span.elemSize * span.nelems
        let bw = (Int(span.nelems) + 63) / 64
        span.bitmapWords = UInt16(bw)
        // Alloc bits, mark bits (packed at sweep), the mark table (a byte per slot, bw × 64
        // bytes), and for a small scan span the slots' type ids; all or none.
        let typeBytes = c != 0 && !spc.noscan ? Int(span.nelems) * 2 : 0
        let ab = meta.alloc(bw * 8), mb = meta.alloc(bw * 8), mt = meta.alloc(bw * 64)
        let t = typeBytes > 0 ? meta.alloc(typeBytes) : nil
        guard let ab, let mb, let mt, typeBytes == 0 || t != nil else {
            if let ab { meta.free(ab, bw * 8) }
            if let mb { meta.free(mb, bw * 8) }
            if let mt { meta.free(mt, bw * 64) }
            if let t { meta.free(t, typeBytes) }
            pages.free(page, npages); spanAlloc.free(raw); heapLock.unlock(); return nil
        }
        span.allocBits = ab.bindMemory(to: UInt64.self, capacity: bw)
        span.gcmarkBits = mb.bindMemory(to: UInt64.self, capacity: bw)
        span.gcmarkBytes = mt.bindMemory(to: UInt8.self, capacity: bw * 64)
        span.typeIDs = t?.bindMemory(to: UInt16.self, capacity: Int(span.nelems))
        span.sweepgen = sweepgen
        span.state = MSpanState.inUse.rawValue
        s.initialize(to: span)
        s.loadWindow(0)
        // Pages that were returned to the OS read as zero, wherever they lie.
        let needzero = setSpans(s, base: base, npages: npages) && scavengedPages < npages
        heapStats.heapInuse.add(bytes, .relaxed)
        heapStats.spansCreated.add(1, .relaxed)
        publishReleased()
        heapLock.unlock()
        if c != 0 && scavengedPages > 0 {
            var result = SysMemory.PopulateResult.populated
            asBlocking { result = SysMemory.populate(UnsafeMutableRawPointer(bitPattern: base)!, Int(bytes)) }
            if result == .outOfMemory {
                // The kernel cannot back the span: its pages go back, released again.
                freeSpan(s, releasePages: true)
                return nil
            }
        }
        if needzero {
            UnsafeMutableRawPointer(bitPattern: base)!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(bytes))
        }
        return s
    }

    /// Allocate a span of `npages` for stack memory (Go's allocManual): in the manual
    /// state, with no bitmaps, counted in StackInuse rather than HeapInuse. Its memory
    /// is not zeroed. nil when the heap cannot grow.
    /// - Precondition: the heap lock is NOT held.
    func allocManual(npages: Int) -> UnsafeMutablePointer<MSpan>? {
        heapLock.lock()
        defer { heapLock.unlock() }
        guard let (page, _) = allocPages(npages, prefault: false) else { return nil }
        guard let raw = spanAlloc.alloc() else {
            pages.free(page, npages)
            return nil
        }
        let s = raw.bindMemory(to: MSpan.self, capacity: 1)
        var span = MSpan.empty
        span.startAddr = arenaBase + UInt(page) << SizeClassTable.pageShiftU
        span.npages = UInt(npages)
        span.elemSize = UInt(npages) << SizeClassTable.pageShiftU
        span.nelems = 1
        span.limit = span.startAddr + span.elemSize
        span.state = MSpanState.manual.rawValue
        s.initialize(to: span)
        _ = setSpans(s, base: span.startAddr, npages: npages)
        heapStats.stackInuse.add(span.elemSize, .relaxed)
        heapStats.spansCreated.add(1, .relaxed)
        publishReleased()
        return s
    }

    /// Return a stack span's pages to the page heap (Go's freeManual).
    /// - Precondition: the heap lock is NOT held; `s` is a manual span.
    func freeManual(_ s: UnsafeMutablePointer<MSpan>) {
        heapLock.lock()
        runtimeCheck(s.pointee.state == MSpanState.manual.rawValue, "freeManual: span is not a stack span")
        heapStats.stackInuse.sub(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        releaseSpanLocked(s)
        heapLock.unlock()
    }

    /// What freeing any span ends with: its pages back to the page allocator, unmapped
    /// from the spans table, the span struct recycled. `releasePages`: return the pages
    /// to the OS as well and free them as released (if the OS refuses, they are freed as
    /// ordinary free pages). Heap lock held.
    private func releaseSpanLocked(_ s: UnsafeMutablePointer<MSpan>, releasePages: Bool = false) {
        let base = s.pointee.startAddr
        let npages = Int(s.pointee.npages)
        _ = setSpans(nil, base: base, npages: npages)
        let first = Int((base - arenaBase) >> SizeClassTable.pageShiftU)
        if releasePages && SysMemory.unused(UnsafeMutableRawPointer(bitPattern: base)!, npages << SizeClassTable.pageShift) {
            pages.freeReleased(first, npages)
            publishReleased()
        } else {
            pages.free(first, npages)
        }
        s.pointee.state = MSpanState.dead.rawValue
        heapStats.spansFreed.add(1, .relaxed)
        spanAlloc.free(UnsafeMutableRawPointer(s))
    }

    /// Point every page of the span at it; returns whether the pages may hold garbage.
    private func setSpans(_ s: UnsafeMutablePointer<MSpan>?, base: UInt, npages: Int) -> Bool {
        var needzero = false
        var p = base
        let end = base + UInt(npages) << SizeClassTable.pageShiftU
        while p < end {
            let off = p - arenaBase
            let a = arenas[Int(off >> HeapArena.logBytes)]!
            let arenaStart = off & ~UInt(HeapArena.bytes - 1)
            let pageIdx = Int((off >> SizeClassTable.pageShiftU) & UInt(HeapArena.pagesPerArena - 1))
            let n = min(HeapArena.pagesPerArena - pageIdx, Int((end - p) >> SizeClassTable.pageShiftU))
            // Release stores: a conservative scanner may look a page up at any time
            // (`spanOfAcquiring`) and must find the span initialized.
            let bits = UInt(bitPattern: s)
            for i in 0..<n { tc_store_release(UnsafeMutableRawPointer(a.pointee.spans + pageIdx + i), bits) }
            if s != nil {
                let lo = off - arenaStart
                let hi = lo + UInt(n) << SizeClassTable.pageShiftU
                if lo < a.pointee.zeroedBase { needzero = true }
                if hi > a.pointee.zeroedBase { a.pointee.zeroedBase = hi }
            }
            p += UInt(n) << SizeClassTable.pageShiftU
        }
        return needzero
    }

    /// Return a span's pages to the page heap (Go's freeSpan). The memory may hold
    /// garbage. `releasePages`: give them back to the OS too.
    func freeSpan(_ s: UnsafeMutablePointer<MSpan>, releasePages: Bool = false) {
        // A span is freed only when none of its objects lived, and the sweep that
        // found that removed every record of theirs (Runtime/Specials.swift), and the
        // debugger's copy of them with the last one (checkSpecialsInvariants counts the
        // copies; reading this span's here would race with a mutator that removed the
        // last record, whose write only the specials lock orders).
        if internalChecks && s.specialsBits & UnsafeMutablePointer<MSpan>.specialsBit != 0 {
            runtimeFatal("freeSpan: span at \(Ref(address: s.pointee.startAddr)) still has lifecycle specials")
        }
        heapLock.lock()
        let bw = Int(s.pointee.bitmapWords)
        meta.free(UnsafeMutableRawPointer(s.pointee.allocBits!), bw * 8)
        meta.free(UnsafeMutableRawPointer(s.pointee.gcmarkBits!), bw * 8)
        meta.free(UnsafeMutableRawPointer(s.pointee.gcmarkBytes!), bw * 64)
        if let t = s.pointee.typeIDs { meta.free(UnsafeMutableRawPointer(t), Int(s.pointee.nelems) * 2) }
        heapStats.heapInuse.sub(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        releaseSpanLocked(s, releasePages: releasePages)
        heapLock.unlock()
    }

    /// The whole heap's invariants, checked from a test or a diagnostic on any thread:
    /// the world is stopped and the background sweeper held off meanwhile, since both
    /// change spans (found by the release-mode ThreadSanitizer run: a check racing
    /// with the sweeper's `loadWindow`).
    func checkHeapInvariants() {
        withWorldStopped {
            let blocked = sweep.sweepBlocked.load(.relaxed)
            sweep.sweepBlocked.store(1, .releasing)
            while sweep.activeSweepers.load(.acquiring) != 0 { tc_yield() }
            checkHeapInvariantsStopped()
            sweep.sweepBlocked.store(blocked, .releasing)
        }
    }

    /// The same with the world already stopped and no sweep in flight (pause #2).
    func checkHeapInvariantsStopped() {
        // Each mutator's batch of full spans (MCache.uncached) and stash of swept spans
        // with free slots (MCache.stash).
        let sg = sweepgen
        forEachMutator { m in
            m.pointee.mcache.checkUncached(sweepgen: sg, mutator: m.pointee.id)
            m.pointee.mcache.checkStash(sweepgen: sg, mutator: m.pointee.id)
            m.pointee.mcache.checkSlots(heap: self, mutator: m.pointee.id)
        }
        heapLock.withLock {
            pages.checkInvariants()
            var inUsePages = 0, stackPages = 0, reservedPages = 0
            var p = 0
            while p < pages.grownPages {
                let addr = arenaBase + UInt(p) << SizeClassTable.pageShiftU
                if let s = spanOf(addr) {
                    runtimeCheck(pages.isUsed(p), "heap: page \(p) has a span but is free in the page allocator")
                    runtimeCheck(s.pointee.startAddr <= addr && addr < s.pointee.endAddr, "heap: page \(p) maps to a span that does not cover it")
                    if s.pointee.state == MSpanState.manual.rawValue {
                        stackPages += 1
                    } else {
                        if s.pointee.startAddr == addr { s.checkInvariants() }
                        inUsePages += 1
                    }
                } else if pages.isUsed(p) {
                    reservedPages += 1
                }
                p += 1
            }
            runtimeCheck(reservedPages == growth.reservedPages, "heap: \(reservedPages) pages in use with no span, but \(growth.reservedPages) reserved for growth in progress")
            runtimeCheck(growth.pendingNext <= growth.pendingEnd && growth.pendingEnd <= pages.grownPages, "heap: pending growth [\(growth.pendingNext), \(growth.pendingEnd)) outside the grown heap")
            runtimeCheck(UInt(inUsePages) << SizeClassTable.pageShiftU == heapStats.heapInuse.load(.relaxed), "heap: HeapInuse disagrees with the span table")
            runtimeCheck(UInt(stackPages) << SizeClassTable.pageShiftU == heapStats.stackInuse.load(.relaxed), "heap: StackInuse disagrees with the span table")
            runtimeCheck(UInt(pages.grownPages) << SizeClassTable.pageShiftU == heapStats.heapSys.load(.relaxed), "heap: HeapSys disagrees with grown pages")
            runtimeCheck(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU == heapStats.heapReleased.load(.relaxed), "heap: HeapReleased disagrees with the pages returned to the OS")
        }
    }
}
