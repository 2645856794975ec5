import XCTest
@_spi(Testing) @testable import Tricolor

// The GC CPU limiter's bucket on a simulated clock, step by step as in Go's
// TestGCCPULimiter (runtime/mgclimit_test.go): every expectation is exact.

final class CPULimiterTests: XCTestCase {
    private let procs = 14
    private let ms: UInt64 = 1_000_000
    private let capacityPerProc = Tuning.limiterCapacityPerProcNs

    /// A clock, an assist-time pool and a limiter, as the mechanism holds them.
    private struct Harness {
        var ticks: UInt64 = 0
        var pool: UInt64 = 0
        var l: GCCPULimiter
        init(procs: Int) { l = GCCPULimiter(now: 0, procs: procs) }

        mutating func advance(_ d: UInt64) -> UInt64 { ticks += d; return ticks }
        /// Assist time worth `frac` of every CPU over `d`.
        mutating func addAssist(_ d: UInt64, _ frac: Double, procs: Int) { pool += UInt64(frac * Double(d) * Double(procs)) }
        mutating func window(_ now: UInt64) -> GCCPULimiter.Window {
            defer { pool = 0 }
            return GCCPULimiter.Window(now: now, assistTimeNs: pool)
        }
        mutating func update(_ d: UInt64) { let w = window(advance(d)); l.update(w); l.checkInvariants() }
    }

    func testBucketFillsDrainsAndOverflows() {
        var h = Harness(procs: procs)
        let p = UInt64(procs)
        let bg = Tuning.goalUtilization
        var baseOverflow: UInt64 = 0
        for iteration in 1...2 {   // twice: no state may leak from one round to the next
            let round = "round \(iteration)"
            XCTAssertEqual(h.l.capacity, p * capacityPerProc, round)
            XCTAssertEqual(h.l.fill, 0, "empty at the start, \(round)")

            // Mutator time alone leaves the bucket empty.
            h.update(10 * ms)
            h.update(1_000 * ms)
            h.update(3_600_000 * ms)
            XCTAssertEqual(h.l.fill, 0, round)

            // Updates are due once per period.
            XCTAssertFalse(h.l.needUpdate(now: h.advance(Tuning.limiterUpdatePeriodNs / 2)), round)
            XCTAssertTrue(h.l.needUpdate(now: h.advance(Tuning.limiterUpdatePeriodNs)), round)
            h.update(0)
            XCTAssertFalse(h.l.needUpdate(now: h.advance(0)), round)

            // A transition into a cycle: the pause counts on every CPU.
            h.l.startGCTransition(enableGC: true, h.window(h.advance(109 * ms)))
            h.l.finishGCTransition(now: h.advance(2 * ms + 1_000))
            let fill = (2 * ms + 1_000) * p
            XCTAssertEqual(h.l.fill, fill, round)

            // During a cycle without assists the background share (25%) fills and the
            // rest (75%) drains: a window of fill / (procs × (1 − 2 × 0.25)) drains the
            // bucket to exactly `procs` ns.
            let factor = 1 / (1 - 2 * bg)
            h.update(UInt64(factor * Double(fill - p) / Double(p)))
            XCTAssertEqual(h.l.fill, p, "drained during a cycle, \(round)")
            h.update(2 * p * capacityPerProc)
            XCTAssertEqual(h.l.fill, 0, round)

            // GC at exactly 50% (25% background + 25% assists) does not move the bucket.
            h.addAssist(10 * ms, 0.5 - bg, procs: procs)
            h.update(10 * ms)
            XCTAssertEqual(h.l.fill, 0, "50% GC, \(round)")

            // 100% GC fills by the window on every CPU.
            h.addAssist(ms, 1 - bg, procs: procs)
            h.update(ms)
            XCTAssertEqual(h.l.fill, p * ms, "100% GC, \(round)")
            XCTAssertFalse(h.l.limiting, round)

            // Filled exactly: limiting, no overflow.
            h.addAssist(capacityPerProc - ms, 1 - bg, procs: procs)
            h.update(capacityPerProc - ms)
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, baseOverflow, round)

            // 50% GC while full: still limiting, still no overflow.
            h.addAssist(1_000 * ms, 0.5 - bg, procs: procs)
            h.update(1_000 * ms)
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, baseOverflow, round)

            // Background only: drains by half, and limiting stops.
            h.update(capacityPerProc)
            XCTAssertEqual(h.l.fill, h.l.capacity / 2, round)
            XCTAssertFalse(h.l.limiting, round)

            // 100% GC for a second: full again, with half a capacity of overflow.
            h.addAssist(capacityPerProc, 1 - bg, procs: procs)
            h.update(capacityPerProc)
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, capacityPerProc * p / 2 + baseOverflow, round)

            // The cycle ends with assists still pooled: they are counted at the transition.
            h.addAssist(ms, 1 - bg, procs: procs)
            h.l.startGCTransition(enableGC: false, h.window(h.advance(ms)))
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, (capacityPerProc / 2 + ms) * p + baseOverflow, round)

            // The pause of the transition adds to the bucket (here, to the overflow).
            h.l.finishGCTransition(now: h.advance(5 * ms))
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            let overflow = (capacityPerProc / 2 + 6 * ms) * p
            XCTAssertEqual(h.l.overflow, overflow + baseOverflow, round)
            h.l.checkInvariants()

            // More CPUs: the same fill no longer fills the bucket.
            let before = h.l.capacity
            h.l.resetCapacity(h.window(h.advance(0)), procs: procs + 10)
            XCTAssertEqual(h.l.fill, before, round)
            XCTAssertFalse(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, overflow + baseOverflow, "a resize is not overflow, \(round)")

            // Fewer CPUs: the fill is cut to the new capacity and limiting resumes.
            h.l.resetCapacity(h.window(h.advance(0)), procs: procs - 10)
            XCTAssertEqual(h.l.fill, h.l.capacity, round)
            XCTAssertTrue(h.l.limiting, round)
            XCTAssertEqual(h.l.overflow, overflow + baseOverflow, round)
            h.l.checkInvariants()

            // Back to an empty bucket for the next round.
            h.l.resetCapacity(h.window(h.advance(capacityPerProc * p)), procs: procs)
            baseOverflow += overflow
        }
    }

    /// With no background workers (`markWorkers: 0`) a running cycle is not GC time by
    /// itself: only assists and pauses fill the bucket.
    func testNoBackgroundShareWithoutWorkers() {
        var l = GCCPULimiter(now: 0, procs: 2, backgroundUtilization: MarkWorkerPlan(.init(procs: 2, configuredWorkers: 0)).backgroundUtilization)
        l.startGCTransition(enableGC: true, .init(now: 0))
        l.finishGCTransition(now: 0)
        l.update(.init(now: 10 * ms, assistTimeNs: 10 * ms))   // one of two CPUs assisting
        XCTAssertEqual(l.fill, 0, "50% GC")
        l.update(.init(now: 20 * ms, assistTimeNs: 20 * ms))   // both
        XCTAssertEqual(l.fill, 20 * ms)
        l.checkInvariants()
    }

    /// A clock that went backwards (another thread updated with a later time) changes
    /// nothing.
    func testStaleClockIsIgnored() {
        var l = GCCPULimiter(now: 100 * ms, procs: 4)
        l.update(.init(now: 50 * ms, assistTimeNs: 0))
        XCTAssertEqual(l.lastUpdate, 100 * ms)
        XCTAssertEqual(l.fill, 0)
    }

    /// GOMAXPROCS = Int.max and windows of years: capacities and GC times saturate
    /// instead of trapping (in a child: the unfixed arithmetic traps).
    func testHugeProcsDoNotOverflow() {
        checkInChild { c in
            var l = GCCPULimiter(now: 0, procs: Int.max)
            c.expectEqual(l.capacity, UInt64.max)
            l.startGCTransition(enableGC: true, .init(now: 1 << 40, assistTimeNs: .max))
            l.finishGCTransition(now: 1 << 50)
            l.update(.init(now: 1 << 62, assistTimeNs: .max, idleTimeNs: .max))
            l.resetCapacity(.init(now: UInt64.max), procs: Int.max)
            l.checkInvariants()
            c.expect(l.fill <= l.capacity, "fill \(l.fill) capacity \(l.capacity)")
        }
    }
}
