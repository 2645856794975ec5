import CTricolor
import Glibc

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
    /// The threads hold no reference to the heap: a thread's body reaches it through an
    /// unretained reference, so a heap whose last user drops it is freed (its deinit
    /// stops these threads) instead of being kept alive by its own collector. A closure
    /// capturing `self`, even `unowned(unsafe)`, retains it for as long as the loop it
    /// calls runs, and that is the thread's lifetime.
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
        for i in 0..<plan.count {
            let u = plan.utilization(ofThread: i)
            backgroundThreads.append(spawnThread(name: "tricolor-mark\(i)") { heap._withUnsafeGuaranteedRef { $0.markWorkerLoop(utilization: u) } })
        }
        // With markWorkers: 0 (tests stepping cycles by hand) there is no background
        // sweeper either: sweeping happens only on demand.
        // The same for the background scavenger and the grower (Allocator/Scavenger.swift,
        // Allocator/HeapGrowth.swift).
        if plan.count > 0 {
            backgroundThreads.append(spawnThread(name: "tricolor-sweep") { heap._withUnsafeGuaranteedRef { $0.sweeperLoop() } })
            heapLock.withLock { scav.running = true }
            backgroundThreads.append(spawnThread(name: "tricolor-scav") { heap._withUnsafeGuaranteedRef { $0.scavengerLoop() } })
            if backgroundHeapGrowth {
                heapLock.withLock { growth.running = true }
                backgroundThreads.append(spawnThread(name: "tricolor-grow") { heap._withUnsafeGuaranteedRef { $0.growerLoop() } })
            }
        }
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
        for t in threads { pthread_join(t, nil) }
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

    /// A background mark worker: waits for a mark phase, then drains grey objects in
    /// slices, sleeping as needed to keep to its CPU share, and tries to finish the cycle
    /// whenever it runs out of work.
    func markWorkerLoop(utilization: Double) {
        var gcw = GCWork()
        defer { gcw.destroy() }
        while true {
            bgLock.lock()
            // Not `phase != .mark && !shuttingDown` (see `scanGlobalRoots`).
            while phase != .mark { if shuttingDown { break }; bgCond.wait(bgLock) }
            let stop = shuttingDown
            bgLock.unlock()
            if stop { return }
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

    /// The background sweeper: after each mark termination, sweep spans until none is
    /// left, yielding between spans so it only uses otherwise idle time.
    func sweeperLoop() {
        while true {
            bgLock.lock()
            while !sweepRequested { if shuttingDown { break }; bgCond.wait(bgLock) }   // no `&&` (see above)
            sweepRequested = false
            let stop = shuttingDown
            bgLock.unlock()
            if stop { return }
            var n = 0
            while phase == .off {
                waitWhileWorldStopping()
                // Like Go's bgsweep, only use a CPU that no mutator wants; otherwise the
                // mutators sweep on demand and in proportion to their allocation.
                if Int(sched.activeMutators.load(.relaxed)) >= gomaxprocs {
                    tc_sleep_ns(Tuning.sweeperBackoffNs)
                    continue
                }
                if !sweepOne() { sweepDoneWakeScavenger(); break }
                n += 1
                if n % Tuning.sweeperYieldEverySpans == 0 {
                    if isShuttingDown() { return }
                    tc_yield()
                }
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
