@_spi(Testing) @testable import Tricolor
import Glibc
import XCTest

/// Heap growth (Allocator/HeapGrowth.swift) and Go's needzero: memory handed out is
/// zero, whether fresh from the OS, faulted in by the grower, released and reused, or
/// reused dirty after a sweep; threads growing the heap at once get disjoint memory.
final class HeapGrowthTests: XCTestCase {
    /// Every size class, pointer-free and typed: allocate spans' worth of objects, dirty
    /// every byte, drop them, collect (and in one round return the free pages to the OS),
    /// then allocate objects of another class on the freed memory and check every byte
    /// of every one is zero.
    func testEveryClassIsZeroAfterDirtyFreeAndReuse() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise.withSelfChecks)
        let classes = Array(1..<SizeClassTable.numSizeClasses)
        let sizes = classes.map { Int(SizeClassTable.classToSize[$0]) }
        // A typed layout of each class size with a pointer in word 0 (scan classes);
        // allocateBytes covers the pointer-free ones.
        let typed = try sizes.map { try heap.register(TypeLayout(name: "zero.T\($0)", size: $0, pointerWords: $0 >= 8 ? [0] : [])) }
        var dirtyFound = 0, checked = 0
        heap.withMutator { m in
            for round in 0..<3 {
                for (k, size) in sizes.enumerated() {
                    // Dirty about 64 KiB of this class, scan and noscan.
                    let n = max(2, (64 << 10) / size)
                    for i in 0..<n {
                        let r = i % 2 == 0 ? m.allocate(typed[k]) : m.allocateBytes(size)
                        r.rawPointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
                    }
                }
                heap.collect()
                if round == 1 { heap.freeOSMemory() }
                heap.checkInvariants()
                // Reallocate with the classes rotated, so that pages freed by one class
                // are reused by another.
                for (k, _) in sizes.enumerated() {
                    let other = (k + 7 * (round + 1)) % sizes.count
                    let size = sizes[other]
                    let n = max(2, (64 << 10) / size)
                    for i in 0..<n {
                        let r = i % 2 == 0 ? m.allocate(typed[other]) : m.allocateBytes(size)
                        let bytes = UnsafeRawBufferPointer(start: r.rawPointer, count: size)
                        if bytes.contains(where: { $0 != 0 }) { dirtyFound += 1 }
                        checked += 1
                        r.rawPointer.initializeMemory(as: UInt8.self, repeating: 0x5A, count: size)
                    }
                }
                heap.collect()
            }
        }
        XCTAssertGreaterThan(checked, 10_000)
        XCTAssertEqual(dirtyFound, 0, "\(dirtyFound) of \(checked) allocations returned non-zero memory")
        XCTAssertGreaterThan(heap.memStats().numGC, 5)
    }

    /// The sweep of a cycle the pacer started keeps empty spans in their class, cleared by
    /// the sweeper instead of on reuse (Sweep.swift): objects allocated from them are
    /// zero; a kept span that the next cycle finds unused goes back to the page heap;
    /// collect() and a memory limit keep none.
    func testEmptySpansKeptInTheirClassAreZeroAndGoBackWhenUnused() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 100).precise.withSelfChecks)
        let t = try heap.register(TypeLayout(name: "kept.T", size: 48, pointerWords: [0, 2]))
        var dirtyFound = 0, checked = 0, keptSeen = 0
        heap.withMutator { m in
            let gc0 = heap.memStats().numGC
            // Garbage only, so the pacer's cycles find whole spans empty; every object
            // is checked for zero, then dirtied.
            while heap.memStats().numGC < gc0 + 6 {
                for _ in 0..<20_000 {
                    let r = m.allocate(t)
                    let bytes = UnsafeRawBufferPointer(start: r.rawPointer, count: 48)
                    if bytes.contains(where: { $0 != 0 }) { dirtyFound += 1 }
                    checked += 1
                    r.rawPointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 48)
                }
                m.safepoint()   // let the collector in
                keptSeen = max(keptSeen, heap._spansKeptEmptyNow())
            }
            // Another class only: the 48-byte spans kept by one cycle are found unused
            // by the next and freed. Four cycles: one may already be marking (its
            // allocate-black objects die in the next, whose sweep keeps their spans, and
            // the one after frees them; its sweep is done once the fourth has started).
            let other = try! heap.register(TypeLayout(name: "kept.U", size: 256, pointerWords: [0]))
            let gc1 = heap.memStats().numGC
            while heap.memStats().numGC < gc1 + 4 {
                for _ in 0..<4_000 { _ = m.allocate(other) }
                m.safepoint()
            }
            XCTAssertEqual(heap._spansKeptEmptyNow(sizeClass: SizeClassTable.sizeToClass(48)), 0,
                           "48-byte spans kept empty survived cycles that never used them")
            heap.checkInvariants()
        }
        XCTAssertEqual(dirtyFound, 0, "\(dirtyFound) of \(checked) allocations returned non-zero memory")
        XCTAssertGreaterThan(keptSeen, 0, "no span was ever kept empty")
        XCTAssertGreaterThan(heap.allocPathStats().spansKeptEmpty, 0)
        // collect()'s sweep keeps nothing, like runtime.GC: MemStats after it see every
        // empty span freed.
        heap.collect()
        XCTAssertEqual(heap._spansKeptEmptyNow(), 0)
        heap.checkInvariants()

        // Under a memory limit no sweep keeps empty spans.
        let limited = try Heap(configuration: Configuration(gcPercent: 100, memoryLimit: 1 << 30).precise.withSelfChecks)
        let lt = try limited.register(TypeLayout(name: "kept.L", size: 48, pointerWords: [0]))
        limited.withMutator { m in
            let gc0 = limited.memStats().numGC
            while limited.memStats().numGC < gc0 + 4 {
                for _ in 0..<20_000 { _ = m.allocate(lt) }
                m.safepoint()
            }
        }
        XCTAssertEqual(limited.allocPathStats().spansKeptEmpty, 0)
    }

    /// The sweep keeps empty spans only within the scavenger's goal (the heap goal + 10%,
    /// less the marked heap): when a large live set dies, the pacer's next cycle frees
    /// its spans to the page heap, where the scavenger can return them to the OS, instead
    /// of keeping them all in their class.
    func testKeptEmptySpansStayWithinTheScavengeGoalWhenALiveSetDies() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 100).precise)
        let node = try heap.register(TypeLayout(name: "kept.Node", size: 48, pointerWords: [0]))
        let holder = try heap.register(TypeLayout(name: "kept.Holder", size: 8, pointerWords: [0]))
        let n = 500_000   // 24 MB of 48-byte nodes
        var keptBytes = 0, goal: UInt64 = 0, waited = 0
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocateArray(holder, count: n)
                for i in 0..<n { m.store(f[0], i, m.allocate(node)) }
                m.safepoint()
                f[0] = .null
            }
            // Garbage until the pacer has run a cycle that started after the drop and so
            // finds the nodes dead (a cycle already marking at the drop keeps them: the
            // barrier shaded the holder when its root was overwritten).
            let gc0 = heap.memStats().numGC
            while heap.memStats().numGC < gc0 + 2 {
                for _ in 0..<1_000 { _ = m.allocate(node) }
                m.safepoint()
            }
            // Let the background sweeper finish that cycle's sweep (bounded wait).
            while heap.debugUnsweptSpans > 0 && waited < 20_000 {
                m.blocking { _ = usleep(1_000) }
                waited += 1
            }
            keptBytes = heap._spansKeptEmptyNow() * SizeClassTable.pageSize
            goal = heap.memStats().nextGC
        }
        XCTAssertEqual(heap.debugUnsweptSpans, 0, "the sweep did not finish")
        XCTAssertGreaterThan(heap.allocPathStats().spansFreed, 1_000, "the dead nodes' spans were not freed")
        XCTAssertLessThanOrEqual(UInt64(keptBytes), goal + goal / 10,
                                 "\(keptBytes >> 10) KiB of empty spans kept, above the heap goal \(goal >> 10) KiB + 10%")
    }

    /// Several threads grow the heap at once (with the grower thread running, and
    /// without it): every object they get is zero when handed out, and no two objects
    /// overlap — each thread writes its id and a sequence number over all of each object
    /// and finds them intact at the end.
    func testThreadsGrowingAtOnceGetDisjointZeroedMemory() throws {
        for background in [true, false] {
            var config = Configuration().precise.withSelfChecks
            config.backgroundHeapGrowth = background
            let heap = try Heap(configuration: config)
            let holder = try heap.register(TypeLayout(name: "grow.Holder", size: 8, pointerWords: [0]))
            let threads = 4, perThread = 20_000
            nonisolated(unsafe) let failures = UnsafeMutablePointer<Int>.allocate(capacity: threads)
            failures.initialize(repeating: 0, count: threads)
            defer { failures.deallocate() }
            let tids = (0..<threads).map { t in lifeStartThread(name: "grow\(t)") {
                heap.withMutator { m in
                    m.withFrame(slots: 1) { f in
                        f[0] = m.allocateArray(holder, count: perThread)
                        for i in 0..<perThread {
                            // 48 B … 8 KiB, pointer-free: many spans, many growth steps.
                            let size = 48 << (i % 8)
                            let r = m.allocateBytes(size)
                            let words = r.rawPointer.bindMemory(to: UInt.self, capacity: size / 8)
                            for w in 0..<size / 8 where words[w] != 0 { failures[t] += 1; break }
                            for w in 0..<size / 8 { words[w] = UInt(t) << 32 | UInt(i) }
                            m.store(f[0], i, r)
                        }
                        for i in 0..<perThread {
                            let size = 48 << (i % 8)
                            let words = m.load(f[0], i).rawPointer.bindMemory(to: UInt.self, capacity: size / 8)
                            for w in 0..<size / 8 where words[w] != UInt(t) << 32 | UInt(i) { failures[t] += 1; break }
                        }
                    }
                }
            } }
            tids.forEach(lifeJoin)
            for t in 0..<threads {
                XCTAssertEqual(failures[t], 0, "background grower \(background): thread \(t) found non-zero or overwritten memory")
            }
            heap.checkInvariants()
            XCTAssertGreaterThan(heap.allocPathStats().heapGrows, 10, "the heap should have grown many times")
        }
    }

    /// An allocation that outruns the grower (here: no grower) faults in only what it
    /// needs; the rest of the chunk stays reserved and is handed out piece by piece, and
    /// the heap's invariants hold throughout.
    func testPendingGrowthIsHandedOutPieceByPiece() throws {
        var config = Configuration(gcPercent: nil).withSelfChecks
        config.backgroundHeapGrowth = false
        let heap = try Heap(configuration: config)
        let node = try heap.register(TypeLayout(name: "grow.Node", size: 64, pointerWords: [0]))
        heap.withMutator { m in
            let grown = heap.fillGrownPages(m)
            let before = SysCounters.snapshot()
            m.withFrame(slots: 1) { f in
                f[0] = m.allocate(node)
                var d = SysCounters.snapshot().since(before)
                XCTAssertEqual(d.calls(.map), 1, "one chunk grown")
                XCTAssertEqual(d.calls(.populate), 1)
                XCTAssertEqual(d.bytes(.populate), Heap.mutatorFaultPages * SizeClassTable.pageSize, "only what the allocation needs is faulted in")
                XCTAssertEqual(heap.memStats().heapSys, grown + 4 << 20)
                heap.checkInvariants()
                // 64-byte objects: 128 per page; 4 MiB of them in all fill the whole chunk
                // without another growth step.
                var last = f[0]
                for _ in 0..<((4 << 20) / 64 - 1) {
                    let r = m.allocate(node)
                    m.store(r, 0, last)
                    last = r
                    f[0] = r
                }
                d = SysCounters.snapshot().since(before)
                XCTAssertEqual(d.calls(.map), 1, "the chunk's pending pieces should serve these allocations")
                XCTAssertEqual(d.bytes(.populate), 4 << 20, "the whole chunk faulted in, piece by piece")
                heap.checkInvariants()
            }
        }
    }
}

/// Found by the soak test: growth past a memory limit scavenges eagerly inside
/// `growCommit`, and did so before the new chunk's pages were reserved for faulting in,
/// so it released them and left them marked released while reserved (in use). The grower
/// later took them as a "released run" and the page allocator trapped ("allocating a
/// used page"). Growth under a memory limit must keep released ⊆ free.
final class HeapGrowthUnderLimitTests: XCTestCase {
    func testGrowthPastAMemoryLimitKeepsReleasedPagesFree() {
        checkInChild { c in
            var config = Configuration(gcPercent: nil, memoryLimit: 8 << 20, markWorkers: 0).precise.withSelfChecks
            config.backgroundHeapGrowth = false
            let heap = try! Heap(configuration: config)
            let node = try! heap.register(TypeLayout(name: "limit.Node", size: 64, pointerWords: [0]))
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    // 48 MiB of live nodes: every growth step is past the limit.
                    for _ in 0..<((48 << 20) / 64) {
                        let r = m.allocate(node)
                        m.store(r, 0, f[0])
                        f[0] = r
                    }
                    heap.checkInvariants()
                    c.expect(heap.memStats().heapSys > 40 << 20, "the heap should have grown past the limit")
                }
            }
        }
    }
}
