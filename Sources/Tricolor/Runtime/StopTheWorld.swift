import CTricolor
import Glibc

// Stop-the-world and parking (the part of Go's proc.go the collector needs:
// stopTheWorldWithSema, startTheWorldWithSema, entersyscall/exitsyscall).
//
// Stopping is cooperative: the stopper sets the `stop` bit of the attention word and
// asks every running mutator to take its slow path, then waits until each is parked at
// a safepoint or in a blocking region (first spinning briefly, then on a condition
// variable, moving a mutator the OS keeps off its CPU onto the stopper's own). Mutators
// answer in `gcSafepoint`, which also does what the collector asked of them while
// marking (scan the stack, flush the barrier buffer, run mark termination for the
// worker).
//
// Invariants: at most one thread stops the world at a time (`stwActive`, sched lock);
// while the world is stopped no mutator is `.running`; a mutator in a blocking region
// touches no heap memory; every status change out of `.running` is broadcast
// (`statusChanged`).

extension Heap {
    // MARK: stop the world

    /// Stop every mutator at a safepoint. Returns false (after waiting for it to finish)
    /// if another thread was already stopping the world.
    func stopTheWorld(_ caller: UnsafeMutablePointer<MutatorState>?) -> Bool {
        schedLock.lock()
        if stwActive {
            while stwActive {
                caller?.pointee.status = .parked
                statusChanged()
                worldStarted.wait(schedLock)
            }
            caller?.pointee.status = .running
            schedLock.unlock()
            return false
        }
        stwActive = true
        let requested = tc_nanotime()
        sched.attention.fetchOr(Attention.stop)
        requestSafepoints()
        caller?.pointee.status = .parked
        // 1. A mutator on a CPU answers within a microsecond or so; waiting for that on
        //    the condition variable would add a futex wake-up (10–60 µs on this kind of
        //    VM) to the pause. Spin briefly on the park count first.
        if anyMutatorRunning() {
            let parks = sched.parkEvents.load(.relaxed)
            schedLock.unlock()
            while sched.parkEvents.load(.relaxed) == parks && tc_nanotime() < requested + Tuning.stopSpinNs { tc_pause() }
            schedLock.lock()
        }
        // 2. Wait until the rescue deadline.
        while anyMutatorRunning() {
            let waited = tc_nanotime() - requested
            if waited >= Heap.stopRescueAfterNs { break }
            _ = tc_cond_timedwait_ns(stateChanged.raw, schedLock.raw, Heap.stopRescueAfterNs - waited)
        }
        // 3. Still not stopped after 50 µs: the OS is keeping a mutator off its CPU
        //    (measured: a kernel thread ran for 1.5–3 ms on that CPU and the waiting
        //    mutator was not moved to the CPU this thread leaves idle while it waits).
        //    Move each late mutator onto this CPU; it runs as soon as this thread
        //    blocks, reaches a safepoint and parks.
        let pulled = anyMutatorRunning() ? pullRunningMutatorsHere() : 0
        // 4. Wait, with the watchdog (StopTheWorldWatchdog.swift): past its period, say
        //    which mutators hold the stop up, then keep waiting.
        var nextReport = stwWatchdogNs == 0 ? UInt64.max : requested &+ stwWatchdogNs
        while anyMutatorRunning() {
            let now = tc_nanotime()
            if now >= nextReport {
                reportStuckMutators(waited: now &- requested)
                nextReport = tc_nanotime() &+ stwWatchdogNs
                continue
            }
            if tc_cond_timedwait_ns(stateChanged.raw, schedLock.raw, min(Heap.goneThreadCheckNs, nextReport &- now)) != 0 { failIfARunningMutatorsThreadIsGone() }
        }
        lastStopWaitNs = tc_nanotime() &- requested
        for i in 0..<pulled {
            let rc = tc_restore_affinity(rescueTids[i], rescueMasks + i * Int(TC_CPU_MASK_BYTES))
            // ESRCH: the thread has exited since. Anything else leaves it on one CPU.
            if rc != 0 && rc != ESRCH {
                writeStderr("tricolor: cannot restore the CPU affinity of thread \(rescueTids[i]) after a stop: \(String(cString: strerror(rc))); it stays on one CPU\n")
            }
        }
        schedLock.unlock()
        return true
    }

    /// Whether an attached mutator is still running (sched lock held).
    private func anyMutatorRunning() -> Bool {
        var running = false
        forEachMutator { if $0.rawStatus == .running { running = true } }
        return running
    }

    /// Move every running mutator onto the calling thread's CPU, saving its CPU mask in
    /// the rescue records for `stopTheWorld` to restore. Returns how many were moved.
    /// Sched lock held.
    private func pullRunningMutatorsHere() -> Int {
        var pulled = 0
        var p = mutators
        while let m = p, pulled < Heap.maxRescues {
            if m.rawStatus == .running && tc_pull_thread_here(m.rawThreadID, rescueMasks + pulled * Int(TC_CPU_MASK_BYTES)) == 0 {
                rescueTids[pulled] = m.rawThreadID
                pulled += 1
            }
            p = m.rawNext
        }
        if pulled > 0 { sched.stopRescues.add(1, .relaxed) }
        return pulled
    }

    /// A running mutator whose thread no longer exists would be waited for forever.
    /// Thread exit detaches (see "Lifetimes" in Attach.swift), so this happens only in
    /// the child of a fork made while another thread was attached (the child has only
    /// the forking thread): fail with a message instead of hanging. Sched lock held.
    func failIfARunningMutatorsThreadIsGone() {
        forEachMutator { m in
            if m.rawStatus == .running && !tc_thread_exists(m.rawThreadID) {
                runtimeFatal("mutator \(m.pointee.id) is attached, but its thread \(m.rawThreadID) no longer exists (did the process fork while it was attached?)")
            }
        }
    }

    /// How long a stop or a ragged barrier waits between checks that the threads it
    /// waits for still exist (a backstop; see `failIfARunningMutatorsThreadIsGone`).
    static let goneThreadCheckNs: UInt64 = 100_000_000

    /// A mutator left the running state (parked, blocking, detached): wake whoever waits
    /// for that, and end the spin of a stopper (`parkEvents`). Sched lock held.
    func statusChanged() {
        sched.parkEvents.add(1, .relaxed)
        stateChanged.broadcast()
    }

    /// How long a stop waits for mutators before moving late ones onto its CPU.
    static let stopRescueAfterNs = Tuning.stopRescueAfterNs
    /// How long a mutator running mark termination for the worker waits for the other
    /// mutators' stacks before giving it back (see `markDone`).
    static let handoffBarrierWaitNs = Tuning.handoffBarrierWaitNs

    /// Make every running mutator take its slow path at its next load, store or frame
    /// operation (as well as at allocation slow paths and `safepoint()`), so a stop or a
    /// ragged barrier does not wait for its next allocation. Sched lock held.
    func requestSafepoints() {
        forEachMutator { m in
            if m.rawStatus == .running { m.setFlags(MutatorState.flagSafepoint) }
        }
    }

    /// Whether a stop-the-world is requested or in force (a relaxed read of the
    /// attention word; for tests and spin loops).
    var stopPending: Bool { sched.attention.load(.relaxed) & Attention.stop != 0 }

    func startTheWorld(_ caller: UnsafeMutablePointer<MutatorState>?) {
        schedLock.lock()
        stwActive = false
        sched.attention.fetchAnd(~Attention.stop)
        caller?.pointee.status = .running
        worldStarted.broadcast()
        schedLock.unlock()
    }

    /// A mutator's answer to a stop request. Its registers are spilled first and its
    /// stack pointer recorded, so that while parked its native stack can be read
    /// (gccheckmark's verification mark does).
    func park(_ st: UnsafeMutablePointer<MutatorState>) {
        let heap = Unmanaged.passUnretained(self)   // no reference counting on safepoint paths
        withRegistersSpilled { sp in
            st.pointee.nativeSP = sp
            heap._withUnsafeGuaranteedRef { $0.parkSpilled(st) }
        }
    }

    fileprivate func parkSpilled(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        while stwActive {
            st.pointee.status = .parked
            statusChanged()
            worldStarted.wait(schedLock)
        }
        st.pointee.status = .running
        schedLock.unlock()
    }

    /// The safepoint slow path: do what the collector asked of this mutator, then park
    /// if the world is being stopped.
    ///
    /// Two kinds of safepoint: at a full one (allocation slow paths, `safepoint()`,
    /// entering a blocking region) every live `Ref` must be in a frame, so the mutator
    /// may scan its stack there. Loads, stores and frame operations are partial
    /// safepoints: they answer stop requests and flush the write-barrier buffer, but
    /// never scan the stack, so a `Ref` held briefly in a local between full safepoints
    /// (say, while traversing a structure) stays valid.
    ///
    /// `mayFinishMark`: the caller is at the top of an allocation slow path or in
    /// `safepoint()`, holding nothing, and may run mark termination if the background
    /// worker handed it over (`Attention.markDone`).
    func gcSafepoint(_ st: UnsafeMutablePointer<MutatorState>, full: Bool = true, mayFinishMark: Bool = false) {
        let a = sched.attention.load(.relaxed)
        if a & Attention.gcDuties != 0 { mutatorGCDuties(st, scanStack: full) }
        if a & Attention.stop != 0 {
            // For the watchdog: stamped when answering a stop only, not at every slow
            // path of the mark phase (gcDuties stays set through it).
            tc_store_relaxed(st.lastSafepointAddress, UInt(tc_nanotime()))
            park(st)
        }
        if a & Attention.markDone != 0 {
            if phase == .off {
                // Set by a worker that saw the mark phase just before it ended.
                sched.attention.fetchAnd(~Attention.markDone)
            } else if mayFinishMark && phase == .mark {
                marking.markHandoffsTaken.add(1, .relaxed)
                markDone(st, handoff: true)
            }
        }
    }

    func enterBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        if sched.attention.load(.relaxed) & Attention.gcDuties != 0 { mutatorGCDuties(st) }
        schedLock.lock()
        sched.activeMutators.sub(1, .relaxed)
        st.pointee.status = .blocking
        statusChanged()
        schedLock.unlock()
    }

    func exitBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        st.pointee.status = .running
        sched.activeMutators.add(1, .relaxed)
        schedLock.unlock()
    }
}
