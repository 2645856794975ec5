import CTricolor
import Glibc

// MHeap: the page heap (Go's mheap). Hands out runs of 8 KiB pages as spans, takes them
// back, and grows the heap from the OS arena by arena. Everything here runs with the
// heap lock held, except zeroing a fresh span, which happens after the lock is dropped.
//
// Invariants (checkHeapInvariants):
// - every page of an in-use span maps back to that span in its arena's spans table;
// - free pages map to nil;
// - HeapInuse == pages in in-use spans × 8 KiB; HeapSys == grown pages × 8 KiB.

extension Heap {
    /// Allocate a span of `npages` for span class `spc`. nil when the heap cannot grow.
    /// The span's memory is zero on return.
    func allocSpan(npages: Int, spanClass spc: SpanClass) -> UnsafeMutablePointer<MSpan>? {
        heapLock.lock()
        var first = pages.alloc(npages)
        while first == nil {
            // Grow. The new memory is faulted in before its pages become allocatable,
            // with the heap lock dropped and, when the caller is a mutator, inside a
            // blocking region: the first write to fresh memory can take milliseconds in
            // the kernel (a transparent huge page cleared), and a mutator stuck in a page
            // fault cannot answer a stop-the-world. One thread grows at a time; others
            // needing pages meanwhile wait for it, also as blocking regions.
            if tc_load_acquire(growingWord) != 0 {   // set and cleared under the heap lock
                heapLock.unlock()
                asBlocking { while tc_load_acquire(growingWord) != 0 { tc_sleep_ns(20_000) } }
                heapLock.lock()
            } else {
                guard let (addr, bytes, ask) = growPrepare(npages: npages) else { break }
                tc_store_release(growingWord, 1)
                heapLock.unlock()
                asBlocking { SysMemory.populate(UnsafeMutableRawPointer(bitPattern: addr)!, bytes) }
                heapLock.lock()
                growCommit(ask: ask, bytes: bytes)
                tc_store_release(growingWord, 0)
            }
            first = pages.alloc(npages)
        }
        guard let page = first, let raw = spanAlloc.alloc() else {
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
        guard let ab = meta.alloc(bw * 8), let mb = meta.alloc(bw * 8) else {
            pages.free(page, npages); spanAlloc.free(raw); heapLock.unlock(); return nil
        }
        span.allocBits = ab.bindMemory(to: UInt64.self, capacity: bw)
        span.gcmarkBits = mb.bindMemory(to: UInt64.self, capacity: bw)
        if c != 0 && !spc.noscan {
            guard let t = meta.alloc(Int(span.nelems) * 2) else {
                meta.free(ab, bw * 8); meta.free(mb, bw * 8)
                pages.free(page, npages); spanAlloc.free(raw); heapLock.unlock(); return nil
            }
            span.typeIDs = t.bindMemory(to: UInt16.self, capacity: Int(span.nelems))
        }
        span.sweepgen = sweepgen
        span.state = MSpanState.inUse.rawValue
        s.initialize(to: span)
        s.loadWindow(0)
        let needzero = setSpans(s, base: base, npages: npages)
        heapStats.heapInuse.add(bytes, .relaxed)
        heapStats.spansCreated.add(1, .relaxed)
        heapStats.heapReleased.store(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU, .releasing)
        heapLock.unlock()
        if needzero {
            UnsafeMutableRawPointer(bitPattern: base)!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(bytes))
        }
        return s
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
            for i in 0..<n { a.pointee.spans[pageIdx + i] = s }
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

    /// Return a span's pages to the page heap (Go's freeSpan). The memory may hold garbage.
    func freeSpan(_ s: UnsafeMutablePointer<MSpan>) {
        heapLock.lock()
        let base = s.pointee.startAddr
        let npages = Int(s.pointee.npages)
        _ = setSpans(nil, base: base, npages: npages)
        pages.free(Int((base - arenaBase) >> SizeClassTable.pageShiftU), npages)
        let bw = Int(s.pointee.bitmapWords) * 8
        meta.free(UnsafeMutableRawPointer(s.pointee.allocBits!), bw)
        meta.free(UnsafeMutableRawPointer(s.pointee.gcmarkBits!), bw)
        if let t = s.pointee.typeIDs { meta.free(UnsafeMutableRawPointer(t), Int(s.pointee.nelems) * 2) }
        s.pointee.state = MSpanState.dead.rawValue
        heapStats.heapInuse.sub(UInt(npages) << SizeClassTable.pageShiftU, .relaxed)
        heapStats.spansFreed.add(1, .relaxed)
        spanAlloc.free(UnsafeMutableRawPointer(s))
        heapLock.unlock()
    }

    /// Run `body` as a blocking region of the calling mutator, if the caller is a
    /// running mutator of this heap (no lock held). It must not touch the heap's objects
    /// or the mutator's cache.
    func asBlocking(_ body: () -> Void) {
        if let st = currentMutator(), st.pointee.status == .running {
            enterBlocking(st)
            body()
            exitBlocking(st)
        } else {
            body()
        }
    }

    var growingWord: UnsafeMutablePointer<UInt> { flags.heapGrowing.address }

    /// First half of growing the heap by at least `npages` pages, in whole 4 MiB chunks
    /// (Go's mheap.grow): maps arenas Reserved → Prepared as needed and the new range
    /// Prepared → Ready, but does not hand its pages to the page allocator yet (see
    /// growCommit). Heap lock held. Returns the range and its page count, or nil when
    /// the reservation is exhausted or the OS refuses.
    func growPrepare(npages: Int) -> (UInt, Int, Int)? {
        let chunk = PageAlloc.chunkPages
        let ask = (npages + chunk - 1) / chunk * chunk
        let start = pages.grownPages
        guard start + ask <= pages.totalPages else { return nil }
        let startAddr = arenaBase + UInt(start) << SizeClassTable.pageShiftU
        let bytes = ask * SizeClassTable.pageSize
        // Map every arena the new range touches.
        let a0 = Int((startAddr - arenaBase) >> HeapArena.logBytes)
        let a1 = Int((startAddr + UInt(bytes) - 1 - arenaBase) >> HeapArena.logBytes)
        for ai in a0...a1 where arenas[ai] == nil {
            let p = UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(ai) << HeapArena.logBytes)!
            guard SysMemory.map(p, HeapArena.bytes), let meta = HeapArena() else { return nil }
            let h = UnsafeMutablePointer<HeapArena>.allocate(capacity: 1)
            h.initialize(to: meta)
            arenas[ai] = h
            mappedArenas += 1
        }
        SysMemory.used(UnsafeMutableRawPointer(bitPattern: startAddr)!, bytes)
        return (startAddr, bytes, ask)
    }

    /// Second half of growing: the prepared range's pages become free pages of the heap.
    /// Heap lock held.
    func growCommit(ask: Int, bytes: Int) {
        pages.grow(ask)
        heapStats.heapSys.add(UInt(bytes), .relaxed)
        heapStats.heapGrows.add(1, .relaxed)
        heapStats.heapGrowBytes.add(UInt(bytes), .relaxed)
        notePathLevel(.os)
        if pacer.memoryLimit != Int.max {
            // Growing past the memory limit: give back free pages first (Go scavenges
            // synchronously on heap growth when over the limit).
            scavengeLocked(toTarget: UInt(pacer.memoryLimit) / 100 * 95)
        }
    }

    func checkHeapInvariants() {
        heapLock.withLock {
            pages.checkInvariants()
            var inUsePages = 0
            var p = 0
            while p < pages.grownPages {
                let addr = arenaBase + UInt(p) << SizeClassTable.pageShiftU
                if let s = spanOf(addr) {
                    precondition(pages.isUsed(p), "heap: page \(p) has a span but is free in the page allocator")
                    precondition(s.pointee.startAddr <= addr && addr < s.pointee.endAddr, "heap: page \(p) maps to a span that does not cover it")
                    if s.pointee.startAddr == addr { s.checkInvariants() }
                    inUsePages += 1
                } else {
                    precondition(!pages.isUsed(p), "heap: page \(p) in use but has no span")
                }
                p += 1
            }
            precondition(UInt(inUsePages) << SizeClassTable.pageShiftU == heapStats.heapInuse.load(.relaxed), "heap: HeapInuse disagrees with the span table")
            precondition(UInt(pages.grownPages) << SizeClassTable.pageShiftU == heapStats.heapSys.load(.relaxed), "heap: HeapSys disagrees with grown pages")
        }
    }
}

extension Heap {
    /// Return free pages to the OS until mapped memory (Sys − HeapReleased) is at most
    /// `target` bytes (Go's scavenger, run synchronously when over the memory limit).
    /// Heap lock held.
    func scavengeLocked(toTarget target: UInt) {
        let metadata = UInt(spanAlloc.sys + meta.sys + pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8)
        let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
        let mapped = heapStats.heapSys.load(.relaxed) + metadata - released
        if mapped <= target { return }
        let want = Int((mapped - target + SizeClassTable.pageSizeU - 1) >> SizeClassTable.pageShiftU)
        _ = pages.scavenge(want) { page, n in
            heapStats.bytesReturnedToOS.add(UInt(n) << SizeClassTable.pageShiftU, .relaxed)
            SysMemory.unused(UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(page) << SizeClassTable.pageShiftU)!, n * SizeClassTable.pageSize)
        }
        heapStats.heapReleased.store(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU, .releasing)
    }

    /// Under a memory limit, keep mapped memory at or below 95% of it when possible
    /// (Go's reduceExtraPercent).
    func scavengeForMemoryLimit() {
        let limit = pacer.memoryLimit
        guard limit != Int.max else { return }
        heapLock.withLock { scavengeLocked(toTarget: UInt(limit) / 100 * 95) }
    }
}
