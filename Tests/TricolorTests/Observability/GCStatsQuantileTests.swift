import XCTest
@_spi(Testing) @testable import Tricolor

// GCStats.PauseQuantiles as Go's debug.ReadGCStats computes them: over the per-cycle
// pause totals (Pause, one entry per cycle), sorted, entry i of n−1 at
// sorted[len × i / (n−1)] and the last the maximum.

final class GCStatsQuantileTests: WatchdogTestCase {
    /// Go's formula, written out as Go writes it, for comparison.
    private func goQuantiles(_ pause: [UInt64], _ n: Int) -> [UInt64] {
        var q = [UInt64](repeating: 0, count: n)
        if pause.isEmpty { return q }
        let sorted = pause.sorted()
        let nq = n - 1
        for i in 0..<nq { q[i] = sorted[sorted.count * i / nq] }
        q[nq] = sorted[sorted.count - 1]
        return q
    }

    func testQuantilesMatchGoFormula() {
        // Five quantiles (min, 25%, 50%, 75%, max) of 10 pauses: indexes 0, 2, 5, 7, 9.
        let ten: [UInt64] = [90, 10, 80, 20, 70, 30, 60, 40, 50, 100]
        XCTAssertEqual(GCStats.quantiles(of: ten, count: 5), [10, 30, 60, 80, 100])
        // Against the formula on assorted lists and counts.
        var rng: UInt64 = 12345
        for len in [1, 2, 3, 4, 7, 100, 255, 256] {
            var pauses: [UInt64] = []
            for _ in 0..<len { rng = rng &* 6364136223846793005 &+ 1442695040888963407; pauses.append(rng >> 40) }
            for n in [2, 3, 5, 11, 101] {
                XCTAssertEqual(GCStats.quantiles(of: pauses, count: n), goQuantiles(pauses, n), "len \(len), n \(n)")
            }
        }
        XCTAssertEqual(GCStats.quantiles(of: [], count: 5), [0, 0, 0, 0, 0], "no pauses: zeros")
        XCTAssertEqual(GCStats.quantiles(of: [7, 3], count: 1), [7], "one quantile: the maximum")
        XCTAssertEqual(GCStats.quantiles(of: [7, 3], count: 0), [])
    }

    /// `gcStats(pauseQuantiles:)` computes them over `pause` (per cycle, both pauses of a
    /// cycle together), not over the individual stop-the-world pauses.
    func testHeapGCStatsQuantilesArePerCycle() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
        for _ in 0..<20 { heap.collect() }
        let s = heap.gcStats(pauseQuantiles: 5)
        XCTAssertEqual(s.pause.count, 20)
        XCTAssertEqual(s.pauseQuantiles, goQuantiles(s.pause, 5))
        XCTAssertEqual(s.pauseQuantiles.last, s.pause.max())
        XCTAssertGreaterThanOrEqual(s.allPauses.count, 40, "two stop-the-world pauses per cycle")
        XCTAssertEqual(heap.gcStats().pauseQuantiles, [], "none asked for")
        // The per-pause view stays available under its own name.
        XCTAssertEqual(s.stopTheWorldPauseQuantile(1), s.allPauses.max())
        XCTAssertEqual(s.stopTheWorldPauseQuantile(0), s.allPauses.min())
    }

    /// The individual-pause history is bounded: a long-running heap keeps the last
    /// `Heap.pauseHistoryLimit` pauses, oldest first, and counts them all.
    func testPauseHistoryIsBoundedAndKeepsTheLatest() throws {
        let heap = try Heap()
        let limit = Heap.pauseHistoryLimit
        let total = limit + 1_234
        for k in 1...total { heap.recordPause(UInt64(k)) }
        let s = heap.gcStats()
        XCTAssertEqual(s.pausesRecorded, total)
        XCTAssertEqual(s.allPauses.count, limit)
        XCTAssertEqual(s.allPausesStopping.count, limit)
        XCTAssertEqual(s.allPauses.first, UInt64(total - limit + 1), "oldest kept first")
        XCTAssertEqual(s.allPauses.last, UInt64(total), "the latest last")
        XCTAssertTrue(zip(s.allPauses, s.allPauses.dropFirst()).allSatisfy { $0 + 1 == $1 }, "in order across the ring's wrap")
        XCTAssertEqual(s.stopTheWorldPauseQuantile(1), UInt64(total))
    }

    /// A quantile outside 0…1 is clamped and NaN is the minimum, for the stop-the-world
    /// pauses and the allocation-path latencies alike. Fails if any of them traps on the
    /// Double-to-integer conversion (run in a child so a trap fails only this test).
    func testQuantilesOutsideZeroToOneAreClamped() {
        checkInChild { c in
            var s = GCStats()
            s.allPauses = [50, 10, 30]
            for (q, want) in [(-0.1, 10), (Double.nan, 10), (-Double.infinity, 10), (1e30, 50), (Double.infinity, 50), (2, 50), (0.5, 30)] as [(Double, UInt64)] {
                c.expectEqual(s.stopTheWorldPauseQuantile(q), want, "stopTheWorldPauseQuantile(\(q))")
            }
            let level = AllocPathStats.Level(name: "test", count: 6, histogram: [1, 2, 3], bucketUpperNs: [10, 20, 40])
            for (q, want) in [(-0.1, 10), (Double.nan, 10), (-Double.infinity, 10), (1e30, 40), (Double.infinity, 40), (2, 40), (0.5, 20), (0, 10), (1, 40)] as [(Double, Double)] {
                c.expectEqual(level.quantileNs(q), want, "quantileNs(\(q))")
            }
        }
    }

    /// `gcStats(pauseQuantiles:)` takes 0…`GCStats.maxPauseQuantiles`; a count outside that
    /// (negative, or one that would build a huge array under the stats lock) traps naming it.
    func testPauseQuantileCountOutsideItsRangeTraps() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
        heap.collect()
        XCTAssertEqual(heap.gcStats(pauseQuantiles: GCStats.maxPauseQuantiles).pauseQuantiles.count, GCStats.maxPauseQuantiles)
        XCTAssertEqual(heap.gcStats(pauseQuantiles: 0).pauseQuantiles, [])
        for q in [-1, GCStats.maxPauseQuantiles + 1, Int.max, Int.min] {
            expectFatal("gcStats: pauseQuantiles \(q) is outside 0...\(GCStats.maxPauseQuantiles)") {
                _ = heap.gcStats(pauseQuantiles: q)
            }
        }
    }
}
