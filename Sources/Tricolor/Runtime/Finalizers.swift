import CTricolor
import Glibc

// Finalizers, cleanups and the finalizer thread (Go's mfinal.go: SetFinalizer, the
// finalizer queue finq and its goroutine runfinq; mcleanup.go: AddCleanup, Stop;
// KeepAlive).
//
// What runs when. A collection that finds an object with a finalizer unreachable
// (Runtime/Specials.swift) revives it, clears its weak handle and queues the finalizer;
// a collection that finds an object with cleanups dead queues the cleanups and frees
// the object. Both are queued by the sweep, so by the time `collect()` returns (its
// sweep is complete) everything that cycle found is queued; `waitForFinalizers()` then
// waits until the thread has run it all. A finalized object that the finalizer did not
// store anywhere is freed by the next cycle that finds it unreachable (a finalizer runs
// once: it is removed when queued). Objects reachable only from a finalized object live
// until the finalizer has run and a later cycle finds them dead, so finalizers of a
// chain run in order, outermost first, one per cycle, as in Go.
//
// The finalizer thread is Go's finalizer goroutine, as a thread: started with the first
// `setFinalizer`, `addCleanup` or `makeBox`, attached to the heap as a mutator (a
// finalizer may allocate, store, resurrect), waiting for work inside a blocking region
// so that it never holds up a collection. It runs one job at a time, in queue order,
// leaving the job at the head of the queue (a root) until it returns, so that the job's
// object or argument stays reachable for the collector the whole time.
// A finalizer or cleanup that throws ends the process with a fatal error (Go's panic in
// a finalizer); one that traps ends it like any other trap.
//
// Lifetime. The thread holds no reference to its heap: attaching takes one, and the
// thread gives it back at once, so that a heap dropped by its program is freed. The
// heap's deinit stops it (wakes it, joins it); jobs still queued then are dropped,
// except that the Swift objects of dead boxes are released (Go, likewise, does not run
// pending finalizers at exit). If the heap's last reference is dropped on the finalizer
// thread itself (a finalizer or a box's object held it), deinit detaches the thread's
// mutator there, detaches the pthread, and the thread's loop ends without touching the
// heap again (`FinalizerThreadControl.heapGone`). Outside jobs the thread calls no
// `Mutator` method (each holds a temporary reference to the heap, which could turn out
// to be the last: the lifecycle benchmark found a heap freed on this thread as it went
// back to waiting), and `setFinalizer` waits for the thread to attach before it
// returns, so that the attach's own reference is never the last either.
//
// Invariants: jobs run in queue order, one at a time; the running job is at `head`
// until it returns; `waitForFinalizers` returns when nothing is pending and nothing runs.
//
// Locking: `FinalizerQueue.lock` (rank finq) guards the queue, the counters and the
// thread's state; it nests inside the specials lock (the sweeper queues under it) and
// nothing is taken under it.

/// A finalizer or cleanup: called on the heap's finalizer thread with that thread's
/// mutator and the object (finalizer) or the argument (cleanup). It may allocate and
/// store like any mutator code. A thrown error ends the process with a fatal error.
///
/// The closure is not traced: it must not capture `Ref`s it needs kept alive. A
/// finalizer receives its object; a cleanup receives its argument, which is a root
/// until the cleanup has run or is stopped.
public typealias LifecycleAction = @Sendable (Mutator, Ref) throws -> Void

/// Per-thread flag of the finalizer thread (see "Lifetime" above). Only that thread
/// touches it.
final class FinalizerThreadControl: @unchecked Sendable {
    var heapGone = false
}

/// The finalizer queue and the thread's state. All fields: `lock`.
final class FinalizerQueue: @unchecked Sendable {
    let lock = RuntimeLock(rank: .finq)
    /// Work arrived, or the thread must stop.
    let workCond = RuntimeCond()
    /// The queue became empty with nothing running.
    let idleCond = RuntimeCond()
    var jobs: [LifecycleJob] = []
    var head = 0
    /// A job has been taken and has not finished.
    var busy = false
    var started = false
    /// The thread has attached (and given back the attach's heap reference).
    var attached = false
    var stopping = false
    var thread = pthread_t()
    var threadID: UInt64 = 0
    let control = FinalizerThreadControl()
    // Counters (Go has none; MemStats-style totals).
    var finalizersQueued = 0, finalizersRun = 0
    var cleanupsQueued = 0, cleanupsRun = 0
    var releasesQueued = 0, releasesRun = 0

    deinit {
        lock.destroy(); workCond.destroy(); idleCond.destroy()
    }

    var pending: Int { jobs.count - head }

    /// Queue jobs (the sweeper, specials lock held) and wake the thread.
    func enqueue(_ new: [LifecycleJob], finalizers: Int, cleanups: Int) {
        lock.withLock {
            if head > 64 && head * 2 > jobs.count { jobs.removeFirst(head); head = 0 }
            jobs.append(contentsOf: new)
            finalizersQueued += finalizers
            cleanupsQueued += cleanups
            releasesQueued += new.count - finalizers - cleanups
            workCond.broadcast()
        }
    }

    /// Calls `body` with each heap address the queued jobs keep alive; returns how many
    /// jobs it looked at.
    func forEachRoot(_ body: (UInt) -> Void) -> Int {
        lock.withLock {
            for k in head..<jobs.count {
                switch jobs[k] {
                case .finalizer(_, let obj): body(obj)
                case .cleanup(_, let arg): if arg != 0 { body(arg) }
                case .release, .done: break
                }
            }
            return pending
        }
    }
}

extension Heap {
    // MARK: the thread

    /// Start the finalizer thread unless it runs (Go's createfing, on the first
    /// SetFinalizer). Never while the world is stopped (it is called from public API).
    func startFinalizerThreadIfNeeded() {
        let q = finalizerQueue
        q.lock.lock()
        defer { q.lock.unlock() }
        guard !q.started && !q.stopping else { return }
        q.started = true
        let heap = Unmanaged.passUnretained(self)
        let control = q.control
        q.thread = spawnThread(name: "tricolor-finq") { heap._withUnsafeGuaranteedRef { $0.finalizerLoop(control) } }
        // Wait until it has attached, so that its attach's reference to the heap (given
        // back at once) is never the heap's last: the caller holds one meanwhile. In a
        // blocking region: attach waits out a stopped world.
        q.lock.unlock()
        asBlocking {
            q.lock.lock()
            while !q.attached { q.idleCond.wait(q.lock) }
            q.lock.unlock()
        }
        q.lock.lock()
    }

    /// The finalizer thread's body (Go's runfinq).
    ///
    /// It calls no `Mutator` method of its own: those read the mutator's heap as a strong
    /// reference for the length of a call, and the thread must never hold the heap's
    /// last reference except inside a job (see "Lifetime"). The running job stays at the
    /// head of the queue, which is a root, until it returns: no frame, no shading.
    private func finalizerLoop(_ control: FinalizerThreadControl) {
        let q = finalizerQueue
        q.lock.withLock { q.threadID = tc_thread_id() }
        let m = attach()
        let st = m.state
        // Attached mutators hold a reference to their heap; this thread must not.
        Unmanaged.passUnretained(self).release()
        q.lock.withLock {
            q.attached = true
            q.idleCond.broadcast()
        }
        let heap = Unmanaged.passUnretained(self)
        while true {
            // Wait for work without holding up collections (a blocking region).
            let stop: Bool = withRegistersSpilled { sp in
                st.pointee.nativeSP = sp
                heap._withUnsafeGuaranteedRef { $0.enterBlocking(st) }
                q.lock.lock()
                while q.pending == 0 && !q.stopping { q.workCond.wait(q.lock) }
                let stop = q.stopping
                if !stop { q.busy = true }
                q.lock.unlock()
                heap._withUnsafeGuaranteedRef { $0.exitBlocking(st) }
                return stop
            }
            if stop { break }
            // Only this thread takes jobs off the queue. The job stays in the queue while
            // it runs (its object is a root there).
            var job: LifecycleJob? = q.lock.withLock { q.jobs[q.head] }
            switch job.unsafelyUnwrapped {
            case .finalizer(let fn, let obj):
                do { try fn(m, Ref(address: obj)) } catch {
                    runtimeFatal("finalizer for \(Ref(address: obj)) threw: \(error)")
                }
            case .cleanup(let fn, let arg):
                do { try fn(m, Ref(address: arg)) } catch {
                    runtimeFatal("cleanup threw: \(error)")
                }
            case .release(let p):
                Unmanaged<AnyObject>.fromOpaque(p).release()
            case .done:
                break
            }
            // The heap may have been freed by what just ran (see "Lifetime").
            if control.heapGone { return }
            q.lock.withLock {
                switch job.unsafelyUnwrapped {
                case .finalizer: q.finalizersRun += 1
                case .cleanup: q.cleanupsRun += 1
                case .release: q.releasesRun += 1
                case .done: break
                }
                // The queue lets go of the closure here; this thread's copy goes below.
                q.jobs[q.head] = .done
                q.head += 1
                q.busy = false
                if q.pending == 0 { q.idleCond.broadcast() }
            }
            // The closure's last release, and with it whatever it captured, runs here,
            // with no lock held: a deinit it leads to may stop a cleanup (the specials
            // lock) or drop the heap (its deinit stops this thread, taking the queue's
            // lock). Before, the closure stayed in the queue until a later enqueue
            // trimmed it, on a sweeping thread holding both locks.
            job = nil
            if control.heapGone { return }
        }
        // No detach(): that would give back the reference this thread does not hold.
        unlinkMutator(st)
    }

    /// Stop the finalizer thread (the heap's deinit, first): wake it, wait for it to end.
    /// `releaseLifecycleLeftovers` frees what it left once the collector has stopped.
    func stopFinalizerThread() {
        let q = finalizerQueue
        q.lock.lock()
        q.stopping = true
        let started = q.started
        let onIt = started && q.threadID == tc_thread_id()
        q.workCond.broadcast()
        q.idleCond.broadcast()
        q.lock.unlock()
        if onIt {
            // The last reference went away inside a job on the finalizer thread.
            q.control.heapGone = true
            if let st = currentMutator() { unlinkMutator(st) }
            pthread_detach(q.thread)
            // The job that dropped the heap is done (unless the drop was the release of
            // a job already counted done: busy is false then).
            q.lock.withLock { if q.busy { q.head += 1; q.busy = false } }
        } else if started {
            pthread_join(q.thread, nil)
        }
    }

    /// The heap's deinit, after its collector threads have stopped (until then a sweep
    /// may still move records from the table to the queue): release the Swift objects of
    /// boxes, dead or not (nothing can reach them now), free the spans' debugger mirrors
    /// of the table, and empty the table and queue.
    func releaseLifecycleLeftovers() {
        let q = finalizerQueue
        var owned: [UnsafeMutableRawPointer] = []
        q.lock.withLock {
            for k in q.head..<q.jobs.count { if case .release(let p) = q.jobs[k] { owned.append(p) } }
            q.jobs = []; q.head = 0
        }
        specials.lock.withLock {
            for (base, list) in specials.bySpan {
                for sp in list where sp.kind == .swiftBox { owned.append(sp.box!) }
                // The spans are still mapped (freed after this): drop their debugger mirrors.
                if let s = spanOf(base) { mirrorFreeLocked(s) }
            }
            specials.bySpan = [:]
            specials.count = 0
            specials.weakHandles = 0
            specials.profileRecords = 0
        }
        for p in owned { Unmanaged<AnyObject>.fromOpaque(p).release() }
    }

    /// Whether the calling thread is this heap's finalizer thread.
    var onFinalizerThread: Bool {
        let q = finalizerQueue
        return q.lock.withLock { q.started && q.threadID == tc_thread_id() }
    }

    // MARK: waiting

    /// Wait until every finalizer, cleanup and box release queued so far has run (Go's
    /// internal blockUntilEmptyFinalizerQueue, which its tests use). Together with
    /// `collect()`: after `collect(); waitForFinalizers()` every finalizer that cycle
    /// queued has returned. A calling mutator waits in a blocking region. Must not be
    /// called on the finalizer thread (a finalizer waiting for itself).
    public func waitForFinalizers() {
        if onFinalizerThread { runtimeFatal("waitForFinalizers called by a finalizer: it would wait for itself") }
        let q = finalizerQueue
        asBlocking {
            q.lock.lock()
            while (q.pending > 0 || q.busy) && !q.stopping { q.idleCond.wait(q.lock) }
            q.lock.unlock()
        }
    }

    // MARK: cleanups

    /// Cancel a cleanup, if it has not been queued yet (`Cleanup.stop()`).
    func stopCleanup(object: UInt, id: UInt64) {
        guard let s = spanOf(object), s.pointee.state == MSpanState.inUse.rawValue else { return }
        let removed = specials.lock.withLock {
            removeSpecialLocked(span: s, addr: object) { $0.kind == .cleanup && $0.id == id }
        }
        // A root deleted while marking: shade what it held (the deletion barrier).
        if let removed { shadeNewSpecial(markThrough: 0, grey: removed.arg) }
    }

    /// Checked mode: whether `target` can be reached from `from` through pointer
    /// words, looking at no more than `limit` objects (the check is best effort: a
    /// larger graph is not searched to the end).
    func reaches(from: UInt, to target: UInt, limit: Int = 100_000) -> Bool {
        var seen: Set<UInt> = []
        var stack = [from]
        while let p = stack.popLast(), seen.count < limit {
            guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else { continue }
            let idx = s.pointee.isLarge ? 0 : s.objectIndex(p)
            let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
            if base == target { return true }
            if !seen.insert(base).inserted || s.pointee.spanClass.noscan { continue }
            let tid: UInt16 = s.pointee.typeIDs.map { $0[Int(idx)] } ?? (UInt16(truncatingIfNeeded: s.pointee.largeType) | arrayTypeBit)
            let t = types + Int(tid & ~arrayTypeBit)
            guard let pw = t.pointee.ptrWords else { continue }
            let size = t.pointee.size
            let end = s.pointee.isLarge ? s.pointee.limit : base &+ s.pointee.elemSize
            let count = tid & arrayTypeBit != 0 ? (end &- base) / size : 1
            for e in 0..<count {
                for k in 0..<t.pointee.numPtrWords {
                    let v = tc_load_acquire(UnsafeRawPointer(bitPattern: base &+ e &* size &+ UInt(pw[k]) &* 8)!)
                    if v != 0 && v != zeroBase { stack.append(v) }
                }
            }
        }
        return false
    }
}

/// A registered cleanup (Go 1.24's runtime.Cleanup), returned by `Mutator.addCleanup`.
public struct Cleanup: @unchecked Sendable {
    let heap: Unmanaged<Heap>
    let object: UInt
    let id: UInt64

    /// Cancel the cleanup (Go's Cleanup.Stop): if its object has not been found dead
    /// yet, the cleanup will never run and its argument is a root no more. No effect if
    /// it is already queued or has run. Call it while the heap exists.
    public func stop() {
        heap._withUnsafeGuaranteedRef { $0.stopCleanup(object: object, id: id) }
    }
}

extension Mutator {
    // MARK: finalizers and cleanups

    /// Set or remove the finalizer of `object` (Go's runtime.SetFinalizer).
    ///
    /// When a collection finds `object` unreachable, the finalizer is queued and later
    /// called on the heap's finalizer thread with the object, which survives that cycle
    /// (and, if the finalizer stores it somewhere reachable, for good: resurrection).
    /// The finalizer runs once; a later cycle that finds the object unreachable frees
    /// it. Everything the object refers to is kept until the finalizer has run. Weak
    /// references to the object read as nil from the moment its finalizer is queued.
    ///
    /// Go's rules: `object` must be the start of an object of this heap (not an interior
    /// address, not a tiny pointer-free object under 16 bytes); an object has at most
    /// one finalizer (setting a second one is a fatal error; pass `nil` first to
    /// replace it). An object that is part of a cycle of references, or refers to
    /// itself, is never finalized and never freed: the collector keeps what a
    /// finalizer's object refers to, so the object keeps itself. Finalizers of objects
    /// that refer to each other run in order, one per collection. There is no promise
    /// that a finalizer runs before the process exits or the heap is freed.
    ///
    /// - Parameters:
    ///   - object: the object; `Ref.null` or the zero-size object is ignored.
    ///   - finalizer: the function to run, or nil to remove the object's finalizer.
    public func setFinalizer(_ object: Ref, _ finalizer: LifecycleAction?) {
        let heap = state.pointee.heap
        checkUsable("setFinalizer")
        if object.isNull || object.address == heap.zeroBase { return }
        let (s, _) = heap.objectForSpecial(object.address, "setFinalizer")
        guard let finalizer else {
            let removed = heap.specials.lock.withLock {
                heap.removeSpecialLocked(span: s, addr: object.address) { $0.kind == .finalizer }
            }
            // The removed closure is released here, after the lock: what it captured may
            // have a deinit that takes the specials lock (`Cleanup.stop()`).
            withExtendedLifetime(removed) {}
            return
        }
        heap.startFinalizerThreadIfNeeded()
        let added = heap.specials.lock.withLock {
            heap.insertSpecialLocked(Special(addr: object.address, kind: .finalizer, fn: finalizer), span: s)
        }
        if !added { runtimeFatal("setFinalizer: \(object) already has a finalizer (remove it with nil first)") }
        heap.shadeNewSpecial(markThrough: object.address, grey: 0)
    }

    /// Attach a cleanup to `object` (Go 1.24's runtime.AddCleanup): some time after a
    /// collection finds `object` dead, `cleanup` runs on the finalizer thread with
    /// `argument`. An object may have any number of cleanups; they never receive the
    /// object and never resurrect it (it is freed by the cycle that queues them). Unlike
    /// a finalizer, a cleanup does not keep what the object refers to alive, and it does
    /// not stop a cycle of objects from being freed.
    ///
    /// `argument` is a root until the cleanup has run or is stopped, so it must not
    /// refer to `object`, or the object would never die. Checked mode traps when it is
    /// the object or reaches it.
    ///
    /// - Returns: a `Cleanup` whose `stop()` cancels it.
    @discardableResult
    public func addCleanup(_ object: Ref, argument: Ref = .null, _ cleanup: @escaping LifecycleAction) -> Cleanup {
        let heap = state.pointee.heap
        checkUsable("addCleanup")
        if object.isNull { runtimeFatal("addCleanup: object is null") }
        let (s, _) = heap.objectForSpecial(object.address, "addCleanup")
        // The argument being the object itself is caught in every mode (one compare, as
        // Go 1.24's AddCleanup panics on it); one that only refers to it, in checked mode.
        if argument == object {
            runtimeFatal("addCleanup: the argument \(argument) is the object \(object) itself, so the object stays reachable and the cleanup will never run")
        }
        if heap.checked && !argument.isNull {
            if heap.reaches(from: argument.address, to: object.address) {
                runtimeFatal("addCleanup: the argument \(argument) \(argument == object ? "is" : "refers to") the object \(object) itself, so the object stays reachable and the cleanup will never run")
            }
        }
        heap.startFinalizerThreadIfNeeded()
        let id: UInt64 = heap.specials.lock.withLock {
            let id = heap.specials.nextCleanupID
            heap.specials.nextCleanupID += 1
            _ = heap.insertSpecialLocked(Special(addr: object.address, kind: .cleanup, id: id, fn: cleanup, arg: argument.address), span: s)
            return id
        }
        heap.shadeNewSpecial(markThrough: 0, grey: argument.address)
        return Cleanup(heap: Unmanaged.passUnretained(heap), object: object.address, id: id)
    }

    /// Keep `object` reachable up to this call (Go's runtime.KeepAlive).
    ///
    /// With conservative native-stack scanning (the default), a `Ref` held in a local
    /// variable keeps its object alive only while the compiled code still holds it in
    /// a register or a stack slot; the optimizer may drop it after its last use. Call
    /// `keepAlive` after the last point where the object must still exist, typically
    /// after using a resource its finalizer would release. (A `Ref` in a frame slot is
    /// a root until the slot changes; `keepAlive` is for the ones that are not.)
    @inline(never)
    public func keepAlive(_ object: Ref) {
        withExtendedLifetime(object) {}
        _ = tc_load_relaxed(UnsafeRawPointer(state.pointee.stopFlag))
    }
}
