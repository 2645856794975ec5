import CTricolor
import Glibc

// Attaching and detaching threads (Go's acquirep/releasep, and goexit dropping its P).
//
// A thread that touches the heap attaches as a mutator: it gets a MutatorState (Go's P:
// an mcache, grey work, a write-barrier buffer, a shadow stack, a status), linked into
// the heap's list under the sched lock, and a thread-local pointer to it. Detaching
// flushes the cache and the grey work back to the heap and unlinks it; a thread that
// exits attached is detached by its exit (see "Lifetimes" below).
//
// Invariants: a thread is attached to at most one heap; every listed mutator belongs to
// a live thread; the list changes only under the sched lock and never while the world
// is stopped; an attached mutator holds one reference to its heap.

extension Heap {
    // MARK: attaching

    // Lifetimes. An attached mutator holds one strong reference to its heap, taken
    // here and dropped by `detach` (an Unmanaged retain; nothing is stored: the number
    // of references held this way is the number of attached mutators). Dropping the
    // heap's last other reference while a thread is attached therefore frees nothing:
    // the heap is freed by that thread's detach, or by its exit (below). The other
    // choice, failing at the drop, cannot be made reliable: the drop may happen on
    // another thread while the attached one is inside an allocation, and the thread's
    // current-mutator pointer would dangle either way. The reference costs one
    // retain/release per attach/detach and nothing elsewhere: `Mutator` stays two
    // pointers, and `MutatorState.heap` stays `unowned(unsafe)`.
    //
    // A thread that ends while attached is detached by its exit (Go's goexit drops the
    // P): a pthread key destructor (CTricolor's tc_watch_thread_exit) runs
    // `mutatorThreadExited` on the exiting thread, which gives the mutator's spans and
    // grey work back and unlinks it. So no listed mutator ever belongs to a thread that
    // is gone, and neither stop-the-world nor the ragged barrier can wait for one.

    /// Attach the calling thread as a mutator. Pair with `detach`. A thread can be
    /// attached to one heap at a time. The heap stays alive while the mutator is
    /// attached; if the thread exits attached, its exit detaches it (in checked mode
    /// with a warning on stderr).
    @available(*, noasync, message: "a task can resume on another thread after await; use synchronous withMutator segments and Handles across await")
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
        // A recycled state's black range may be from an earlier cycle (MutatorState.blackBase).
        st.pointee.clearBlackRange()
        st.pointee.status = .running
        st.pointee.threadID = tc_thread_id()
        if let i = freePoolIndices.popLast() { st.pointee.poolIndex = i } else { st.pointee.poolIndex = nextPoolIndex; nextPoolIndex += 1 }
        st.pointee.next = mutators
        mutators = st
        schedLock.unlock()
        _ = Unmanaged.passRetained(self)   // released by detach (see "Lifetimes")
        tc_set_current_mutator(UnsafeMutableRawPointer(st))
        let rc = tc_watch_thread_exit(UnsafeMutableRawPointer(st), { Heap.mutatorThreadExited($0) })
        if rc != 0 { runtimeFatal("attach: cannot watch for the thread's exit (pthread key error \(rc))") }
        var lo: UInt = 0
        st.pointee.nativeStackHi = UInt(tc_thread_stack_top(&lo))
        st.pointee.nativeStackLo = lo
        if st.pointee.nativeStackHi == 0 && configuration.conservativeStackScan {
            // Without its stack's bounds the thread's native stack could never be
            // scanned, and an object held only in one of its Swift locals would be
            // freed under it.
            var l: UInt = 0, h: UInt = 0
            let rc = tc_thread_stack_bounds(&l, &h)
            runtimeFatal("attach: cannot find this thread's stack (pthread_getattr_np: \(String(cString: strerror(rc))), error \(rc)), which conservative stack scanning needs; run with GODEBUG=tricolorconservative=0 and root every reference in frames")
        }
        st.pointee.lastNativeScan = 0
        allocInitialStack(st)
        return Mutator(state: st)
    }

    /// Detach a mutator: its cache goes back to the heap and its frames stop being roots.
    /// If the heap has no other reference left, it is freed here.
    @available(*, noasync, message: "a task can resume on another thread after await; use synchronous withMutator segments and Handles across await")
    public func detach(_ m: Mutator) {
        let st = m.state
        m.checkUsable("detach")
        if st.pointee.heap !== self { runtimeFatal("detach: mutator belongs to another heap") }
        unlinkMutator(st)
        // Last: this may be the heap's last reference (see "Lifetimes").
        Unmanaged.passUnretained(self).release()
    }

    /// The exit of a thread still attached (the pthread key destructor, on that thread).
    static func mutatorThreadExited(_ raw: UnsafeMutableRawPointer?) {
        guard let raw, tc_get_current_mutator() == raw else { return }
        let st = raw.assumingMemoryBound(to: MutatorState.self)
        // A mutator detached from another thread (misuse) is not this thread's anymore.
        if st.flags & MutatorState.flagDetached != 0 || st.pointee.threadID != tc_thread_id() { return }
        let heap = Unmanaged<Heap>.passUnretained(st.pointee.heap)
        heap._withUnsafeGuaranteedRef { $0.detachExitingThread(st) }
        heap.release()   // the attach's reference; may free the heap
    }

    private func detachExitingThread(_ st: UnsafeMutablePointer<MutatorState>) {
        if checked {
            // Not a trap: the thread is past its last line of code, so a trap would
            // point nowhere useful, and the detach below repairs the state.
            var name = [CChar](repeating: 0, count: 64)
            if tc_thread_name(&name, name.count) != 0 { name[0] = 0 }
            let threadName = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let text = "tricolor: thread \(tc_thread_id()) \"\(threadName)\" exited while attached as mutator \(st.pointee.id); detaching it (pair every attach with a detach, or use withMutator)\n"
            writeStderr(text)
        }
        // Ended inside a blocking region (pthread_exit): leave it first, which waits
        // for a stopped world to restart (the collector may be scanning the stack of a
        // blocking mutator).
        if st.pointee.status == .blocking { exitBlocking(st) }
        // Its frames died with the thread: they are roots no longer.
        st.pointee.stackTop = 0
        unlinkMutator(st)
    }

    /// Give the mutator's cache and grey work back and unlink it; the calling thread is
    /// the mutator's and is attached no more.
    func unlinkMutator(_ st: UnsafeMutablePointer<MutatorState>) {
        gcSafepoint(st)
        freeStack(st)
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
        freePoolIndices.append(st.pointee.poolIndex)
        st.pointee.stackTop = 0
        st.pointee.debugFrameCount = 0   // its frames are gone with its stack
        st.storeFlags(MutatorState.flagDetached | (checked ? MutatorState.flagChecked : 0))
        sched.activeMutators.sub(1, .relaxed)
        st.pointee.next = freeMutators
        freeMutators = st
        statusChanged()
        schedLock.unlock()
        tc_set_current_mutator(nil)
        _ = tc_watch_thread_exit(nil, { Heap.mutatorThreadExited($0) })
    }

    /// Attach the calling thread, run `body`, detach.
    ///
    /// The way to use a heap from async code: `body` is synchronous, so the segment
    /// never awaits and stays on one thread. Keep objects that must outlive it in a
    /// `Handle` (or a `Global`) and read them back in the next segment, on whatever
    /// thread the task resumed on (see Runtime/Async.swift).
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

    /// Mutators attached now (takes the sched lock). For tests and diagnostics.
    var attachedMutatorCount: Int {
        schedLock.withLock {
            var n = 0
            forEachMutator { _ in n += 1 }
            return n
        }
    }

    var phase: GCPhase { GCPhase(rawValue: marking.phase.load(.acquiring))! }
}
