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

public enum GCTrigger: Sendable {
    case heap      // heapLive reached the pacer's trigger
    case forced    // collect()
}

enum GCPhase: UInt {
    case off = 0, mark = 1, markTermination = 2
}

/// Bits of the attention word (HeapWord.stopRequested) that mutators poll.
enum Attention {
    static let stop: UInt = 1          // stop the world requested or in force
    static let gcDuties: UInt = 2      // marking: scan your stack / flush your buffers
    /// The background worker ran out of grey objects: the next mutator at a full
    /// safepoint runs mark termination (`markDone`) in its place. See `markWorkerLoop`.
    static let markDone: UInt = 4
}

extension Heap {
    // MARK: attaching

    /// Attach the calling thread as a mutator. Pair with `detach`. A thread can be
    /// attached to one heap at a time.
    public func attach() -> Mutator {
        if let cur = tc_get_current_mutator() {
            let st = cur.assumingMemoryBound(to: MutatorState.self)
            runtimeFatal("thread already attached as mutator \(st.pointee.id)\(st.pointee.heap === self ? "" : " of another heap")")
        }
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        let st: UnsafeMutablePointer<MutatorState>
        nextMutatorID += 1
        if let f = freeMutators, !checked {
            freeMutators = f.pointee.next
            st = f
            st.pointee.stackTop = 0
        } else {
            st = .allocate(capacity: 1)
            st.initialize(to: MutatorState(heap: self, id: nextMutatorID))
        }
        var flags: UInt8 = checked ? MutatorState.flagChecked : 0
        // A mutator born during marking has an empty (black) stack and needs the barrier.
        if phase != .off { flags |= MutatorState.flagBarrier }
        st.storeFlags(flags)
        setCacheMode(st)
        initSampling(st)
        if configuration.allocPathStats && st.pointee.pathCounters == nil { st.pointee.pathCounters = AllocPathCounters() }
        add(.activeMutators, 1)
        tc_store8_relaxed(st.stackScannedAddress, 1)
        tc_store_relaxed(st.flushAckAddress, load(.flushGen))
        st.pointee.assistDebt = 0
        st.pointee.status = .running
        st.pointee.threadID = tc_thread_id()
        st.pointee.next = mutators
        mutators = st
        schedLock.unlock()
        tc_set_current_mutator(UnsafeMutableRawPointer(st))
        return Mutator(state: st)
    }

    /// Detach a mutator: its cache goes back to the heap and its frames stop being roots.
    public func detach(_ m: Mutator) {
        let st = m.state
        m.checkUsable("detach")
        if st.pointee.heap !== self { runtimeFatal("detach: mutator belongs to another heap") }
        gcSafepoint(st)
        schedLock.lock()
        // Flush under the sched lock so no stop-the-world falls between flush and unlink.
        flushMutatorGCWork(st)
        releaseAll(st)
        if let c = st.pointee.pathCounters {
            statsLock.withLock { c.add(to: pathTotals) }
            c.p.update(repeating: 0, count: AllocPathCounters.words)
        }
        var p = mutators
        var prev: UnsafeMutablePointer<MutatorState>? = nil
        while let q = p, q != st { prev = q; p = q.pointee.next }
        if let prev { prev.pointee.next = st.pointee.next } else { mutators = st.pointee.next }
        st.pointee.status = .detached
        st.pointee.stackTop = 0
        st.storeFlags(MutatorState.flagDetached | (checked ? MutatorState.flagChecked : 0))
        sub(.activeMutators, 1)
        st.pointee.next = freeMutators
        freeMutators = st
        statusChanged()
        schedLock.unlock()
        tc_set_current_mutator(nil)
    }

    /// Attach the calling thread, run `body`, detach.
    public func withMutator<R>(_ body: (Mutator) throws -> R) rethrows -> R {
        let m = attach()
        defer { detach(m) }
        return try body(m)
    }

    /// The mutator attached to the calling thread for this heap, if any.
    func currentMutator() -> UnsafeMutablePointer<MutatorState>? {
        guard let cur = tc_get_current_mutator() else { return nil }
        let st = cur.assumingMemoryBound(to: MutatorState.self)
        return st.pointee.heap === self ? st : nil
    }

    var phase: GCPhase { GCPhase(rawValue: tc_load_acquire(words + HeapWord.gcPhase.rawValue))! }

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
        _ = tc_or64(words + HeapWord.stopRequested.rawValue, UInt64(Attention.stop))
        requestSafepoints()
        caller?.pointee.status = .parked
        // 1. A mutator on a CPU answers within a microsecond or so; waiting for that on
        //    the condition variable would add a futex wake-up (10–60 µs on this kind of
        //    VM) to the pause. Spin briefly on the park count first.
        if anyMutatorRunning() {
            let parks = load(.parkEvents)
            schedLock.unlock()
            while load(.parkEvents) == parks && tc_nanotime() < requested + 30_000 { tc_pause() }
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
        while anyMutatorRunning() { stateChanged.wait(schedLock) }
        for i in 0..<pulled {
            _ = tc_restore_affinity(rescueTids[i], rescueMasks + i * Int(TC_CPU_MASK_BYTES))
        }
        schedLock.unlock()
        return true
    }

    /// Whether an attached mutator is still running (sched lock held).
    private func anyMutatorRunning() -> Bool {
        var p = mutators
        while let m = p { if m.rawStatus == .running { return true }; p = m.rawNext }
        return false
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
        if pulled > 0 { add(.stopRescues, 1) }
        return pulled
    }

    /// A mutator left the running state (parked, blocking, detached): wake whoever waits
    /// for that, and end the spin of a stopper (`parkEvents`). Sched lock held.
    private func statusChanged() {
        add(.parkEvents, 1)
        stateChanged.broadcast()
    }

    /// How long a stop waits for mutators before moving late ones onto its CPU.
    static let stopRescueAfterNs: UInt64 = 50_000
    /// How long a mutator running mark termination for the worker waits for the other
    /// mutators' stacks before giving it back (see `markDone`).
    static let handoffBarrierWaitNs: UInt64 = 200_000

    /// Make every running mutator take its slow path at its next load, store or frame
    /// operation (as well as at allocation slow paths and `safepoint()`), so a stop or a
    /// ragged barrier does not wait for its next allocation. Sched lock held.
    func requestSafepoints() {
        var p = mutators
        while let m = p {
            if m.rawStatus == .running { m.setFlags(MutatorState.flagSafepoint) }
            p = m.rawNext
        }
    }

    func startTheWorld(_ caller: UnsafeMutablePointer<MutatorState>?) {
        schedLock.lock()
        stwActive = false
        _ = tc_and64(words + HeapWord.stopRequested.rawValue, ~UInt64(Attention.stop))
        caller?.pointee.status = .running
        worldStarted.broadcast()
        schedLock.unlock()
    }

    /// A mutator's answer to a stop request.
    func park(_ st: UnsafeMutablePointer<MutatorState>) {
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
        let a = load(.stopRequested)
        if a & Attention.gcDuties != 0 { mutatorGCDuties(st, scanStack: full) }
        if a & Attention.stop != 0 { park(st) }
        if a & Attention.markDone != 0 {
            if phase == .off {
                // Set by a worker that saw the mark phase just before it ended.
                _ = tc_and64(words + HeapWord.stopRequested.rawValue, ~UInt64(Attention.markDone))
            } else if mayFinishMark && phase == .mark {
                add(.markHandoffsTaken, 1)
                markDone(st, handoff: true)
            }
        }
    }

    func enterBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        if load(.stopRequested) & Attention.gcDuties != 0 { mutatorGCDuties(st) }
        schedLock.lock()
        sub(.activeMutators, 1)
        st.pointee.status = .blocking
        statusChanged()
        schedLock.unlock()
    }

    func exitBlocking(_ st: UnsafeMutablePointer<MutatorState>) {
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        st.pointee.status = .running
        add(.activeMutators, 1)
        schedLock.unlock()
    }

    // MARK: the mutator cache (MCache)

    /// Replace the full span of class `spc` in the mutator's cache (Go's mcache.refill).
    /// May start a collection first and pay mark assists. False when no memory can be had.
    func refill(_ st: UnsafeMutablePointer<MutatorState>, _ spc: SpanClass) -> Bool {
        let slot = st.pointee.spans + Int(spc.raw)
        let fastSlot = st.pointee.alloc + Int(spc.raw)
        let old = slot.pointee
        if old != emptySpan {
            if st.pointee.profRate != 0 { disarmSample(st, old, Int(spc.raw)) }
            uncacheAccounting(old)
            slot.pointee = emptySpan
            fastSlot.pointee = emptySpan
            uncacheSpan(old)
        }
        raisePathLevel(st, .central)
        refreshMemoryLimitTrigger()
        maybeTriggerGC(st)
        let spanBytes = UInt(SizeClassTable.classToAllocNPages[spc.sizeClass]) << SizeClassTable.pageShiftU
        deductSweepCredit(spanBytes)
        guard let s = cacheSpan(spc, st) else { return false }
        add(.spansCached, 1)
        if let ids = s.pointee.typeIDs {
            // The fast path stores a type id per object; bring the array in now, as the
            // zeroing of the span did for the objects, instead of one miss per 32 slots.
            let raw = UnsafeRawPointer(ids)
            for off in stride(from: 0, to: Int(s.pointee.nelems) * 2, by: 64) { tc_prefetchw(raw + off) }
        }
        let sg = sweepgen
        s.storeSweepgen(sg &+ 3)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        let claimed = (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize
        add(.heapLive, claimed)
        if phase == .mark {
            preBlacken(s)
            slot.pointee = s
            if !st.pointee.slowAlloc { fastSlot.pointee = s }
            reviseAssistRatio()
            assist(st, bytes: claimed)
        } else {
            slot.pointee = s
            if !st.pointee.slowAlloc { fastSlot.pointee = s }
        }
        return true
    }

    /// Stats for a span leaving a cache: objects allocated from it while cached, and the
    /// free slots refill had counted into heapLive in advance. Withdraws the pre-marks
    /// of slots that stayed free (allocate-black) and counts the new objects as marked.
    private func uncacheAccounting(_ s: UnsafeMutablePointer<MSpan>) {
        s.pointee.allocCount = s.countAllocated()
        let n = s.pointee.allocCount - s.pointee.allocCountBeforeCache
        _ = tc_fetch_add_relaxed(counter(HeapWord.smallAllocBase.rawValue + s.pointee.spanClass.sizeClass), n)
        sub(.heapLive, (s.pointee.nelems - s.pointee.allocCount) * s.pointee.elemSize)
        s.pointee.allocCountBeforeCache = s.pointee.allocCount
        if s.pointee.blackened != 0 {
            let marks = s.pointee.gcmarkBits!
            for w in 0..<Int(s.pointee.bitmapWords) {
                let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
                if free != 0 { _ = tc_and64(marks + w, ~free) }
            }
            add(.bytesMarked, n * s.pointee.elemSize)
            s.pointee.blackened = 0
        }
    }

    /// Allocate-black for a span cached during marking: every free slot is pre-marked, so
    /// whatever is allocated from it before it leaves the cache is black.
    func preBlacken(_ s: UnsafeMutablePointer<MSpan>) {
        let marks = s.pointee.gcmarkBits!
        for w in 0..<Int(s.pointee.bitmapWords) {
            let free = ~s.allocatedWord(w) & s.validMask(UInt(w) * 64)
            if free != 0 { _ = tc_or64(marks + w, free) }
        }
        s.pointee.blackened = 1
    }

    /// Flush a mutator's cache (Go's mcache.releaseAll).
    func releaseAll(_ st: UnsafeMutablePointer<MutatorState>) {
        for i in 0..<SpanClass.count {
            let s = st.pointee.spans[i]
            if s != emptySpan {
                if st.pointee.profRate != 0 { disarmSample(st, s, i) }
                uncacheAccounting(s)
                st.pointee.spans[i] = emptySpan
                st.pointee.alloc[i] = emptySpan
                uncacheSpan(s)
            }
        }
        st.pointee.tiny = 0
        st.pointee.tinyOffset = 0
        add(.tinyAllocCount, st.pointee.tinyAllocs)
        st.pointee.tinyAllocs = 0
    }

    func allocLarge(_ st: UnsafeMutablePointer<MutatorState>, size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        refreshMemoryLimitTrigger()
        maybeTriggerGC(st)
        let npages = (size + SizeClassTable.pageSize - 1) / SizeClassTable.pageSize
        deductSweepCredit(UInt(npages) << SizeClassTable.pageShiftU)
        let spc = SpanClass(sizeClass: 0, noscan: noscan)
        guard size <= Int(reservedBytes), let s = allocSpan(npages: npages, spanClass: spc) else {
            if canFail { return 0 }
            throwOutOfMemory(size)
        }
        s.pointee.largeType = UInt32(typeID)
        s.pointee.limit = s.pointee.startAddr + UInt(size)
        s.setFreeIndex(64)            // past the only slot: allocated
        s.pointee.allocCount = 1
        s.pointee.allocCache = 0
        let bytes = UInt(npages) << SizeClassTable.pageShiftU
        add(.largeAllocCount, 1)
        add(.largeAllocBytes, bytes)
        add(.heapLive, bytes)
        if phase != .off {
            // allocate black
            _ = tc_or64(s.pointee.gcmarkBits!, 1)
            add(.bytesMarked, bytes)
        }
        let c = centrals + Int(spc.raw)
        let sg = sweepgen
        s.storeSweepgen(sg)
        c.pointee.lock.withLock { c.pointee.push(MCentral.fullSwept(sg), s) }
        if phase == .mark { reviseAssistRatio(); assist(st, bytes: bytes) }
        return s.pointee.startAddr
    }

    func throwOutOfMemory(_ size: Int) -> Never {
        let msg = "runtime: out of memory: cannot allocate \(size)-byte block (\(load(.heapInuse)) in use)\n"
        msg.withCString { p in _ = write(2, p, strlen(p)) }
        runtimeFatal("out of memory")
    }

    // MARK: triggering

    @inline(__always)
    func maybeTriggerGC(_ st: UnsafeMutablePointer<MutatorState>?) {
        if load(.heapLive) >= load(.trigger) && phase == .off {
            gcStart(.heap, caller: st)
        }
    }

    /// Run a full collection now (Go's runtime.GC): returns once a whole cycle that
    /// started after the call has finished and its sweep is done. The calling thread
    /// helps mark.
    public func collect() {
        let caller = currentMutator()
        // Cycles count as completed once their statistics are published (at the end of
        // pause #2); read the phase first: mark termination bumps the count before it.
        let idle = phase == .off
        let target = load(.cyclesCompleted) + (idle ? 1 : 2)
        while true {
            // Phase first: mark termination stores NumGC before it turns the phase off.
            let ph = phase
            let done = load(.cyclesCompleted)
            if done >= target { break }
            if load(.numGC) > done {
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
        while tc_load_acquire(words + HeapWord.activeSweepers.rawValue) != 0 && phase == .off {
            if let c = caller, load(.stopRequested) & Attention.stop != 0 { gcSafepoint(c) }
            tc_yield()
        }
        memProfiler.postSweep()
    }

    /// Start a cycle (Go's gcStart): sweep termination and the switch to marking.
    func gcStart(_ trigger: GCTrigger, caller: UnsafeMutablePointer<MutatorState>?) {
        while true {
            if phase != .off { return }
            if trigger == .heap && (load(.heapLive) < load(.trigger) || gcDisabled) { return }
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
            if phase != .off || (trigger == .heap && load(.heapLive) < load(.trigger)) {
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
        var p = mutators
        while let m = p { releaseAll(m); p = m.pointee.next }
        // The background sweeper is not stopped with the world: bar new sweeps, wait for
        // a span it may be sweeping, then sweep whatever is left (normally nothing).
        store(.sweepBlocked, 1)
        while tc_load_acquire(words + HeapWord.activeSweepers.rawValue) != 0 { tc_yield() }
        finishSweep(force: true)
        cycle = CycleTrace()
        cycle.number = Int(load(.numGC)) + 1
        cycle.tSweepTerm = t0
        cycle.forced = trigger == .forced
        cycle.heap0 = load(.heapLive)
        cycle.goal = load(.heapGoal)
        store(.bytesMarked, 0)
        store(.scanWork, 0)
        store(.bgScanCredit, 0)
        store(.assistTimeNs, 0)
        store(.bgMarkTimeNs, 0)
        store(.rootsClaimed, 0)
        store(.rootsDone, 0)
        store(.handoffRefused, 0)
        store(.stackScanBytes, 0)
        work.reset()
        pacer.triggered = load(.heapLive)
        markStartTime = tc_nanotime()
        reviseAssistRatio()
        // Turn the write barrier on and ask for stack scans.
        var stackBytes: UInt = 0
        p = mutators
        while let m = p {
            m.setFlags(MutatorState.flagBarrier)
            tc_store8_relaxed(m.stackScannedAddress, 0)
            m.pointee.assistDebt = 0
            stackBytes += UInt(m.pointee.stackCap * 8)
            p = m.pointee.next
        }
        maxStackScan = stackBytes
        _ = tc_or64(words + HeapWord.stopRequested.rawValue, UInt64(Attention.gcDuties))
        tc_store_release(words + HeapWord.gcPhase.rawValue, GCPhase.mark.rawValue)
    }

    // MARK: marking

    /// Mark the object `p` points into, queueing it for scanning if it has pointers.
    /// Queue entries pack the object's base address with its 16-bit slot type (bits
    /// 48…63), so scanning a single small object needs no span lookup.
    @inline(__always)
    func greyObject(_ p: UInt, _ gcw: inout GCWork) {
        if p == 0 || p == zeroBase { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            badPointer(p)
            return
        }
        let idx = s.objectIndex(p)
        let w = s.pointee.gcmarkBits.unsafelyUnwrapped + Int(idx &>> 6)
        let bit: UInt64 = 1 &<< UInt64(idx & 63)
        if tc_load64_relaxed(w) & bit != 0 { return }
        if tc_or64(w, bit) & bit != 0 { return }
        gcw.bytesMarked &+= s.pointee.elemSize
        if !s.pointee.spanClass.noscan {
            let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
            let tid: UInt16
            if let t = s.pointee.typeIDs { tid = tc_load16_relaxed(t + Int(idx)) } else { tid = UInt16(s.pointee.largeType) | arrayTypeBit }
            gcw.push(base | UInt(tid) &<< 48)
        }
    }

    /// Scan the pointer words of an object (Go's scanobject), element by element for arrays.
    @inline(__always)
    func scanObject(_ entry: UInt, _ gcw: inout GCWork) {
        let obj = entry & 0xffff_ffff_ffff
        let tid = UInt16(truncatingIfNeeded: entry &>> 48)
        let t = types + Int(tid & ~arrayTypeBit)
        let ptrWords = t.pointee.ptrWords.unsafelyUnwrapped
        let np = t.pointee.numPtrWords
        var n: UInt = 1
        let size = t.pointee.size
        if tid & arrayTypeBit != 0 {
            let s = spanOf(obj).unsafelyUnwrapped
            if s.pointee.isLarge {
                // Large arrays are scanned in oblets of at most 128 KiB (Go's
                // maxObletBytes): the rest is queued as another entry, so no single scan
                // holds up a pause or leaves other markers idle.
                let end = s.pointee.limit
                let chunk = max(1, Heap.maxObletBytes / size) &* size
                let stop = end &- obj > chunk ? obj &+ chunk : end
                if stop < end { gcw.push(stop | UInt(tid) &<< 48) }
                n = (stop &- obj) / size
            } else {
                n = s.pointee.elemSize / size
            }
        }
        var e = obj
        for _ in 0..<n {
            for k in 0..<np {
                let v = tc_load_acquire(UnsafeRawPointer(bitPattern: e &+ UInt(ptrWords[k]) &* 8).unsafelyUnwrapped)
                if v != 0 { greyObject(v, &gcw) }
            }
            e &+= size
        }
        gcw.scanWork &+= n &* size
    }

    /// Scan grey objects until none is left locally or globally, or `budget` bytes have
    /// been scanned. Returns the bytes scanned. Objects popped are prefetched and scanned
    /// a few pops later from a small ring so their cache misses overlap.
    /// While draining, the marker counts in HeapWord.activeWorkers, and before it stops
    /// counting it publishes what it still holds: mark termination requires the global
    /// list empty and no active marker.
    /// A `preemptible` drain (an assist, running on a mutator) also stops early when the
    /// world is being stopped, so an assist never holds up a pause for long.
    @discardableResult
    func drain(_ gcw: inout GCWork, budget: UInt = UInt.max, preemptible: Bool = false) -> UInt {
        _ = tc_fetch_add(words + HeapWord.activeWorkers.rawValue, 1)
        defer {
            work.putAll(from: &gcw)
            _ = tc_fetch_add(words + HeapWord.activeWorkers.rawValue, UInt.max)  // -1
        }
        let startWork = gcw.scanWork
        let ringSize = 16
        var ring = (0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt,
                    0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt, 0 as UInt)
        withUnsafeMutableBytes(of: &ring) { raw in
            let r = raw.baseAddress!.assumingMemoryBound(to: UInt.self)
            var head = 0, count = 0
            var polls = 0
            while gcw.scanWork &- startWork < budget {
                if preemptible {
                    polls &+= 1
                    if polls & 63 == 0 && load(.stopRequested) & Attention.stop != 0 { break }
                }
                if let p = gcw.pop() {
                    tc_prefetch(UnsafeRawPointer(bitPattern: p & 0xffff_ffff_ffff))
                    if count == ringSize {
                        let obj = r[head]
                        r[head] = p
                        head = (head + 1) & (ringSize - 1)
                        scanObject(obj, &gcw)
                    } else {
                        r[(head + count) & (ringSize - 1)] = p
                        count += 1
                    }
                    // Share work when the local stack is long and the global list is dry.
                    if gcw.count > 2 * GCWork.batch && work.isEmptyApprox { work.put(from: &gcw, GCWork.batch) }
                } else if count > 0 {
                    let obj = r[head]
                    head = (head + 1) & (ringSize - 1)
                    count -= 1
                    scanObject(obj, &gcw)
                } else if !work.get(into: &gcw) {
                    if claimRoots() { scanGlobalRoots(&gcw) } else { break }
                }
            }
            // Budget reached with objects still in the ring: they go back to the queue.
            while count > 0 { gcw.push(r[head]); head = (head + 1) & (ringSize - 1); count -= 1 }
        }
        let done = gcw.scanWork &- startWork
        flushMarkedStats(&gcw)
        return done
    }

    /// Move a marker's counters into the heap's.
    func flushMarkedStats(_ gcw: inout GCWork) {
        if gcw.bytesMarked != 0 { add(.bytesMarked, gcw.bytesMarked); gcw.bytesMarked = 0 }
        if gcw.scanWork != 0 { add(.scanWork, gcw.scanWork); gcw.scanWork = 0 }
    }

    /// Take the job of scanning globals and handles; true for exactly one caller per cycle.
    func claimRoots() -> Bool {
        tc_load_relaxed(words + HeapWord.rootsClaimed.rawValue) == 0 && tc_cas(words + HeapWord.rootsClaimed.rawValue, 0, 1)
    }

    func scanGlobalRoots(_ gcw: inout GCWork) {
        // The table sizes are read under the lock too: makeHandle may grow them meanwhile.
        let bytes = globalsLock.withLock {
            globalSlots.forEach { greyObject($0, &gcw) }
            handleSlots.forEach { greyObject($0, &gcw) }
            return globalSlots.bytes + handleSlots.bytes
        }
        gcw.scanWork &+= UInt(bytes)
        store(.rootsDone, 1)
    }

    /// Grey every root slot of a mutator's shadow stack.
    func scanStack(_ st: UnsafeMutablePointer<MutatorState>, _ gcw: inout GCWork) {
        let stack = st.pointee.stack
        let n = st.pointee.stackTop
        for i in 0..<n { greyObject(stack[i], &gcw) }
        gcw.scanWork &+= UInt(n * 8)
        add(.stackScanBytes, UInt(n * 8))
    }

    /// Shade a pointer from outside any marker (handle creation and release while marking).
    func shadeFromAnyThread(_ p: UInt) {
        if p == 0 || phase == .off { return }
        var gcw = GCWork(capacity: 16)
        greyObject(p, &gcw)
        flushMarkedStats(&gcw)
        work.putAll(from: &gcw)
        gcw.destroy()
    }

    func badPointer(_ p: UInt) {
        if checked {
            runtimeFatal("found bad pointer in heap: \(Ref(address: p)) is not a live heap object")
        }
        // Unchecked: a value that is not a heap pointer is ignored.
    }

    // MARK: mutator duties during marking

    /// What a mutator owes the collector while marking: a scan of its own stack (once per
    /// cycle) and, when a ragged barrier asks, a flush of its write-barrier buffer.
    func mutatorGCDuties(_ st: UnsafeMutablePointer<MutatorState>, scanStack canScan: Bool = true) {
        guard phase == .mark else { return }
        var did = false
        if canScan && tc_load8_relaxed(st.stackScannedAddress) == 0 {
            scanStack(st, &st.pointee.gcw.pointee)
            tc_store8_relaxed(st.stackScannedAddress, 1)
            did = true
        }
        let gen = load(.flushGen)
        if tc_load_relaxed(st.flushAckAddress) != gen {
            flushWriteBarrierBuffer(st)
            tc_store_relaxed(st.flushAckAddress, gen)
            did = true
        }
        if did {
            flushMarkedStats(&st.pointee.gcw.pointee)
            work.putAll(from: &st.pointee.gcw.pointee)
            schedLock.withLock { stateChanged.broadcast() }
        }
    }

    /// Grey the contents of a mutator's write-barrier buffer into its gcWork.
    func flushWriteBarrierBuffer(_ st: UnsafeMutablePointer<MutatorState>) {
        let n = st.pointee.wbCount
        if n == 0 { return }
        let buf = st.pointee.wbBuf
        for i in 0..<n { greyObject(buf[i], &st.pointee.gcw.pointee) }
        st.pointee.wbCount = 0
    }

    /// Everything a mutator holds for the collector, published (caller owns the mutator:
    /// it is the mutator itself, or the mutator is stopped and the sched lock is held).
    func flushMutatorGCWork(_ st: UnsafeMutablePointer<MutatorState>) {
        flushWriteBarrierBuffer(st)
        flushMarkedStats(&st.pointee.gcw.pointee)
        work.putAll(from: &st.pointee.gcw.pointee)
        tc_store_relaxed(st.flushAckAddress, load(.flushGen))
    }

    /// The write barrier's buffer is full: shade its contents (Go's wbBufFlush).
    func writeBarrierBufferFull(_ st: UnsafeMutablePointer<MutatorState>) {
        flushWriteBarrierBuffer(st)
        flushMarkedStats(&st.pointee.gcw.pointee)
        work.putAll(from: &st.pointee.gcw.pointee)
    }

    // MARK: assists

    /// A mutator that allocates while marking pays scan work in proportion (Go's
    /// gcAssistAlloc): first from background credit, then by draining grey objects.
    func assist(_ st: UnsafeMutablePointer<MutatorState>, bytes: UInt) {
        mutatorGCDuties(st)
        let perByte = Double(bitPattern: UInt64(load(.assistWorkPerByte)))
        st.pointee.assistDebt += Double(bytes) * perByte
        if st.pointee.assistDebt <= 0 { return }
        if cpuLimiterLimiting() { return }
        var owed = UInt(st.pointee.assistDebt)
        // Steal background credit.
        let credit = load(.bgScanCredit)
        if credit > 0 {
            let take = min(credit, owed)
            if tc_cas(words + HeapWord.bgScanCredit.rawValue, credit, credit - take) {
                owed -= take
                st.pointee.assistDebt -= Double(take)
            }
        }
        if owed == 0 { return }
        let t0 = tc_thread_cputime_ns()
        let done = drain(&st.pointee.gcw.pointee, budget: max(owed, Heap.overAssistWork), preemptible: true)
        st.pointee.assistDebt -= Double(done)
        let dt = tc_thread_cputime_ns() - t0
        add(.assistTimeNs, UInt(dt))
        limiterAddGC(dt)
        if markWorkerCount == 0 && work.isEmptyApprox {
            markDone(st)
        }
    }

    static let overAssistWork: UInt = 64 << 10
    static let maxObletBytes: UInt = 128 << 10

    /// Recompute the assist ratio from the work and heap left in the cycle (Go's revise).
    func reviseAssistRatio() {
        // heapLive bounds the scannable heap from above (Go tracks heapScan exactly).
        let live = load(.heapLive)
        let r = pacer.revise(heapLive: live, heapScan: live, scanWorkDone: load(.scanWork), maxStackScan: maxStackScan)
        store(.assistWorkPerByte, UInt(r.workPerByte.bitPattern))
    }

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
        _ = tc_and64(words + HeapWord.stopRequested.rawValue, ~UInt64(Attention.markDone))
        // While it waits for other mutators, the caller counts as blocked.
        if let c = caller {
            mutatorGCDuties(c)
            flushMutatorGCWork(c)
            enterBlocking(c)
        }
        defer { if let c = caller { exitBlocking(c) } }
        while phase == .mark {
            if !work.isEmptyApprox || tc_load_relaxed(words + HeapWord.activeWorkers.rawValue) != 0 || load(.rootsDone) == 0 { return }
            let published = work.publishedCount
            // Ragged barrier: every mutator flushes its buffer and scans its stack.
            let gen = load(.flushGen) + 1
            store(.flushGen, gen)
            _ = tc_or64(words + HeapWord.stopRequested.rawValue, UInt64(Attention.gcDuties))
            schedLock.lock()
            requestSafepoints()
            let barrierStart = tc_nanotime()
            while true {
                var pending = false
                var p = mutators
                while let m = p {
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
                    p = m.rawNext
                }
                if !pending { break }
                var waitNs: UInt64 = 1_000_000
                if handoff {
                    let waited = tc_nanotime() - barrierStart
                    if waited >= Heap.handoffBarrierWaitNs {
                        store(.handoffRefused, 1)
                        add(.handoffsRefused, 1)
                        schedLock.unlock()
                        return
                    }
                    waitNs = Heap.handoffBarrierWaitNs - waited
                }
                _ = tc_cond_timedwait_ns(stateChanged.raw, schedLock.raw, waitNs)
            }
            schedLock.unlock()
            if work.publishedCount != published || !work.isEmptyApprox { return }
            // Pause #2.
            let t0 = tc_nanotime()
            if !stopTheWorld(nil) { continue }
            var restart = false
            var p = mutators
            while let m = p {
                // An unscanned stack sends us back to marking: stacks are scanned only at
                // full safepoints, never in a pause.
                if tc_load8_relaxed(m.stackScannedAddress) == 0 { restart = true }
                flushMutatorGCWork(m)
                p = m.pointee.next
            }
            if !work.isEmptyApprox || work.publishedCount != published || tc_load_relaxed(words + HeapWord.activeWorkers.rawValue) != 0 { restart = true }
            if restart {
                // Something turned grey after the ragged barrier (Go's issue 27993 case).
                recordPause(tc_nanotime() - t0)
                startTheWorld(nil)
                return
            }
            markTermination(start: t0)
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
        tc_store_release(words + HeapWord.gcPhase.rawValue, GCPhase.markTermination.rawValue)
        cycle.heap1 = load(.heapLive)
        var p = mutators
        while let m = p {
            releaseAll(m)
            m.clearFlags(MutatorState.flagBarrier)
            m.pointee.assistDebt = 0
            p = m.pointee.next
        }
        _ = tc_and64(words + HeapWord.stopRequested.rawValue, ~UInt64(Attention.gcDuties))
        if configuration.checkmark { verifyMarks() }
        let marked = load(.bytesMarked)
        cycle.heap2 = marked
        // Pacer: measure this cycle, then set the next goal and trigger.
        let now = tc_nanotime()
        let markWall = Double(max(1, now - markStartTime))
        let procs = Double(gomaxprocs)
        let u = Pacer.goalUtilization + Double(load(.assistTimeNs)) / (markWall * procs)
        pacer.endCycle(heapLive: load(.heapLive), u: min(u, 0.99), idleU: 0, scanWork: load(.scanWork))
        pacer.heapMarked = marked
        pacer.lastHeapScan = load(.scanWork) &- min(load(.scanWork), load(.stackScanBytes))
        pacer.lastStackScan = load(.stackScanBytes)
        pacer.globalsScan = UInt(globalsLock.withLock { globalSlots.bytes + handleSlots.bytes })
        pacer.triggered = UInt.max
        cycle.stacks = maxStackScan
        cycle.globals = pacer.globalsScan
        store(.heapLive, marked)
        p = mutators
        while let m = p { shrinkStack(m); p = m.pointee.next }
        memProfiler.nextCycle()
        store(.sweepgen, UInt(sweepgen &+ 2))
        store(.pagesSwept, 0)
        store(.sweepIndex, 0)
        store(.sweepBlocked, 0)
        // NumGC before the phase: a thread that sees the phase off sees the new count.
        store(.numGC, load(.numGC) + 1)
        commitPacer(isSweepDone: false)
        tc_store_release(words + HeapWord.gcPhase.rawValue, GCPhase.off.rawValue)
        if cycle.forced { statsLock.withLock { numForcedGC += 1 } }
    }

    /// Recompute goal and trigger (Go's gcControllerCommit) and mirror them into the
    /// atomic words the allocation paths read.
    func commitPacer(isSweepDone: Bool) {
        refreshPacerMemoryInputs()
        pacer.commit(isSweepDone: isSweepDone, heapLive: load(.heapLive))
        let (trig, goal) = pacer.trigger()
        store(.trigger, gcDisabled ? UInt.max : trig)
        store(.heapGoal, goal)
        paceSweeper(trigger: trig)
    }

    /// Under a memory limit the goal depends on how much memory is mapped, which grows
    /// between cycles: Go recomputes the trigger at every test; we do it whenever the
    /// heap has grown since the last computation.
    func refreshMemoryLimitTrigger() {
        guard pacer.memoryLimit != Int.max, phase == .off else { return }
        let sys = load(.heapSys)
        if sys == load(.limitTriggerHeapSys) { return }
        statsLock.withLock {
            store(.limitTriggerHeapSys, sys)
            refreshPacerMemoryInputs()
            let (trig, goal) = pacer.trigger()
            store(.trigger, trig)
            store(.heapGoal, goal)
        }
    }

    func refreshPacerMemoryInputs() {
        let heapSys = load(.heapSys)
        let inuse = load(.heapInuse)
        let metadata = UInt(heapLock.withLock { spanAlloc.sys + meta.sys + pages.metadataInUse + mappedArenas * HeapArena.pagesPerArena * 8 })
        let released = load(.heapReleased)
        pacer.mappedReady = heapSys + metadata - released
        pacer.heapFree = heapSys - inuse - min(heapSys - inuse, released)
        pacer.heapAlloc = load(.heapLive)
    }

    // MARK: verification

    /// gccheckmark: mark again from the roots with the world stopped, into a separate set,
    /// and compare with the mark bits: any reachable object left unmarked is fatal.
    func verifyMarks() {
        var seen = Set<UInt>()
        var stack: [UInt] = []
        func visit(_ p: UInt) {
            if p == 0 || p == zeroBase { return }
            guard let s = spanOf(p) else { return }
            let base = s.pointee.startAddr + s.objectIndex(p) * s.pointee.elemSize
            if seen.insert(base).inserted { stack.append(base) }
        }
        var p = mutators
        while let m = p { for i in 0..<m.pointee.stackTop { visit(m.pointee.stack[i]) }; p = m.pointee.next }
        globalsLock.withLock { globalSlots.forEach(visit); handleSlots.forEach(visit) }
        while let obj = stack.popLast() {
            let s = spanOf(obj)!
            if !s.isMarked(s.objectIndex(obj)) {
                runtimeFatal("gccheckmark: reachable object \(Ref(address: obj)) (span class \(s.pointee.spanClass.raw), type \(s.pointee.typeIDs.map { typeName($0[Int(s.objectIndex(obj))] & ~arrayTypeBit) } ?? "large/noscan")) was not marked by the concurrent mark")
            }
            if s.pointee.spanClass.noscan { continue }
            let large = s.pointee.isLarge
            let tid = large ? Int(UInt16(truncatingIfNeeded: s.pointee.largeType) & ~arrayTypeBit) : Int(s.pointee.typeIDs![Int(s.objectIndex(obj))] & ~arrayTypeBit)
            let t = types[tid]
            let bytes = large ? s.pointee.limit - s.pointee.startAddr : s.pointee.elemSize
            for e in 0..<Int(bytes / t.size) {
                for k in 0..<t.numPtrWords {
                    visit(UnsafePointer<UInt>(bitPattern: obj + UInt(e) * t.size)![Int(t.ptrWords![k])])
                }
            }
        }
    }

    /// Halve a shadow stack that uses less than a quarter of itself (Go's shrinkstack).
    func shrinkStack(_ m: UnsafeMutablePointer<MutatorState>) {
        let cap = m.pointee.stackCap
        if cap / 2 >= MutatorState.initialStackSlots && m.pointee.stackTop < cap / 4 {
            let n = UnsafeMutablePointer<UInt>.allocate(capacity: cap / 2)
            n.moveInitialize(from: m.pointee.stack, count: m.pointee.stackTop)
            m.pointee.stack.deallocate()
            m.pointee.stack = n
            m.pointee.stackCap = cap / 2
        }
    }

    // MARK: checked mode

    /// Trap unless `r` is the start of a live object (or points into a live tiny block).
    func checkRef(_ r: Ref, _ what: String) {
        let p = r.address
        if p == zeroBase { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            runtimeFatal("invalid pointer \(r) \(what): not a live heap object")
        }
        let idx = s.objectIndex(p)
        let base = s.pointee.startAddr + idx * s.pointee.elemSize
        if base != p && s.pointee.spanClass != .tiny {
            runtimeFatal("invalid pointer \(r) \(what): points inside an object (object starts at \(Ref(address: base)))")
        }
        let unswept = s.loadSweepgen() == sweepgen &- 2
        let live = s.isAllocated(idx) && !(unswept && !s.isMarked(idx))
        if !live {
            runtimeFatal("invalid pointer \(r) \(what): the object was freed (use after free)")
        }
    }
}
