@_spi(Testing) @testable import Tricolor
import TricolorTestSupport
import CTricolor
import Glibc
import XCTest

// MemStats and gctrace figures whose meaning a review found different from Go 1.19's
// (runtime/mstats.go, mgc.go gcMarkTermination). Each test failed before its fix.

final class GoMeaningTests: WatchdogTestCase {

    /// Empty spans a sweep keeps in their size class are HeapIdle, not HeapInuse: Go
    /// frees an empty span to its page heap at once, where it is idle ("in-use spans have
    /// at least one object"). One mutator and GOMAXPROCS 1, so the background sweeper
    /// leaves the sweeping to the mutator and nothing changes between the reads.
    func testSpansKeptEmptyInTheirClassCountAsHeapIdle() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 100, gomaxprocs: 1).precise)
        let t = try heap.register(TypeLayout(name: "idle.T", size: 48, pointerWords: [0]))
        let pageBytes = UInt64(1) << UInt64(SizeClassTable.pageShiftU)
        var checked = 0
        heap.withMutator { m in
            let gc0 = heap.memStats().numGC
            while heap.memStats().numGC < gc0 + 8 {
                for _ in 0..<20_000 { _ = m.allocate(t) }
                m.safepoint()
                let kept = UInt64(heap._spansKeptEmptyNow())
                if kept == 0 { continue }
                let raw = UInt64(heap.heapStats.heapInuse.load(.relaxed))
                let s = heap.memStats()
                // 48-byte objects live in one-page spans.
                XCTAssertEqual(raw - s.heapInuse, kept * pageBytes, "kept-empty spans counted in HeapInuse")
                XCTAssertEqual(s.heapIdle + s.heapInuse, s.heapSys)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, "no sweep kept a span empty")
    }

    /// GCCPUFraction is the value computed at the end of the last cycle, as Go's
    /// ReadMemStats returns it: it does not drift as time passes between cycles.
    func testGCCPUFractionIsTheLastCyclesValue() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in for _ in 0..<50_000 { f[0] = m.allocateBytes(64) } }
            heap.collect()
        }
        let first = heap.memStats().gcCPUFraction
        var x = 0
        for i in 0..<2_000_000 { x &+= i &* 31 }   // time passes; no cycle runs (GOGC off)
        if x == 1 { print("") }
        XCTAssertGreaterThan(first, 0)
        XCTAssertEqual(heap.memStats().gcCPUFraction, first)
    }

    /// With GOGC off and no memory limit, Go 1.19 reports EnableGC true and a NextGC of
    /// the memory limit's goal with the limit at math.MaxInt64.
    func testGOGCOffReportsGCEnabledAndAGoalNearMaxInt64() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil))
        let s = heap.memStats()
        XCTAssertTrue(s.enableGC)
        XCTAssertGreaterThan(s.nextGC, UInt64(Int64.max) - (1 << 40))
        XCTAssertLessThanOrEqual(s.nextGC, UInt64(Int64.max) - (1 << 20))
    }

    /// gctrace counts a pause's CPU for the CPUs it stops, min(GOMAXPROCS, CPUs) (Go's
    /// stwprocs), not GOMAXPROCS: with GOMAXPROCS 64 on a machine of a few CPUs the
    /// pause's CPU figure is a few times its clock figure, not 64 times.
    func testGCTraceCountsPausesForTheCPUsTheyStop() {
        let cpus = Int(tc_ncpu())
        if cpus >= 16 { return }   // the two multipliers are too close to tell apart
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration(gctrace: true, gomaxprocs: 64))
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in for _ in 0..<20_000 { f[0] = m.allocateBytes(64) } }
                heap.collect()
            }
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        guard let line = r.stderr.split(separator: "\n").first(where: { $0.hasPrefix("gc 1 @") }) else {
            return XCTFail("no gctrace line: \(r.stderr)")
        }
        // "gc 1 @0.001s 0%: a+b+c ms clock, w+x/y/z+v ms cpu, ..."
        let fields = line.split(separator: " ")
        guard let clockAt = fields.firstIndex(of: "clock,"), clockAt >= 2, clockAt + 1 < fields.count else {
            return XCTFail("unexpected line: \(line)")
        }
        let clock = fields[clockAt - 2].split(separator: "+").compactMap { Double($0) }
        let cpu = fields[clockAt + 1].split(separator: "+").map(String.init)
        guard clock.count == 3, cpu.count == 3, let w = Double(cpu[0]), let v = Double(cpu[2]) else {
            return XCTFail("unexpected line: \(line)")
        }
        XCTAssertTrue(line.hasSuffix("64 P (forced)"), String(line))
        // Printed with two or three significant digits: allow for the rounding.
        XCTAssertLessThanOrEqual(w, clock[0] * Double(cpus) * 1.5 + 0.002, String(line))
        XCTAssertLessThanOrEqual(v, clock[2] * Double(cpus) * 1.5 + 0.002, String(line))
    }

    /// The scavenger's retained heap is Go's heapRetained, HeapSys − HeapReleased with
    /// stacks left out. Before, stack spans counted as retained heap, so the scavenger's
    /// goal and scavtrace's util were measured against more than the heap.
    func testScavengerRetainedHeapLeavesStacksOut() throws {
        let heap = try Heap(configuration: Configuration())
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in for _ in 0..<10_000 { f[0] = m.allocateBytes(64) } }
            let s = heap.memStats()
            XCTAssertGreaterThan(s.stackInuse, 0, "an attached mutator has a stack")
            let retained = heap.heapLock.withLock { heap.heapRetainedLocked() }
            XCTAssertEqual(UInt64(retained), s.heapSys - s.heapReleased)
        }
    }
}
