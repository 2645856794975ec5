import CTricolor
import Glibc

// Pacing mechanism: gathers the inputs of the policy types (Policy/) under the right
// locks and publishes their answers to the heap's atomic words, which allocation paths
// read without locks. The decisions themselves are in Policy/: Pacer, SweepPacer,
// GCCPULimiter, MarkWorkerPlan.
//
// Who may touch `Heap.pacer`: the thread that stopped the world, or a mutator holding
// the stats lock while no cycle runs (`refreshMemoryLimitTrigger`); mutators read it
// during a cycle (`reviseAssistRatio`), when only a stopped world changes it.
// `Heap.cpuLimiter` is protected by `limiterLock`.
//
// Lock order here (see Runtime/Lock.swift): inputs that need the heap lock are gathered
// before the stats lock is taken (mheap ranks below stats).

extension Heap {
    // MARK: goal and trigger (Go's gcControllerCommit)

    /// Recompute goal and trigger after a cycle or a change of settings and publish them,
    /// with the sweep pacing that follows from the trigger. The world is stopped.
    func commitPacer(isSweepDone: Bool) {
        pacer.memory = gatherPacerMemoryInputs()
        pacer.commit(isSweepDone: isSweepDone, heapLive: gcController.heapLive.load(.relaxed))
        let (trig, goal) = pacer.trigger()
        gcController.trigger.store(gcDisabled ? UInt.max : trig, .releasing)
        gcController.heapGoal.store(goal, .releasing)
        paceSweeper(trigger: trig, isSweepDone: isSweepDone)
        if checked { pacer.checkInvariants() }
        updateScavengeGoal()
    }

    /// Under a memory limit the goal depends on how much memory is mapped, which grows
    /// between cycles: Go recomputes the trigger at every test; we do it whenever the
    /// heap has grown since the last computation.
    /// - Precondition: no runtime lock is held (this takes the heap lock, then the stats lock).
    func refreshMemoryLimitTrigger() {
        guard pacer.memoryLimit != Int.max, phase == .off else { return }
        let sys = heapStats.heapSys.load(.relaxed)
        if sys == gcController.limitTriggerHeapSys.load(.relaxed) { return }
        let inputs = gatherPacerMemoryInputs()
        statsLock.withLock {
            gcController.limitTriggerHeapSys.store(sys, .releasing)
            pacer.memory = inputs
            let (trig, goal) = pacer.trigger()
            gcController.trigger.store(trig, .releasing)
            gcController.heapGoal.store(goal, .releasing)
        }
    }

    /// The memory-limit goal's inputs: mapped memory not returned to the OS, free pages,
    /// live bytes. Takes the heap lock for the metadata sizes.
    /// - Precondition: neither the stats lock nor any lock ranked above mheap is held.
    func gatherPacerMemoryInputs() -> Pacer.MemoryInputs {
        let heapSys = heapStats.heapSys.load(.relaxed)
        let inuse = min(heapStats.heapInuse.load(.relaxed), heapSys)
        let metadata = heapLock.withLock { metadataBytesLocked }
        let mapped = heapSys.saturatingAdd(metadata)
        let released = min(heapStats.heapReleased.load(.relaxed), mapped)
        let idle = heapSys - inuse
        return Pacer.MemoryInputs(mappedReady: mapped - released,
                                  heapFree: idle - min(idle, released),
                                  heapAlloc: gcController.heapLive.load(.relaxed))
    }

    /// Recompute the assist ratio from the work and heap left in the cycle (Go's revise).
    func reviseAssistRatio() {
        // heapScan, not heapLive, bounds the scan work left: pointer-free objects cost the
        // marker nothing, and counting them made a heap of mostly pointer-free bytes
        // assist as if all of it were to be scanned (the growth benchmark's messages
        // carried debts of megabytes, and operations of milliseconds).
        let live = gcController.heapLive.load(.relaxed)
        let scan = min(gcController.heapScan.load(.relaxed), live)
        let r = pacer.revise(Pacer.MarkProgress(heapLive: live, heapScan: scan, scanWorkDone: marking.scanWork.load(.relaxed), maxStackScan: maxStackScan))
        gcController.assistWorkPerByte.store(r.workPerByte, .releasing)
    }

    /// Mark termination, world stopped: hand the pacer what this cycle measured.
    func endPacerCycle(marked: UInt) {
        let now = tc_nanotime()
        let scanWork = marking.scanWork.load(.relaxed)
        let stackWork = min(marking.stackScanBytes.load(.relaxed), scanWork)
        let globals = UInt(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes })
        let heapWork = scanWork - stackWork - min(globals, scanWork - stackWork)
        // Go's idle mark time: a worker that marks flat out while a CPU would otherwise
        // sit idle (GCWorkers.swift) works beyond the 25% background share, and the pacer
        // counts that surplus as idle marking, as Go counts its idle workers. Left out,
        // cons/mark came out about half of what it was with one mutator on two CPUs,
        // so the trigger came too late and mutators assisted for the rest.
        let duration = now > markStartTime ? now - markStartTime : 0
        let share = Tuning.goalUtilization * Double(max(1, gomaxprocs)) * Double(duration)
        let bg = Double(marking.bgMarkTimeNs.load(.relaxed))
        let idle = bg > share ? UInt64(bg - share) : 0
        cycle.idleNs = idle
        pacer.endCycle(Pacer.CycleResult(
            heapLive: gcController.heapLive.load(.relaxed), heapMarked: marked,
            heapScanWork: heapWork, stackScanWork: stackWork, globalsScan: globals,
            assistTimeNs: UInt64(marking.assistTimeNs.load(.relaxed)), idleMarkTimeNs: idle,
            markDurationNs: duration, procs: gomaxprocs))
    }

    // MARK: settings (Go's debug.SetGCPercent / SetMemoryLimit)

    /// Set GOGC; returns the previous value (Go's debug.SetGCPercent; nil = off). A
    /// negative value turns the collector off; values above 2³¹−1 act as 2³¹−1
    /// (effectively off) but are returned as given.
    @discardableResult
    public func setGCPercent(_ percent: Int?) -> Int? {
        updatePacer { $0.setGCPercent(percent) }.gcPercent
    }

    /// Set the soft memory limit in bytes (Go's debug.SetMemoryLimit); returns the
    /// previous limit. Int.max means no limit; a negative value only reads the limit.
    @discardableResult
    public func setMemoryLimit(_ bytes: Int) -> Int {
        if bytes < 0 { return statsLock.withLock { pacer.memoryLimit } }
        return updatePacer { $0.memoryLimit = bytes }.memoryLimit
    }

    /// Change pacer settings with the world stopped; returns the settings before. As in
    /// Go, a change during a cycle takes effect at once: the goal moves and the assist
    /// ratio is revised.
    private func updatePacer(_ change: (inout Pacer) -> Void) -> Pacer {
        withWorldStopped {
            let old = pacer
            statsLock.withLock { change(&pacer) }
            // A memory limit set while sweeping: keep no more empty spans (MarkTermination).
            if pacer.memoryLimit != Int.max { sweep.keepEmptyPages.store(0, .releasing) }
            if phase == .off {
                commitPacer(isSweepDone: false)
            } else {
                // Marking: the last sweep finished before the cycle started.
                commitPacer(isSweepDone: true)
                reviseAssistRatio()
            }
            return old
        }
    }

    // MARK: sweep pacing (Go's gcPaceSweeper / deductSweepCredit)

    /// Publish the sweep rate that finishes sweeping before heapLive reaches `trigger`.
    func paceSweeper(trigger: UInt, isSweepDone: Bool = false) {
        let p = SweepPacer.pace(SweepPacer.Inputs(
            trigger: trigger, heapLive: gcController.heapLive.load(.relaxed),
            pagesInUse: heapStats.heapInuse.load(.relaxed) >> SizeClassTable.pageShiftU,
            pagesSwept: sweep.pagesSwept.load(.relaxed), isSweepDone: isSweepDone))
        sweep.sweepHeapLiveBasis.store(p.heapLiveBasis, .releasing)
        sweep.pagesSweptBasis.store(p.pagesSweptBasis, .releasing)
        sweep.sweepPagesPerByte.store(p.pagesPerByte, .releasing)
        if checked { p.checkInvariants() }
    }

    /// Before taking a span of `spanBytes`, sweep enough pages to stay on schedule.
    func deductSweepCredit(_ spanBytes: UInt) {
        let perByte = sweep.sweepPagesPerByte.load(.relaxed)
        if perByte == 0 { return }
        let pacer = SweepPacer(pagesPerByte: perByte, heapLiveBasis: sweep.sweepHeapLiveBasis.load(.relaxed), pagesSweptBasis: sweep.pagesSweptBasis.load(.relaxed))
        let live = gcController.heapLive.load(.relaxed)
        while pacer.owesSweep(heapLive: live, spanBytes: spanBytes, pagesSwept: sweep.pagesSwept.load(.relaxed)) {
            if sched.attention.load(.relaxed) & Attention.stop != 0 { break }   // don't hold up a pause
            if !sweepOne() {
                sweep.sweepPagesPerByte.store(0, .releasing)
                break
            }
        }
    }

    // MARK: GC CPU limiter (Go's gcCPULimiter)

    /// Add mutator-side GC CPU time (assists) to the limiter's pool; the next update
    /// moves it into the bucket.
    func limiterAddGC(_ ns: UInt64) {
        limiter.gcNs.add(UInt(ns), .relaxed)
    }

    /// Whether the limiter is limiting: GC has used more than half of the CPU for long
    /// enough to fill its bucket. Assists are then skipped, and the heap may overshoot
    /// the memory limit instead of thrashing. Brings the bucket up to date when it is due
    /// (Go does that from sysmon; we do it where it is consulted).
    ///
    /// Only consulted under a memory limit (Go consults it always): it exists to stop
    /// the memory-limit death spiral, and with GOGC alone the pacer keeps GC near 25%;
    /// our CPU accounting has no idle-CPU term, so we do not let it override assists
    /// where Go's would almost never engage.
    func cpuLimiterLimiting() -> Bool {
        guard pacer.memoryLimit != Int.max else { return false }
        let now = tc_nanotime()
        let last = UInt64(limiter.windowStart.load(.relaxed))
        if now > last && now - last > Tuning.limiterUpdatePeriodNs && limiterLock.tryLock() {
            cpuLimiter.update(takeLimiterWindow(now: now))
            publishLimiter()
            limiterLock.unlock()
        }
        return limiter.enabled.load(.relaxed) != 0
    }

    /// A stop-the-world pause of `ns` just ended. A pause that started or ended a cycle
    /// is a limiter transition (all CPUs were GC's); a pause that found more marking to
    /// do counts as GC time on every CPU. Saturates with a huge GOMAXPROCS.
    func limiterPause(_ ns: UInt64) {
        let end = tc_nanotime()
        let start = end > ns ? end - ns : 0
        let running = phase != .off
        limiterLock.lock()
        if cpuLimiter.gcEnabled != running {
            cpuLimiter.startGCTransition(enableGC: running, takeLimiterWindow(now: start))
            cpuLimiter.finishGCTransition(now: end)
        } else {
            limiterAddGC(ns.saturatingMultiply(UInt64(gomaxprocs)))
        }
        publishLimiter()
        if checked { cpuLimiter.checkInvariants() }
        limiterLock.unlock()
    }

    /// The window since the last update, taking the pooled assist time out of its word
    /// (limiter lock held).
    private func takeLimiterWindow(now: UInt64) -> GCCPULimiter.Window {
        let pooled = limiter.gcNs.load(.relaxed)
        if pooled != 0 { limiter.gcNs.sub(pooled, .relaxed) }
        return GCCPULimiter.Window(now: now, assistTimeNs: UInt64(pooled))
    }

    /// The invariants of every policy value this heap holds (`Heap.checkInvariants`).
    func checkPolicyInvariants() {
        statsLock.withLock { pacer.checkInvariants() }
        limiterLock.withLock { cpuLimiter.checkInvariants() }
        markWorkerPlan.checkInvariants()
        SweepPacer(pagesPerByte: sweep.sweepPagesPerByte.load(.relaxed),
                   heapLiveBasis: sweep.sweepHeapLiveBasis.load(.relaxed), pagesSweptBasis: sweep.pagesSweptBasis.load(.relaxed)).checkInvariants()
    }

    /// Mirror what lock-free readers need (limiter lock held).
    private func publishLimiter() {
        limiter.windowStart.store(UInt(cpuLimiter.lastUpdate), .releasing)
        limiter.enabled.store(cpuLimiter.limiting ? 1 : 0, .releasing)
    }
}
