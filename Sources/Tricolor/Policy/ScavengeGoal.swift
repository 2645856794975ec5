// How much memory the scavenger should leave mapped: two independent goals, and the
// scavenger works while either is unmet. Follows Go 1.19's gcPaceScavenger
// (runtime/mgcscavenge.go), computed at every pacer commit.
//
//   memory-limit goal:  limit × (1 − 5%)                compared with Sys − HeapReleased
//   GOGC goal:          lastHeapInUse × goal/lastGoal × (1 + 10%), rounded up to a
//                       physical page                   compared with heapInUse + heapFree
// When the heap in use tracked the last goal (lastHeapInUse == lastHeapGoal) the GOGC
// goal is simply the heap goal × 1.1: retain 10% above what the heap is expected to need.
// Go 1.19 wrote the limit goal as limit × (100 − 5), 95 times the limit, so it never
// applied; later Go divides by 100, as here.
//
// A pure function of its inputs; nothing calls it yet (the scavenger will). `UInt.max`
// means "no scavenging needed for this goal".
//
// Invariants (`checkInvariants`): a goal that is not UInt.max is below what it is compared
// with (there is something to scavenge); the GOGC goal is a multiple of the page size.

struct ScavengeGoal: Equatable {
    struct Inputs: Equatable {
        /// GOMEMLIMIT in bytes; Int.max = none.
        var memoryLimit: Int
        /// Sys − HeapReleased now.
        var mappedReady: UInt
        /// The goal of the cycle about to run, and of the last one (0 before the first
        /// cycle ended).
        var heapGoal: UInt
        var lastHeapGoal: UInt
        /// heapInUse at the end of the last mark termination.
        var lastHeapInUse: UInt
        /// heapInUse + heapFree now: heap memory not returned to the OS.
        var heapRetained: UInt
        /// The OS page size.
        var physPageSize: UInt = 4096
    }

    /// Scavenge until Sys − HeapReleased ≤ this (memory limit); UInt.max = not needed.
    var memoryLimitGoal: UInt
    /// Scavenge until heapInUse + heapFree ≤ this (GOGC); UInt.max = not needed.
    var gcPercentGoal: UInt

    /// The target under a memory limit: 95% of it (Go's reduceExtraPercent).
    static func memoryLimitTarget(_ memoryLimit: Int) -> UInt {
        let limit = UInt(max(0, memoryLimit))
        return limit.saturatingMultiply(100 - Tuning.reduceExtraPercent, dividedBy: 100)
    }

    init(_ i: Inputs) {
        if i.memoryLimit == Int.max {
            memoryLimitGoal = UInt.max
        } else {
            let target = ScavengeGoal.memoryLimitTarget(i.memoryLimit)
            memoryLimitGoal = i.mappedReady <= target ? UInt.max : target
        }
        guard i.lastHeapGoal != 0, i.heapGoal != UInt.max else {
            gcPercentGoal = UInt.max
            return
        }
        let ratio = Double(i.heapGoal) / Double(i.lastHeapGoal)
        var goal = UInt(saturating: Double(i.lastHeapInUse) * ratio)
        goal = goal.saturatingAdd(goal / (100 / Tuning.retainExtraPercent))
        let page = max(1, i.physPageSize)
        goal = goal.saturatingAdd(page - 1) / page * page
        if i.heapRetained <= goal || i.heapRetained - goal < page {
            gcPercentGoal = UInt.max
        } else {
            gcPercentGoal = goal
        }
    }

    func checkInvariants(_ i: Inputs) {
        if memoryLimitGoal != UInt.max {
            runtimeCheck(i.mappedReady > memoryLimitGoal, "scavenge goal: limit goal \(memoryLimitGoal) already met")
        }
        if gcPercentGoal != UInt.max {
            runtimeCheck(i.heapRetained > gcPercentGoal, "scavenge goal: GOGC goal \(gcPercentGoal) already met")
            runtimeCheck(gcPercentGoal % max(1, i.physPageSize) == 0, "scavenge goal: GOGC goal not page aligned")
        }
    }
}
