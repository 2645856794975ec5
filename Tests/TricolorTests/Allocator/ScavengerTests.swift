@_spi(Testing) @testable import Tricolor
import Foundation
import Glibc
import XCTest

/// The scavenger (Allocator/Scavenger.swift): FreeOSMemory, the background scavenger,
/// HeapReleased against what the OS was told, refused releases, scavtrace.
final class ScavengerTests: XCTestCase {
    /// Build about `mib` MiB of 64-byte nodes reachable from one array (in `f[0]`),
    /// writing every word of each.
    private func buildLiveSet(_ m: Mutator, _ f: Frame, _ heap: Heap, mib: Int) throws {
        let node = try heap.register(TypeLayout(name: "scav.Node", size: 64, pointerWords: [0]))
        let ptrs = try heap.register(TypeLayout(name: "scav.Ptrs", size: 8, pointerWords: [0]))
        let n = (mib << 20) / 72
        f[0] = m.allocateArray(ptrs, count: n)
        for i in 0..<n {
            let r = m.allocate(node)
            for w in 1..<8 { m.storeWord(r, w, i &* w) }
            m.store(f[0], i, r)
        }
    }

    /// freeOSMemory after a large live set is dropped: RSS (from /proc/self/statm) falls
    /// below a stated bound, HeapReleased rises by exactly the bytes the OS accepted,
    /// and memory reused afterwards is zero. No collector threads (`markWorkers: 0`), so
    /// no background scavenger or grower changes the counts meanwhile.
    func testFreeOSMemoryReturnsADroppedLiveSet() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(markWorkers: 0).precise)
            let rssBase = residentBytes()
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    try! self.buildLiveSet(m, f, heap, mib: 256)
                    let rssPeak = residentBytes()
                    c.expect(rssPeak > rssBase + 200 << 20, "the live set should be resident: \(rssPeak - rssBase)")
                    f[0] = .null
                    let released0 = heap.memStats().heapReleased
                    let before = SysCounters.snapshot()
                    let freed = heap.freeOSMemory()
                    let d = SysCounters.snapshot().since(before)
                    let s = heap.memStats()
                    c.expect(freed > 200 << 20, "freeOSMemory released \(freed) bytes")
                    c.expectEqual(freed, d.bytes(.unused), "freeOSMemory's count vs bytes the OS accepted")
                    c.expectEqual(Int(s.heapReleased - released0), d.bytes(.unused), "HeapReleased vs bytes the OS accepted")
                    c.expect(s.heapReleased >= s.heapIdle - 4 << 20, "idle \(s.heapIdle) but only \(s.heapReleased) released")
                    let rssAfter = residentBytes()
                    // The bound: the baseline plus 32 MiB (metadata, stacks, the test's own).
                    c.expect(rssAfter < rssBase + 32 << 20, "RSS after freeOSMemory: \(rssAfter >> 20) MiB, baseline \(rssBase >> 20) MiB")
                    heap.checkInvariants()
                    // Reuse: the released pages come back zero.
                    var dirty = 0
                    for _ in 0..<100_000 {
                        let r = m.allocateBytes(64)
                        let w = r.rawPointer.bindMemory(to: UInt.self, capacity: 8)
                        for k in 0..<8 where w[k] != 0 { dirty += 1; break }
                        w[3] = 0xFFFF
                    }
                    c.expectEqual(dirty, 0, "reused released memory not zero")
                    c.expect(heap.memStats().heapReleased < s.heapReleased, "released pages should have been reused")
                    heap.checkInvariants()
                }
            }
        }
    }

    /// Refused releases (MADV_DONTNEED failing) are not counted: HeapReleased stays
    /// what the OS accepted, the pages stay free and usable, the invariants hold. No
    /// collector threads, so that only these calls consume the injected failures.
    func testRefusedReleasesKeepCountsHonest() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(markWorkers: 0).precise)
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    try! self.buildLiveSet(m, f, heap, mib: 32)
                    f[0] = .null
                    heap.collect()
                    let released0 = heap.memStats().heapReleased
                    SysFaultInjection.inject(.unused, errno: EAGAIN, times: Int.max)
                    let freed = heap.freeOSMemory()
                    SysFaultInjection.reset()
                    c.expectEqual(freed, 0, "refused releases reported as released")
                    c.expectEqual(heap.memStats().heapReleased, released0)
                    heap.checkInvariants()
                    // Refused after the first run: only the first counts.
                    let before = SysCounters.snapshot()
                    SysFaultInjection.inject(.unused, errno: EAGAIN, after: 1)
                    let freed2 = heap.freeOSMemory()
                    SysFaultInjection.reset()
                    let d = SysCounters.snapshot().since(before)
                    c.expect(freed2 > 0, "the first release was accepted")
                    c.expectEqual(freed2, d.bytes(.unused))
                    c.expectEqual(Int(heap.memStats().heapReleased - released0), d.bytes(.unused))
                    heap.checkInvariants()
                    // Everything still allocates.
                    try! self.buildLiveSet(m, f, heap, mib: 32)
                    heap.collect()
                    heap.checkInvariants()
                }
            }
        }
    }

    /// The background scavenger: after a spike whose memory is dropped, it returns the
    /// heap's free pages down to its goal (heap goal + 10%) with no call from the program.
    /// Waits for that event (no timing is asserted; the watchdog ends a hang).
    func testBackgroundScavengerReleasesAfterASpike() {
        checkInChild(timeout: 180) { c in
            let heap = try! Heap(configuration: Configuration().precise)
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    try! self.buildLiveSet(m, f, heap, mib: 96)
                    f[0] = .null
                }
                heap.collect()
                heap.collect()   // the goal now reflects the empty heap
            }
            // The scavenger runs at 1% of a CPU; wait until retained memory meets the
            // goal or a generous deadline passes.
            let deadline = Date().addingTimeInterval(120)
            var s = heap.memStats()
            while s.heapSys - s.heapReleased > 48 << 20 && Date() < deadline {
                usleep(50_000)
                s = heap.memStats()
            }
            c.expect(s.heapSys - s.heapReleased <= 48 << 20, "retained \((s.heapSys - s.heapReleased) >> 20) MiB of \(s.heapSys >> 20) MiB after the spike")
            let a = heap.allocPathStats()
            c.expect(a.scavengerBackgroundBytes > 32 << 20, "background scavenger released \(a.scavengerBackgroundBytes) bytes")
            heap.checkInvariants()
        }
    }

    /// GODEBUG=scavtrace=1 prints Go's line: per cycle when sweeping ends, and marked
    /// "(forced)" after freeOSMemory.
    func testScavtraceLinesHaveGosFormat() {
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration.fromEnvironment(["GODEBUG": "scavtrace=1"]).precise)
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    try! self.buildLiveSet(m, f, heap, mib: 16)
                    f[0] = .null
                }
                heap.collect()
                heap.freeOSMemory()
            }
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        let lines = r.stderr.split(separator: "\n").filter { $0.hasPrefix("scav ") }
        XCTAssertGreaterThanOrEqual(lines.count, 2, r.stderr)
        let pattern = #"^scav [0-9]+ KiB work, [0-9]+ KiB total, [0-9]+% util( \(forced\))?$"#
        for l in lines {
            XCTAssertNotNil(l.range(of: pattern, options: .regularExpression), "not Go's scavtrace format: \(l)")
        }
        XCTAssertTrue(lines.last!.hasSuffix("(forced)"), String(lines.last!))
        // The forced line's total is what was released, and it released the 16 MiB.
        let total = Int(lines.last!.split(separator: " ")[4])!
        XCTAssertGreaterThan(total, 12 << 10, String(lines.last!))
    }
}
