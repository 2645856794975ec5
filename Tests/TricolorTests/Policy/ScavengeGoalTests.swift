import XCTest
@_spi(Testing) @testable import Tricolor

// The scavenger's two goals (Go 1.19's gcPaceScavenger, with the limit goal at 95%).

final class ScavengeGoalTests: XCTestCase {
    private let mib: UInt = 1 << 20

    private func inputs(limit: Int = Int.max, mapped: UInt = 0, goal: UInt, lastGoal: UInt, lastInUse: UInt, retained: UInt) -> ScavengeGoal.Inputs {
        .init(memoryLimit: limit, mappedReady: mapped, heapGoal: goal, lastHeapGoal: lastGoal,
              lastHeapInUse: lastInUse, heapRetained: retained, physPageSize: 4096)
    }

    /// Heap in use tracked the last goal: the GOGC goal is the heap goal + 10%.
    func testGCPercentGoalIsTheHeapGoalPlusTenPercent() {
        let i = inputs(goal: 100 * mib, lastGoal: 80 * mib, lastInUse: 80 * mib, retained: 200 * mib)
        let g = ScavengeGoal(i)
        XCTAssertEqual(g.gcPercentGoal, 110 * mib)
        XCTAssertEqual(g.memoryLimitGoal, .max, "no limit")
        g.checkInvariants(i)
    }

    /// In general: last heap in use × goal/last goal × 1.1, rounded up to a page; no goal
    /// when retained memory is within a page of it, or before the second cycle.
    func testGCPercentGoalFollowsHeapInUseAndRoundsToPages() {
        let i = inputs(goal: 30 * mib, lastGoal: 20 * mib, lastInUse: 10 * mib + 1, retained: 64 * mib)
        let raw = UInt(Double(10 * mib + 1) * 1.5)
        let want = (raw + raw / 10 + 4095) / 4096 * 4096
        XCTAssertEqual(ScavengeGoal(i).gcPercentGoal, want)
        XCTAssertEqual(ScavengeGoal(inputs(goal: 30 * mib, lastGoal: 20 * mib, lastInUse: 10 * mib, retained: 16 * mib + 4096)).gcPercentGoal, .max)
        XCTAssertEqual(ScavengeGoal(inputs(goal: 30 * mib, lastGoal: 0, lastInUse: 10 * mib, retained: 64 * mib)).gcPercentGoal, .max)
        XCTAssertEqual(ScavengeGoal(inputs(goal: .max, lastGoal: 20 * mib, lastInUse: 10 * mib, retained: 64 * mib)).gcPercentGoal, .max, "GOGC off")
    }

    /// The memory-limit goal is 95% of the limit, active only once mapped memory is
    /// above it.
    func testMemoryLimitGoalIsNinetyFivePercent() {
        XCTAssertEqual(ScavengeGoal.memoryLimitTarget(100 * 1 << 20), 95 * mib)
        let over = inputs(limit: 100 << 20, mapped: 96 * mib, goal: 10 * mib, lastGoal: 0, lastInUse: 0, retained: 0)
        XCTAssertEqual(ScavengeGoal(over).memoryLimitGoal, 95 * mib)
        ScavengeGoal(over).checkInvariants(over)
        let under = inputs(limit: 100 << 20, mapped: 95 * mib, goal: 10 * mib, lastGoal: 0, lastInUse: 0, retained: 0)
        XCTAssertEqual(ScavengeGoal(under).memoryLimitGoal, .max)
        XCTAssertEqual(ScavengeGoal.memoryLimitTarget(Int.max), UInt(Int.max) / 100 * 95 + UInt(Int.max) % 100 * 95 / 100)
        XCTAssertEqual(ScavengeGoal.memoryLimitTarget(0), 0)
    }
}
