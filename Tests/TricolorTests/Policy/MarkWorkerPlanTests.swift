import XCTest
@_spi(Testing) @testable import Tricolor

// The mark-worker plan against Go's startCycle rule (runtime/mgcpacer.go).

final class MarkWorkerPlanTests: XCTestCase {
    /// Go's dedicatedMarkWorkersNeeded and the fractional remainder (in CPUs) for
    /// GOMAXPROCS 1…16, computed by Go's formula: round 25% of procs; if that is more
    /// than 30% off, round down and make up the rest with a fractional worker.
    func testGoRuleForSmallAndLargeProcs() {
        let expected: [Int: (dedicated: Int, fractional: Double)] = [
            1: (0, 0.25), 2: (0, 0.5), 3: (0, 0.75), 4: (1, 0), 5: (1, 0), 6: (1, 0.5), 7: (2, 0),
            8: (2, 0), 9: (2, 0), 10: (3, 0), 11: (3, 0), 12: (3, 0), 13: (3, 0), 14: (4, 0), 16: (4, 0),
            64: (16, 0), 100: (25, 0),
        ]
        for (procs, want) in expected.sorted(by: { $0.key < $1.key }) {
            let plan = MarkWorkerPlan(.init(procs: procs))
            XCTAssertEqual(plan.dedicated, want.dedicated, "procs \(procs)")
            XCTAssertEqual(plan.fractionalCPUs, want.fractional, accuracy: 1e-12, "procs \(procs)")
            XCTAssertEqual(plan.count, want.dedicated + (want.fractional > 0 ? 1 : 0), "procs \(procs)")
            for i in 0..<plan.dedicated { XCTAssertEqual(plan.utilization(ofThread: i), 1, "procs \(procs)") }
            if want.fractional > 0 { XCTAssertEqual(plan.utilization(ofThread: plan.dedicated), want.fractional, accuracy: 1e-12) }
            XCTAssertEqual(plan.backgroundUtilization, Tuning.goalUtilization)
            plan.checkInvariants()
            // Go's invariant: rounding error within 30%, or a fractional worker exactly
            // making up the 25%.
            let goal = 0.25 * Double(procs)
            if plan.fractionalCPUs > 0 {
                XCTAssertEqual(Double(plan.dedicated) + plan.fractionalCPUs, goal, accuracy: 1e-9)
            } else {
                XCTAssertLessThanOrEqual(abs(Double(plan.dedicated) / goal - 1), Tuning.maxUtilizationError)
            }
        }
    }

    /// `markWorkers: n` shares the 25% goal among n threads (each at most one CPU);
    /// 0 means none, and no background share for the CPU limiter.
    func testConfiguredWorkerCount() {
        let none = MarkWorkerPlan(.init(procs: 8, configuredWorkers: 0))
        XCTAssertEqual(none.count, 0)
        XCTAssertEqual(none.backgroundUtilization, 0)
        let four = MarkWorkerPlan(.init(procs: 8, configuredWorkers: 4))
        XCTAssertEqual(four.count, 4)
        XCTAssertEqual(four.utilization(ofThread: 3), 0.5)
        XCTAssertEqual(four.backgroundUtilization, 0.25, accuracy: 1e-12)
        let one = MarkWorkerPlan(.init(procs: 16, configuredWorkers: 1))
        XCTAssertEqual(one.utilization(ofThread: 0), 1, "capped at one CPU")
        XCTAssertEqual(one.dedicated, 1)
        XCTAssertEqual(one.backgroundUtilization, 1.0 / 16, accuracy: 1e-12)
        for p in [none, four, one] { p.checkInvariants() }
    }

    /// GOMAXPROCS = Int.max: the arithmetic holds (how many threads to really start is
    /// the mechanism's business).
    func testHugeProcs() {
        let plan = MarkWorkerPlan(.init(procs: Int.max))
        XCTAssertGreaterThan(plan.dedicated, 1 << 60)
        XCTAssertEqual(plan.fractionalCPUs, 0)
        plan.checkInvariants()
        let configured = MarkWorkerPlan(.init(procs: Int.max, configuredWorkers: 1))
        XCTAssertEqual(configured.count, 1)
        XCTAssertEqual(configured.utilization(ofThread: 0), 1)
    }
}
