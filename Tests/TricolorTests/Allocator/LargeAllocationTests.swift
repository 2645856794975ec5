import Foundation
import Glibc
import XCTest
@_spi(Testing) @testable import Tricolor

/// The large-object path (MallocLarge.swift, MHeap.allocSpan/grow): sizes that overflow
/// page arithmetic, sizes past the reservation or past what the machine can back, and
/// memory that must come from the OS without being touched.
///
/// Every scenario runs in a forked child (MisuseTests.swift: `checkInChild`,
/// `expectFatal`): the failure modes being guarded against are traps, OOM kills and
/// multi-GiB RSS, none of which may take the test process down. Nothing here is timed.
final class LargeAllocationTests: WatchdogTestCase {

    // MARK: sizes that overflow page arithmetic

    /// `tryAllocate…` with sizes whose page rounding overflows returns nil (it trapped
    /// with a bare SIGILL in `(size + pageSize - 1) / pageSize`), and the heap is intact.
    func testTryAllocateWithOverflowingSizesReturnsNil() {
        checkInChild { c in
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "large.Node", size: 32, pointerWords: [0]))
            heap.withMutator { m in
                for size in [Int.max, Int.max - 1, Int.max - SizeClassTable.pageSize + 2, Int.max / 2 + 1, 1 << 62] {
                    c.expect(m.tryAllocateBytes(size) == nil, "tryAllocateBytes(\(size)) is not nil")
                }
                for count in [Int.max / 32, Int.max / 32 - 1, Int.max / 64, Int.max] {
                    c.expect(m.tryAllocateArray(node, count: count) == nil, "tryAllocateArray(count: \(count)) is not nil")
                }
                // A size just past the reservation: nil without touching the OS.
                c.expect(m.tryAllocateBytes(Int(heap.reservedBytes) + 1) == nil, "reservation + 1 bytes is not nil")
                // The heap still works.
                let r = m.allocateBytes(100_000)
                c.expect(!r.isNull, "allocating after the failures")
                heap.collect()
                heap.checkInvariants()
            }
        }
    }

    /// The trapping forms give Go's out-of-memory fatal with the size in the message.
    func testAllocateWithOverflowingSizesIsOutOfMemory() {
        expectFatal("cannot allocate \(Int.max)-byte block") {
            let heap = try! Heap()
            heap.withMutator { m in _ = m.allocateBytes(Int.max) }
        }
        let count = Int.max / 32
        expectFatal("cannot allocate \(count * 32)-byte block") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "large.Node", size: 32, pointerWords: [0]))
            heap.withMutator { m in _ = m.allocateArray(node, count: count) }
        }
        // The same in checked mode.
        expectFatal("out of memory") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            heap.withMutator { m in _ = m.allocateBytes(Int.max - 100) }
        }
    }

    // MARK: shadow-stack frame sizes

    /// Negative and absurd slot counts are a clear error in both modes (unchecked:
    /// a bare SIGILL for -5, a segfault in a negative-size fill for Int.max).
    func testPushFrameWithInvalidSlotCountIsAnError() {
        for checked in [false, true] {
            for slots in [-5, -1, Int.min, Int.max, Int.max / 8 + 1, 1 << 40] {
                expectFatal("pushFrame: invalid slot count \(slots)") {
                    let heap = try! Heap(configuration: Configuration(checked: checked))
                    heap.withMutator { m in
                        m.withFrame(slots: 3) { _ in _ = m.pushFrame(slots: slots) }
                    }
                }
            }
        }
    }

    /// Valid frames still work after the check moved (and the fast path is unchanged
    /// for ordinary counts, including 0).
    func testPushFrameValidCountsStillWork() {
        let heap = try! Heap()
        heap.withMutator { m in
            for n in [0, 1, 7, 300, 5000] {
                m.withFrame(slots: n) { f in
                    XCTAssertEqual(f.count, n)
                    for i in 0..<n { XCTAssertTrue(f[i].isNull) }
                }
            }
        }
    }

    // MARK: huge allocations are not committed up front

    /// A 4 GiB object that is never touched costs (almost) no resident memory: fresh
    /// memory from the OS is zero, so it is neither pre-faulted nor cleared.
    func testUntouchedHugeObjectDoesNotRaiseRSS() {
        let r = runInChild {
            let heap = try! Heap()
            heap.withMutator { m in
                let before = residentBytes()
                let p = m.tryAllocateBytes(4 << 30)
                let after = residentBytes()
                report("allocated=\(p != nil) rss-delta=\(after - before)")
            }
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        let fields = parseReport(r.stderr)
        XCTAssertEqual(fields["allocated"], "true", r.stderr)
        let delta = Int(fields["rss-delta"] ?? "") ?? Int.max
        print("LargeAllocationTests: RSS rise for an untouched 4 GiB object: \(delta) bytes")
        XCTAssertLessThan(delta, 64 << 20, "RSS rose by \(delta) bytes for an untouched 4 GiB object")
    }

    /// Growth for small-object spans is faulted in ahead of use (MADV_POPULATE_WRITE, so
    /// that a mutator does not sit in page faults): with no grower thread (GOGC off, no
    /// collector threads) the allocating thread faults in only what it needs, 8 KiB;
    /// growth for a large object is not faulted in, and its pages are not cleared
    /// either. Counted at the OS layer.
    func testOnlySmallObjectGrowthIsPrefaulted() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil))
            let node = try! heap.register(TypeLayout(name: "large.Node", size: 32, pointerWords: [0]))
            heap.withMutator { m in
                heap.fillGrownPages(m)
                var before = SysCounters.snapshot()
                _ = m.allocate(node)
                var d = SysCounters.snapshot().since(before)
                c.expectEqual(d.calls(.map), 1, "one growth step")
                c.expectEqual(d.calls(.populate), 1, "small-object growth is pre-faulted")
                c.expectEqual(d.bytes(.populate), Heap.mutatorFaultPages * SizeClassTable.pageSize)

                before = SysCounters.snapshot()
                let big = m.allocateBytes(256 << 20)
                d = SysCounters.snapshot().since(before)
                c.expectEqual(d.calls(.map), 1, "one growth step (one commit charge) for the large object")
                c.expectEqual(d.bytes(.map), 256 << 20)
                c.expectEqual(d.calls(.populate), 0, "a large object's pages are not pre-faulted")
                c.expect(!big.isNull, "allocated")
            }
        }
    }

    /// A request larger than RAM + swap returns nil (it used to be pre-faulted until
    /// the OOM killer ended the process). The kernel's overcommit heuristic refuses the
    /// arena mapping, as it does Go's.
    func testRequestBeyondRAMAndSwapReturnsNil() throws {
        let mode = (try? String(contentsOfFile: "/proc/sys/vm/overcommit_memory", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if mode == "1" { throw XCTSkip("vm.overcommit_memory=1: the kernel never refuses a mapping") }
        // The kernel's heuristic (overcommit_memory=0) refuses one mapping larger than
        // total RAM + swap, the MemTotal and SwapTotal of /proc/meminfo.
        let ram = try XCTUnwrap(memInfoBytes("MemTotal"))
        let backable = ram + (memInfoBytes("SwapTotal") ?? 0)
        let size = backable + (1 << 30)
        let arena = HeapArena.bytes
        let reserve = max(256 << 30, (size + 2 * arena - 1) / arena * arena)
        if reserve > 1 << 46 { throw XCTSkip("RAM + swap beyond the largest reservation") }
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(reservedAddressSpace: reserve))
            heap.withMutator { m in
                let before = residentBytes()
                c.expect(m.tryAllocateBytes(size) == nil, "tryAllocateBytes(\(size)) (RAM + swap = \(backable)) is not nil")
                let rise = residentBytes() - before
                c.expect(rise < 64 << 20, "RSS rose by \(rise) bytes for a refused request")
                // The heap still works.
                let small = m.allocateBytes(64)
                let big = m.allocateBytes(8 << 20)
                c.expect(!small.isNull && !big.isNull, "allocating after the refusal")
                heap.collect()
                heap.checkInvariants()
            }
        }
    }

    /// A 1 GiB object reads zero at its first and last byte and takes writes there;
    /// so does the next 1 GiB object in the same pages after a collection (the pages
    /// may hold garbage: cleared) and after they were returned to the OS (zero by the
    /// OS: not cleared, so its RSS stays low).
    func testGiBObjectReadsZeroAndTakesWrites() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil))
            let n = 1 << 30
            heap.withMutator { m in
                func check(_ what: String) {
                    let r = m.allocateBytes(n)
                    let p = UnsafeMutablePointer<UInt8>(bitPattern: r.address)!
                    c.expect(p[0] == 0 && p[n - 1] == 0, "\(what): first/last byte \(p[0]), \(p[n - 1]) (not zero)")
                    p[0] = 0xA5
                    p[n - 1] = 0x5A
                    p[n / 2] = 0x77
                    c.expect(p[0] == 0xA5 && p[n - 1] == 0x5A, "\(what): writes did not stick")
                }
                check("fresh")
                heap.collect()
                check("reused")
                heap.collect()
                _ = heap.heapLock.withLock { heap.scavengeLocked(toTarget: 0) }
                c.expect(heap.memStats().heapReleased >= UInt64(n), "released \(heap.memStats().heapReleased) bytes, expected at least 1 GiB")
                let before = residentBytes()
                check("after release")
                let rise = residentBytes() - before
                c.expect(rise < 64 << 20, "RSS rose by \(rise) bytes: released pages were cleared by hand")
                heap.collect()
                heap.checkInvariants()
            }
        }
    }
}

// MARK: helpers for child processes

/// Resident set size of this process, from /proc/self/statm.
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count >= 2, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// A field of /proc/meminfo in bytes (`MemTotal`, `SwapTotal`, …), nil when absent.
func memInfoBytes(_ key: String) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 2, let kib = Int(parts[1]) else { return nil }
        return kib * 1024
    }
    return nil
}

/// Write `key=value …` to stderr from a child, for `parseReport` in the parent.
func report(_ line: String) {
    let text = "report: " + line + "\n"
    text.withCString { _ = write(2, $0, strlen($0)) }
}

/// The `key=value` fields of every `report:` line in a child's output.
func parseReport(_ output: String) -> [String: String] {
    var fields: [String: String] = [:]
    for line in output.split(separator: "\n") where line.hasPrefix("report: ") {
        for field in line.dropFirst("report: ".count).split(separator: " ") {
            let kv = field.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
    }
    return fields
}
