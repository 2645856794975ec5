// How many background mark workers a cycle gets and what share of a CPU each takes.
// Follows the worker plan of Go's gcControllerState.startCycle (runtime/mgcpacer.go).
//
// The goal is 25% of GOMAXPROCS. Rounding it to whole dedicated workers (which mark
// flat out) is fine when that lands within 30% of the goal; otherwise the count is
// rounded down and one fractional worker marks for the remainder:
//   procs 1 → 0 dedicated + 0.25 fractional   procs 4 → 1 dedicated
//   procs 2 → 0 + 0.5                          procs 6 → 1 + 0.5
//   procs 3 → 0 + 0.75                         procs 8 → 2
// Go runs the fractional share on whichever P is free (fractionalUtilizationGoal is per
// P); we run one thread that sleeps whenever it is ahead of its share of wall time.
// `Configuration.markWorkers` overrides the count: n threads share the 25% goal equally
// (each capped at a whole CPU); 0 means no background marking at all.
//
// A pure value (no allocation: the mechanism may ask for it often). Collector/
// GCWorkers.swift starts `count` threads, thread i aiming at `utilization(ofThread: i)`.
//
// Invariants (`checkInvariants`):
//   dedicated ≥ 0; 0 ≤ fractionalCPUs < 1
//   count == dedicated + (fractionalCPUs > 0 ? 1 : 0) under Go's rule
//   every thread's utilization is in (0, 1]; the dedicated ones are 1
//   under Go's rule: dedicated + fractionalCPUs == 0.25 × procs when a fractional worker
//   exists, else |dedicated / (0.25 × procs) − 1| ≤ 0.3

struct MarkWorkerPlan: Equatable {
    struct Inputs: Equatable {
        /// GOMAXPROCS.
        var procs: Int
        /// `Configuration.markWorkers`: nil = Go's rule.
        var configuredWorkers: Int? = nil
    }

    /// Workers that mark flat out.
    let dedicated: Int
    /// The CPU share of the fractional worker (0 = none).
    let fractionalCPUs: Double
    /// Worker threads.
    let count: Int
    /// The share of a CPU each worker that is not dedicated aims to use.
    private let shared: Double
    /// The CPU share of background marking over all of GOMAXPROCS (for the CPU limiter).
    let backgroundUtilization: Double

    /// The share of a CPU worker thread `i` aims to use (1 = flat out).
    func utilization(ofThread i: Int) -> Double { i < dedicated ? 1 : shared }

    init(_ i: Inputs) {
        let procs = max(1, i.procs)
        let goal = Tuning.goalUtilization * Double(procs)
        if let n = i.configuredWorkers {
            let n = max(0, n)
            let each = n == 0 ? 0 : min(1, goal / Double(n))
            dedicated = each == 1 ? n : 0
            fractionalCPUs = 0
            count = n
            shared = each
            backgroundUtilization = Double(n) * each / Double(procs)
            return
        }
        var d = Int(saturating: goal + 0.5)
        var fractional = 0.0
        let error = Double(d) / goal - 1
        if error < -Tuning.maxUtilizationError || error > Tuning.maxUtilizationError {
            if Double(d) > goal { d -= 1 }
            fractional = goal - Double(d)
        }
        dedicated = d
        fractionalCPUs = fractional
        count = fractional > 0 ? d + 1 : d
        shared = max(Tuning.minFractionalUtilization, fractional)
        backgroundUtilization = Tuning.goalUtilization
    }

    func checkInvariants() {
        runtimeCheck(dedicated >= 0 && fractionalCPUs >= 0 && fractionalCPUs < 1, "worker plan: \(dedicated) dedicated, \(fractionalCPUs) fractional")
        runtimeCheck(count >= dedicated && count <= dedicated + 1 || dedicated == 0, "worker plan: \(count) threads for \(dedicated) dedicated")
        runtimeCheck(count == 0 || (shared > 0 && shared <= 1), "worker plan: shared utilization \(shared)")
        runtimeCheck(backgroundUtilization >= 0 && backgroundUtilization <= 1, "worker plan: background utilization \(backgroundUtilization)")
    }
}
