import Foundation
import Glibc
import XCTest
@_spi(Testing) @testable import Tricolor

/// The OS layer (Platform/SysMemory*.swift): every call's errno is checked and only what
/// the OS did is counted, and an injected failure of any call leaves a heap that keeps
/// working. Fault injection is process-wide, so every scenario that arms it runs in a
/// forked child (`checkInChild`, MisuseTests.swift). Nothing here is timed.
final class SysMemoryTests: WatchdogTestCase {

    // MARK: the seam itself

    /// Counters see calls, failures and the bytes of successful calls; an injected
    /// failure is not made, is counted as a failure, and is used up.
    func testCountersAndInjection() {
        checkInChild { c in
            let before = SysCounters.snapshot()
            let p = SysMemory.allocMetadata(64 << 10)
            c.expect(p != nil, "allocMetadata failed")
            if let p { c.expect(SysMemory.free(p, 64 << 10), "free failed") }
            // The second metadata call from now fails, once.
            SysFaultInjection.inject(.metadata, errno: ENOMEM, after: 1)
            let q1 = SysMemory.allocMetadata(16 << 10)
            let q2 = SysMemory.allocMetadata(16 << 10)
            let q3 = SysMemory.allocMetadata(16 << 10)
            c.expect(q1 != nil && q2 == nil && q3 != nil, "injection hit the wrong call: \(q1 as Any) \(q2 as Any) \(q3 as Any)")
            c.expectEqual(SysFaultInjection.pending, 0, "rule used up")
            for q in [q1, q3] { if let q { SysMemory.free(q, 16 << 10) } }
            let d = SysCounters.snapshot().since(before)
            c.expectEqual(d.calls(.metadata), 4)
            c.expectEqual(d.failures(.metadata), 1)
            c.expectEqual(d.bytes(.metadata), (64 << 10) + 2 * (16 << 10))
            c.expectEqual(d.calls(.free), 3)
            c.expectEqual(d.bytes(.free), (64 << 10) + 2 * (16 << 10))
            // A real failure is seen too: munmap of an unaligned address is EINVAL.
            c.expect(!SysMemory.free(UnsafeMutableRawPointer(bitPattern: 4097)!, 4096), "munmap of an unaligned address succeeded")
            c.expectEqual(SysCounters.snapshot().since(before).failures(.free), 1)
            // `times` and reset.
            SysFaultInjection.inject(.metadata, errno: ENOMEM, times: Int.max)
            c.expect(SysMemory.allocMetadata(4096) == nil && SysMemory.allocMetadata(4096) == nil, "always-fail rule")
            SysFaultInjection.reset()
            c.expect(SysMemory.allocMetadata(4096) != nil, "reset")
        }
    }

    /// A refused reservation is Heap's thrown out-of-memory error.
    func testReserveFailureThrows() {
        checkInChild { c in
            SysFaultInjection.inject(.reserve, errno: ENOMEM)
            do {
                _ = try Heap()
                c.expect(false, "Heap() succeeded with the reservation refused")
            } catch let e as HeapError {
                c.expect(e.description.contains("out of memory"), "error: \(e)")
            } catch {
                c.expect(false, "unexpected error \(error)")
            }
            c.expect((try? Heap()) != nil, "a heap after the failure")
        }
    }

    // MARK: growth fails cleanly

    /// mprotect (Reserved → Prepared) refused with ENOMEM: tryAllocate gives nil for a
    /// large object and for a small one (span refill), and the heap keeps working.
    func testInjectedMapFailureGivesNilAndTheHeapKeepsWorking() {
        checkInChild { c in
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "sys.Node", size: 48, pointerWords: [0]))
            heap.withMutator { m in
                let grown = heap.fillGrownPages(m)
                SysFaultInjection.inject(.map, errno: ENOMEM)
                c.expect(m.tryAllocate(node) == nil, "small object with the growth refused")
                SysFaultInjection.inject(.map, errno: ENOMEM)
                c.expect(m.tryAllocateBytes(16 << 20) == nil, "large object with the growth refused")
                c.expectEqual(SysFaultInjection.pending, 0)
                c.expectEqual(heap.memStats().heapSys, grown, "nothing grown")
                heap.checkInvariants()
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocateBytes(16 << 20)
                    c.expect(!f[0].isNull && !f[1].isNull, "allocating after the failures")
                    heap.collect()
                    heap.checkInvariants()
                }
                heap.collect()
                heap.checkInvariants()
            }
        }
    }

    /// The same with `allocate`: Go's fatal out-of-memory with the size.
    func testInjectedMapFailureIsOutOfMemoryFatal() {
        expectFatal("cannot allocate 16777216-byte block") {
            let heap = try! Heap()
            heap.withMutator { m in
                SysFaultInjection.inject(.map, errno: ENOMEM)
                _ = m.allocateBytes(16 << 20)
            }
        }
        expectFatal("out of memory") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "sys.Node", size: 48, pointerWords: [0]))
            heap.withMutator { m in
                heap.fillGrownPages(m)
                SysFaultInjection.inject(.map, errno: ENOMEM)
                _ = m.allocate(node)
            }
        }
    }

    /// MADV_POPULATE_WRITE: ENOMEM (the kernel cannot back the memory) fails the
    /// allocation that needed the memory, and the pages it tried to fault in go back to
    /// the OS and are freed as released (counted in HeapReleased); if the OS refuses even
    /// that, they are freed as ordinary pages. EINVAL (an older kernel) only skips
    /// pre-faulting. No grower thread, so that the allocating thread is the one faulting.
    func testInjectedPopulateFailure() {
        checkInChild { c in
            var config = Configuration()
            config.backgroundHeapGrowth = false
            let heap = try! Heap(configuration: config)
            let node = try! heap.register(TypeLayout(name: "sys.Node", size: 48, pointerWords: [0]))
            heap.withMutator { m in
                let grown = heap.fillGrownPages(m)
                let released0 = heap.memStats().heapReleased
                let before = SysCounters.snapshot()
                SysFaultInjection.inject(.populate, errno: ENOMEM)
                c.expect(m.tryAllocate(node) == nil, "allocated though the kernel could not back the memory")
                let d = SysCounters.snapshot().since(before)
                c.expectEqual(d.calls(.unused), 1, "the claimed pages given back")
                c.expectEqual(d.failures(.unused), 0, "release refused")
                c.expectEqual(heap.memStats().heapSys, grown + 4 << 20, "the chunk stays mapped")
                c.expectEqual(heap.memStats().heapReleased, released0 + UInt64(Heap.mutatorFaultPages * SizeClassTable.pageSize), "the given-back pages count as released")
                heap.checkInvariants()

                // The released pages are reused by the next span, which faults them in:
                // refused again, and this time the OS refuses to take them back too, so
                // they are freed as ordinary (resident) pages.
                let before2 = SysCounters.snapshot()
                SysFaultInjection.inject(.populate, errno: ENOMEM)
                SysFaultInjection.inject(.unused, errno: EAGAIN)
                c.expect(m.tryAllocate(node) == nil, "allocated though the kernel could not back the memory")
                let d2 = SysCounters.snapshot().since(before2)
                c.expectEqual(d2.failures(.unused), 1, "refused releases")
                c.expectEqual(heap.memStats().heapSys, grown + 4 << 20)
                let released2 = heap.memStats().heapReleased
                c.expect(released2 < released0 + UInt64(Heap.mutatorFaultPages * SizeClassTable.pageSize) && released2 >= released0, "the refused release is not counted: \(released2)")
                heap.checkInvariants()

                // Fill the free pages again, so the next span needs fresh memory.
                heap.fillGrownPages(m)
                SysFaultInjection.inject(.populate, errno: EINVAL)
                let r = m.tryAllocate(node)
                c.expect(r != nil, "EINVAL (no MADV_POPULATE_WRITE) must only skip pre-faulting")
                c.expectEqual(SysFaultInjection.pending, 0, "injections left")
                heap.collect()
                heap.checkInvariants()
            }
        }
    }

    /// Every failure of each kind of OS call, one at a time: a clean run of the workload
    /// counts the calls of that kind it makes, then for each N below that count (or 40
    /// of them) a fresh heap runs it with the Nth call failing. The workload (small objects of a few
    /// classes, large objects, collections, pages released to the OS and reused) sees
    /// nil or success, never a trap; afterwards the heap passes its invariant checks and
    /// allocates again. Single-threaded and with the collector run only explicitly, so
    /// the calls come in the same order in every run.
    func testEveryOSFailureLeavesAWorkingHeap() {
        let cases: [(SysOp, Int32)] = [(.map, ENOMEM), (.metadata, ENOMEM), (.populate, ENOMEM),
                                       (.populate, EINVAL), (.hugePage, EINVAL), (.unused, EAGAIN)]
        for (op, err) in cases {
            checkInChild(timeout: 300) { c in
                var calls = 0
                var clean = SysCounters.snapshot()
                let nils = Self.faultWorkload(c, label: "\(op): clean run", arm: { clean = SysCounters.snapshot() }) {
                    calls = SysCounters.snapshot().since(clean).calls(op)
                }
                c.expectEqual(nils, 0, "\(op): nils without any failure")
                c.expect(calls >= 2, "\(op): the workload makes only \(calls) calls")
                // Every call, or 40 spread over them (the workload releases pages in
                // hundreds of runs).
                for n in stride(from: 0, to: calls, by: max(1, calls / 40)) {
                    let nils = Self.faultWorkload(c, label: "\(op) \(err) at call \(n)", arm: {
                        SysFaultInjection.inject(op, errno: err, after: n)
                    }) {
                        c.expectEqual(SysFaultInjection.pending, 0, "\(op) at call \(n): the failure was not injected")
                        SysFaultInjection.reset()
                    }
                    if err == ENOMEM && (op == .map || op == .populate) {
                        c.expect(nils > 0, "\(op) ENOMEM at call \(n): a refused growth gave no nil")
                    }
                }
            }
        }
    }

    /// The workload of `testEveryOSFailureLeavesAWorkingHeap` on a fresh heap; returns
    /// how many allocations gave nil. `arm` runs once the heap exists, `afterward` once
    /// the allocations that may fail are over.
    private static func faultWorkload(_ c: ChildChecks, label: String, arm: () -> Void, afterward: () -> Void) -> Int {
        // Huge pages on, so that MADV_HUGEPAGE is among the calls that fail.
        var config = Configuration(gcPercent: nil, markWorkers: 0)
        config.transparentHugePages = true
        let heap = try! Heap(configuration: config)
        let node = try! heap.register(TypeLayout(name: "sys.Node", size: 48, pointerWords: [0]))
        let leaf = try! heap.register(TypeLayout(name: "sys.Leaf", size: 24, pointerWords: []))
        var nils = 0
        func note(_ r: Ref?) -> Ref? {
            if r == nil { nils += 1 }
            return r
        }
        heap.withMutator { m in
            arm()
            m.withFrame(slots: 10) { f in
                for _ in 0..<2 {
                    // Small objects: a list of nodes (kept), leaves and 3 KiB blocks (garbage).
                    for i in 0..<40_000 {
                        if let n = note(m.tryAllocate(node)) {
                            m.store(n, 0, f[0])
                            f[0] = n
                        }
                        if i % 4 == 0 { _ = note(m.tryAllocate(leaf)) }
                        if i % 16 == 0 { _ = note(m.tryAllocateBytes(3000)) }
                    }
                    // Large objects, kept; then half of them dropped.
                    for k in 1..<9 {
                        if let r = note(m.tryAllocateBytes((3 << 20) + k * 8192)) { f[k] = r }
                    }
                    for k in stride(from: 1, to: 9, by: 2) { f[k] = .null }
                    heap.collect()
                    // Release every free page (the next round reuses them).
                    _ = heap.heapLock.withLock { heap.scavengeLocked(toTarget: 0) }
                    heap.checkInvariants()
                }
                afterward()
                for k in 0..<10 { f[k] = .null }
                heap.collect()
                heap.checkInvariants()
                f[0] = m.allocate(node)
                f[1] = m.allocateBytes(5 << 20)
                c.expect(!f[0].isNull && !f[1].isNull, "\(label): allocating afterwards")
                heap.collect()
                heap.checkInvariants()
            }
            let s = heap.memStats()
            c.expect(s.heapReleased <= s.heapSys - s.heapInuse, "\(label): released \(s.heapReleased) > idle \(s.heapSys - s.heapInuse)")
        }
        return nils
    }

    // MARK: releases count what the OS accepted

    /// A refused MADV_DONTNEED leaves the pages counted as not released: HeapReleased
    /// equals the bytes the OS accepted, whole pass refused or refused part way.
    func testRefusedReleaseIsNotCounted() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil))
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    // Five 1 MiB objects, the 2nd and 4th kept: three free runs, counting
                    // the free tail of the last 4 MiB chunk.
                    _ = m.allocateBytes(1 << 20)
                    f[0] = m.allocateBytes(1 << 20)
                    _ = m.allocateBytes(1 << 20)
                    f[1] = m.allocateBytes(1 << 20)
                    _ = m.allocateBytes(1 << 20)
                    heap.collect()
                    let idle = heap.memStats().heapSys - heap.memStats().heapInuse
                    c.expect(idle >= 3 << 20, "idle \(idle)")

                    // Every release refused.
                    var before = SysCounters.snapshot()
                    SysFaultInjection.inject(.unused, errno: EAGAIN, times: Int.max)
                    _ = heap.heapLock.withLock { heap.scavengeLocked(toTarget: 0) }
                    SysFaultInjection.reset()
                    var d = SysCounters.snapshot().since(before)
                    c.expect(d.failures(.unused) >= 1, "no release attempted")
                    c.expectEqual(heap.memStats().heapReleased, 0, "refused releases counted")
                    c.expectEqual(d.bytes(.unused), 0)
                    heap.checkInvariants()

                    // The second release refused: only the first counts.
                    before = SysCounters.snapshot()
                    SysFaultInjection.inject(.unused, errno: EAGAIN, after: 1)
                    _ = heap.heapLock.withLock { heap.scavengeLocked(toTarget: 0) }
                    d = SysCounters.snapshot().since(before)
                    let released = heap.memStats().heapReleased
                    c.expectEqual(d.calls(.unused), 2, "the pass stops at the refusal")
                    c.expectEqual(released, UInt64(d.bytes(.unused)), "HeapReleased is what the OS accepted")
                    c.expect(released > 0 && released < idle, "released \(released) of \(idle) idle")
                    heap.checkInvariants()

                    // No refusal: everything idle is released, and counted once.
                    before = SysCounters.snapshot()
                    _ = heap.heapLock.withLock { heap.scavengeLocked(toTarget: 0) }
                    d = SysCounters.snapshot().since(before)
                    c.expectEqual(heap.memStats().heapReleased, idle)
                    c.expectEqual(UInt64(d.bytes(.unused)) + released, idle)
                    heap.checkInvariants()

                    // Released pages are used again and read zero.
                    let r = m.allocateBytes(3 << 20)
                    let p = UnsafeMutablePointer<UInt8>(bitPattern: r.address)!
                    c.expect(p[0] == 0 && p[(3 << 20) - 1] == 0, "reused released pages are not zero")
                    heap.checkInvariants()
                }
            }
        }
    }

    // MARK: metadata is returned

    /// FixAlloc and MetaAlloc give every chunk back to the OS on destroy().
    func testFixAllocAndMetaAllocDestroyReturnEveryChunk() {
        checkInChild { c in
            let before = SysCounters.snapshot()
            var f = FixAlloc(size: 4096)
            for _ in 0..<20 { c.expect(f.alloc() != nil, "FixAlloc.alloc") }
            c.expectEqual(f.sys, 5 * FixAlloc.chunkBytes)
            f.destroy()
            c.expectEqual(f.sys, 0)
            var d = SysCounters.snapshot().since(before)
            c.expectEqual(d.bytes(.metadata), 5 * FixAlloc.chunkBytes)
            c.expectEqual(d.bytes(.free), d.bytes(.metadata), "every chunk unmapped")

            let before2 = SysCounters.snapshot()
            let meta = MetaAlloc()
            for n in [16, 100, 1000, 5000, 16 << 10, 16 << 10] { c.expect(meta.alloc(n) != nil, "MetaAlloc.alloc(\(n))") }
            let sys = meta.sys
            meta.destroy()
            d = SysCounters.snapshot().since(before2)
            c.expectEqual(d.bytes(.metadata), sys)
            c.expectEqual(d.bytes(.free), sys, "every chunk unmapped")
        }
    }
}
