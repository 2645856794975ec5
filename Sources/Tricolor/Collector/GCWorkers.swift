import CTricolor
import Glibc

// Background threads of the collector, started with the first cycle and parked between
// cycles: mark workers (Go's gcBgMarkWorker) and the background sweeper (Go's bgsweep).
// Also the sweep pacer, the GC CPU limiter and the per-cycle statistics.
//
// Mark worker scheduling follows Go's rule for GOMAXPROCS = number of CPUs: 25% of the
// CPUs as dedicated workers when that rounds well, otherwise a fractional worker that
// marks for a share of its time. On 2 CPUs that is one fractional worker with a goal of
// 0.5 CPU: it marks in ~1 ms slices and sleeps whenever it is ahead of its share.

extension Heap {
    /// GOMAXPROCS, the CPUs the collector paces itself against: the configured value,
    /// else the online CPUs when the heap was created (sysconf reads a file under /sys
    /// on every call, too slow for the workers' loops).
    var gomaxprocs: Int { procs }

    /// Number of background mark workers and the utilization each aims at.
    var markWorkerPlan: (count: Int, utilization: Double) {
        if let n = configuration.markWorkers { return (n, n == 0 ? 0 : min(1, Pacer.goalUtilization * Double(gomaxprocs) / Double(n))) }
        let goal = Pacer.goalUtilization * Double(workerProcs)   // threads: at most one per CPU
        var dedicated = Int(goal + 0.5)
        let err = Double(dedicated) / goal - 1
        if err < -0.3 || err > 0.3 {
            if Double(dedicated) > goal { dedicated -= 1 }
            let fractional = goal - Double(dedicated)
            if fractional > 0 { return (dedicated + 1, 1) }   // the last one is fractional
        }
        return (max(dedicated, 1), 1)
    }

    var markWorkerCount: Int { markWorkerPlan.count }
    /// Mark workers competing with mutators for CPUs (the dedicated ones).
    var backgroundThreadCountForPacing: Int { max(0, markWorkerPlan.count - 1) }

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
        let goal = Pacer.goalUtilization * Double(workerProcs)
        let heap = Unmanaged.passUnretained(self)
        for i in 0..<plan.count {
            // Dedicated workers run flat out; a fractional one gets what is left of the goal.
            let share = min(1.0, goal - Double(i))
            let u = configuration.markWorkers != nil ? plan.utilization : max(0.05, share)
            backgroundThreads.append(spawnThread(name: "tricolor-mark\(i)") { heap._withUnsafeGuaranteedRef { $0.markWorkerLoop(utilization: u) } })
        }
        // With markWorkers: 0 (tests stepping cycles by hand) there is no background
        // sweeper either: sweeping happens only on demand.
        if plan.count > 0 {
            backgroundThreads.append(spawnThread(name: "tricolor-sweep") { heap._withUnsafeGuaranteedRef { $0.sweeperLoop() } })
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
        for t in threads { pthread_join(t, nil) }
        bgLock.withLock { backgroundThreads = [] }
    }

    /// Whether `stopBackgroundThreads` was called (checked by the threads' loops between
    /// units of work).
    func isShuttingDown() -> Bool { bgLock.withLock { shuttingDown } }

    func wakeMarkWorkers() {
        startBackgroundThreadsIfNeeded()
        bgLock.withLock { bgCond.broadcast() }
    }

    func wakeSweeper() {
        bgLock.withLock { sweepRequested = true; bgCond.broadcast() }
    }

    /// A background mark worker: waits for a mark phase, then drains grey objects in
    /// slices, sleeping as needed to keep to its CPU share, and tries to finish the cycle
    /// whenever it runs out of work.
    func markWorkerLoop(utilization: Double) {
        var gcw = GCWork()
        defer { gcw.destroy() }
        while true {
            bgLock.lock()
            while phase != .mark && !shuttingDown { bgCond.wait(bgLock) }
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
                let done = drain(&gcw, budget: 256 << 10, preemptible: true)
                let dt = tc_thread_cputime_ns() - t0
                marking.bgMarkTimeNs.add(UInt(dt), .relaxed)
                if done > 0 { marking.bgScanCredit.add(done, .relaxed) }
                if done < 256 << 10 {
                    if sched.attention.load(.relaxed) & Attention.stop != 0 { continue }   // preempted, not out of work
                    finishMarkOrHandOff(&handoffStart)
                    if phase == .mark { tc_sleep_ns(50_000) }   // waiting for mutators
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
                        tc_sleep_ns(UInt64(min(ahead, 5_000_000)))
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
    /// threads' equivalent. If no mutator takes the request within 1 ms (all blocked, or
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
        if handoffStart == 0 || now - handoffStart > 1_000_000 {
            handoffStart = 0
            markDone(nil)   // clears the request
        }
    }

    /// The background sweeper: after each mark termination, sweep spans until none is
    /// left, yielding between spans so it only uses otherwise idle time.
    func sweeperLoop() {
        while true {
            bgLock.lock()
            while !sweepRequested && !shuttingDown { bgCond.wait(bgLock) }
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
                    tc_sleep_ns(1_000_000)
                    continue
                }
                if !sweepOne() { scavengeForMemoryLimit(); break }
                n += 1
                if n % 10 == 0 {
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

    // MARK: sweep pacing (Go's gcPaceSweeper / deductSweepCredit)

    func paceSweeper(trigger: UInt) {
        if trigger == UInt.max {
            // No trigger (GOGC off, no limit): no deadline to sweep by.
            sweep.sweepPagesPerByte.store(0, .releasing)
            return
        }
        let heapLive = gcController.heapLive.load(.relaxed)
        let inUsePages = heapStats.heapInuse.load(.relaxed) >> SizeClassTable.pageShiftU
        var distance = Int(trigger) - Int(heapLive) - Int(Pacer.sweepMinHeapDistance)
        if distance < 8192 { distance = 8192 }
        let perByte = Double(inUsePages) / Double(distance)
        sweep.sweepPagesPerByte.store(UInt(perByte.bitPattern), .releasing)
        sweep.sweepHeapLiveBasis.store(heapLive, .releasing)
        sweep.pagesSweptBasis.store(sweep.pagesSwept.load(.relaxed), .releasing)
    }

    /// Before taking a span, sweep enough pages to stay on schedule.
    func deductSweepCredit(_ spanBytes: UInt) {
        let perByte = Double(bitPattern: UInt64(sweep.sweepPagesPerByte.load(.relaxed)))
        if perByte == 0 { return }
        let live = gcController.heapLive.load(.relaxed)
        let basis = sweep.sweepHeapLiveBasis.load(.relaxed)
        let target = perByte * Double(spanBytes + (live > basis ? live - basis : 0))
        while Double(sweep.pagesSwept.load(.relaxed) &- sweep.pagesSweptBasis.load(.relaxed)) < target {
            if sched.attention.load(.relaxed) & Attention.stop != 0 { break }   // don't hold up a pause
            if !sweepOne() {
                sweep.sweepPagesPerByte.store(0, .releasing)
                break
            }
        }
    }

    // MARK: GC CPU limiter (Go's gcCPULimiter, simplified)

    /// Add GC CPU time (assists, pauses × procs) to the limiter's bucket.
    func limiterAddGC(_ ns: UInt64) {
        limiter.gcNs.add(UInt(ns), .relaxed)
    }

    /// True when GC has used more than half of the CPU over the recent window; assists
    /// are then skipped and the heap may overshoot the memory limit instead of thrashing.
    func cpuLimiterLimiting() -> Bool {
        guard pacer.memoryLimit != Int.max else { return false }
        let now = tc_nanotime()
        let start = UInt64(limiter.windowStart.load(.relaxed))
        let window = now - start
        let gcNs = limiter.gcNs.load(.relaxed)
        let capacity = Double(gomaxprocs) * Double(window)
        let gcShare = capacity > 0 ? (Double(gcNs) + Pacer.goalUtilization * capacity) / capacity : 0
        if window > 1_000_000_000 {
            // Start a new window, carrying half of the old one's state.
            limiter.windowStart.store(UInt(now - window / 2), .releasing)
            limiter.gcNs.store(gcNs / 2, .releasing)
        }
        return gcShare > 0.5
    }

    // MARK: statistics

    func recordPause(_ ns: UInt64) {
        statsLock.withLock {
            pauses.append(ns)
            cyclePauseNs += ns
        }
        limiterAddGC(ns * UInt64(gomaxprocs))
    }

    /// With the world still stopped at the end of mark termination, so that a reader of
    /// MemStats sees the new NumGC together with its pause (as in Go).
    func finishCycleStats() {
        let wallEnd = tc_walltime_ns()
        statsLock.withLock {
            let i = Int((marking.numGC.load(.relaxed) &- 1) % 256)
            pauseNs[i] = cyclePauseNs
            pauseEnd[i] = wallEnd
            pauseTotalNs += cyclePauseNs
            lastGC = wallEnd
            cyclePauseNs = 0
            let procs = UInt64(gomaxprocs)
            gcCPUNs += (cycle.stw1Ns + cycle.stw2Ns) * procs + UInt64(marking.assistTimeNs.load(.relaxed)) + UInt64(marking.bgMarkTimeNs.load(.relaxed))
        }
        cycle.assistNs = UInt64(marking.assistTimeNs.load(.relaxed))
        cycle.bgNs = UInt64(marking.bgMarkTimeNs.load(.relaxed))
        marking.cyclesCompleted.store(marking.cyclesCompleted.load(.relaxed) + 1, .releasing)
    }
}
