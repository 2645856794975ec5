// The GC CPU limiter: a leaky bucket that notices when the collector has used more than
// half of the CPU for a while, so assists can stop and the heap overshoot its memory
// limit instead of the program thrashing in back-to-back cycles. Follows Go's
// gcCPULimiterState (runtime/mgclimit.go, Go 1.19).
//
// The bucket holds CPU time: GC time fills it, mutator time drains it, one for one.
// Its capacity is GOMAXPROCS × 1 s. GC time is assist time, the background share
// (25% of every CPU) while a cycle runs, and all CPUs during the transitions (the
// stop-the-world pauses that start and end a cycle). Mutator time is the rest of the
// window, less idle time. While the bucket is full the limiter is "limiting"; GC
// beyond the fill is counted in `overflow`.
//
// A pure value; time is an input. The mechanism (Collector/Pacing.swift) keeps one
// under its own lock, feeds it the assist time pooled in an atomic word, and publishes
// `limiting` to another (`LimiterShared.enabled`).
//
// Invariants (`checkInvariants`):
//   fill ≤ capacity == procs × 1 s (saturating)
//   limiting ⇔ fill == capacity, outside a transition and right after a capacity change
//   lastUpdate never moves backwards

struct GCCPULimiter: Equatable {
    /// Time that passed since the last update, and what it was spent on.
    struct Window: Equatable {
        /// The clock now, in ns.
        var now: UInt64
        /// Assist (and other mutator-side GC) CPU time since the last update, in ns.
        var assistTimeNs: UInt64 = 0
        /// CPU time with nothing to run since the last update, in ns (Go's idle Ps).
        var idleTimeNs: UInt64 = 0
    }

    private(set) var fill: UInt64 = 0
    private(set) var capacity: UInt64
    /// GC time that arrived while the bucket was full.
    private(set) var overflow: UInt64 = 0
    /// The bucket is full: GC CPU is being limited.
    private(set) var limiting = false
    /// A cycle is running (counts the background share as GC time).
    private(set) var gcEnabled = false
    /// Between startGCTransition and finishGCTransition.
    private(set) var transitioning = false
    /// When the bucket was last brought up to date.
    private(set) var lastUpdate: UInt64
    private(set) var procs: Int
    /// The share of every CPU background marking takes while a cycle runs (Go: the
    /// constant 25%; ours follows the mark-worker plan, 0 with no workers).
    private(set) var backgroundUtilization: Double

    init(now: UInt64, procs: Int, backgroundUtilization: Double = Tuning.goalUtilization) {
        lastUpdate = now
        self.procs = max(1, procs)
        self.backgroundUtilization = backgroundUtilization
        capacity = UInt64(self.procs).saturatingMultiply(Tuning.limiterCapacityPerProcNs)
    }

    /// The bucket is due for an update (Go's needUpdate).
    func needUpdate(now: UInt64) -> Bool {
        now > lastUpdate && now - lastUpdate > Tuning.limiterUpdatePeriodNs
    }

    /// Account for the window since the last update (Go's update/updateLocked).
    mutating func update(_ w: Window) {
        runtimeCheck(!transitioning, "CPU limiter: update during a GC transition")
        updateLocked(w)
    }

    private mutating func updateLocked(_ w: Window) {
        if w.now < lastUpdate { return }   // another thread got here with a later clock
        var total = Int64(clamping: (w.now - lastUpdate).saturatingMultiply(UInt64(procs)))
        lastUpdate = w.now
        var gcTime = Int64(clamping: w.assistTimeNs)
        if gcEnabled {
            gcTime = gcTime.addingReportingOverflow(Int64(clamping: UInt64(saturating: Double(total) * backgroundUtilization))).partialValue
        }
        total -= min(total, Int64(clamping: w.idleTimeNs))
        // Both are ≥ 0, so the difference cannot overflow; it is negative when more GC
        // time was reported than the window holds (assist time pooled earlier).
        accumulate(mutatorTime: total - gcTime, gcTime: gcTime)
    }

    /// Fill with GC time, drain with mutator time (Go's accumulate).
    private mutating func accumulate(mutatorTime: Int64, gcTime: Int64) {
        let headroom = capacity - fill
        let wasLimiting = headroom == 0
        let (change, o) = gcTime.subtractingReportingOverflow(mutatorTime)
        let delta = o ? Int64.max : change
        if delta > 0 && headroom <= UInt64(delta) {
            overflow = overflow.saturatingAdd(UInt64(delta) - headroom)
            fill = capacity
            limiting = true
            return
        }
        if delta < 0 {
            let drain = delta.magnitude
            fill = fill <= drain ? 0 : fill - drain
        } else {
            fill += UInt64(delta)
        }
        if delta != 0 && wasLimiting { limiting = false }
    }

    /// A cycle starts (`enableGC`) or ends: called as the world stops, with the window up
    /// to then (Go's startGCTransition).
    mutating func startGCTransition(enableGC: Bool, _ w: Window) {
        runtimeCheck(!transitioning, "CPU limiter: a GC transition is already in progress")
        runtimeCheck(gcEnabled != enableGC, "CPU limiter: transition to the state it is in")
        updateLocked(w)
        gcEnabled = enableGC
        transitioning = true
    }

    /// The world restarts: the whole pause counted as GC time on every CPU (Go's
    /// finishGCTransition).
    mutating func finishGCTransition(now: UInt64) {
        runtimeCheck(transitioning, "CPU limiter: finishGCTransition without startGCTransition")
        if now >= lastUpdate {
            accumulate(mutatorTime: 0, gcTime: Int64(clamping: (now - lastUpdate).saturatingMultiply(UInt64(procs))))
        }
        lastUpdate = max(lastUpdate, now)
        transitioning = false
    }

    /// GOMAXPROCS changed: bring the bucket up to date at the old size, then resize it
    /// (Go's resetCapacity). Fewer CPUs can leave the bucket full at once; overflow is not
    /// changed (the collector did no extra work).
    mutating func resetCapacity(_ w: Window, procs: Int) {
        runtimeCheck(!transitioning, "CPU limiter: resize during a GC transition")
        updateLocked(w)
        self.procs = max(1, procs)
        capacity = UInt64(self.procs).saturatingMultiply(Tuning.limiterCapacityPerProcNs)
        if fill > capacity {
            fill = capacity
            limiting = true
        } else if fill < capacity {
            limiting = false
        }
    }

    func checkInvariants() {
        runtimeCheck(fill <= capacity, "CPU limiter: fill \(fill) above capacity \(capacity)")
        runtimeCheck(capacity == UInt64(procs).saturatingMultiply(Tuning.limiterCapacityPerProcNs),
                     "CPU limiter: capacity \(capacity) for \(procs) procs")
        if !transitioning {
            runtimeCheck(!limiting || fill == capacity, "CPU limiter: limiting with the bucket at \(fill) of \(capacity)")
        }
    }
}
