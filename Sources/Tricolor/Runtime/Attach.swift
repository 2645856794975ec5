import CTricolor
import Glibc

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
        sched.activeMutators.add(1, .relaxed)
        tc_store8_relaxed(st.stackScannedAddress, 1)
        tc_store_relaxed(st.flushAckAddress, marking.flushGen.load(.relaxed))
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
        st.pointee.mcache.releaseAll()
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
        sched.activeMutators.sub(1, .relaxed)
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

    var phase: GCPhase { GCPhase(rawValue: marking.phase.load(.acquiring))! }
}
