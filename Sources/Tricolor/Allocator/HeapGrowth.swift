import CTricolor
import Glibc

// Heap growth (Go's mheap.grow and sysUsed, with the first touch of fresh memory moved
// off the allocating thread). The heap grows at its frontier in whole 4 MiB chunks:
// `growPrepare` maps the range and creates arena metadata, `growCommit` hands its pages
// to the page allocator. Nothing is touched there.
//
// Fresh memory costs a page fault at its first write: about 1.5 µs per 4 KiB page on this
// kind of VM (380 µs per 2 MiB), several times that when the guest touches memory the
// host has not backed yet, and with transparent huge pages (`Configuration.
// transparentHugePages`, off by default) milliseconds whenever the kernel compacts memory
// to find a huge page. Go takes those faults on the allocating goroutine, wherever it
// first writes. We fault small-object memory in ahead of use, with MADV_POPULATE_WRITE,
// in pieces of 2 MiB:
//
// - A chunk grown for small-object spans enters the page allocator with all its pages
//   *reserved* (in use, no span): the pending range. Each piece is claimed by one
//   thread, faulted in with the heap lock dropped, then freed into the page allocator.
//   Several threads can fault different pieces at once; nobody waits for a whole chunk.
// - The background grower (`growerLoop`, thread "tricolor-grow"; off by default, see
//   `Configuration.backgroundHeapGrowth`: on two CPUs it cost the latency tail more
//   than it saved) keeps a reserve of
//   free, resident pages ahead of allocation: when an allocation leaves fewer than
//   `growReserveLowPages` free pages that were not returned to the OS, it is woken and
//   faults in pieces until twice that many are free, taking free pages the scavenger
//   released before it grows the heap. In the common case no mutator ever faults fresh
//   memory in. (The scavenger leaves the same reserve alone, so the two never undo
//   each other's work: Allocator/Scavenger.swift.)
// - A mutator that finds no free page (no grower, or it outran the grower) claims a
//   piece of at least 8 KiB itself and faults it in inside a blocking region, so that a
//   stop-the-world never waits for its page fault; it waits for one piece, never for a
//   chunk.
// - Large objects and stacks are never faulted in: their pages come from the free
//   pages, else from a chunk grown for them alone and handed out untouched (fresh OS
//   memory is zero, and a 100 GiB array may never be touched at all).
//
// Where a Go thread model difference forces a different design: Go can afford to
// fault on the allocating goroutine because its stop-the-world preempts it by signal
// at the end of the fault; our mutators stop only at safepoints, so a mutator inside a
// fault would hold up every pause. Faulting on another thread, or in a blocking
// region, keeps both the pauses and the allocation latency short.
//
// Invariants (heap lock; checkHeapInvariants):
// - pages in use with no span are exactly the reserved pages of growth in progress
//   (`growth.reservedPages`): the pending range [pendingNext, pendingEnd) plus pieces
//   claimed and being faulted in;
// - the pending range lies inside the grown part of the heap;
// - one grower thread per heap, started with the collector's threads and stopped with
//   them (`stopGrower`); `backgroundHeapGrowth: false` or `markWorkers: 0` runs none,
//   and growth is then done on the allocating thread, piece by piece.

/// Growth in progress and the grower's requests. Every field: heap lock.
struct GrowthState {
    /// Pages of a chunk grown for small-object spans and not yet faulted in: reserved in
    /// the page allocator, claimed one piece at a time from `pendingNext`.
    var pendingNext = 0
    var pendingEnd = 0
    /// Pages in use with no span: the pending range plus pieces being faulted in.
    var reservedPages = 0
    /// Set by an allocation that left the reserve low; cleared by the grower.
    var requested = false
    /// Set when the heap shuts its threads down.
    var stop = false
    /// Bumped by `freeOSMemory`: a refill in progress stops, so that the grower does not
    /// fault back in what the program just asked to give back. The next allocation that
    /// finds the reserve low asks again.
    var cancelEpoch = 0
    /// Whether a grower thread runs.
    var running = false
    /// Pieces faulted in by the grower and by mutators (for stats and the benchmark).
    var piecesByGrower = 0
    var piecesByMutators = 0
    /// The longest a mutator spent faulting in a piece itself (ns).
    var maxMutatorFaultNs: UInt64 = 0

    var pendingPages: Int { pendingEnd - pendingNext }
}

extension Heap {
    /// Pages per piece the grower faults in at once: one transparent huge page.
    static let growPiecePages = (2 << 20) / SizeClassTable.pageSize
    /// Pages a mutator faults in for itself (at least; no grower, or it outran the
    /// grower): one 8 KiB page, what the span it is allocating needs, as Go's allocating
    /// goroutine faults in only what it touches. 128 KiB made the operation that faulted
    /// wait for 32 OS page faults at once, milliseconds when the machine is busy (growth
    /// benchmark, 5 alternated rounds on a loaded machine: grow phase p99.99 median 580 µs
    /// at 128 KiB, 199 µs at 16 KiB; steady 154 and 57 µs); 8 KiB against 16 KiB, quiet:
    /// p99 4.4–5.5 µs against 6.1–8.1, p99.99 the same (median 85 and 91 µs).
    static let mutatorFaultPages = (8 << 10) / SizeClassTable.pageSize

    /// Below this many free resident pages the grower is woken; it grows until twice as
    /// many are free: 4 MiB, or 1/32 of the heap in use, whichever is more (~3–6% of the
    /// heap kept ready, within the 10% Go's scavenger retains above the heap goal
    /// anyway). Scaled to the heap in use, not to HeapSys, so that after a spike the
    /// scavenger can return all but a small reserve.
    var growReserveLowPages: Int { max(PageAlloc.chunkPages, Int(heapStats.heapInuse.load(.relaxed) >> SizeClassTable.pageShiftU) / 32) }

    /// Free pages not returned to the OS: what an allocation takes without a fault.
    var freeResidentPages: Int { pages.freePages - pages.scavengedPages }

    // MARK: taking pages

    /// Take `npages` free pages, growing the heap if needed: the first page's index and
    /// how many of the pages were returned to the OS (and so read as zero). nil when the
    /// heap cannot grow. `prefault`: the pages are for small-object spans, so growth is
    /// faulted in first (see the file comment); otherwise new pages are handed out
    /// untouched.
    /// - Precondition: the heap lock is held; it may be dropped and retaken.
    func allocPages(_ npages: Int, prefault: Bool) -> (Int, Int)? {
        while true {
            if let got = pages.allocReportingScavenged(npages) {
                if prefault { noteReserveTaken() }
                return got
            }
            if !prefault {
                // A large object or a stack: two quick system calls under the lock.
                guard let g = growPrepare(npages: npages, hugePages: false) else { return nil }
                growCommit(g)
                continue
            }
            if growth.pendingPages == 0 && !growPending(npages: max(npages, Heap.growPiecePages)) { return nil }
            // Fault in what we need ourselves, then look again.
            if !faultInPiece(minPages: npages, byGrower: false) { return nil }
        }
    }

    /// Grow the heap by whole chunks covering `npages` and make them the pending range:
    /// in the page allocator, reserved, to be faulted in piece by piece. False when the
    /// heap cannot grow. Heap lock held.
    private func growPending(npages: Int) -> Bool {
        guard let g = growPrepare(npages: npages) else { return false }
        growCommit(g, pending: true)
        return true
    }

    /// An allocation took small-object pages: wake the grower if the reserve is low.
    /// Heap lock held.
    @inline(__always)
    private func noteReserveTaken() {
        if growth.running && !growth.requested && freeResidentPages < growReserveLowPages {
            growth.requested = true
            growthCond.broadcast()
        }
    }

    /// Claim the next piece of the pending range, fault it in with the heap lock dropped
    /// (as a blocking region when the caller is a mutator) and free its pages into the
    /// page allocator. The grower claims whole 2 MiB pieces; a mutator claims only what
    /// it needs, so that an allocation that outran the grower
    /// waits for as few page faults as possible. False when the kernel could
    /// not back it: the piece is then given back to the OS and freed as released pages
    /// (they read as zero, and the next use faults them in again), and the caller's
    /// allocation fails as out of memory.
    /// - Precondition: the heap lock is held and `growth.pendingPages > 0`.
    func faultInPiece(minPages: Int, byGrower: Bool) -> Bool {
        let unit = byGrower ? Heap.growPiecePages : Heap.mutatorFaultPages
        let want = (max(minPages, unit) + unit - 1) / unit * unit
        let first = growth.pendingNext
        let n = min(want, growth.pendingPages)
        growth.pendingNext += n
        return faultInRun(first, n, byGrower: byGrower)
    }

    /// Fault in reserved pages [first, first + n) with the heap lock dropped, then free
    /// them (see `faultInPiece`).
    /// - Precondition: the heap lock is held; the pages are counted in `growth.reservedPages`.
    private func faultInRun(_ first: Int, _ n: Int, byGrower: Bool) -> Bool {
        heapLock.unlock()
        let p = UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(first) << SizeClassTable.pageShiftU)!
        var result = SysMemory.PopulateResult.populated
        var faultNs: UInt64 = 0
        if byGrower {
            result = SysMemory.populate(p, n * SizeClassTable.pageSize)
        } else {
            let t0 = tc_nanotime()
            asBlocking { result = SysMemory.populate(p, n * SizeClassTable.pageSize) }
            faultNs = tc_nanotime() &- t0
        }
        heapLock.lock()
        growth.maxMutatorFaultNs = max(growth.maxMutatorFaultNs, faultNs)
        growth.reservedPages -= n
        if byGrower { growth.piecesByGrower += 1 } else { growth.piecesByMutators += 1 }
        if result == .outOfMemory {
            // Whatever was faulted in goes back; if the OS refuses even that, the pages
            // stay resident and are freed as ordinary free pages.
            if SysMemory.unused(p, n * SizeClassTable.pageSize) {
                pages.freeReleased(first, n)
                publishReleased()
            } else {
                pages.free(first, n)
            }
            return false
        }
        pages.free(first, n)
        return true
    }

    // MARK: the background grower

    /// The grower thread (started with the collector's threads when
    /// `Configuration.backgroundHeapGrowth` is on) waits for a low reserve, then grows
    /// and faults in pieces until the reserve is refilled. This is its wait (unpinned,
    /// no closures: see `Heap.collectorUnit`). Returns the request's cancel epoch, read
    /// with the request under one hold of the heap lock (a `freeOSMemory` between the
    /// two would otherwise see its cancel missed, and the grower fault back in what it
    /// had just released), or nil when the grower must stop.
    func waitForGrowthRequest() -> Int? {
        heapLock.lock()
        // No `&&` with the heap on the right (see `scanGlobalRoots`): unpinned.
        while !growth.requested { if growth.stop { break }; growthCond.wait(heapLock) }
        let stop = growth.stop
        if stop { growth.running = false } else { growth.requested = false }
        let epoch = growth.cancelEpoch
        heapLock.unlock()
        return stop ? nil : epoch
    }

    /// The grower's unit of work: fault memory in until the reserve is full again, the
    /// request is cancelled (`epoch` no longer current), or the grower must stop.
    func growerUnit(epoch: Int) {
        heapLock.lock()
        while !growth.stop && growth.cancelEpoch == epoch && freeResidentPages < 2 * growReserveLowPages {
            // Under a memory limit, nothing ahead of need once mapped memory nears
            // the limit's target (Go grows only on demand, and the scavenger would
            // give the reserve straight back).
            let limit = memoryLimitNow
            if limit != Int.max {
                let mapped = heapStats.heapSys.load(.relaxed) - heapStats.heapReleased.load(.relaxed)
                if mapped + UInt(PageAlloc.chunkPages) << SizeClassTable.pageShiftU > ScavengeGoal.memoryLimitTarget(limit) { break }
            }
            // Free pages the scavenger returned to the OS come first: fault them in
            // again rather than grow the heap past them.
            if let run = pages.takeReleasedRun(maxPages: Heap.growPiecePages) {
                publishReleased()
                growth.reservedPages += run.count
                if !faultInRun(run.first, run.count, byGrower: true) { break }
                continue
            }
            if growth.pendingPages == 0 && !growPending(npages: PageAlloc.chunkPages) { break }
            if !faultInPiece(minPages: 1, byGrower: true) { break }
        }
        heapLock.unlock()
    }

    /// The memory limit, read under the stats lock: the grower, the scavenger and the
    /// sweeper are not stopped with the world, so they must not read `pacer` while a
    /// stopped world's `setMemoryLimit` writes it (under the stats lock, which ranks
    /// above the heap lock, so it may be taken with the heap lock held).
    /// No closure: the background sweeper reads it (see `Heap.scanGlobalRoots`).
    var memoryLimitNow: Int {
        statsLock.lock()
        let limit = pacer.memoryLimit
        statsLock.unlock()
        return limit
    }

    /// Ask the grower to stop (its loop ends at its next check). Heap lock not held.
    func stopGrower() {
        heapLock.withLock {
            growth.stop = true
            growthCond.broadcast()
        }
    }

    // MARK: growing the reservation's frontier

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
    ///
    /// `hugePages`: advise transparent huge pages (only for memory the grower or an
    /// allocating thread faults in ahead of use). Memory handed out untouched (large
    /// objects, stacks) gets no such advice: its first write would otherwise fault a whole
    /// huge page in, 240 µs at best and milliseconds when the kernel compacts memory to
    /// find one (THP defrag "madvise"), on a running mutator that a stop-the-world then
    /// waits for; 4 KiB faults take microseconds each.
    /// - Precondition: the heap lock is held.
    func growPrepare(npages: Int, hugePages: Bool = true) -> Growth? {
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
                growAbandon(Growth(addr: startAddr, bytes: bytes, pages: ask))
                return nil
            }
            let h = UnsafeMutablePointer<HeapArena>.allocate(capacity: 1)
            h.initialize(to: meta)
            tc_store_release(UnsafeMutableRawPointer(arenaSpans + ai), UInt(bitPattern: meta.spans))
            tc_store_release(UnsafeMutableRawPointer(arenas + ai), UInt(bitPattern: h))   // see setSpans
            mappedArenas += 1
        }
        if hugePages && transparentHugePages { SysMemory.used(p, bytes) }
        return Growth(addr: startAddr, bytes: bytes, pages: ask)
    }

    /// Second half of growing: the prepared range's pages become free pages of the heap,
    /// or with `pending`, the pending range (reserved, to be faulted in piece by piece).
    /// The reservation comes before the eager scavenging below: found by the soak test,
    /// scavenging first released the new pages and left them marked released while
    /// reserved (`HeapGrowthUnderLimitTests`).
    /// - Precondition: the heap lock is held.
    func growCommit(_ g: Growth, pending: Bool = false) {
        pages.grow(g.pages)
        if pending {
            let first = Int((g.addr - arenaBase) >> SizeClassTable.pageShiftU)
            pages.reserve(first, g.pages)
            growth.reservedPages += g.pages
            growth.pendingNext = first
            growth.pendingEnd = first + g.pages
        }
        heapStats.heapSys.add(UInt(g.bytes), .relaxed)
        heapStats.heapGrows.add(1, .relaxed)
        heapStats.heapGrowBytes.add(UInt(g.bytes), .relaxed)
        notePathLevel(.os)
        let limit = memoryLimitNow
        if limit != Int.max {
            // Growing past the memory limit: give back free pages first (Go scavenges
            // synchronously on heap growth when over the limit).
            scavengeLocked(toTarget: ScavengeGoal.memoryLimitTarget(limit))
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
}
