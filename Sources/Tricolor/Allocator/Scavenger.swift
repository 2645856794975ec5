import CTricolor
import Glibc

// The scavenger: free pages go back to the OS (Go's mgcscavenge.go, Go 1.19).
//
// - Background scavenging (`scavengerLoop`, thread "tricolor-scav", Go's bgscavenge):
//   woken once per cycle when sweeping ends (Go wakes it from the last sweeper), it
//   releases free pages, highest addresses first, until the goal of Policy/
//   ScavengeGoal.swift is met: retained heap memory (HeapSys − HeapReleased) at most
//   the heap goal + 10%, and under a memory limit mapped memory at most 95% of it. It
//   paces itself to 1% of the CPU time of GOMAXPROCS CPUs (Go's scavengePercent): it
//   works in batches of ~50 µs (Go's minScavWorkTime is 1 ms; see minScavengeWorkNs)
//   and sleeps 100/GOMAXPROCS − 1 times as long as it worked (49 times on two CPUs).
//   It runs under SCHED_BATCH (`lowerBackgroundThreadPriority`), so that waking up it
//   does not take a CPU from a running mutator; a stop-the-world waits for a mutator
//   kept off its CPU.
//   Go steers the sleep with a PI controller on measured CPU; a fixed duty cycle is the
//   same target without the controller, and needs no goroutine-scheduler feedback.
// - Huge pages first: a background pass releases whole 2 MiB blocks that are entirely
//   free before it splits any huge page that still backs live spans.
// - Eager scavenging under a memory limit (`scavengeLocked(toTarget:)`) when the
//   heap grows past it and after sweeping, as before (Go's allocation-time scavenge).
// - `freeOSMemory()` (Go's debug.FreeOSMemory): a forced collection, the sweep
//   finished, and every free page released.
// - `GODEBUG=scavtrace=1` prints Go's line once per cycle when sweeping ends, and after
//   `freeOSMemory` with " (forced)":
//       scav <released since the last line> KiB work, <HeapReleased> KiB total, <util>% util
//   where util = HeapInuse × 100 / (HeapSys − HeapReleased).
//
// A release happens with the heap lock dropped: the run is reserved first (in use, no
// span, counted in `growth.reservedPages`), so nobody allocates it meanwhile. Only what
// the OS accepted is marked released and counted in HeapReleased; a refused madvise
// leaves the pages free and resident, counted as such.
//
// The scavenger leaves the grower's reserve alone for the GOGC goal (2 × the low mark,
// Allocator/HeapGrowth.swift): the grower refills below 1×, the scavenger stops at 2×,
// so neither undoes the other. The memory limit's goal overrides the reserve.
//
// Invariants (heap lock): `scav.releasedSinceTrace` counts every page the OS accepted
// since the last scavtrace line; `scav.goal` is the goal of the last pacer commit.

/// The scavenger's state. Every field: heap lock.
struct ScavengerState {
    /// The goal computed at the last pacer commit (nil before the first cycle).
    var goal: ScavengeGoal? = nil
    /// Bytes released since the last scavtrace line (background and eager).
    var releasedSinceTrace: UInt = 0
    /// The sweep generation whose end last woke the scavenger (once per cycle).
    var wokenAtSweepgen: UInt32 = 0
    /// Set when sweeping ends (and by freeOSMemory's caller); cleared by the scavenger.
    var requested = false
    var stop = false
    var running = false
    /// Work done by the background scavenger: nanoseconds spent releasing, bytes released.
    var backgroundNs: UInt64 = 0
    var backgroundBytes: UInt = 0
}

extension Heap {
    /// Bytes the background scavenger releases per step (Go's scavengeQuantum).
    static let scavengeQuantumPages = (64 << 10) / SizeClassTable.pageSize
    /// A batch of background work lasts about this long before the scavenger sleeps.
    /// Go's minScavWorkTime is 1 ms, but Go's scavenger is a goroutine on a P; ours is
    /// an extra thread, and a 1 ms batch of madvise took a CPU from a mutator for 1 ms,
    /// which a stop-the-world then waited for (two-mutator binary-trees 21: pause p99
    /// ~200 µs → 1.1–1.8 ms). A batch is now one or a few 64 KiB quanta.
    static let minScavengeWorkNs: UInt64 = 50_000
    /// Sleep per unit of work: 1% of all GOMAXPROCS CPUs (Go's scavengePercent, which
    /// Go measures against the whole machine: 2% of one CPU on two), so
    /// worked / (worked + slept) = 0.01 × GOMAXPROCS.
    var scavengeSleepRatio: UInt64 { UInt64(max(0, 100 / max(1, gomaxprocs) - 1)) }

    /// Runtime metadata mapped from the OS (spans, bitmaps, page-allocator summaries,
    /// arena page tables): what mapped memory counts beyond HeapSys. Heap lock held.
    var metadataBytesLocked: UInt {
        UInt(spanAlloc.sys + meta.sys + pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8)
    }

    /// Publish HeapReleased from the page allocator's released pages (release store:
    /// MemStats readers load it without the heap lock). Heap lock held.
    func publishReleased() {
        heapStats.heapReleased.store(UInt(pages.scavengedPages) << SizeClassTable.pageShiftU, .releasing)
    }

    // MARK: goal

    /// Recompute the scavenger's goal after the pacer committed a new heap goal (world
    /// stopped, from `commitPacer`).
    /// - Precondition: no lock ranked at or above mheap is held.
    func updateScavengeGoal() {
        let inputs = pacer.memory   // gathered by commitPacer just before
        heapLock.withLock {
            let heapSys = heapStats.heapSys.load(.relaxed)
            let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
            let i = ScavengeGoal.Inputs(memoryLimit: pacer.memoryLimit, mappedReady: inputs.mappedReady,
                                        heapGoal: gcDisabled ? UInt.max : pacer.heapGoal, lastHeapGoal: pacer.lastHeapGoal,
                                        lastHeapInUse: heapStats.heapInuse.load(.relaxed),
                                        heapRetained: heapSys - min(heapSys, released))
            let g = ScavengeGoal(i)
            if checked { g.checkInvariants(i) }
            scav.goal = g
        }
    }

    /// Pages the background scavenger should still release now (0: the goal is met).
    /// Heap lock held.
    func scavengeWorkPages() -> Int {
        guard let g = scav.goal else { return 0 }
        let retained = heapRetainedLocked()
        var want = 0
        if g.gcPercentGoal != UInt.max && retained > g.gcPercentGoal {
            want = Int((retained - g.gcPercentGoal) >> SizeClassTable.pageShiftU)
            // Leave the grower's reserve resident.
            want = min(want, max(0, freeResidentPages - 2 * growReserveLowPages))
        }
        if g.memoryLimitGoal != UInt.max {
            // The memory limit covers everything mapped, stacks included.
            let heapSys = heapStats.heapSys.load(.relaxed)
            let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
            let mapped = heapSys + metadataBytesLocked - min(heapSys, released)
            if mapped > g.memoryLimitGoal {
                want = max(want, Int((mapped - g.memoryLimitGoal + SizeClassTable.pageSizeU - 1) >> SizeClassTable.pageShiftU))
            }
        }
        return want
    }

    // MARK: the background scavenger

    /// Sweeping has ended for this cycle: print the scavtrace line and wake the
    /// scavenger, once per cycle (Go does both from the last sweeper). Also applies the
    /// memory limit at once (eager scavenging).
    /// - Precondition: no lock ranked at or above mheap is held.
    func sweepDoneWakeScavenger() {
        scavengeForMemoryLimit()
        // lock()/unlock(), not withLock: the background sweeper calls this (see
        // `scanGlobalRoots`).
        heapLock.lock()
        let sg = sweepgen
        if scav.wokenAtSweepgen != sg {
            scav.wokenAtSweepgen = sg
            if scavtrace { printScavTraceLocked(forced: false) }
            scav.requested = true
            scavCond.broadcast()
        }
        heapLock.unlock()
    }

    // The background scavenger's thread (its loop: `startBackgroundThreadsIfNeeded`):
    // wait for a request, then batches of releasing with sleeps between them, until
    // the goal is met (or a new cycle moves it).

    /// The background scavenger's wait for a request (unpinned, no closures: see
    /// `Heap.collectorUnit`). False when it must stop.
    func waitForScavengeRequest() -> Bool {
        heapLock.lock()
        // No `&&` or `||` with the heap on the right (see `scanGlobalRoots`).
        while !scav.requested { if scav.stop { break }; scavCond.wait(heapLock) }
        let stop = scav.stop
        if stop { scav.running = false } else { scav.requested = false }
        heapLock.unlock()
        return !stop
    }

    /// One batch of ~50 µs of releasing (`Heap.minScavengeWorkNs`). Returns how long to
    /// sleep before the next batch (`scavengeSleepRatio` times the batch: about 1% of a
    /// CPU, as Go paces it), or nil when the goal is met, nothing is left to release, or
    /// the scavenger must stop.
    func scavengerUnit() -> UInt64? {
        heapLock.lock()
        defer { heapLock.unlock() }
        var worked: UInt64 = 0
        while worked < Heap.minScavengeWorkNs {
            if scav.stop { return nil }
            let want = scavengeWorkPages()
            if want == 0 { return nil }
            let t0 = tc_nanotime()
            let got = releaseOneRun(maxPages: min(want, Heap.scavengeQuantumPages))
            let dt = tc_nanotime() &- t0
            worked &+= dt
            scav.backgroundNs &+= dt
            if got == 0 { return nil }   // nothing left to release, or the OS refused
        }
        if scav.stop { return nil }
        return max(worked, Heap.minScavengeWorkNs) * scavengeSleepRatio
    }

    /// The scavenger's sleep between batches (unpinned, no closures). False when it
    /// must stop.
    func scavengerSleep(_ ns: UInt64) -> Bool {
        heapLock.lock()
        if !scav.stop { _ = tc_cond_timedwait_ns(scavCond.raw, heapLock.raw, ns) }
        let stop = scav.stop
        heapLock.unlock()
        return !stop
    }

    /// SCHED_BATCH for the calling grower or scavenger thread: its fair share of the
    /// CPU, but waking up it does not preempt a running mutator. At plain SCHED_OTHER a
    /// waking scavenger or grower took a mutator's CPU for the length of an madvise and
    /// stops waited for that mutator (two-mutator binary-trees 21: pause p99 1.1–1.8
    /// ms, against ~200 µs). Tried and rejected: SCHED_IDLE (such a thread starves
    /// whenever every CPU is busy, a heap being dropped waits for its threads to exit,
    /// and an unprivileged thread cannot leave SCHED_IDLE), and nice 19 (the same
    /// starvation, milder: dropping 2 000 heaps beside two busy loops took over 120 s).
    /// A refusal leaves the thread at SCHED_OTHER: slower pauses, nothing worse.
    func lowerBackgroundThreadPriority() {
        _ = tc_set_thread_batch()
    }

    /// Release one run of free pages (whole free huge pages first) with the heap lock
    /// dropped during the madvise. Returns the pages the OS accepted (0: none free, or
    /// refused). Heap lock held.
    private func releaseOneRun(maxPages: Int) -> Int {
        var run: (Int, Int)? = nil
        _ = pages.scavenge(maxPages, wholeHugePages: true) { p, n in run = (p, n); return false }
        if run == nil { _ = pages.scavenge(maxPages) { p, n in run = (p, n); return false } }
        guard let (first, n) = run else { return 0 }
        pages.reserve(first, n)
        growth.reservedPages += n
        heapLock.unlock()
        let ok = SysMemory.unused(UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(first) << SizeClassTable.pageShiftU)!, n * SizeClassTable.pageSize)
        heapLock.lock()
        growth.reservedPages -= n
        if ok {
            pages.freeReleased(first, n)
            let bytes = UInt(n) << SizeClassTable.pageShiftU
            scav.releasedSinceTrace += bytes
            scav.backgroundBytes += bytes
            heapStats.bytesReturnedToOS.add(bytes, .relaxed)
            publishReleased()
            return n
        }
        pages.free(first, n)
        return 0
    }

    /// Ask the scavenger to stop (its loop ends at its next check). Heap lock not held.
    func stopScavenger() {
        heapLock.withLock {
            scav.stop = true
            scavCond.broadcast()
        }
    }

    // MARK: eager scavenging

    /// Return free pages to the OS until mapped memory (Sys − HeapReleased, metadata
    /// included) is at most `target` bytes, with the heap lock held throughout (Go's
    /// allocation-time scavenging under a memory limit, and freeOSMemory). Returns the
    /// bytes released. Heap lock held.
    @discardableResult
    func scavengeLocked(toTarget target: UInt) -> UInt {
        let metadata = metadataBytesLocked
        let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
        let mapped = heapStats.heapSys.load(.relaxed) + metadata - released
        if mapped <= target { return 0 }
        let want = Int((mapped - target + SizeClassTable.pageSizeU - 1) >> SizeClassTable.pageShiftU)
        let done = pages.scavenge(want) { page, n in
            // Counted only when the OS took the pages: a refused release leaves them
            // resident, free and not released.
            SysMemory.unused(UnsafeMutableRawPointer(bitPattern: arenaBase + UInt(page) << SizeClassTable.pageShiftU)!, n * SizeClassTable.pageSize)
        }
        let bytes = UInt(done) << SizeClassTable.pageShiftU
        heapStats.bytesReturnedToOS.add(bytes, .relaxed)
        scav.releasedSinceTrace += bytes
        publishReleased()
        return bytes
    }

    /// Under a memory limit, keep mapped memory at or below 95% of it when possible
    /// (Go's reduceExtraPercent).
    func scavengeForMemoryLimit() {
        let limit = memoryLimitNow
        guard limit != Int.max else { return }
        heapLock.lock()   // no closure: the background sweeper calls this (see above)
        _ = scavengeLocked(toTarget: ScavengeGoal.memoryLimitTarget(limit))
        heapLock.unlock()
    }

    // MARK: FreeOSMemory

    /// Force a collection, finish sweeping, and return every free page to the OS (Go's
    /// `debug.FreeOSMemory`). Returns the bytes released by this call. With
    /// `GODEBUG=scavtrace=1` it prints Go's scavtrace line marked "(forced)".
    ///
    /// Call it from a thread that is not attached as a mutator, or from a mutator
    /// between uses of its `Ref`s (it is a full safepoint, as `collect()` is).
    @discardableResult
    public func freeOSMemory() -> Int {
        collect()
        return Int(heapLock.withLock {
            growth.requested = false
            growth.cancelEpoch &+= 1
            let bytes = scavengeLocked(toTarget: 0)
            if scavtrace { printScavTraceLocked(forced: true) }
            return bytes
        })
    }

    /// Go's heapRetained: heap memory backed by the OS, in use or free, stacks excluded
    /// (heapSys counts stack spans too; Go keeps them out of the heap's figures).
    /// Heap lock held.
    func heapRetainedLocked() -> UInt {
        let heapSys = heapStats.heapSys.load(.relaxed)
        let stacks = heapStats.stackInuse.load(.relaxed)
        let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
        return heapSys - min(heapSys, stacks.saturatingAdd(released))
    }

    // MARK: scavtrace

    /// Go's scavtrace line (printScavTrace). Heap lock held.
    func printScavTraceLocked(forced: Bool) {
        let released = UInt(pages.scavengedPages) << SizeClassTable.pageShiftU
        let retained = max(1, heapRetainedLocked())
        // In-use as MemStats counts it: spans kept empty in their class are idle.
        let util = heapStats.heapInuseReported * 100 / retained
        let line = "scav \(scav.releasedSinceTrace >> 10) KiB work, \(released >> 10) KiB total, \(util)% util\(forced ? " (forced)" : "")\n"
        scav.releasedSinceTrace = 0
        writeStderr(line)
    }
}
