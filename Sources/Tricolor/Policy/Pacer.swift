import CTricolor

// The pacer (Go 1.18+ gcControllerState, mgcpacer.go; memory limit from Go 1.19).
//
// Between cycles it decides the heap goal and the trigger:
//   goal    = heapMarked + (heapMarked + stacks + globals) × GOGC/100, at least
//             heapMinimum (4 MiB × GOGC/100), lowered by the memory limit;
//   trigger = goal − runway, where the runway is the allocation the mutators will do
//             while the collector, at 25% CPU, scans what the last cycle scanned:
//             runway = consMark × (1 − 0.25)/0.25 × (heapScan + stacks + globals),
//             clamped to [70%, 95%] of the way from heapMarked to the goal.
// During a cycle it sets the assist ratio (scan work owed per byte allocated) so that
// marking finishes at the goal; at the end it measures cons/mark (allocation rate over
// scan rate) for the next runway. Go 1.19 smooths cons/mark with a PI controller; we use
// the Go 1.21+ rule (the maximum of the last four measurements), which is simpler and
// more conservative.
//
// All fields are protected by the heap's gc lock or by a stopped world, except the
// ones read on allocation paths, which the heap mirrors into atomic words
// (`GCControllerShared`: trigger, heapGoal, assistWorkPerByte).

struct Pacer {
    static let goalUtilization = 0.25
    static let defaultHeapMinimum: UInt = 4 << 20
    static let minRunway: UInt = 64 << 10
    static let memoryLimitHeadroom: UInt = 1 << 20      // Go 1.19
    static let sweepMinHeapDistance: UInt = 1 << 20

    /// GOGC; nil = off.
    var gcPercent: Int?
    /// GOMEMLIMIT in bytes; Int.max = no limit.
    var memoryLimit: Int = Int.max

    var heapMarked: UInt = 0
    var lastHeapScan: UInt = 0
    var lastStackScan: UInt = 0
    var globalsScan: UInt = 0
    var consMark: Double = 0
    var consMarkHistory: [Double] = [0, 0, 0, 0]
    var runway: UInt = 0
    var gcPercentHeapGoal: UInt = UInt.max
    var sweepDistMinTrigger: UInt = 0
    /// heapLive when the running (or last) cycle was triggered; UInt.max between.
    var triggered: UInt = UInt.max
    var lastHeapGoal: UInt = 0

    /// Inputs for the memory-limit goal, refreshed by the heap before each computation.
    var mappedReady: UInt = 0      // Sys − HeapReleased
    var heapFree: UInt = 0         // HeapIdle − HeapReleased
    var heapAlloc: UInt = 0

    var heapMinimum: UInt {
        guard let p = gcPercent else { return Pacer.defaultHeapMinimum }
        return Pacer.defaultHeapMinimum * UInt(p) / 100
    }

    /// Go's commit: recompute the GOGC goal and the runway after a cycle or a setting change.
    mutating func commit(isSweepDone: Bool, heapLive: UInt) {
        sweepDistMinTrigger = isSweepDone ? 0 : heapLive + Pacer.sweepMinHeapDistance
        if let p = gcPercent {
            let roots = heapMarked + lastStackScan + globalsScan
            let (mul, o1) = roots.multipliedReportingOverflow(by: UInt(p))
            var g = o1 ? UInt.max : heapMarked &+ mul / 100
            if g < heapMarked { g = UInt.max }
            gcPercentHeapGoal = max(g, heapMinimum)
        } else {
            gcPercentHeapGoal = UInt.max
        }
        let scan = Double(lastHeapScan + lastStackScan + globalsScan)
        let r = consMark * (1 - Pacer.goalUtilization) / Pacer.goalUtilization * scan
        runway = r >= Double(UInt.max / 2) ? UInt.max / 2 : UInt(max(0, r))
    }

    /// The goal imposed by the memory limit (Go's memoryLimitHeapGoal, 1.19 headroom).
    func memoryLimitHeapGoal() -> UInt {
        if memoryLimit == Int.max { return UInt.max }
        let limit = UInt(memoryLimit)
        let nonHeap = mappedReady &- min(mappedReady, heapFree + heapAlloc)
        let overage = mappedReady > limit ? mappedReady - limit : 0
        if nonHeap + overage >= limit { return heapMarked }
        var goal = limit - (nonHeap + overage)
        // Headroom as in Go 1.21+ (3% of the goal, at least 1 MiB): 1.19's flat 1 MiB let
        // the heap overshoot small limits while a cycle was still marking.
        let headroom = max(goal / 100 * 3, Pacer.memoryLimitHeadroom)
        goal = (goal < headroom || goal - headroom < headroom) ? headroom : goal - headroom
        return max(goal, heapMarked)
    }

    /// Go's heapGoalInternal: (goal, minimum trigger).
    func heapGoalInternal() -> (goal: UInt, minTrigger: UInt) {
        var goal = gcPercentHeapGoal
        var minTrigger: UInt = 0
        let limitGoal = memoryLimitHeapGoal()
        if limitGoal < goal {
            goal = limitGoal
        } else {
            if sweepDistMinTrigger > goal { goal = sweepDistMinTrigger }
            minTrigger = sweepDistMinTrigger
            if triggered != UInt.max && goal < triggered &+ Pacer.minRunway { goal = triggered + Pacer.minRunway }
        }
        return (goal, minTrigger)
    }

    var heapGoal: UInt { heapGoalInternal().goal }

    /// Go's trigger(): (trigger, goal). A cycle starts when heapLive reaches the trigger.
    func trigger() -> (trigger: UInt, goal: UInt) {
        let (goal, mt) = heapGoalInternal()
        if goal == UInt.max { return (UInt.max, UInt.max) }
        if heapMarked >= goal { return (goal, goal) }
        var minTrigger = max(mt, heapMarked)
        let runwaySpan = goal - heapMarked
        let lower = heapMarked + runwaySpan / 64 * 45
        minTrigger = max(minTrigger, lower)
        var maxTrigger = heapMarked + runwaySpan / 64 * 61
        if goal > 4 << 20 && goal - (4 << 20) > maxTrigger { maxTrigger = goal - (4 << 20) }
        maxTrigger = max(maxTrigger, minTrigger)
        // No cons/mark measured yet (first cycle): start as early as allowed.
        var t = runway > goal || consMark == 0 ? minTrigger : goal - runway
        t = min(max(t, minTrigger), maxTrigger)
        return (min(t, goal), goal)
    }

    /// Go's revise(): assist ratio from the work and heap left in this cycle.
    func revise(heapLive: UInt, heapScan: UInt, scanWorkDone: UInt, maxStackScan: UInt) -> (workPerByte: Double, bytesPerWork: Double) {
        let gcPct = Double(gcPercent ?? 100_000)
        var goal = Double(heapGoal)
        var expected = Double(lastHeapScan + lastStackScan + globalsScan)
        let maxWork = Double(heapScan + maxStackScan + globalsScan)
        let work = Double(scanWorkDone)
        let trig = Double(triggered == UInt.max ? heapLive : triggered)
        if work > expected && expected > 0 {
            let extended = trig + (goal - trig) / expected * maxWork
            goal = min(extended, (1 + gcPct / 100) * Double(heapGoal))
            expected = maxWork
        }
        let live = Double(heapLive)
        if live > goal { goal = goal * 1.1; expected = maxWork }
        let remainingWork = max(expected - work, 1000)
        let remainingHeap = max(goal - live, 1)
        return (remainingWork / remainingHeap, remainingHeap / remainingWork)
    }

    /// Go's endCycle: measure cons/mark for the next runway.
    /// - Parameters: utilization `u` = 0.25 + assist share; `scanWork` = total work this cycle.
    mutating func endCycle(heapLive: UInt, u: Double, idleU: Double, scanWork: UInt) {
        lastHeapGoal = heapGoal
        guard triggered != UInt.max, heapLive > triggered, scanWork > 0, u < 1 else { return }
        let current = Double(heapLive - triggered) * (u + idleU) / (Double(scanWork) * (1 - u))
        consMark = max(current, consMarkHistory.max() ?? 0)
        consMarkHistory.removeFirst()
        consMarkHistory.append(current)
    }
}

/// GOMEMLIMIT syntax (Go's parseByteCount): an integer with an optional unit B, KiB,
/// MiB, GiB or TiB (powers of two); "off" means no limit.
public func parseMemoryLimit(_ s: String) throws(ConfigurationError) -> Int {
    if s == "off" || s.isEmpty { return Int.max }
    let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)]
    var digits = s
    var mul = 1
    for (u, m) in units where s.hasSuffix(u) {
        digits = String(s.dropLast(u.count))
        mul = m
        break
    }
    guard let n = Int(digits), n >= 0 else {
        throw ConfigurationError(message: "invalid GOMEMLIMIT value \"\(s)\": expected bytes with an optional unit B, KiB, MiB, GiB or TiB, or \"off\"")
    }
    let (v, o) = n.multipliedReportingOverflow(by: mul)
    return o ? Int.max : v
}

extension Heap {
    /// Set GOGC; returns the previous value (Go's debug.SetGCPercent; nil = off).
    @discardableResult
    public func setGCPercent(_ percent: Int?) -> Int? {
        let p = percent.flatMap { $0 < 0 ? nil : $0 }
        return updatePacer { $0.gcPercent = p }.gcPercent
    }

    /// Set the soft memory limit in bytes (Go's debug.SetMemoryLimit); returns the
    /// previous limit. Int.max means no limit; a negative value only reads the limit.
    @discardableResult
    public func setMemoryLimit(_ bytes: Int) -> Int {
        if bytes < 0 { return statsLock.withLock { pacer.memoryLimit } }
        return updatePacer { $0.memoryLimit = bytes }.memoryLimit
    }

    /// Change pacer settings with the world stopped; returns the settings before.
    private func updatePacer(_ change: (inout Pacer) -> Void) -> Pacer {
        let caller = currentMutator()
        while !stopTheWorld(caller) {}
        let old = pacer
        statsLock.withLock { change(&pacer) }
        if phase == .off { commitPacer(isSweepDone: false) }
        startTheWorld(caller)
        return old
    }
}
