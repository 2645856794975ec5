// Every tuning constant of the collector, named once, with where it comes from.
//
// Constants taken from Go keep Go's value and name the Go constant; our own say what
// they bound and how the number was chosen or measured. Policy types (this folder)
// and the mechanism (Collector/, Runtime/StopTheWorld.swift) refer to these names;
// no other file should spell one of these numbers.
//
// Measurement used below ("measured scan rate"): `GODEBUG=gctrace=1 tricolor run
// liveheap --live-mib 256 --seconds 3` on the 2-CPU development VM marks ~330 MB per
// cycle with ~110 ms of mark CPU, i.e. roughly 3 GB of scan work per CPU-second.

enum Tuning {
    // MARK: pacer (Go's mgcpacer.go)

    /// Share of GOMAXPROCS that background marking aims to use (Go's gcGoalUtilization =
    /// gcBackgroundUtilization = 0.25). Low enough to leave mutators three quarters of
    /// the CPUs while marking; high enough that marking finishes well within the runway.
    static let goalUtilization = 0.25

    /// The heap goal never drops below this at GOGC=100; it scales with GOGC (Go's
    /// defaultHeapMinimum, 4 MiB): below it a cycle costs more in fixed overhead than the
    /// memory it saves.
    static let defaultHeapMinimum: UInt = 4 << 20

    /// Trigger bounds as a fraction of the way from heapMarked to the goal, written as
    /// n/64 so the division is a shift (Go's triggerRatioDen, minTriggerRatioNum = 45,
    /// maxTriggerRatioNum = 61). The lower bound (~0.70) was chosen empirically in Go so
    /// that a very fast allocator does not live in an always-on cycle; the upper bound
    /// (~0.95) leaves every cycle some runway.
    static let triggerRatioDenominator: UInt = 64
    static let minTriggerRatioNumerator: UInt = 45
    static let maxTriggerRatioNumerator: UInt = 61

    /// The goal is kept at least this far above the point where the cycle actually
    /// started, so the assist ratio stays finite (Go's minRunway, 64 KiB).
    static let minRunway: UInt = 64 << 10

    /// Headroom below the memory-limit goal for pacing error (Go 1.19's
    /// memoryLimitHeapGoalHeadroom, 1 MiB, as a floor) and Go 1.21's proportional
    /// headroom (memoryLimitHeapGoalHeadroomPercent = 3): with 1.19's flat 1 MiB our
    /// heap overshot small limits while a cycle was still marking.
    static let memoryLimitHeadroom: UInt = 1 << 20
    static let memoryLimitHeadroomPercent: UInt = 3

    /// While the last cycle's sweep is unfinished the trigger stays at least this far
    /// above heapLive, so proportional sweeping has room to finish (Go's
    /// sweepMinHeapDistance, 1 MiB).
    static let sweepMinHeapDistance: UInt = 1 << 20

    /// Once the heap is past even the extrapolated goal, the assist ratio aims this far
    /// beyond it so marking can still finish (Go's maxOvershoot in revise, 1.1).
    static let maxOvershoot = 1.1

    /// Lower bound on the remaining scan work in the assist ratio: marking is racy and
    /// may double-count, and a ratio built on ~0 work is meaningless (Go: 1000 bytes).
    static let minRemainingScanWork = 1000.0

    /// GOGC used for the assist ratio's hard goal when a cycle runs with GOGC off (a
    /// forced cycle or one started by the memory limit): Go's 100000.
    static let gcPercentWhenOff = 100_000.0

    /// GOGC values above this behave like this value (Go's gcPercent is an int32): the
    /// heap minimum alone is then 4 MiB × 21 474 836 ≈ 80 TiB, beyond the largest heap
    /// reservation (64 TiB), so the collector is effectively off, and the arithmetic on
    /// it never overflows.
    static let maxGCPercent = Int(Int32.max)

    /// cons/mark is the maximum of the latest measurement and this many before it (Go
    /// 1.21's lastConsMark, replacing 1.19's PI controller): biases noisy measurements
    /// toward starting early rather than assisting.
    static let consMarkHistory = 4

    /// Ceiling on the measured GC utilization in the cons/mark formula, which divides by
    /// (1 − u): a cycle that was all assists would otherwise measure infinity.
    static let maxMeasuredUtilization = 0.99

    // MARK: mark workers (Go's gcControllerState.startCycle)

    /// Rounding the dedicated-worker count may miss the 25% goal by at most this much
    /// before a fractional worker makes up the difference (Go's maxUtilError = 0.3:
    /// GOMAXPROCS ≤ 3 and 6 get a fractional worker).
    static let maxUtilizationError = 0.3

    /// Smallest CPU share a fractional worker is given (ours): below ~5% its slices are so
    /// sparse that marking relies on assists alone.
    static let minFractionalUtilization = 0.05

    /// Scan work a background worker does between checks of stop requests and its CPU
    /// share: 256 KiB ≈ 0.1 ms at the measured scan rate, fine enough that a stop never
    /// waits on a worker and a fractional worker tracks its share.
    static let markSliceWork: UInt = 256 << 10

    /// How long a worker that ran out of grey objects lets the mutators take mark
    /// termination (`Attention.markDone`) before running it itself (ours, 1 ms): a
    /// mutator on a CPU answers within microseconds, so waiting longer only delays the
    /// cycles whose mutators are blocked or compute without safepoints.
    static let markHandOffWaitNs: UInt64 = 1_000_000

    /// A worker waiting for mutators (stacks unscanned, hand-off pending) sleeps this
    /// long between checks (ours): short against the hand-off wait, long enough not to
    /// spin on a shared CPU.
    static let markWorkerPollNs: UInt64 = 50_000

    /// Longest sleep of a fractional worker that is ahead of its share (ours, 5 ms):
    /// bounds how late it notices the end of the mark phase.
    static let maxFractionalSleepNs: UInt64 = 5_000_000

    /// How long the ragged barrier of mark termination waits on its condition variable
    /// before looking at the mutators again (ours, 1 ms): state changes wake it earlier.
    static let raggedBarrierPollNs: UInt64 = 1_000_000

    // MARK: assists and scanning (Go's mgcmark.go)

    /// An assist does at least this much scan work, pre-paying for later allocation so
    /// assists are not taken per object (Go's gcOverAssistWork, 64 KiB).
    static let overAssistWork: UInt = 64 << 10

    /// Large objects are scanned in pieces of at most this many bytes so one object never
    /// holds a marker for long. Go's maxObletBytes is 128 KiB; ours is 32 KiB, because an
    /// assist scans a whole piece whatever its budget, and a piece of a pointer array whose
    /// elements are not yet marked (each a cache miss) took 250–350 µs at 128 KiB: the
    /// growth benchmark's ring of messages put those on single operations (p99.99 of
    /// 530–770 µs, against 60–160 µs with 32 KiB pieces, alternated runs).
    static let maxObletBytes: UInt = 32 << 10

    // MARK: sweeping (Go's mgcsweep.go)

    /// The sweep pacer never plans to finish in fewer bytes of allocation than one page
    /// (Go's _PageSize floor on heapDistance): keeps pages-per-byte finite.
    static let minSweepDistance: UInt = 8192

    /// The background sweeper backs off this long while every CPU has a mutator (ours,
    /// 1 ms): Go's bgsweep only runs on idle Ps; meanwhile mutators sweep in proportion
    /// to their allocation, so the sweeper only needs to notice a CPU going idle.
    static let sweeperBackoffNs: UInt64 = 1_000_000

    /// The background sweeper yields its CPU after this many spans (ours): a span sweeps
    /// in microseconds, so this is a yield every few tens of µs.
    static let sweeperYieldEverySpans = 10

    /// A mutator hands full spans back to their central list this many at a time, under
    /// one acquisition of the list's lock (ours; `MCache.uncached`). Eight spans is one
    /// lock round trip per 4,096 objects of 16 bytes, and at most 7 spans per class wait
    /// for the next pause.
    static let uncacheBatch: UInt8 = 8

    /// A refill that finds swept spans in its central list takes up to this many at
    /// once, under one acquisition of the list's lock (ours; `MCache.stash`).
    static let stashBatch: UInt8 = 4

    /// Small types with pointers up to this size get a mutator cache slot of their own
    /// while slots last (ours; `MCache.firstTypeSlot`): 60 per heap, in registration
    /// order. Above it, the per-object type-id store is a small part of an allocation,
    /// and each slot may hold a span of its own per mutator.
    static let typeSlotMaxSize = 512

    // MARK: GC CPU limiter (Go's mgclimit.go)

    /// Bucket capacity per GOMAXPROCS (Go's capacityPerProc, 1 s of CPU): GC may run over
    /// 50% of the CPU for about this long before assists are cut.
    static let limiterCapacityPerProcNs: UInt64 = 1_000_000_000

    /// The limiter's bucket is brought up to date at least this often while it is
    /// consulted (Go's gcCPULimiterUpdatePeriod, 10 ms).
    static let limiterUpdatePeriodNs: UInt64 = 10_000_000

    // MARK: scavenger goals (Go 1.19's mgcscavenge.go)

    /// Retained heap memory may exceed what the heap needs by this percent before the
    /// scavenger returns pages for GOGC's sake (Go's retainExtraPercent = 10).
    static let retainExtraPercent: UInt = 10

    /// Under a memory limit the scavenger aims at this percent below the limit (Go's
    /// reduceExtraPercent = 5: target 95% of the limit).
    static let reduceExtraPercent: UInt = 5

    // MARK: stop the world (Runtime/StopTheWorld.swift)

    /// A stopper spins this long on the park count before sleeping (ours, 30 µs): a
    /// mutator on a CPU answers within a microsecond or so, while a futex wake-up
    /// measured 10–60 µs on the development VM.
    static let stopSpinNs: UInt64 = 30_000

    /// A mutator still running this long after a stop request is moved onto the
    /// stopper's CPU (ours, 50 µs): measured, a runnable mutator kept off its CPU by a
    /// kernel thread waited 1.5–3 ms, while every prompt answer came well within 50 µs.
    static let stopRescueAfterNs: UInt64 = 50_000

    /// A mutator running mark termination for the worker waits at most this long for the
    /// other mutators' stacks before handing it back (ours, 200 µs): 4× the rescue bound,
    /// and short enough that a mutator waiting on this one is not held up.
    static let handoffBarrierWaitNs: UInt64 = 200_000
}
