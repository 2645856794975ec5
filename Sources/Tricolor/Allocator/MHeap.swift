import CTricolor
import Glibc

// MHeap: the page heap (Go's mheap). Hands out runs of 8 KiB pages as spans, takes them
// back, and grows the heap from the OS in 4 MiB chunks. Everything here runs with the
// heap lock held, except pre-faulting memory grown for small-object spans and zeroing a
// span whose pages may hold garbage, which happen with the lock dropped.
//
// Invariants (checkHeapInvariants):
// - every page of an in-use span maps back to that span in its arena's spans table;
// - free pages map to nil;
// - HeapInuse == pages in in-use spans × 8 KiB; HeapSys == grown pages × 8 KiB;
// - HeapReleased == pages marked scavenged × 8 KiB: only releases the OS accepted.

extension Heap {
    /// Allocate a span of `npages` for span class `spc`. nil when the heap cannot grow:
    /// the reservation is exhausted or the OS refuses memory (out of memory); the heap
    /// is unchanged then. The span's memory is zero on return.
    ///
    /// Memory is touched only where it must be: pages fresh from the OS or returned to
    /// it are already zero and are not cleared (Go's needzero), and only growth for
    /// small-object spans is pre-faulted (see `growForSmallSpans`), never a large
    /// object's own pages, which may never be touched at all.
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
        // Pages that were returned to the OS read as zero, wherever they lie.
        let needzero = setSpans(s, base: base, npages: npages) && scavengedPages < npages
        heapStats.heapInuse.add(bytes, .relaxed)
        heapStats.spansCreated.add(1, .relaxed)
        heapStats.heapReleased.store(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU, .releasing)
        heapLock.unlock()
        if needzero {
            UnsafeMutableRawPointer(bitPattern: base)!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(bytes))
        }
        return s
    }

    /// Take `npages` free pages, growing the heap if needed: the first page's index and
    /// how many of the pages were returned to the OS (and so read as zero). nil when the
    /// heap cannot grow. `prefault`: grow as for small-object spans (see
    /// `growForSmallSpans`); otherwise the new pages are handed out untouched.
    /// - Precondition: the heap lock is held; it may be dropped and retaken.
    private func allocPages(_ npages: Int, prefault: Bool) -> (Int, Int)? {
        var got = pages.allocReportingScavenged(npages)
        while got == nil {
            if tc_load_acquire(growingWord) != 0 {   // set and cleared under the heap lock
                // Another thread is growing with the lock dropped (below): wait for it,
                // as a blocking region, then look again.
                heapLock.unlock()
                asBlocking { while tc_load_acquire(growingWord) != 0 { tc_sleep_ns(20_000) } }
                heapLock.lock()
            } else if prefault {
                guard growForSmallSpans(npages: npages) else { return nil }
            } else {
                // A large object or a stack: its pages are handed out untouched (fresh OS
                // memory is zero), so growing is two quick system calls under the lock.
                guard let g = growPrepare(npages: npages) else { return nil }
                growCommit(g)
            }
            got = pages.allocReportingScavenged(npages)
        }
        return got
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
        heapStats.heapReleased.store(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU, .releasing)
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
    /// from the spans table, the span struct recycled. Heap lock held.
    private func releaseSpanLocked(_ s: UnsafeMutablePointer<MSpan>) {
        let base = s.pointee.startAddr
        let npages = Int(s.pointee.npages)
        _ = setSpans(nil, base: base, npages: npages)
        pages.free(Int((base - arenaBase) >> SizeClassTable.pageShiftU), npages)
        s.pointee.state = MSpanState.dead.rawValue
        heapStats.spansFreed.add(1, .relaxed)
        spanAlloc.free(UnsafeMutableRawPointer(s))
    }

    /// Grow for small-object spans: the new memory is faulted in before its pages become
    /// allocatable, with the heap lock dropped and, when the caller is a mutator, inside
    /// a blocking region: the first write to fresh memory can take milliseconds in the
    /// kernel (a transparent huge page cleared), and a mutator stuck in a page fault
    /// cannot answer a stop-the-world. One thread grows at a time; others needing pages
    /// meanwhile wait for it (allocSpan), also as blocking regions. False when the heap
    /// cannot grow, including when the kernel cannot back the new memory: pre-faulting
    /// turns what would be an OOM kill at first touch into an out-of-memory error.
    /// - Precondition: the heap lock is held; it is dropped and retaken.
    private func growForSmallSpans(npages: Int) -> Bool {
        guard let g = growPrepare(npages: npages) else { return false }
        tc_store_release(growingWord, 1)
        heapLock.unlock()
        var result = SysMemory.PopulateResult.populated
        asBlocking { result = SysMemory.populate(UnsafeMutableRawPointer(bitPattern: g.addr)!, g.bytes) }
        heapLock.lock()
        if result == .outOfMemory {
            growAbandon(g)
            tc_store_release(growingWord, 0)
            return false
        }
        growCommit(g)
        tc_store_release(growingWord, 0)
        return true
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

    /// Return a span's pages to the page heap (Go's freeSpan). The memory may hold garbage.
    func freeSpan(_ s: UnsafeMutablePointer<MSpan>) {
        // A span is freed only when none of its objects lived, and the sweep that
        // found that removed every record of theirs (Runtime/Specials.swift).
        if internalChecks && s.specialsBits & UnsafeMutablePointer<MSpan>.specialsBit != 0 {
            runtimeFatal("freeSpan: span at \(Ref(address: s.pointee.startAddr)) still has lifecycle specials")
        }
        heapLock.lock()
        let bw = Int(s.pointee.bitmapWords) * 8
        meta.free(UnsafeMutableRawPointer(s.pointee.allocBits!), bw)
        meta.free(UnsafeMutableRawPointer(s.pointee.gcmarkBits!), bw)
        if let t = s.pointee.typeIDs { meta.free(UnsafeMutableRawPointer(t), Int(s.pointee.nelems) * 2) }
        heapStats.heapInuse.sub(s.pointee.npages << SizeClassTable.pageShiftU, .relaxed)
        releaseSpanLocked(s)
        heapLock.unlock()
    }

    /// Run `body` as a blocking region of the calling mutator, if the caller is a
    /// running mutator of this heap (no lock held). It must not touch the heap's objects
    /// or the mutator's cache.
    func asBlocking(_ body: () -> Void) {
        if let st = currentMutator(), st.pointee.status == .running {
            // unowned(unsafe): the closure must not retain the heap (growth is on
            // allocation paths, which take no reference counts).
            let heap = Unmanaged.passUnretained(self)
            withRegistersSpilled { sp in
                st.pointee.nativeSP = sp
                heap._withUnsafeGuaranteedRef { $0.enterBlocking(st) }
                body()
                heap._withUnsafeGuaranteedRef { $0.exitBlocking(st) }
            }
        } else {
            body()
        }
    }

    var growingWord: UnsafeMutablePointer<UInt> { flags.heapGrowing.address }

    /// A range the heap is growing into: prepared by growPrepare, handed to the page
    /// allocator by growCommit, or given back by growAbandon.
    struct Growth {
        let addr: UInt
        let bytes: Int
        let pages: Int
    }

    /// First half of growing the heap by at least `npages` pages, in whole 4 MiB chunks
    /// (Go's mheap.grow): maps the range Reserved → Prepared with one call (one commit
    /// charge, so the kernel judges the whole request, as it judges Go's sysMap), creates
    /// the metadata of arenas the range enters and advises the range Ready, but does not
    /// hand its pages to the page allocator yet (see growCommit). Nothing is touched.
    /// nil when the reservation is exhausted or the OS refuses (out of memory); nothing
    /// is changed then, except arena metadata already created, kept for later use.
    /// - Precondition: the heap lock is held.
    func growPrepare(npages: Int) -> Growth? {
        let chunk = PageAlloc.chunkPages
        let start = pages.grownPages
        let room = pages.totalPages - start   // whole chunks: the reservation is arena aligned
        // ask = npages rounded up to whole chunks, without overflow: npages <= room.
        guard npages > 0, npages <= room else { return nil }
        let ask = npages % chunk == 0 ? npages : (npages / chunk + 1) * chunk
        guard ask <= room else { return nil }
        let startAddr = arenaBase + UInt(start) << SizeClassTable.pageShiftU
        let bytes = ask * SizeClassTable.pageSize
        let p = UnsafeMutableRawPointer(bitPattern: startAddr)!
        // The one call that can refuse a huge request (ENOMEM): before anything else.
        guard case .success = SysMemory.map(p, bytes) else { return nil }
        // Metadata for every arena the new range touches.
        let a0 = Int((startAddr - arenaBase) >> HeapArena.logBytes)
        let a1 = Int((startAddr + UInt(bytes) - 1 - arenaBase) >> HeapArena.logBytes)
        for ai in a0...a1 where arenas[ai] == nil {
            guard let meta = HeapArena() else {
                // Back to Reserved, so the commit charge does not outlive the failure.
                SysMemory.fault(p, bytes)
                return nil
            }
            let h = UnsafeMutablePointer<HeapArena>.allocate(capacity: 1)
            h.initialize(to: meta)
            tc_store_release(UnsafeMutableRawPointer(arenas + ai), UInt(bitPattern: h))   // see setSpans
            mappedArenas += 1
        }
        SysMemory.used(p, bytes)
        return Growth(addr: startAddr, bytes: bytes, pages: ask)
    }

    /// Second half of growing: the prepared range's pages become free pages of the heap.
    /// - Precondition: the heap lock is held.
    func growCommit(_ g: Growth) {
        pages.grow(g.pages)
        heapStats.heapSys.add(UInt(g.bytes), .relaxed)
        heapStats.heapGrows.add(1, .relaxed)
        heapStats.heapGrowBytes.add(UInt(g.bytes), .relaxed)
        notePathLevel(.os)
        if pacer.memoryLimit != Int.max {
            // Growing past the memory limit: give back free pages first (Go scavenges
            // synchronously on heap growth when over the limit).
            scavengeLocked(toTarget: UInt(pacer.memoryLimit) / 100 * 95)
        }
    }

    /// Undo growPrepare: the range goes back to Reserved (its pages and commit charge
    /// with it). If the OS refuses that, the pages are at least given back; the range
    /// stays mapped and a later growth maps it again, which changes nothing.
    /// - Precondition: the heap lock is held.
    func growAbandon(_ g: Growth) {
        let p = UnsafeMutableRawPointer(bitPattern: g.addr)!
        if !SysMemory.fault(p, g.bytes) { _ = SysMemory.unused(p, g.bytes) }
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
        heapLock.withLock {
            pages.checkInvariants()
            var inUsePages = 0, stackPages = 0
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
                } else {
                    runtimeCheck(!pages.isUsed(p), "heap: page \(p) in use but has no span")
                }
                p += 1
            }
            runtimeCheck(UInt(inUsePages) << SizeClassTable.pageShiftU == heapStats.heapInuse.load(.relaxed), "heap: HeapInuse disagrees with the span table")
            runtimeCheck(UInt(stackPages) << SizeClassTable.pageShiftU == heapStats.stackInuse.load(.relaxed), "heap: StackInuse disagrees with the span table")
            runtimeCheck(UInt(pages.grownPages) << SizeClassTable.pageShiftU == heapStats.heapSys.load(.relaxed), "heap: HeapSys disagrees with grown pages")
            runtimeCheck(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU == heapStats.heapReleased.load(.relaxed), "heap: HeapReleased disagrees with the pages returned to the OS")
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
            // Counted only when the OS took the pages: a refused release leaves them
            // resident, free and not released.
            guard SysMemory.unused(UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(page) << SizeClassTable.pageShiftU)!, n * SizeClassTable.pageSize) else { return false }
            heapStats.bytesReturnedToOS.add(UInt(n) << SizeClassTable.pageShiftU, .relaxed)
            return true
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
