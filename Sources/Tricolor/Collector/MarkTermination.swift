import CTricolor
import Glibc

// The end of marking (Go's gcMarkDone and gcMarkTermination, mgc.go).
//
// `markDone` decides that marking is over: no marker holds grey work, then a ragged
// barrier (every mutator flushes its write-barrier buffer and scans its stack), and if
// that produced nothing grey, the world is stopped (pause #2), the buffers are checked
// once more, and `markTermination` turns the barrier off, sets the next goal, advances
// sweepgen by 2 and publishes the cycle's statistics. If anything turned grey in the
// meantime the world restarts and marking goes on (Go's issue 27993 case).
//
// Invariants: one thread at a time runs `markDone` (markDone lock, tryLock only); the
// phase is `.markTermination` only inside pause #2; after pause #2 every mutator's
// barrier is off and its cache is empty.

extension Heap {
    // MARK: helping and termination

    /// Mark on the calling thread until this cycle's marking is over (used by collect()).
    func helpMark(_ caller: UnsafeMutablePointer<MutatorState>?) {
        var local = GCWork()
        defer { local.destroy() }
        while phase == .mark {
            // collect() is a full safepoint: answer stop requests (another thread may be
            // finishing the cycle) and do this mutator's duties.
            if let c = caller { gcSafepoint(c) }
            drain(&local, budget: UInt.max)
            markDone(caller)
            if phase == .mark { tc_yield() }
        }
        // Mark termination may be running on another thread: wait for the sweep phase.
        while phase == .markTermination {
            if let c = caller { gcSafepoint(c) }
            tc_yield()
        }
    }

    /// Go's gcMarkDone: if no marker holds grey work, run the ragged barrier and, if that
    /// turned nothing grey, stop the world and finish the cycle. Returns early (doing
    /// nothing) when work remains or another thread is already finishing.
    ///
    /// `handoff`: a mutator running it for the background worker (`Attention.markDone`).
    /// It must not wait long for the other mutators' stacks: one of them may be waiting
    /// for this one between full safepoints. After 200 µs it gives up and leaves this
    /// cycle's mark termination to the worker (`handoffRefused`).
    func markDone(_ caller: UnsafeMutablePointer<MutatorState>?, handoff: Bool = false) {
        guard markDoneLock.tryLock() else { return }
        defer { markDoneLock.unlock() }
        sched.attention.fetchAnd(~Attention.markDone)
        // While it waits for other mutators, the caller counts as blocked.
        if let c = caller {
            mutatorGCDuties(c)
            flushMutatorGCWork(c)
            enterBlocking(c)
        }
        defer { if let c = caller { exitBlocking(c) } }
        while phase == .mark {
            if !work.isEmptyApprox || marking.activeWorkers.load(.acquiring) != 0 || marking.rootsDone.load(.acquiring) == 0 { return }
            let published = work.publishedCount
            // Ragged barrier: every mutator flushes its buffer and scans its stack.
            let gen = marking.flushGen.load(.relaxed) + 1
            marking.flushGen.store(gen, .releasing)
            sched.attention.fetchOr(Attention.gcDuties)
            schedLock.lock()
            requestSafepoints()
            let barrierStart = tc_nanotime()
            while true {
                var pending = false
                forEachMutator { m in
                    if m.rawStatus == .running {
                        if tc_load_relaxed(m.flushAckAddress) != gen || tc_load8_relaxed(m.stackScannedAddress) == 0 { pending = true }
                    } else {
                        // Not running: the collector flushes its buffer, and scans its
                        // stack if it is in a blocking region (a full safepoint). A
                        // mutator parked at a partial safepoint scans its own later.
                        if tc_load8_relaxed(m.stackScannedAddress) == 0 {
                            if m.rawStatus == .blocking {
                                scanStack(m, &m.pointee.gcw.pointee)
                                tc_store8_relaxed(m.stackScannedAddress, 1)
                            } else {
                                pending = true
                            }
                        }
                        flushMutatorGCWork(m)
                    }
                }
                if !pending { break }
                var waitNs = Tuning.raggedBarrierPollNs
                if handoff {
                    let waited = tc_nanotime() - barrierStart
                    if waited >= Heap.handoffBarrierWaitNs {
                        marking.handoffRefused.store(1, .releasing)
                        marking.handoffsRefused.add(1, .relaxed)
                        schedLock.unlock()
                        return
                    }
                    waitNs = Heap.handoffBarrierWaitNs - waited
                } else if tc_nanotime() - barrierStart > Heap.goneThreadCheckNs {
                    failIfARunningMutatorsThreadIsGone()
                }
                _ = tc_cond_timedwait_ns(stateChanged.raw, schedLock.raw, waitNs)
            }
            schedLock.unlock()
            if work.publishedCount != published || !work.isEmptyApprox { return }
            // Pause #2.
            let t0 = tc_nanotime()
            if !stopTheWorld(nil) { continue }
            var restart = false
            forEachMutator { m in
                // An unscanned stack sends us back to marking: stacks are scanned only at
                // full safepoints, never in a pause.
                if tc_load8_relaxed(m.stackScannedAddress) == 0 { restart = true }
                flushMutatorGCWork(m)
            }
            // Acquire: pairs with the release in each marker's last `activeWorkers` sub,
            // so every mark bit a marker set happens before mark termination and so
            // before the sweeper reads the bits (found by the release-mode TSan run:
            // the sweeper's plain read of a mark word raced with a worker's OR).
            if !work.isEmptyApprox || work.publishedCount != published || marking.activeWorkers.load(.acquiring) != 0 { restart = true }
            if restart {
                // Something turned grey after the ragged barrier (Go's issue 27993 case).
                recordPause(tc_nanotime() - t0)
                startTheWorld(nil)
                return
            }
            markTermination(start: t0)
            if expensiveChecks { checkInvariantsStopped() }   // the whole heap, world stopped
            // Statistics are published inside the pause, with the new NumGC.
            let t1 = tc_nanotime()
            recordPause(t1 - t0)
            cycle.stw2Ns = t1 - t0
            finishCycleStats()
            let finished = cycle
            startTheWorld(nil)
            memProfiler.flush()
            if configuration.gctrace { printTrace(finished) }
            wakeSweeper()
            return
        }
    }

    /// Pause #2, with the world stopped and no grey objects left.
    private func markTermination(start t0: UInt64) {
        cycle.tMarkTerm = t0
        marking.phase.store(GCPhase.markTermination.rawValue, .releasing)
        cycle.heap1 = gcController.heapLive.load(.relaxed)
        forEachMutator { m in
            m.pointee.mcache.releaseAll()
            m.clearFlags(MutatorState.flagBarrier)
            // The black range ends with the phase (pause #1 empties it again; this keeps
            // it from outliving the phase should anything else turn the barrier on).
            m.pointee.clearBlackRange()
            m.pointee.assistDebt = 0
        }
        sched.attention.fetchAnd(~Attention.gcDuties)
        if configuration.checkmark { verifyMarks() }
        let marked = marking.bytesMarked.load(.relaxed)
        cycle.heap2 = marked
        // Pacer: measure this cycle, then set the next goal and trigger.
        endPacerCycle(marked: marked)
        // gctrace's goal is Go's lastHeapGoal: the goal at the end of the cycle.
        cycle.goal = pacer.lastHeapGoal
        cycle.stacks = maxStackScan
        let native = marking.nativeScanBytes.load(.relaxed)
        let found = marking.conservativeRoots.load(.relaxed)
        statsLock.withLock {
            lastNativeScanBytes = native
            lastConservativeRoots = found
            totalNativeScanBytes &+= native
        }
        cycle.globals = pacer.globalsScan
        gcController.heapLive.store(marked, .releasing)
        // Go's resetLive: the scannable heap is what this mark scanned of it.
        gcController.heapScan.store(pacer.lastHeapScan, .releasing)
        memProfiler.nextCycle()
        sweep.sweepgen.store(UInt(sweepgen &+ 2), .releasing)
        sweep.pagesSwept.store(0, .releasing)
        sweep.sweepIndex.store(0, .releasing)
        sweep.sweepBlocked.store(0, .releasing)
        // NumGC before the phase: a thread that sees the phase off sees the new count.
        marking.numGC.store(marking.numGC.load(.relaxed) + 1, .releasing)
        commitPacer(isSweepDone: false)
        // How many pages of empty spans this cycle's sweep may keep in their classes
        // (Sweep.swift). Go returns every empty span to the page heap; keeping one for a
        // cycle saves the refill that reuses it the page-heap round trip and the zeroing
        // (the sweeper clears it instead). At most the heap goal less the marked heap
        // (the garbage a steady program makes per cycle), so that the kept spans and
        // the live ones stay within the scavenger's goal (the heap goal + 10%; the 10%
        // for the live spans' free slots): after a spike of garbage the scavenger can
        // still give back everything above it, and a program that goes idle keeps no
        // more than Go's scavenger would leave it. None after collect() (runtime.GC's
        // MemStats, and freeOSMemory, see every empty span freed), under a memory limit,
        // or in the debugging modes that poison or quarantine freed slots.
        // Set after the pacer's commit (the new GOGC goal) and before the phase turns
        // off: no sweeper has started yet (the background sweeper waits for the phase,
        // mutators are stopped).
        var keepPages: UInt = 0
        let goal = pacer.gcPercentHeapGoal
        if !cycle.forced && pacer.memoryLimit == Int.max && goal != UInt.max && !configuration.clobberFree && quarantineCycles == 0 {
            if goal > marked { keepPages = (goal - marked) >> SizeClassTable.pageShiftU }
        }
        sweep.keepEmptyPages.store(keepPages, .releasing)
        marking.phase.store(GCPhase.off.rawValue, .releasing)
        // Stack spans emptied while marking go back to the page heap now.
        freeStackSpans()
        if cycle.forced { statsLock.withLock { numForcedGC += 1 } }
    }

    /// Recompute goal and trigger (Go's gcControllerCommit) and mirror them into the
}
