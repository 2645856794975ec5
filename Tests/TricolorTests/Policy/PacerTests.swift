import XCTest
@_spi(Testing) @testable import Tricolor

// The pacer's formulas one at a time (goal, memory-limit goal, trigger bounds, assist
// ratio, cons/mark), and its arithmetic at the extremes of its settings. Whole-cycle
// behaviour is in PacerSimulationTests.swift.

final class PacerTests: XCTestCase {
    private let mib: UInt = 1 << 20

    /// A pacer as after a cycle that marked `marked` bytes, with these roots.
    private func pacer(gcPercent: Int? = 100, memoryLimit: Int = Int.max, marked: UInt, stacks: UInt = 0, globals: UInt = 0) -> Pacer {
        var p = Pacer(gcPercent: gcPercent, memoryLimit: memoryLimit)
        p.heapMarked = marked
        p.lastHeapScan = marked
        p.lastStackScan = stacks
        p.globalsScan = globals
        p.commit(isSweepDone: true, heapLive: marked)
        return p
    }

    // MARK: goal

    /// Go's GC guide example: 8 MiB live, 1 MiB of stacks, 1 MiB of globals, GOGC=100 →
    /// a goal of 18 MiB. GOGC=50 → 13 MiB.
    func testGoalCountsStacksAndGlobals() {
        XCTAssertEqual(pacer(marked: 8 * mib, stacks: mib, globals: mib).heapGoal, 18 * mib)
        XCTAssertEqual(pacer(gcPercent: 50, marked: 8 * mib, stacks: mib, globals: mib).heapGoal, 13 * mib)
    }

    /// With little live data the goal is the heap minimum, 4 MiB × GOGC/100; GOGC off
    /// means no goal and no trigger.
    func testHeapMinimumScalesWithGOGC() {
        XCTAssertEqual(pacer(marked: 0).heapGoal, 4 * mib)
        XCTAssertEqual(pacer(gcPercent: 50, marked: 0).heapGoal, 2 * mib)
        XCTAssertEqual(pacer(gcPercent: 200, marked: mib).heapGoal, 8 * mib)
        XCTAssertEqual(pacer(gcPercent: 0, marked: 0).heapMinimum, 0)
        let off = pacer(gcPercent: nil, marked: 8 * mib)
        XCTAssertEqual(off.heapGoal, UInt.max)
        XCTAssertEqual(off.trigger().trigger, UInt.max)
        XCTAssertEqual(off.heapMinimum, Tuning.defaultHeapMinimum)
    }

    /// A negative GOGC is off (Go's setGCPercent), whether set at creation or later.
    func testNegativeGOGCMeansOff() {
        var p = Pacer(gcPercent: -5, memoryLimit: Int.max)
        XCTAssertNil(p.gcPercent)
        XCTAssertEqual(p.heapGoal, UInt.max)
        p.setGCPercent(-1)
        XCTAssertNil(p.gcPercent)
        p.setGCPercent(100)
        p.commit(isSweepDone: true, heapLive: 0)
        XCTAssertEqual(p.heapGoal, 4 * mib)
        p.checkInvariants()
    }

    // MARK: trigger

    /// Before cons/mark is known the trigger is as early as allowed (~70% of the way from
    /// the live heap to the goal). After cycles measure cons/mark it follows the runway,
    /// within [~70%, ~95%]; a large heap may trigger up to one heap minimum below the goal.
    func testTriggerBounds() {
        var p = pacer(marked: 8 * mib)
        let goal = p.heapGoal
        let span = goal - p.heapMarked
        let lower = p.heapMarked + span / 64 * 45
        let upper = p.heapMarked + span / 64 * 61
        XCTAssertEqual(p.trigger().trigger, lower, "no cons/mark yet")

        // A cycle that allocated little while marking: tiny cons/mark, tiny runway.
        endCycle(&p, allocatedDuringMark: 1024, scanWork: 8 * mib)
        XCTAssertEqual(p.trigger().trigger, upper, "tiny runway: the ~95% bound")

        // A cycle that allocated a lot while marking: the runway exceeds the goal.
        var q = pacer(marked: 8 * mib)
        endCycle(&q, allocatedDuringMark: 64 * mib, scanWork: mib)
        XCTAssertEqual(q.trigger().trigger, lower, "huge runway: the ~70% bound")

        // Big heap, tiny runway: the goal minus one heap minimum beats 95%.
        var big = pacer(marked: 1 << 30)
        endCycle(&big, allocatedDuringMark: 1024, scanWork: 1 << 30)
        XCTAssertEqual(big.trigger().trigger, big.heapGoal - Tuning.defaultHeapMinimum)
    }

    /// While the last cycle's sweep is unfinished the trigger stays 1 MiB above heapLive.
    func testUnfinishedSweepKeepsTheTriggerAboveHeapLive() {
        var p = pacer(marked: 8 * mib)
        let heapLive = p.heapGoal - 512 << 10   // allocation already near the goal
        p.commit(isSweepDone: false, heapLive: heapLive)
        XCTAssertGreaterThanOrEqual(p.trigger().trigger, heapLive + Tuning.sweepMinHeapDistance)
        XCTAssertGreaterThanOrEqual(p.heapGoal, heapLive + Tuning.sweepMinHeapDistance, "the goal moves with it")
        p.checkInvariants()
    }

    /// A cycle that started late (heapLive already at the goal) still gets 64 KiB of
    /// runway for its assists.
    func testLateStartGetsMinimumRunway() {
        var p = pacer(marked: 8 * mib)
        let goal = p.heapGoal
        p.startCycle(heapLive: goal + mib)
        XCTAssertEqual(p.heapGoal, goal + mib + Tuning.minRunway)
    }

    // MARK: memory limit

    /// The memory-limit goal: limit − non-heap memory − overage − headroom (3%, at least
    /// 1 MiB), never below the live heap; hopeless cases give the live heap.
    func testMemoryLimitGoal() {
        let limit = 512 * mib
        var p = pacer(marked: 100 * mib)
        p.memoryLimit = Int(limit)
        func goal(mapped: UInt, free: UInt, alloc: UInt) -> UInt {
            p.memory = Pacer.MemoryInputs(mappedReady: mapped, heapFree: free, heapAlloc: alloc)
            return p.memoryLimitHeapGoal()
        }
        func headroom(_ g: UInt) -> UInt { max(g / 100 * 3, mib) }
        // Nothing but heap mapped: the limit less headroom.
        XCTAssertEqual(goal(mapped: 200 * mib, free: 0, alloc: 200 * mib), limit - headroom(limit))
        // 40 MiB of metadata; free pages do not count against the heap.
        XCTAssertEqual(goal(mapped: 240 * mib, free: 30 * mib, alloc: 170 * mib), 472 * mib - headroom(472 * mib))
        // Mapped beyond the limit: the overage comes off too.
        XCTAssertEqual(goal(mapped: 600 * mib, free: 0, alloc: 560 * mib), (512 - 40 - 88) * mib - headroom(384 * mib))
        // Non-heap memory alone exceeds the limit: collect continuously (the live heap).
        XCTAssertEqual(goal(mapped: 700 * mib, free: 0, alloc: 100 * mib), p.heapMarked)
        // Never below the live heap.
        XCTAssertEqual(goal(mapped: 500 * mib, free: 0, alloc: 50 * mib), p.heapMarked)
        // Tiny limit: the headroom floor.
        var tiny = pacer(marked: 0)
        tiny.memoryLimit = Int(3 * mib / 2)
        XCTAssertEqual(tiny.memoryLimitHeapGoal(), mib)
        // The smaller goal wins; GOGC's sweep and runway adjustments only apply to GOGC's.
        p.memory = Pacer.MemoryInputs(mappedReady: 200 * mib, heapFree: 0, heapAlloc: 200 * mib)
        XCTAssertEqual(p.heapGoal, 200 * mib, "GOGC's goal (2 × 100 MiB) is below the limit's")
        p.memoryLimit = Int(190 * mib)
        let g = 180 * mib   // 190 MiB less 10 MiB mapped beyond it
        XCTAssertEqual(p.heapGoal, g - g / 100 * 3, "the limit's goal is below GOGC's: it wins")
        p.checkInvariants()
    }

    // MARK: during a cycle

    /// Go's revise: in the steady case the assist ratio spreads the expected scan work
    /// over the heap left before the goal; more work than expected stretches the goal
    /// (up to the hard goal); past the goal it aims 10% beyond it.
    func testAssistRatio() {
        var p = pacer(marked: 8 * mib)        // goal 16 MiB, expected work 8 MiB
        let goal = Double(p.heapGoal)
        p.startCycle(heapLive: 12 * mib)
        // Steady: 6 MiB of work left over 2 MiB of heap.
        var r = p.revise(Pacer.MarkProgress(heapLive: 14 * mib, heapScan: 14 * mib, scanWorkDone: 2 * mib, maxStackScan: 0))
        XCTAssertEqual(r.workPerByte, Double(6 * mib) / (goal - Double(14 * mib)), accuracy: 1e-12)
        XCTAssertEqual(r.workPerByte * r.bytesPerWork, 1, accuracy: 1e-12)
        // More work than expected: goal stretched in proportion to the worst case (all
        // of heapScan live), at most (1 + GOGC/100) × goal.
        r = p.revise(Pacer.MarkProgress(heapLive: 15 * mib, heapScan: 15 * mib, scanWorkDone: 9 * mib, maxStackScan: 0))
        let extended = min(12.0 * 1048576 + (goal - 12.0 * 1048576) / Double(8 * mib) * Double(15 * mib), 2 * goal)
        XCTAssertEqual(r.workPerByte, Double(6 * mib) / (extended - Double(15 * mib)), accuracy: 1e-12)
        // Past even the stretched goal: aim at 1.1 × it, with the worst-case work left.
        r = p.revise(Pacer.MarkProgress(heapLive: 40 * mib, heapScan: 40 * mib, scanWorkDone: 9 * mib, maxStackScan: 0))
        let stretched = min(12.0 * 1048576 + (goal - 12.0 * 1048576) / Double(8 * mib) * Double(40 * mib), 2 * goal)
        XCTAssertEqual(r.workPerByte, Double(31 * mib) / max(stretched * 1.1 - Double(40 * mib), 1), accuracy: 1e-9)
        // Nothing left to scan: the 1000-byte floor, never zero or negative.
        r = p.revise(Pacer.MarkProgress(heapLive: 13 * mib, heapScan: 8 * mib, scanWorkDone: 8 * mib, maxStackScan: 0))
        XCTAssertGreaterThan(r.workPerByte, 0)
    }

    // MARK: end of a cycle

    /// End a cycle that allocated `allocatedDuringMark` bytes while doing `scanWork`
    /// at the goal utilization (no assists); the next cycle's base is `heapMarked`.
    private func endCycle(_ p: inout Pacer, allocatedDuringMark: UInt, scanWork: UInt) {
        let marked = p.heapMarked
        let start = p.trigger().trigger
        p.startCycle(heapLive: start)
        p.endCycle(Pacer.CycleResult(heapLive: start + allocatedDuringMark, heapMarked: marked, heapScanWork: scanWork,
                                     stackScanWork: 0, globalsScan: 0, assistTimeNs: 0, markDurationNs: 1_000_000, procs: 4))
        p.commit(isSweepDone: true, heapLive: marked)
    }

    /// cons/mark = (allocated during mark × u) / (scan work × (1 − u)), and the estimate
    /// is the maximum of this measurement and the four before it (Go 1.21).
    func testConsMarkIsTheMaximumOfTheRecentMeasurements() {
        var p = pacer(marked: 8 * mib)
        let measured: [UInt] = [4, 1, 1, 1, 1, 1, 2]   // MiB allocated during each mark
        var estimates: [Double] = []
        for a in measured {
            endCycle(&p, allocatedDuringMark: a * mib, scanWork: 8 * mib)
            estimates.append(p.consMark)
        }
        let one = 0.25 / (8 * 0.75)   // 1 MiB over 8 MiB of scan at u = 0.25
        XCTAssertEqual(estimates[0], 4 * one, accuracy: 1e-12)
        XCTAssertEqual(estimates[4], 4 * one, accuracy: 1e-12, "4 is still among the four before")
        XCTAssertEqual(estimates[5], one, accuracy: 1e-12, "4 has left the window")
        XCTAssertEqual(estimates[6], 2 * one, accuracy: 1e-12)
        // The runway follows: consMark × 3 × expected scan work.
        XCTAssertEqual(Double(p.runway), 2 * one * 3 * Double(8 * mib), accuracy: 1)
        p.checkInvariants()
    }

    /// A cycle that never allocated while marking, or did no scan work, leaves the
    /// estimate alone.
    func testDegenerateCyclesDoNotChangeConsMark() {
        var p = pacer(marked: 8 * mib)
        endCycle(&p, allocatedDuringMark: 2 * mib, scanWork: 8 * mib)
        let before = p.consMark
        endCycle(&p, allocatedDuringMark: 0, scanWork: 8 * mib)
        XCTAssertEqual(p.consMark, before)
        endCycle(&p, allocatedDuringMark: 2 * mib, scanWork: 0)
        XCTAssertEqual(p.consMark, before)
        p.checkInvariants()
    }

    // MARK: extreme settings (in a child: the unfixed arithmetic traps)

    /// GOGC values far beyond Go's int32 (Int.max, 2⁵⁰, 10¹⁴) with a large live heap:
    /// no arithmetic overflow; the goal is beyond any heap (effectively off); the values
    /// are kept as given.
    func testHugeGOGCDoesNotOverflow() {
        checkInChild { c in
            for percent in [Int.max, 1 << 50, 100_000_000_000_000, Int(Int32.max) + 1] {
                var p = Pacer(gcPercent: percent, memoryLimit: Int.max)
                c.expectEqual(p.gcPercent, percent, "GOGC kept as given")
                c.expect(p.heapMinimum >= 64 << 40, "GOGC=\(percent): heap minimum \(p.heapMinimum) is not beyond any heap")
                for marked in [0, 1 << 20, 1 << 45, UInt.max / 2] as [UInt] {
                    p.heapMarked = marked
                    p.lastHeapScan = marked
                    p.lastStackScan = 1 << 20
                    p.globalsScan = 1 << 20
                    p.commit(isSweepDone: false, heapLive: marked)
                    let (t, g) = p.trigger()
                    c.expect(t <= g, "GOGC=\(percent), marked \(marked): trigger \(t) > goal \(g)")
                    c.expect(g >= 64 << 40, "GOGC=\(percent), marked \(marked): goal \(g) reachable")
                    p.startCycle(heapLive: t)
                    let r = p.revise(Pacer.MarkProgress(heapLive: t, heapScan: t, scanWorkDone: 0, maxStackScan: 1 << 20))
                    c.expect(r.workPerByte.isFinite && r.workPerByte >= 0, "assist ratio \(r.workPerByte)")
                    p.endCycle(Pacer.CycleResult(heapLive: t.saturatingAdd(1 << 20), heapMarked: marked, heapScanWork: marked,
                                                 stackScanWork: 1 << 20, globalsScan: 1 << 20, assistTimeNs: .max,
                                                 markDurationNs: 1, procs: Int.max))
                    p.commit(isSweepDone: true, heapLive: marked)
                    p.checkInvariants()
                }
            }
        }
    }

    /// Memory limits at the edges (0, 1 byte, Int.max − 1) and mapped memory near
    /// UInt.max: the goal is defined and no arithmetic traps.
    func testExtremeMemoryLimitsDoNotOverflow() {
        checkInChild { c in
            for limit in [0, 1, Int.max - 1, Int.max / 2] {
                var p = Pacer(gcPercent: nil, memoryLimit: limit)
                for m in [0, 1 << 30, UInt.max / 2, UInt.max] as [UInt] {
                    p.memory = Pacer.MemoryInputs(mappedReady: m, heapFree: m, heapAlloc: m)
                    let (t, g) = p.trigger()
                    c.expect(t <= g, "limit \(limit), mapped \(m): trigger \(t) > goal \(g)")
                    c.expect(p.memoryLimitHeapGoal() >= p.heapMarked, "limit \(limit): goal below the live heap")
                    p.checkInvariants()
                }
            }
        }
    }

    /// Go's heapScan: only pointerful allocations add to the scannable heap the assist
    /// ratio is bounded by; pointer-free bytes add to heapLive alone. A collection resets
    /// it to the heap scan work that mark did (Go's resetLive). Before, the ratio used
    /// heapLive, and a heap of mostly pointer-free bytes assisted as if all were to scan.
    func testHeapScanCountsOnlyPointerfulAllocations() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: -1).precise)
        let node = try heap.register(TypeLayout(name: "pacer.Node", size: 32, pointerWords: [0]))
        let ctl = heap.gcController
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                let live0 = ctl.heapLive.load(.relaxed), scan0 = ctl.heapScan.load(.relaxed)
                for _ in 0..<4_000 { f[0] = m.allocateBytes(512) }         // 2 MB pointer-free
                let live1 = ctl.heapLive.load(.relaxed), scan1 = ctl.heapScan.load(.relaxed)
                XCTAssertGreaterThanOrEqual(live1 - live0, UInt(4_000 * 512))
                XCTAssertEqual(scan1, scan0, "pointer-free bytes are not scannable")
                for _ in 0..<4_000 { f[1] = m.allocate(node) }              // 128 KB pointerful
                _ = m.allocateArray(node, count: 20_000)                     // a large pointerful object
                let scan2 = ctl.heapScan.load(.relaxed)
                let used: UInt = 4_000 * 32 + 20_000 * 32
                XCTAssertGreaterThanOrEqual(scan2 - scan1, used)
                XCTAssertLessThan(scan2 - scan1, used + 64 * 1024, "no more than the spans handed out")
                heap.collect()
                XCTAssertEqual(ctl.heapScan.load(.relaxed), heap.pacer.lastHeapScan, "reset to the scan work of the mark")
                XCTAssertLessThan(ctl.heapScan.load(.relaxed), ctl.heapLive.load(.relaxed))
            }
        }
    }
}
