// The pacer: when the next cycle starts and how hard a running cycle marks. Follows Go's
// gcControllerState (runtime/mgcpacer.go, Go 1.19 with the memory limit), with two
// later Go changes marked where they apply (1.21's cons/mark rule and memory-limit
// headroom).
//
// Between cycles it fixes the heap goal and the trigger:
//   goal    = heapMarked + (heapMarked + stacks + globals) × GOGC/100, at least the heap
//             minimum (4 MiB × GOGC/100), lowered by the memory limit;
//   trigger = goal − runway, where the runway is what mutators allocate while marking,
//             at 25% CPU, scans what the last cycle scanned:
//             runway = consMark × (1 − 0.25)/0.25 × (heapScan + stacks + globals),
//             clamped to [~70%, ~95%] of the way from heapMarked to the goal.
// During a cycle it gives the assist ratio (scan work owed per byte allocated) that
// finishes marking at the goal. At the end of a cycle it measures cons/mark (allocation
// rate over scan rate, per CPU) for the next runway.
//
// A pure value: no locks, no atomics, no clocks. Collector/Pacing.swift gathers its
// inputs under the right locks and publishes its outputs to the heap's atomic words
// (`GCControllerShared`: trigger, heapGoal, assistWorkPerByte); tests drive it through whole
// simulated cycles (Tests/TricolorTests/Policy/PacerSimulationTests.swift).
//
// Invariants (`checkInvariants`):
//   gcPercent is nil or ≥ 0 (negative settings mean off, as in Go)
//   gcPercentHeapGoal == UInt.max when GOGC is off, else ≥ heapMinimum
//   heapMinimum == 4 MiB × min(GOGC, maxGCPercent) / 100   (4 MiB when off)
//   memoryLimitHeapGoal() ≥ heapMarked                      (a goal below the live heap is meaningless)
//   minTrigger ≤ goal for heapGoalInternal(); trigger() returns trigger ≤ goal
//   consMark and every history entry are finite and ≥ 0; runway ≤ UInt.max / 2
//   no arithmetic traps for any setting: products saturate at UInt.max

struct Pacer {
    // MARK: inputs

    /// What the memory-limit goal needs to know about mapped memory. Gathered by the
    /// mechanism (it takes the heap lock for the metadata sizes).
    struct MemoryInputs: Equatable {
        /// Memory mapped and not returned to the OS: Sys − HeapReleased.
        var mappedReady: UInt = 0
        /// Free heap pages not returned to the OS: HeapIdle − HeapReleased.
        var heapFree: UInt = 0
        /// Bytes of heap objects (heapLive, our estimate of Go's totalAlloc − totalFree).
        var heapAlloc: UInt = 0
    }

    /// A running cycle's progress, for `revise`.
    struct MarkProgress: Equatable {
        /// Bytes considered live now: marked at the last cycle plus allocated since.
        var heapLive: UInt
        /// The scannable part of heapLive (an upper bound is fine).
        var heapScan: UInt
        /// Scan work done so far this cycle (heap + stacks + globals), in bytes.
        var scanWorkDone: UInt
        /// Bytes of stack that may need scanning this cycle.
        var maxStackScan: UInt
    }

    /// What a finished mark phase measured, for `endCycle`.
    struct CycleResult: Equatable {
        /// heapLive at mark termination (before it is reset to heapMarked).
        var heapLive: UInt
        /// Bytes marked: the new live heap.
        var heapMarked: UInt
        /// Scan work on heap objects this cycle.
        var heapScanWork: UInt
        /// Scan work on stacks this cycle.
        var stackScanWork: UInt
        /// Bytes of global roots (scanned every cycle).
        var globalsScan: UInt
        /// CPU time mutators spent assisting, in ns.
        var assistTimeNs: UInt64
        /// CPU time of mark work that only used idle CPUs, in ns (Go's idleMarkTime).
        var idleMarkTimeNs: UInt64 = 0
        /// Wall time from the start of marking to mark termination, in ns.
        var markDurationNs: UInt64
        /// GOMAXPROCS.
        var procs: Int
    }

    /// Scan work owed per byte allocated, and its reciprocal (Go keeps both).
    struct AssistRatio: Equatable {
        var workPerByte: Double
        var bytesPerWork: Double
    }

    // MARK: settings

    /// GOGC; nil = off. Set with `setGCPercent`.
    private(set) var gcPercent: Int?
    /// GOMEMLIMIT in bytes; Int.max = no limit.
    var memoryLimit: Int = Int.max

    // MARK: state carried from cycle to cycle

    /// Bytes marked by the last cycle.
    var heapMarked: UInt = 0
    /// Scan work of the last cycle on the heap and on stacks; globals in bytes.
    var lastHeapScan: UInt = 0
    var lastStackScan: UInt = 0
    var globalsScan: UInt = 0
    /// The cons/mark estimate: the maximum of the latest measurement and these before it.
    private(set) var consMark: Double = 0
    private(set) var consMarkHistory = [Double](repeating: 0, count: Tuning.consMarkHistory)
    /// Allocation the next cycle is expected to need (commit).
    private(set) var runway: UInt = 0
    /// The goal from GOGC alone (commit); UInt.max when GOGC is off.
    private(set) var gcPercentHeapGoal: UInt = UInt.max
    /// The trigger may not be below this while the last sweep is unfinished (commit).
    private(set) var sweepDistMinTrigger: UInt = 0
    /// heapLive when the running cycle started (Go 1.21's rule); UInt.max between cycles.
    private(set) var triggered: UInt = UInt.max
    /// The goal of the last finished cycle (for the scavenger's GOGC goal).
    private(set) var lastHeapGoal: UInt = 0
    /// Mapped-memory inputs of the memory-limit goal, refreshed by the mechanism.
    var memory = MemoryInputs()

    /// A pacer with these settings, committed as before the first cycle (nothing swept,
    /// nothing to sweep).
    init(gcPercent: Int?, memoryLimit: Int) {
        setGCPercent(gcPercent)
        self.memoryLimit = memoryLimit
        commit(isSweepDone: true, heapLive: 0)
    }

    // MARK: settings

    /// Go's setGCPercent: a negative value turns the collector off, like nil. Values above
    /// `Tuning.maxGCPercent` are kept (and reported back) but act as that maximum.
    /// `commit` must follow.
    mutating func setGCPercent(_ percent: Int?) {
        gcPercent = percent.flatMap { $0 < 0 ? nil : $0 }
    }

    /// GOGC as the arithmetic uses it: clamped to `Tuning.maxGCPercent`; nil when off.
    var effectiveGCPercent: UInt? {
        gcPercent.map { UInt(min($0, Tuning.maxGCPercent)) }
    }

    /// The smallest goal GOGC allows: 4 MiB at GOGC=100, in proportion otherwise.
    var heapMinimum: UInt {
        guard let p = effectiveGCPercent else { return Tuning.defaultHeapMinimum }
        return Tuning.defaultHeapMinimum.saturatingMultiply(p, dividedBy: 100)
    }

    // MARK: between cycles

    /// Go's commit: recompute the GOGC goal and the runway after a cycle or a change of
    /// settings. `heapLive` is the current live estimate (the trigger stays 1 MiB above
    /// it while `isSweepDone` is false).
    mutating func commit(isSweepDone: Bool, heapLive: UInt) {
        sweepDistMinTrigger = isSweepDone ? 0 : heapLive.saturatingAdd(Tuning.sweepMinHeapDistance)
        if let p = effectiveGCPercent {
            let roots = heapMarked.saturatingAdd(lastStackScan).saturatingAdd(globalsScan)
            let goal = heapMarked.saturatingAdd(roots.saturatingMultiply(p, dividedBy: 100))
            gcPercentHeapGoal = max(goal, heapMinimum)
        } else {
            gcPercentHeapGoal = UInt.max
        }
        let scan = Double(lastHeapScan) + Double(lastStackScan) + Double(globalsScan)
        let r = consMark * (1 - Tuning.goalUtilization) / Tuning.goalUtilization * scan
        runway = min(UInt(saturating: r), UInt.max / 2)
    }

    /// The goal the memory limit imposes (Go's memoryLimitHeapGoal): the limit minus
    /// what is mapped but cannot hold objects, minus any overage, minus headroom
    /// (Go 1.21: 3% of the goal, at least 1 MiB); never below heapMarked. UInt.max
    /// without a limit.
    func memoryLimitHeapGoal() -> UInt {
        if memoryLimit == Int.max { return UInt.max }
        let limit = UInt(max(0, memoryLimit))
        let m = memory
        let nonHeap = m.mappedReady - min(m.mappedReady, m.heapFree.saturatingAdd(m.heapAlloc))
        let overage = m.mappedReady > limit ? m.mappedReady - limit : 0
        if nonHeap.saturatingAdd(overage) >= limit { return heapMarked }
        var goal = limit - (nonHeap + overage)
        let headroom = max(goal / 100 * Tuning.memoryLimitHeadroomPercent, Tuning.memoryLimitHeadroom)
        goal = (goal < headroom || goal - headroom < headroom) ? headroom : goal - headroom
        return max(goal, heapMarked)
    }

    /// Go's heapGoalInternal: the goal, and the lowest trigger the sweep allows.
    func heapGoalInternal() -> (goal: UInt, minTrigger: UInt) {
        var goal = gcPercentHeapGoal
        var minTrigger: UInt = 0
        let limitGoal = memoryLimitHeapGoal()
        if limitGoal < goal {
            // Limited by memory: never push the goal up (it could pass the limit).
            goal = limitGoal
        } else {
            if sweepDistMinTrigger > goal { goal = sweepDistMinTrigger }
            minTrigger = sweepDistMinTrigger
            if triggered != UInt.max && goal < triggered.saturatingAdd(Tuning.minRunway) {
                goal = triggered.saturatingAdd(Tuning.minRunway)
            }
        }
        return (goal, minTrigger)
    }

    /// The heap goal of the running cycle, or of the next one between cycles.
    var heapGoal: UInt { heapGoalInternal().goal }

    /// Go's trigger(): a cycle starts when heapLive reaches `trigger`. Both are UInt.max
    /// when nothing ever triggers (GOGC off, no memory limit).
    func trigger() -> (trigger: UInt, goal: UInt) {
        let (goal, sweepMin) = heapGoalInternal()
        if goal == UInt.max { return (UInt.max, UInt.max) }
        if heapMarked >= goal { return (goal, goal) }
        let span = goal - heapMarked
        let unit = span / Tuning.triggerRatioDenominator
        let lower = heapMarked + unit * Tuning.minTriggerRatioNumerator
        let minTrigger = max(sweepMin, heapMarked, lower)
        var maxTrigger = heapMarked + unit * Tuning.maxTriggerRatioNumerator
        // Big heaps: up to the goal minus one heap minimum, the cost of a cycle with
        // nothing to scan.
        if goal > Tuning.defaultHeapMinimum && goal - Tuning.defaultHeapMinimum > maxTrigger {
            maxTrigger = goal - Tuning.defaultHeapMinimum
        }
        maxTrigger = max(maxTrigger, minTrigger)
        // Ours: with no cons/mark measured yet (before the first cycle ends) start as
        // early as allowed; Go starts at the latest (runway 0).
        var t = runway > goal || consMark == 0 ? minTrigger : goal - runway
        t = min(max(t, minTrigger), maxTrigger)
        return (min(t, goal), goal)
    }

    // MARK: during a cycle

    /// Go's startCycle, the pacer's part: remember where the cycle started (Go 1.21:
    /// heapLive at the start, not the computed trigger).
    mutating func startCycle(heapLive: UInt) {
        triggered = heapLive
    }

    /// Go's revise: the assist ratio that finishes the remaining scan work by the goal.
    /// When more work than expected turned up, the goal is stretched in proportion (up to
    /// the "hard goal", goal × (1 + GOGC/100)); past the goal, it aims 10% further.
    func revise(_ p: MarkProgress) -> AssistRatio {
        let gcPct = effectiveGCPercent.map(Double.init) ?? Tuning.gcPercentWhenOff
        let heapGoal = Double(self.heapGoal)
        var goal = heapGoal
        var expected = Double(lastHeapScan) + Double(lastStackScan) + Double(globalsScan)
        let maxWork = Double(p.heapScan) + Double(p.maxStackScan) + Double(globalsScan)
        let work = Double(p.scanWorkDone)
        let trig = Double(triggered == UInt.max ? p.heapLive : triggered)
        if work > expected && expected > 0 {
            let extended = trig + (goal - trig) / expected * maxWork
            goal = min(extended, (1 + gcPct / 100) * heapGoal)
            expected = maxWork
        }
        let live = Double(p.heapLive)
        if live > goal {
            goal *= Tuning.maxOvershoot
            expected = maxWork
        }
        let remainingWork = max(expected - work, Tuning.minRemainingScanWork)
        let remainingHeap = max(goal - live, 1)
        return AssistRatio(workPerByte: remainingWork / remainingHeap, bytesPerWork: remainingHeap / remainingWork)
    }

    // MARK: end of a cycle

    /// Go's endCycle and resetLive: measure cons/mark over the finished cycle, then take
    /// its results as the new base (heapMarked, scan work). `commit` must follow.
    mutating func endCycle(_ r: CycleResult) {
        lastHeapGoal = heapGoal
        let cpu = Double(r.markDurationNs) * Double(max(1, r.procs))
        let assistU = cpu > 0 ? Double(r.assistTimeNs) / cpu : 0
        let idleU = cpu > 0 ? Double(r.idleMarkTimeNs) / cpu : 0
        let u = min(Tuning.goalUtilization + assistU, Tuning.maxMeasuredUtilization)
        let scanWork = Double(r.heapScanWork) + Double(r.stackScanWork) + Double(r.globalsScan)
        if triggered != UInt.max && r.heapLive > triggered && scanWork > 0 {
            // Bytes allocated per mutator CPU over bytes scanned per GC CPU; the CPU
            // totals cancel out, leaving the utilization split.
            let current = Double(r.heapLive - triggered) * (u + idleU) / (scanWork * (1 - u))
            if current.isFinite && current >= 0 {
                consMark = max(current, consMarkHistory.max() ?? 0)
                consMarkHistory.removeFirst()
                consMarkHistory.append(current)
            }
        }
        heapMarked = r.heapMarked
        lastHeapScan = r.heapScanWork
        lastStackScan = r.stackScanWork
        globalsScan = r.globalsScan
        triggered = UInt.max
    }

    // MARK: invariants

    func checkInvariants() {
        if let p = gcPercent { runtimeCheck(p >= 0, "pacer: negative GOGC \(p) stored") }
        if gcPercent == nil {
            runtimeCheck(gcPercentHeapGoal == UInt.max, "pacer: GOGC off but a GOGC goal of \(gcPercentHeapGoal)")
        } else {
            runtimeCheck(gcPercentHeapGoal >= heapMinimum, "pacer: GOGC goal \(gcPercentHeapGoal) below the heap minimum \(heapMinimum)")
        }
        if memoryLimit != Int.max {
            runtimeCheck(memoryLimitHeapGoal() >= heapMarked, "pacer: memory-limit goal below heapMarked")
        }
        let (goal, minTrigger) = heapGoalInternal()
        runtimeCheck(minTrigger <= goal, "pacer: minimum trigger \(minTrigger) above the goal \(goal)")
        let (t, g) = trigger()
        runtimeCheck(t <= g, "pacer: trigger \(t) above the goal \(g)")
        runtimeCheck(consMark.isFinite && consMark >= 0, "pacer: cons/mark \(consMark)")
        runtimeCheck(consMarkHistory.count == Tuning.consMarkHistory && consMarkHistory.allSatisfy { $0.isFinite && $0 >= 0 },
                     "pacer: cons/mark history \(consMarkHistory)")
        runtimeCheck(runway <= UInt.max / 2, "pacer: runway \(runway)")
    }
}
