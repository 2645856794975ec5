import CTricolor
import Glibc

// The collector: Go's concurrent tri-color mark-sweep (mgc.go), cycle by cycle:
//
//  1. Sweep termination. The triggering thread finishes the previous cycle's sweep with
//     the world running, then stops the world (pause #1): every mutator cache is flushed,
//     the write barrier is turned on for every mutator, and marking is enabled.
//  2. Concurrent mark. Background workers (about 25% of the CPUs: dedicated threads
//     plus a fractional one, as in Go) and mutator assists drain grey objects. Each
//     mutator scans its own shadow stack at its next safepoint (the collector scans the
//     stacks of mutators in blocking regions); stacks are never rescanned, which the
//     hybrid write barrier allows. Objects allocated during marking are black: spans a
//     mutator takes during the mark phase have their free slots pre-marked, and the
//     marks of slots still free are withdrawn when the span leaves the cache.
//  3. Mark termination. When no marker holds grey work, a ragged barrier asks every
//     mutator to flush its write-barrier buffer (Go's forEachP in gcMarkDone); if that
//     produced no work the world is stopped (pause #2), buffers are checked once more
//     (back to marking if anything turned grey), the write barrier is turned off and
//     sweepgen advances by 2.
//  4. Concurrent sweep. Spans are swept lazily by allocation, proportionally to
//     allocation (so sweeping ends before the next trigger), and by a background sweeper.
//
// Neither pause scans stacks or the heap: each is O(mutators + span classes).
//
// Stop-the-world is cooperative: the requester sets the attention word, which mutators
// poll at safepoints (allocation slow paths, `safepoint()`, barriered stores), and waits
// until every mutator is parked or in a blocking region.

enum GCTrigger: Sendable {
    case heap      // heapLive reached the pacer's trigger
    case forced    // collect()
}

enum GCPhase: UInt {
    case off = 0, mark = 1, markTermination = 2
}

/// Bits of the attention word (`SchedShared.attention`) that mutators poll.
enum Attention {
    static let stop: UInt = 1          // stop the world requested or in force
    static let gcDuties: UInt = 2      // marking: scan your stack / flush your buffers
    /// The background worker ran out of grey objects: the next mutator at a full
    /// safepoint runs mark termination (`markDone`) in its place. See `markWorkerLoop`.
    static let markDone: UInt = 4
}

extension Heap {
    // MARK: triggering

    @inline(__always)
    func maybeTriggerGC(_ st: UnsafeMutablePointer<MutatorState>?) {
        if gcController.heapLive.load(.relaxed) >= gcController.trigger.load(.relaxed) && phase == .off {
            gcStart(.heap, caller: st)
        }
    }

    /// Run a full collection now (Go's runtime.GC): returns once a whole cycle that
    /// started after the call has finished and its sweep is done. The calling thread
    /// helps mark.
    public func collect() {
        if HookGuard.inHook { HookGuard.misuse("collect()") }
        let caller = currentMutator()
        // Cycles count as completed once their statistics are published (at the end of
        // pause #2); read the phase first: mark termination bumps the count before it.
        let idle = phase == .off
        let target = marking.cyclesCompleted.load(.relaxed) + (idle ? 1 : 2)
        while true {
            // Phase first: mark termination stores NumGC before it turns the phase off.
            let ph = phase
            // Acquire: pairs with the release store in the cycle's last pause, so that
            // everything that pause did (mark termination, its self-checks of every span)
            // happens before this thread's sweeping below (found by the TSan run: a
            // sweep's write raced with pause #2's read of the span under expensiveChecks).
            let done = marking.cyclesCompleted.load(.acquiring)
            if done >= target { break }
            if marking.numGC.load(.relaxed) > done {
                // A cycle is publishing its statistics inside its last pause.
                if let c = caller { gcSafepoint(c) }
                tc_yield()
                continue
            }
            if ph == .off {
                gcStart(.forced, caller: caller)
            } else {
                helpMark(caller)
            }
        }
        finishSweep()
        // Like runtime.GC, return only when sweeping is complete, including spans other
        // threads are still sweeping, so that MemStats and the heap profile show every
        // free of this cycle. (A cycle started meanwhile by another thread ends the wait.)
        while sweep.activeSweepers.load(.acquiring) != 0 && phase == .off {
            if let c = caller, sched.attention.load(.relaxed) & Attention.stop != 0 { gcSafepoint(c) }
            tc_yield()
        }
        memProfiler.postSweep()
    }

    /// Start a cycle (Go's gcStart): sweep termination and the switch to marking.
    func gcStart(_ trigger: GCTrigger, caller: UnsafeMutablePointer<MutatorState>?) {
        while true {
            if phase != .off { return }
            if trigger == .heap && (gcController.heapLive.load(.relaxed) < gcController.trigger.load(.relaxed) || gcDisabled) { return }
            // Finish the previous cycle's sweep with the world running.
            finishSweep(caller: caller)
            if phase != .off { return }
            let t0 = tc_nanotime()
            if !stopTheWorld(caller) {
                // Someone else stopped the world meanwhile (perhaps finishing a cycle):
                // a forced start lets collect() decide again whether it still needs one.
                if trigger == .forced { return }
                continue
            }
            if phase != .off || (trigger == .heap && gcController.heapLive.load(.relaxed) < gcController.trigger.load(.relaxed)) {
                startTheWorld(caller)
                return
            }
            sweepTermination(trigger, start: t0)
            let t1 = tc_nanotime()
            recordPause(t1 - t0)
            cycle.tMark = t1
            cycle.stw1Ns = t1 - t0
            startTheWorld(caller)
            wakeMarkWorkers()
            return
        }
    }

    var gcDisabled: Bool { pacer.gcPercent == nil && pacer.memoryLimit == Int.max }

    /// Pause #1, with the world stopped.
    private func sweepTermination(_ trigger: GCTrigger, start t0: UInt64) {
        forEachMutator { m in
            m.pointee.mcache.releaseAll()
            stackCacheClear(m.pointee.mcache)
        }
        // The background sweeper is not stopped with the world: bar new sweeps, wait for
        // a span it may be sweeping, then sweep whatever is left (normally nothing).
        sweep.sweepBlocked.store(1, .releasing)
        while sweep.activeSweepers.load(.acquiring) != 0 { tc_yield() }
        finishSweep(force: true)
        // Pools: victims dropped, primaries become victims (Go's clearpools, also in
        // gcStart with the world stopped).
        clearPools()
        cycle = CycleTrace()
        cycle.number = Int(marking.numGC.load(.relaxed)) + 1
        cycle.tSweepTerm = t0
        cycle.forced = trigger == .forced
        cycle.heap0 = gcController.heapLive.load(.relaxed)
        cycle.goal = gcController.heapGoal.load(.relaxed)
        marking.bytesMarked.store(0, .releasing)
        marking.scanWork.store(0, .releasing)
        marking.bgScanCredit.store(0, .releasing)
        marking.assistTimeNs.store(0, .releasing)
        marking.bgMarkTimeNs.store(0, .releasing)
        marking.rootsClaimed.store(0, .releasing)
        marking.rootsDone.store(0, .releasing)
        marking.handoffRefused.store(0, .releasing)
        marking.stackScanBytes.store(0, .releasing)
        marking.nativeScanBytes.store(0, .releasing)
        marking.conservativeRoots.store(0, .releasing)
        work.reset()
        pacer.startCycle(heapLive: gcController.heapLive.load(.relaxed))
        markStartTime = tc_nanotime()
        reviseAssistRatio()
        // Turn the write barrier on and ask for stack scans.
        var stackBytes: UInt = 0
        forEachMutator { m in
            // The black range first: one from the last cycle covers objects that are
            // white in this one.
            m.pointee.clearBlackRange()
            m.setFlags(MutatorState.flagBarrier)
            tc_store8_relaxed(m.stackScannedAddress, 0)
            m.pointee.assistDebt = 0
            // Go's maxStackScan: the stack memory that may need scanning. Shadow stacks
            // count whole; a native stack counts what its last scan read.
            stackBytes += UInt(m.pointee.stackCap * 8) + m.pointee.lastNativeScan
        }
        maxStackScan = stackBytes
        sched.attention.fetchOr(Attention.gcDuties)
        marking.phase.store(GCPhase.mark.rawValue, .releasing)
    }
}
