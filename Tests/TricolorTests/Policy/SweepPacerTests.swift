import XCTest
@_spi(Testing) @testable import Tricolor

// Proportional sweep (Go's gcPaceSweeper / deductSweepCredit) as a pure value.

final class SweepPacerTests: XCTestCase {
    private let mib: UInt = 1 << 20

    /// Pages left to sweep are spread over the allocation between heapLive + 1 MiB and
    /// the trigger; an allocation owes pages in proportion to what was allocated since.
    func testPagesPerByteSpreadsTheSweepBeforeTheTrigger() {
        let p = SweepPacer.pace(.init(trigger: 20 * mib, heapLive: 9 * mib, pagesInUse: 2000, pagesSwept: 500, isSweepDone: false))
        XCTAssertEqual(p.pagesPerByte, 1500 / Double(10 * mib), accuracy: 1e-15)
        XCTAssertEqual(p.heapLiveBasis, 9 * mib)
        XCTAssertEqual(p.pagesSweptBasis, 500)
        // 5 MiB later, taking an 8 KiB span: 750 pages + a bit are due.
        let due = p.pagesTarget(heapLive: 14 * mib, spanBytes: 8192)
        XCTAssertEqual(due, p.pagesPerByte * Double(5 * mib + 8192), accuracy: 1e-9)
        XCTAssertTrue(p.owesSweep(heapLive: 14 * mib, spanBytes: 8192, pagesSwept: 500 + 750))
        XCTAssertFalse(p.owesSweep(heapLive: 14 * mib, spanBytes: 8192, pagesSwept: 500 + 752))
        // By the trigger, everything is due.
        XCTAssertEqual(p.pagesTarget(heapLive: 19 * mib, spanBytes: 0), 1500, accuracy: 1e-9)
        p.checkInvariants()
    }

    /// No debt when the sweep is done, nothing is left, or nothing ever triggers; the
    /// distance never drops below one page (the trigger may be at or below heapLive).
    func testDegenerateCases() {
        XCTAssertEqual(SweepPacer.pace(.init(trigger: 20 * mib, heapLive: mib, pagesInUse: 100, pagesSwept: 0, isSweepDone: true)).pagesPerByte, 0)
        XCTAssertEqual(SweepPacer.pace(.init(trigger: 20 * mib, heapLive: mib, pagesInUse: 100, pagesSwept: 100, isSweepDone: false)).pagesPerByte, 0)
        XCTAssertEqual(SweepPacer.pace(.init(trigger: .max, heapLive: mib, pagesInUse: 100, pagesSwept: 0, isSweepDone: false)).pagesPerByte, 0)
        let late = SweepPacer.pace(.init(trigger: mib, heapLive: 5 * mib, pagesInUse: 100, pagesSwept: 0, isSweepDone: false))
        XCTAssertEqual(late.pagesPerByte, 100 / Double(Tuning.minSweepDistance))
        XCTAssertFalse(SweepPacer().owesSweep(heapLive: .max, spanBytes: .max, pagesSwept: 0))
        // A trigger near UInt.max (GOGC = 2^50) paces without trapping.
        let huge = SweepPacer.pace(.init(trigger: .max - 1, heapLive: .max - 2, pagesInUse: .max, pagesSwept: 0, isSweepDone: false))
        huge.checkInvariants()
    }
}
