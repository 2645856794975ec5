// Proportional sweep: how many pages allocation must sweep per byte so that the last
// cycle's sweep is done before the next cycle triggers. Follows Go's gcPaceSweeper and
// deductSweepCredit (runtime/mgcsweep.go).
//
// After each commit the pacer's trigger fixes a distance in bytes of allocation; the
// pages still unswept are spread over it:
//   pagesPerByte = (pagesInUse − pagesSwept) / max(trigger − heapLive − 1 MiB, one page)
// Before an allocation takes a span of `spanBytes`, the allocator owes
//   pagesPerByte × (heapLive − heapLiveBasis + spanBytes)
// pages swept since the basis, and sweeps until it has paid.
//
// A pure value: the mechanism (Collector/Pacing.swift) computes it with `pace` and
// publishes its three fields to atomic words (`SweepShared`: sweepPagesPerByte,
// sweepHeapLiveBasis, pagesSweptBasis); `deductSweepCredit` rebuilds it from them.
//
// Invariants (`checkInvariants`):
//   pagesPerByte is finite and ≥ 0; 0 means "no sweep debt" (sweep done, nothing to
//   sweep, or nothing ever triggers)
//   pagesPerByte ≤ pages left to sweep / one page of distance

struct SweepPacer: Equatable {
    /// What pacing the sweep needs to know.
    struct Inputs: Equatable {
        /// The pacer's trigger; UInt.max when nothing triggers.
        var trigger: UInt
        /// Current live estimate.
        var heapLive: UInt
        /// Pages in in-use spans, and pages swept so far this cycle.
        var pagesInUse: UInt
        var pagesSwept: UInt
        /// Nothing is left to sweep.
        var isSweepDone: Bool
    }

    /// Pages to sweep per byte allocated; 0 = no debt.
    var pagesPerByte: Double = 0
    /// heapLive and pagesSwept when the rate was set.
    var heapLiveBasis: UInt = 0
    var pagesSweptBasis: UInt = 0

    /// Go's gcPaceSweeper.
    static func pace(_ i: Inputs) -> SweepPacer {
        if i.isSweepDone || i.trigger == UInt.max { return SweepPacer() }
        let floor = i.heapLive.saturatingAdd(Tuning.sweepMinHeapDistance)
        let distance = max(i.trigger > floor ? i.trigger - floor : 0, Tuning.minSweepDistance)
        if i.pagesInUse <= i.pagesSwept { return SweepPacer() }
        let pagesLeft = i.pagesInUse - i.pagesSwept
        return SweepPacer(pagesPerByte: Double(pagesLeft) / Double(distance),
                          heapLiveBasis: i.heapLive, pagesSweptBasis: i.pagesSwept)
    }

    /// Pages that should have been swept since `pagesSweptBasis` once `spanBytes` more
    /// are allocated at `heapLive` (Go's pagesTarget in deductSweepCredit).
    func pagesTarget(heapLive: UInt, spanBytes: UInt) -> Double {
        let grown = heapLive > heapLiveBasis ? heapLive - heapLiveBasis : 0
        return pagesPerByte * (Double(grown) + Double(spanBytes))
    }

    /// Whether an allocation of `spanBytes` must sweep more first, with `pagesSwept`
    /// pages swept so far this cycle.
    func owesSweep(heapLive: UInt, spanBytes: UInt, pagesSwept: UInt) -> Bool {
        if pagesPerByte == 0 { return false }
        let paid = pagesSwept >= pagesSweptBasis ? pagesSwept - pagesSweptBasis : 0
        return pagesTarget(heapLive: heapLive, spanBytes: spanBytes) > Double(paid)
    }

    func checkInvariants() {
        runtimeCheck(pagesPerByte.isFinite && pagesPerByte >= 0, "sweep pacer: pages per byte \(pagesPerByte)")
    }
}
