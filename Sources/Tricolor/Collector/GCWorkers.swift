import CTricolor
import Glibc
import Synchronization

// Background threads of the collector, started with the first cycle and parked between
// cycles: mark workers (Go's gcBgMarkWorker) and the background sweeper (Go's bgsweep).
// Threads only: how many workers and at what CPU share is Policy/MarkWorkerPlan.swift;
// pacing is Collector/Pacing.swift; the timing constants are in Policy/Tuning.swift.
//
// On 2 CPUs the plan is one fractional worker with a goal of 0.5 CPU: it marks in
// slices of `Tuning.markSliceWork` and sleeps whenever it is ahead of its share.

extension Heap {
    /// GOMAXPROCS, the CPUs the collector paces itself against: the configured value,
    /// else the online CPUs when the heap was created (sysconf reads a file under /sys
    /// on every call, too slow for the workers' loops).
    var gomaxprocs: Int { procs }

    /// The background mark workers and the CPU share each aims at (Go's startCycle plan).
    var markWorkerPlan: MarkWorkerPlan {
        MarkWorkerPlan(.init(procs: workerProcs, configuredWorkers: configuration.markWorkers))
    }

    var markWorkerCount: Int { markWorkerPlan.count }
    /// Mark workers competing with mutators for CPUs (the dedicated ones).
    var backgroundThreadCountForPacing: Int { markWorkerPlan.dedicated }

    /// Start the mark workers and the background sweeper (with the first cycle).
    ///
    /// The threads hold no reference to the heap while they wait: a thread's body
    /// reaches it through an unretained reference, so a heap whose last user drops it is
    /// freed (its deinit stops these threads) instead of being kept alive by its own
    /// collector. A closure capturing `self`, even `unowned(unsafe)`, retains it for as
    /// long as the loop it calls runs, and that is the thread's lifetime.
    /// Each thread's loop alternates a wait, which touches the heap without closures,
    /// and a unit of work (`collectorUnit`), which may pin the heap (see there).
    /// At most one mark worker per usable CPU whatever GOMAXPROCS says (`workerProcs`).
    func startBackgroundThreadsIfNeeded() {
        bgLock.lock()
        defer { bgLock.unlock() }
        // Under bgLock: two threads may start cycles back to back and both get here.
        guard !backgroundStarted && !shuttingDown else { return }
        backgroundStarted = true
        let plan = markWorkerPlan
        if checked { plan.checkInvariants() }
        let heap = Unmanaged.passUnretained(self)
        let control = collectorControl
        for i in 0..<plan.count {
            let u = plan.utilization(ofThread: i)
            backgroundThreads.append(spawnThread(name: "tricolor-mark\(i)") {
                var gcw = GCWork()
                defer { gcw.destroy() }
                while heap._withUnsafeGuaranteedRef({ $0.waitForMarkPhase() }) {
                    if !Heap.collectorUnit(heap, control, { $0.markWorkerUnit(&gcw, utilization: u) }) { return }
                }
            })
        }
        // With markWorkers: 0 (tests stepping cycles by hand) there is no background
        // sweeper either: sweeping happens only on demand.
        // The same for the background scavenger and the grower (Allocator/Scavenger.swift,
        // Allocator/HeapGrowth.swift).
        if plan.count > 0 {
            backgroundThreads.append(spawnThread(name: "tricolor-sweep") {
                while heap._withUnsafeGuaranteedRef({ $0.waitForSweepRequest() }) {
                    if !Heap.collectorUnit(heap, control, { $0.sweeperUnit() }) { return }
                }
            })
            heapLock.withLock { scav.running = true }
            backgroundThreads.append(spawnThread(name: "tricolor-scav") {
                heap._withUnsafeGuaranteedRef { $0.lowerBackgroundThreadPriority() }
                while heap._withUnsafeGuaranteedRef({ $0.waitForScavengeRequest() }) {
                    // Batches of work, each followed by a sleep without the heap pinned.
                    while true {
                        var sleepNs: UInt64? = nil
                        if !Heap.collectorUnit(heap, control, { sleepNs = $0.scavengerUnit() }) { return }
                        guard let ns = sleepNs else { break }
                        if ns > 0 { if !heap._withUnsafeGuaranteedRef({ $0.scavengerSleep(ns) }) { break } }
                    }
                }
            })
            if backgroundHeapGrowth {
                heapLock.withLock { growth.running = true }
                backgroundThreads.append(spawnThread(name: "tricolor-grow") {
                    heap._withUnsafeGuaranteedRef { $0.lowerBackgroundThreadPriority() }
                    while let epoch = heap._withUnsafeGuaranteedRef({ $0.waitForGrowthRequest() }) {
                        if !Heap.collectorUnit(heap, control, { $0.growerUnit(epoch: epoch) }) { return }
                    }
                })
            }
        }
    }

    /// Whether collector threads pin the heap during each unit of work (below). On in
    /// every build; a test seam, so that tests can also drop heaps whose threads do not
    /// pin. Read once per heap, at creation.
    nonisolated(unsafe) static var collectorThreadsPinHeap = true

    /// Tests: called on the collector thread at the start of each unit of work, after
    /// the pin, with the heap's address (`Unmanaged.toOpaque`).
    static let collectorUnitHook = CollectorUnitHook(nil)

    /// Heap deinits that ran on one of the heap's own collector threads (tests).
    static let deinitsOnCollectorThreads = Atomic<Int>(0)

    /// Run one unit of a collector thread's work (a mark phase's share, a sweep, a batch
    /// of scavenging, a growth), on the thread's unretained reference to the heap.
    /// Returns false when the heap is gone and the thread must end without touching it.
    ///
    /// Why the pin: in an unoptimized build every closure that captures `self` retains
    /// the heap, including a `withLock` body and the right side of `&&` and `||` (an
    /// autoclosure), and releases it when done. If the program drops its last
    /// reference meanwhile, such a release on a collector thread is the last one, and
    /// the heap's deinit would run deep inside collector code that then goes on using
    /// the freed heap (`HeapLifetimeTests.testHeapsDroppedAtRandomPointsOfACycleTearDownCleanly`
    /// found it in the sweep and in mark termination within a second). Rewriting every such closure on every collector path did not
    /// scale, so with `control.pins` the thread holds a strong reference for
    /// the unit: no release inside it can be the last. The last can only be the unpin
    /// here, at the top of the thread, holding no lock. The deinit then runs on this
    /// thread: it joins the other collector threads, detaches this one and sets
    /// `control.heapGone`, and the thread ends.
    ///
    /// Optimized builds pin too. The runtime's own collector paths take no reference
    /// there, but a user's closure can: a free hook that holds the heap (or an object
    /// that owns it) is copied by the sweeper for the span it sweeps, and if the program
    /// removes the hook and drops the heap meanwhile, the sweeper's release of that
    /// copy is the heap's last (`HeapLifetimeTests.testFreeHookHoldingTheHeapReleasedOnTheSweeperTearsDownCleanly`;
    /// without the pin it stopped the program).
    ///
    /// The cost: a heap dropped during a unit is freed when the unit ends, by the
    /// collector thread (a mark phase's share ends when the phase does), not by the
    /// program's release; one retain and one release per unit. The waits between units
    /// are unpinned and closure-free: the heap's deinit must be able to wake and join a
    /// waiting thread.
    ///
    /// A pin taken while the deinit already runs on another thread (the program
    /// dropped the heap as the unit began) is harmless: the deinit joins this thread
    /// before freeing anything, the unit sees `shuttingDown` and ends, and the unpin of
    /// an object in its deinit does not run the deinit again.
    static func collectorUnit(_ heap: Unmanaged<Heap>, _ control: CollectorThreadControl,
                              _ body: (Heap) -> Void) -> Bool {
        let pin = control.pins
        if pin { _ = heap.retain() }
        if let hook = collectorUnitHook.get() { hook(UnsafeRawPointer(heap.toOpaque())) }
        heap._withUnsafeGuaranteedRef { body($0) }
        if pin {
            tc_set_collector_unpinning(1)
            heap.release()
            tc_set_collector_unpinning(0)
            if control.heapGone { return false }
        }
        return true
    }

    /// Stop the collector threads and wait for them to end (the heap's deinit). A mark
    /// phase in progress is abandoned; the threads step out of it at their next check.
    func stopBackgroundThreads() {
        let threads: [pthread_t] = bgLock.withLock {
            shuttingDown = true
            bgCond.broadcast()
            return backgroundThreads
        }
        stopScavenger()
        stopGrower()
        var onOwnThread = false
        for t in threads {
            if pthread_equal(t, pthread_self()) != 0 {
                // The deinit runs on this collector thread, at the end of a unit of work
                // (`collectorUnit`): the thread ends when the deinit returns.
                onOwnThread = true
                pthread_detach(t)
            } else {
                pthread_join(t, nil)
            }
        }
        // After the joins: no other thread reads the flag any more.
        if onOwnThread {
            collectorControl.heapGone = true
            Heap.deinitsOnCollectorThreads.add(1, ordering: .relaxed)
        }
        bgLock.withLock { backgroundThreads = [] }
    }

    /// Whether `stopBackgroundThreads` was called (checked by the threads' loops between
    /// units of work).
    /// No closure: collector threads call it (see `scanGlobalRoots`).
    func isShuttingDown() -> Bool {
        bgLock.lock()
        let stop = shuttingDown
        bgLock.unlock()
        return stop
    }

    func wakeMarkWorkers() {
        startBackgroundThreadsIfNeeded()
        bgLock.withLock { bgCond.broadcast() }
    }

    func wakeSweeper() {
        // No closure: this is the last thing a mark worker does for a cycle, and in an
        // unoptimized build a closure capturing the heap retains it. If the program
        // drops its last reference meanwhile, the worker's release would be the last
        // and run deinit on the worker's own thread (fatal). Found by the TSan run of
        // `testWorkerHandsMarkTerminationToAllocatingMutator`.
        bgLock.lock()
        sweepRequested = true
        bgCond.broadcast()
        bgLock.unlock()
    }
}

/// The tests' hook into `Heap.collectorUnit`. Other heaps' collector threads may read
/// it while a test sets it: behind a pthread mutex, which ThreadSanitizer sees
/// (`PthreadLocked`).
typealias CollectorUnitHook = PthreadLocked<(@Sendable (UnsafeRawPointer) -> Void)?>

/// What a heap's collector threads share with its deinit (`Heap.collectorUnit`).
final class CollectorThreadControl: @unchecked Sendable {
    /// Whether the threads pin the heap during each unit of work
    /// (`Heap.collectorThreadsPinHeap` when the heap was created). Immutable.
    let pins: Bool
    /// Set by a deinit that runs on one of the collector threads, after it has joined
    /// the others; read by the same thread when the deinit returns.
    var heapGone = false
    init(pins: Bool) { self.pins = pins }
}

extension Heap {
    /// A background mark worker's wait for a mark phase (unpinned, no closures: see
    /// `collectorUnit`). False when the heap is shutting down.
    func waitForMarkPhase() -> Bool {
        bgLock.lock()
        // Not `phase != .mark && !shuttingDown` (see `scanGlobalRoots`).
        while phase != .mark { if shuttingDown { break }; bgCond.wait(bgLock) }
        let stop = shuttingDown
        bgLock.unlock()
        return !stop
    }

    /// A background mark worker's share of one mark phase: drains grey objects in
    /// slices, sleeping as needed to keep to its CPU share, and tries to finish the
    /// cycle whenever it runs out of work.
    func markWorkerUnit(_ gcw: inout GCWork, utilization: Double) {
        let wallStart = tc_nanotime()
        let cpuStart = tc_thread_cputime_ns()
        var handoffStart: UInt64 = 0
        while phase == .mark {
            if isShuttingDown() { return }
            waitWhileWorldStopping()
            let t0 = tc_thread_cputime_ns()
            let done = drain(&gcw, budget: Tuning.markSliceWork, preemptible: true)
            let dt = tc_thread_cputime_ns() - t0
            marking.bgMarkTimeNs.add(UInt(dt), .relaxed)
            if done > 0 { marking.bgScanCredit.add(done, .relaxed) }
            if done < Tuning.markSliceWork {
                if sched.attention.load(.relaxed) & Attention.stop != 0 { continue }   // preempted, not out of work
                finishMarkOrHandOff(&handoffStart)
                if phase == .mark { tc_sleep_ns(Tuning.markWorkerPollNs) }   // waiting for mutators
                continue
            }
            handoffStart = 0
            // Go's idle mark workers: while fewer mutators run than there are
            // CPUs, the spare CPU marks flat out (counted as idle marking).
            let idle = Int(sched.activeMutators.load(.relaxed)) + backgroundThreadCountForPacing < gomaxprocs
            if utilization < 1 && !idle {
                // Fractional: sleep while ahead of the share of wall time since mark start.
                let wall = Double(tc_nanotime() - wallStart)
                let cpu = Double(tc_thread_cputime_ns() - cpuStart)
                if cpu > utilization * wall {
                    let ahead = cpu / utilization - wall
                    tc_sleep_ns(min(UInt64(saturating: ahead), Tuning.maxFractionalSleepNs))
                }
            }
        }
    }

    /// Out of grey objects: mark termination is due. While mutators are running, the
    /// worker hands it to them (`Attention.markDone`: the next mutator at an allocation
    /// slow path or `safepoint()` runs `markDone`) instead of stopping the world itself.
    /// The worker is a thread the OS schedules next to the mutators; on a machine with no
    /// spare CPU one mutator is usually off its CPU while the worker runs, and a stop the
    /// worker requests waits for the OS to give that mutator its CPU back (50–250 µs
    /// measured with two mutators on two CPUs). A mutator that stops the world is itself
    /// on a CPU, and the worker sleeps meanwhile, so the other mutator is too. In Go the
    /// worker runs on a P, so a descheduled goroutine is already stopped; this is the
    /// threads' equivalent. If no mutator takes the request within
    /// `Tuning.markHandOffWaitNs` (1 ms; all blocked, or
    /// computing without safepoints) the worker runs mark termination itself; likewise
    /// when a mutator gave it back (`markDone(handoff:)`).
    func finishMarkOrHandOff(_ handoffStart: inout UInt64) {
        let now = tc_nanotime()
        if marking.handoffRefused.load(.relaxed) != 0 {
            // A mutator found another mutator's stack unscanned and gave it back: wait
            // for the stacks here, where waiting holds up no mutator.
            handoffStart = 0
            markDone(nil)
            return
        }
        let pending = sched.attention.load(.relaxed) & Attention.markDone != 0
        if handoffStart != 0 && !pending {
            handoffStart = 0   // a mutator took it (and found work left, or finished)
            return
        }
        if sched.activeMutators.load(.relaxed) > 0 && handoffStart == 0 {
            handoffStart = now
            sched.attention.fetchOr(Attention.markDone)
            return
        }
        if handoffStart == 0 || now - handoffStart > Tuning.markHandOffWaitNs {
            handoffStart = 0
            markDone(nil)   // clears the request
        }
    }

    /// The background sweeper's wait for a mark termination (unpinned, no closures:
    /// see `collectorUnit`). False when the heap is shutting down.
    func waitForSweepRequest() -> Bool {
        bgLock.lock()
        while !sweepRequested { if shuttingDown { break }; bgCond.wait(bgLock) }   // no `&&` (see above)
        sweepRequested = false
        let stop = shuttingDown
        bgLock.unlock()
        return !stop
    }

    /// The background sweeper's unit: after a mark termination, sweep spans until none
    /// is left, yielding between spans so it only uses otherwise idle time.
    func sweeperUnit() {
        var n = 0
        while phase == .off {
            waitWhileWorldStopping()
            // Like Go's bgsweep, only use a CPU that no mutator wants; otherwise the
            // mutators sweep on demand and in proportion to their allocation.
            if Int(sched.activeMutators.load(.relaxed)) >= gomaxprocs {
                if isShuttingDown() { return }
                tc_sleep_ns(Tuning.sweeperBackoffNs)
                continue
            }
            if !sweepOne() { sweepDoneWakeScavenger(); return }
            n += 1
            if n % Tuning.sweeperYieldEverySpans == 0 {
                if isShuttingDown() { return }
                tc_yield()
            }
        }
    }

    /// Background threads are not stopped with the world, but while a stop is pending
    /// they step aside so the CPUs go to the mutators that must reach a safepoint.
    func waitWhileWorldStopping() {
        if sched.attention.load(.relaxed) & Attention.stop == 0 { return }
        schedLock.lock()
        while stwActive { worldStarted.wait(schedLock) }
        schedLock.unlock()
    }

    func spawnThread(name: String, _ body: @escaping () -> Void) -> pthread_t {
        final class Box { let f: () -> Void; let name: String; init(_ f: @escaping () -> Void, _ n: String) { self.f = f; name = n } }
        let box = Unmanaged.passRetained(Box(body, name)).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            _ = b.name.withCString { tc_set_thread_name($0) }
            b.f()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            runtimeFatal("cannot start collector thread \(name) (pthread_create: \(String(cString: strerror(rc))))")
        }
        return t
    }
}
