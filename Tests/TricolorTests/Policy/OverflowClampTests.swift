import XCTest
@_spi(Testing) @testable import Tricolor

// Settings at the edge of their types, on a real heap. Each runs in a child process:
// before the clamps these trapped on an arithmetic overflow, which would take the test
// runner down.

final class OverflowClampTests: WatchdogTestCase {
    /// GOGC ≥ 1e14 from the environment, `Configuration(gcPercent: 1<<50)`, and
    /// `setGCPercent(Int.max)` on a running heap: the collector is effectively off (no
    /// cycle starts by itself), `collect()` still works, and the value reads back.
    func testHugeGOGCIsEffectivelyOff() {
        checkInChild { c in
            let env = try! Configuration.fromEnvironment(["GOGC": "100000000000000"])
            for config in [env, Configuration(gcPercent: 1 << 50), Configuration(gcPercent: Int.max)] {
                let heap = try! Heap(configuration: config)
                heap.withMutator { m in for _ in 0..<8_000 { _ = m.allocateBytes(4096) } }   // 32 MiB
                let s = heap.memStats()
                c.expectEqual(s.numGC, 0, "GOGC=\(config.gcPercent!): no automatic cycle")
                c.expect(s.nextGC >= 64 << 40, "GOGC=\(config.gcPercent!): goal \(s.nextGC) is reachable")
                c.expect(s.enableGC, "GOGC=\(config.gcPercent!) is on")
                heap.collect()
                c.expectEqual(heap.memStats().numGC, 1)
                c.expectEqual(heap.setGCPercent(100), config.gcPercent, "reads back as given")
            }
            let heap = try! Heap(configuration: Configuration(gcPercent: 100))
            heap.withMutator { m in for _ in 0..<2_000 { _ = m.allocateBytes(4096) } }
            c.expectEqual(heap.setGCPercent(Int.max), 100)
            heap.withMutator { m in for _ in 0..<8_000 { _ = m.allocateBytes(4096) } }
            heap.collect()
            c.expectEqual(heap.setGCPercent(nil), Int.max)
            // A negative value in code is off, as GOGC=-1 is.
            let negative = try! Heap(configuration: Configuration(gcPercent: -5))
            c.expectEqual(negative.setGCPercent(nil), nil, "GOGC=-5 is off")
        }
    }

    /// GOMAXPROCS = Int.max (configured): the configuration clamps it to
    /// `Configuration.maxGomaxprocs`, and recording pauses (× GOMAXPROCS for gctrace and
    /// CPU accounting) cannot overflow. (The policy types' own saturation at Int.max is
    /// tested in CPULimiterTests and PacerTests.)
    func testHugeGOMAXPROCSSaturatesPauseAccounting() {
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration(gcPercent: 100, gctrace: true, memoryLimit: 64 << 20, markWorkers: 1, gomaxprocs: Int.max))
            heap.withMutator { m in for _ in 0..<20_000 { _ = m.allocateBytes(1024) } }
            heap.collect()
            let s = heap.memStats()
            let g = heap.gcStats(pauseQuantiles: 3)
            if s.numGC == 0 || g.pause.isEmpty || !(s.gcCPUFraction >= 0) { _exit(3) }
        }
        XCTAssertEqual(r.exitStatus, 0, "the child \(r.signal.map { "died of signal \($0)" } ?? "exited with \(r.exitStatus ?? -1)"): \(r.stderr)")
        XCTAssertTrue(r.stderr.contains(" \(Configuration.maxGomaxprocs) P"), "gctrace reports GOMAXPROCS: \(r.stderr.prefix(400))")
    }
}
