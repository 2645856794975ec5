import XCTest
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

final class HeapTests: WatchdogTestCase {

    // MARK: the README example

    /// The README's "Using it" example, verbatim between the markers, plus assertions.
    func testReadmeExample() throws {
        // README begin
        let heap = try Heap(configuration: .init(gcPercent: 100))   // or Configuration.fromEnvironment()
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        heap.withMutator { m in                  // this thread attaches, detaches at the end
            m.withFrame(slots: 1) { frame in     // a shadow-stack frame: precise roots
                frame[0] = m.allocate(Node)
                m.store(frame[0], 0, m.allocate(Node))   // barriered pointer store
                heap.collect()                   // runtime.GC()
                let child = m.load(frame[0], 0)  // kept alive through the rooted parent
                print(child.isNull)              // false
                // README end (the rest checks what the comments claim)
                XCTAssertFalse(child.isNull)
                XCTAssertTrue(m.load(child, 0).isNull)
                XCTAssertTrue(m.load(frame[0], 1).isNull)
            }
        }
        print(heap.memStats().heapAlloc)         // 32: two 16-byte nodes
        let stats = heap.memStats()
        XCTAssertEqual(stats.heapAlloc, 32)
        XCTAssertEqual(stats.heapObjects, 2)
        XCTAssertEqual(stats.numGC, 1)
        heap.collect()                           // the frame is gone: both nodes are garbage
        XCTAssertEqual(heap.memStats().heapObjects, 0)
        XCTAssertEqual(heap.memStats().heapAlloc, 0)
    }

    // MARK: helpers

    /// Node: pointer words 0 and 1, data word 2 (24 bytes).
    private func makeHeap(_ config: Configuration = Configuration()) throws -> (Heap, ObjectType) {
        let heap = try Heap(configuration: config.precise)
        let node = try heap.register(TypeLayout(name: "test.Node", size: 24, pointerWords: [0, 1]))
        return (heap, node)
    }

    private func words(_ r: Ref, _ n: Int) -> [UInt] {
        (0..<n).map { r.rawPointer.load(fromByteOffset: 8 * $0, as: UInt.self) }
    }

    // MARK: zeroing

    /// Slots freed by the sweeper in spans that stay in use are handed out zeroed.
    func testReusedSlotsInLiveSpansAreZeroed() throws {
        let (heap, node) = try makeHeap()
        let holderType = try heap.register(TypeLayout(name: "test.Holder", size: 8, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocateArray(holderType, count: 1000)
                var dead: Set<UInt> = []
                for i in 0..<2000 {
                    let r = m.allocate(node)
                    m.store(r, 0, f[0])            // pointer words hold something
                    m.store(r, 1, r)
                    m.storeWord(r, 2, -1)
                    if i % 2 == 0 { m.store(f[0], i / 2, r) } else { dead.insert(r.address) }
                }
                heap.collect()
                XCTAssertEqual(heap.memStats().heapObjects, 1001)
                var reused = 0
                for _ in 0..<1000 {
                    let r = m.allocate(node)
                    if dead.contains(r.address) { reused += 1 }
                    XCTAssertEqual(words(r, 3), [0, 0, 0], "object \(r) not zeroed")
                }
                XCTAssertGreaterThan(reused, 500, "new objects should reuse the freed slots")
                // The survivors are untouched.
                for i in 0..<1000 {
                    let r = m.load(f[0], i)
                    XCTAssertEqual(m.loadWord(r, 2), -1)
                    XCTAssertEqual(m.load(r, 1), r)
                }
            }
        }
        heap.checkHeapInvariants()
    }

    /// Pages of spans that were freed entirely are zeroed when reused by other classes
    /// and by large objects.
    func testReusedPagesAreZeroed() throws {
        let (heap, node) = try makeHeap()
        heap.withMutator { m in
            var low = UInt.max, high: UInt = 0
            for _ in 0..<3000 {
                let r = m.allocate(node)
                m.storeWord(r, 2, -1)
                m.store(r, 0, r)
                low = min(low, r.address); high = max(high, r.address)
            }
            let big = m.allocateBytes(200_000)
            big.rawPointer.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 200_000)
            let bigAddress = big.address
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
            // A large object takes the lowest free pages: the old ones.
            let big2 = m.allocateBytes(200_000)
            XCTAssertLessThanOrEqual(big2.address, bigAddress)
            let bytes = UnsafeRawBufferPointer(start: big2.rawPointer, count: 200_000)
            XCTAssertNil(bytes.firstIndex { $0 != 0 }, "reused large object not zeroed")
            // Another size class on the old pages.
            low = min(low, bigAddress)
            high = max(high, bigAddress + 200_000)
            var inOldRange = 0
            for _ in 0..<3000 {
                let r = m.allocateBytes(64)
                if r.address >= low && r.address < high { inOldRange += 1 }
                XCTAssertEqual(words(r, 8), Array(repeating: 0, count: 8), "object \(r) not zeroed")
            }
            XCTAssertGreaterThan(inOldRange, 0, "the old pages should have been reused")
        }
        heap.checkHeapInvariants()
    }

    /// GODEBUG=clobberfree=1 fills freed objects with 0xdeadbeef; allocation must still
    /// return zeroed memory, including on the inlined fast path.
    func testAllocationIsZeroedUnderClobberFree() throws {
        let (heap, node) = try makeHeap(Configuration(clobberFree: true))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let holderType = try! heap.register(TypeLayout(name: "test.Holder", size: 8, pointerWords: [0]))
                f[0] = m.allocateArray(holderType, count: 500)
                for i in 0..<1000 {
                    let r = m.allocate(node)
                    m.storeWord(r, 2, 7)
                    if i % 2 == 0 { m.store(f[0], i / 2, r) }
                }
                for _ in 0..<1000 { m.storeWord(m.allocateBytes(48), 0, 7) }
                heap.collect()
                var dirtyTyped = 0, dirtyBytes = 0
                for _ in 0..<500 where words(m.allocate(node), 3) != [0, 0, 0] { dirtyTyped += 1 }
                for _ in 0..<1000 where words(m.allocateBytes(48), 6) != Array(repeating: 0, count: 6) { dirtyBytes += 1 }
                XCTAssertEqual(dirtyTyped, 0, "typed objects returned with clobbered (non-zero) memory")
                XCTAssertEqual(dirtyBytes, 0, "pointer-free objects returned with clobbered (non-zero) memory")
            }
        }
    }

    // MARK: size categories

    func testZeroSizeAllocationsShareTheZeroBase() throws {
        let (heap, _) = try makeHeap(Configuration())
        let empty = try heap.register(TypeLayout(name: "test.Empty", size: 0, pointerWords: []))
        XCTAssertEqual(empty.size, 0)
        heap.withMutator { m in
            let a = m.allocateBytes(0)
            let b = m.allocateBytes(0)
            let c = m.allocate(empty)
            let d = m.allocateArray(empty, count: 1000)
            XCTAssertFalse(a.isNull)
            XCTAssertEqual(a.address, heap.zeroBase)
            XCTAssertEqual(a, b)
            XCTAssertEqual(a, c)
            XCTAssertEqual(a, d)
            XCTAssertEqual(m.tryAllocateBytes(0), a)
            m.withFrame(slots: 1) { f in
                f[0] = a     // a root pointing at the zero base is fine
                heap.collect()
            }
            XCTAssertEqual(heap.memStats().heapObjects, 0, "zero-size allocations are not heap objects")
            XCTAssertEqual(heap.memStats().mallocs, 0)
        }
    }

    /// Pointer-free objects under 16 bytes share 16-byte blocks; an interior pointer to
    /// any of them keeps the block alive.
    func testTinyAllocatorPacksSmallPointerFreeObjects() throws {
        let (heap, _) = try makeHeap()
        heap.withMutator { m in
            m.withFrame(slots: 8) { f in
                for i in 0..<8 { f[i] = m.allocateBytes(4) }
                let a = (0..<8).map { f[$0].address }
                // Four 4-byte objects per block, consecutive.
                for i in 1..<4 { XCTAssertEqual(a[i], a[0] + UInt(4 * i)) }
                for i in 5..<8 { XCTAssertEqual(a[i], a[4] + UInt(4 * (i - 4))) }
                XCTAssertEqual(a[0] & 15, 0, "a block is 16-byte aligned")
                XCTAssertNotEqual(a[4] & ~15, a[0] & ~15, "the fifth object starts a new block")
                for i in 0..<8 { f[i].rawPointer.storeBytes(of: UInt32(0xC0DE_0000 + i), as: UInt32.self) }

                var s = heap.memStats()
                XCTAssertEqual(s.mallocs, 8, "every tiny allocation counts as a malloc")
                XCTAssertEqual(s.heapObjects, 2, "the blocks are the heap objects")
                heap.collect()
                s = heap.memStats()
                XCTAssertEqual(s.heapObjects, 2)
                for i in 0..<8 { XCTAssertEqual(f[i].rawPointer.load(as: UInt32.self), UInt32(0xC0DE_0000 + i)) }

                // Keep one interior pointer into the first block only.
                for i in 0..<8 where i != 2 { f[i] = .null }
                heap.collect()
                XCTAssertEqual(heap.memStats().heapObjects, 1)
                XCTAssertEqual(f[2].rawPointer.load(as: UInt32.self), 0xC0DE_0002)
                XCTAssertEqual(UnsafeRawPointer(bitPattern: a[3])!.load(as: UInt32.self), 0xC0DE_0003,
                               "the rest of the surviving block is untouched")

                // Mixed sizes are aligned by size.
                f[0] = m.allocateBytes(1)
                f[1] = m.allocateBytes(8)
                XCTAssertEqual(f[1].address & 7, 0)
                XCTAssertEqual(f[1].address & ~15, f[0].address & ~15, "an 8-byte object fits after a 1-byte one")
                f[0] = .null
                f[1] = .null
                f[2] = .null
            }
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
        }
        heap.checkHeapInvariants()
    }

    /// Objects over 32 KiB get their own spans; they live while rooted, and their pages
    /// go back (HeapObjects and HeapInuse drop) when not.
    func testLargeObjectsLiveWhileRootedAndAreFreedOtherwise() throws {
        let (heap, node) = try makeHeap()
        let big = try heap.register(TypeLayout(name: "test.Big", size: 48 * 1024, pointerWords: [0, 100, 6143]))
        XCTAssertEqual(big.size, 49152)
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                f[0] = m.allocate(big)
                f[1] = m.allocateBytes(40_000)
                for (i, w) in [0, 100, 6143].enumerated() {
                    let leaf = m.allocate(node)
                    m.storeWord(leaf, 2, 1000 + i)
                    m.store(f[0], w, leaf)
                }
                m.storeWord(f[0], 1, 4242)
                let bytes = f[1].rawPointer.bindMemory(to: UInt8.self, capacity: 40_000)
                for i in 0..<40_000 { bytes[i] = UInt8(truncatingIfNeeded: i &* 7) }

                let before = heap.memStats()
                XCTAssertEqual(before.heapObjects, 5)
                for _ in 0..<5 {
                    _ = m.allocate(big)
                    _ = m.allocateBytes(100_000)
                }
                let mid = heap.memStats()
                XCTAssertEqual(mid.heapObjects, 15)
                let garbagePages = 5 * (6 + 13)
                XCTAssertEqual(mid.heapInuse, before.heapInuse + UInt64(garbagePages * 8192))

                heap.collect()
                let after = heap.memStats()
                XCTAssertEqual(after.heapObjects, 5)
                XCTAssertEqual(after.heapInuse, before.heapInuse)
                XCTAssertEqual(after.frees, 10)
                XCTAssertEqual(m.loadWord(f[0], 1), 4242)
                for (i, w) in [0, 100, 6143].enumerated() {
                    XCTAssertEqual(m.loadWord(m.load(f[0], w), 2), 1000 + i, "leaf \(i) of the large object")
                }
                var badBytes = 0
                for i in 0..<40_000 where bytes[i] != UInt8(truncatingIfNeeded: i &* 7) { badBytes += 1 }
                XCTAssertEqual(badBytes, 0)

                f[0] = .null
                heap.collect()
                let end = heap.memStats()
                XCTAssertEqual(end.heapObjects, 1, "the typed large object and its three leaves are gone")
                XCTAssertEqual(end.heapInuse, after.heapInuse - 7 * 8192,
                               "the large object's 6 pages and the leaves' 1-page span are returned")
                f[1] = .null
            }
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
        }
        heap.checkHeapInvariants()
    }

    /// Typed arrays (small and large) are scanned element by element.
    func testTypedArraysKeepEveryElementsReferentsAlive() throws {
        for checked in [false, true] {
            let (heap, node) = try makeHeap(Configuration(checked: checked))
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    let counts = [100, 2000]          // 2400 bytes (small), 48000 bytes (large)
                    for (slot, count) in counts.enumerated() {
                        f[slot] = m.allocateArray(node, count: count)
                        for e in 0..<count {
                            let leaf = m.allocate(node)
                            m.storeWord(leaf, 2, slot * 100_000 + e)
                            m.store(f[slot], 3 * e, leaf)
                            m.storeWord(f[slot], 3 * e + 2, -e)
                            // Word 1 of each element: the previous element's leaf.
                            if e > 0 { m.store(f[slot], 3 * e + 1, m.load(f[slot], 3 * (e - 1))) }
                            if e % 10 == 0 { _ = m.allocate(node); _ = m.allocateBytes(200) }   // garbage
                        }
                    }
                    heap.collect()
                    XCTAssertEqual(heap.memStats().heapObjects, UInt64(2 + 2100), "checked: \(checked)")
                    for (slot, count) in counts.enumerated() {
                        var bad = 0
                        for e in 0..<count {
                            let leaf = m.load(f[slot], 3 * e)
                            if m.loadWord(leaf, 2) != slot * 100_000 + e { bad += 1 }
                            if m.loadWord(f[slot], 3 * e + 2) != -e { bad += 1 }
                            if e > 0 && m.load(f[slot], 3 * e + 1) != m.load(f[slot], 3 * (e - 1)) { bad += 1 }
                        }
                        XCTAssertEqual(bad, 0, "array of \(count) (checked: \(checked))")
                    }
                    f[0] = .null
                    heap.collect()
                    XCTAssertEqual(heap.memStats().heapObjects, UInt64(1 + 2000))
                    f[1] = .null
                }
                heap.collect()
                XCTAssertEqual(heap.memStats().heapObjects, 0)
            }
            heap.checkHeapInvariants()
        }
    }

    // MARK: roots outside frames

    func testGlobalsAreRoots() throws {
        let (heap, node) = try makeHeap()
        let g = heap.makeGlobal()
        XCTAssertTrue(g.value.isNull)
        heap.withMutator { m in
            let obj = m.allocate(node)
            m.storeWord(obj, 2, 4242)
            m.store(g, obj)
            let child = m.allocate(node)
            m.storeWord(child, 2, 17)
            m.store(obj, 0, child)
            heap.collect()
            XCTAssertEqual(g.value, obj)
            XCTAssertEqual(m.loadWord(obj, 2), 4242)
            XCTAssertEqual(m.loadWord(m.load(obj, 0), 2), 17)
            XCTAssertEqual(heap.memStats().heapObjects, 2)
            m.store(g, .null)
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
            // A global outlives the mutator that stored into it.
            m.store(g, m.allocate(node))
            m.storeWord(g.value, 2, 99)
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1)
        heap.withMutator { m in XCTAssertEqual(m.loadWord(g.value, 2), 99) }
        // Many globals.
        let many = (0..<1500).map { _ in heap.makeGlobal() }
        heap.withMutator { m in
            for (i, gl) in many.enumerated() {
                let r = m.allocate(node)
                m.storeWord(r, 2, i)
                m.store(gl, r)
            }
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1501)
        heap.withMutator { m in
            for (i, gl) in many.enumerated() where m.loadWord(gl.value, 2) != i { XCTFail("global \(i)"); break }
        }
        heap.checkHeapInvariants()
    }

    func testHandlesAreRoots() throws {
        let (heap, node) = try makeHeap()
        var h: Handle? = heap.withMutator { m in
            let obj = m.allocate(node)
            m.storeWord(obj, 2, 77)
            return heap.makeHandle(obj)
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1)
        heap.withMutator { m in
            XCTAssertEqual(m.loadWord(h!.value, 2), 77)
            // Point the handle elsewhere: the old object goes.
            let other = m.allocate(node)
            m.storeWord(other, 2, 88)
            m.store(h!, other)
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1)
        heap.withMutator { m in XCTAssertEqual(m.loadWord(h!.value, 2), 88) }
        // Dropping the handle releases the root.
        h = nil
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 0)

        // Many handles (more than one slot chunk), released in a mixed order; slots are reused.
        var handles: [Handle] = []
        heap.withMutator { m in
            for i in 0..<3000 {
                let r = m.allocate(node)
                m.storeWord(r, 2, i)
                handles.append(heap.makeHandle(r))
            }
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 3000)
        handles = handles.enumerated().filter { $0.offset % 3 == 0 }.map(\.element)
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1000)
        heap.withMutator { m in
            for (k, hd) in handles.enumerated() where m.loadWord(hd.value, 2) != 3 * k { XCTFail("handle \(k)"); break }
            for _ in 0..<2000 { handles.append(heap.makeHandle(m.allocate(node))) }
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 3000)
        handles.removeAll()
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 0)
        heap.checkHeapInvariants()
    }

    // MARK: MemStats

    func testMemStatsIdentitiesAfterMixedWorkload() throws {
        let (heap, node) = try makeHeap()
        let big = try heap.register(TypeLayout(name: "test.Big", size: 40_000, pointerWords: [0]))
        var rng = SplitMix64(seed: 3)
        var allocations: UInt64 = 0
        var collections: UInt32 = 0
        func check(_ s: MemStats, _ what: String) {
            XCTAssertEqual(s.heapIdle + s.heapInuse, s.heapSys, what)
            XCTAssertEqual(s.heapObjects, s.mallocs - s.frees, what)
            XCTAssertEqual(s.heapAlloc, s.alloc, what)
            XCTAssertLessThanOrEqual(s.heapAlloc, s.totalAlloc, what)
            XCTAssertLessThanOrEqual(s.heapAlloc, s.heapInuse, what)
            XCTAssertGreaterThanOrEqual(s.sys, s.heapSys + s.stackSys + s.mSpanSys, what)
            XCTAssertEqual(s.mallocs, allocations, "\(what): every allocation is one malloc")
            XCTAssertGreaterThanOrEqual(s.numGC, collections, what)
            XCTAssertEqual(s.numForcedGC, collections, what)
            XCTAssertEqual(s.pauseNs.count, 256)
            XCTAssertEqual(s.pauseNs.reduce(0, +), s.pauseTotalNs, "\(what): the pause ring holds every pause so far")
            XCTAssertEqual(s.pauseEnd.filter { $0 != 0 }.count, Int(s.numGC), "\(what): one pause entry per cycle")
            XCTAssertEqual(s.lastGC, s.pauseEnd.max() ?? 0, what)
            XCTAssertTrue(s.enableGC)
            // BySize: class 0 is large objects (not counted there); the rest add up.
            let small = s.bySize.dropFirst().reduce(UInt64(0)) { $0 + $1.mallocs }
            XCTAssertLessThanOrEqual(small, s.mallocs, what)
            XCTAssertEqual(s.bySize.count, SizeClassTable.numSizeClasses)
            for (c, row) in s.bySize.enumerated() {
                XCTAssertEqual(Int(row.size), Int(SizeClassTable.classToSize[c]))
                XCTAssertLessThanOrEqual(row.frees, row.mallocs, "\(what): class \(c)")
            }
        }
        heap.withMutator { m in
            m.withFrame(slots: 64) { f in
                for round in 0..<6 {
                    for i in 0..<3000 {
                        let r: Ref
                        switch rng.int(20) {
                        case 0..<8: r = m.allocate(node)
                        case 8..<12: r = m.allocateBytes(16 + rng.int(3000))
                        case 12..<16: r = m.allocateBytes(1 + rng.int(15))        // tiny
                        case 16..<19: r = m.allocateArray(node, count: 1 + rng.int(40))
                        default: r = rng.int(10) == 0 ? m.allocate(big) : m.allocate(node)
                        }
                        allocations += 1
                        if i % 50 == 0 { f[rng.int(64)] = r }
                    }
                    check(heap.memStats(), "round \(round) before collect")
                    heap.collect()
                    collections += 1
                    check(heap.memStats(), "round \(round) after collect")
                }
                for i in 0..<64 { f[i] = .null }
            }
            heap.collect()
            collections += 1
            let s = heap.memStats()
            check(s, "end")
            XCTAssertEqual(s.heapObjects, 0)
            XCTAssertEqual(s.heapAlloc, 0)
            XCTAssertEqual(s.gcCPUFraction >= 0, true)
        }
        let g = heap.gcStats()
        XCTAssertGreaterThanOrEqual(g.numGC, Int(collections))
        XCTAssertGreaterThanOrEqual(g.allPauses.count, g.numGC, "at least one stop-the-world pause per cycle")
        XCTAssertEqual(g.allPauses.reduce(0, +), g.pauseTotal, "every pause counted once in PauseTotalNs")
        heap.checkHeapInvariants()
    }

    /// Go's MemStats: "the most recent pause is at PauseNs[(NumGC+255)%256]"; GCStats
    /// lists pauses most recent first. The stats of a cycle are visible as soon as
    /// `collect()` returns (Go's runtime.GC blocks until the cycle is complete).
    func testPauseRingAndLastGCAfterEachCollect() throws {
        let (heap, _) = try makeHeap()
        for k in 1...30 {
            heap.collect()
            let s = heap.memStats()
            XCTAssertEqual(s.numGC, UInt32(k))
            XCTAssertNotEqual(s.lastGC, 0, "after \(k) cycles")
            XCTAssertEqual(s.pauseEnd[Int((s.numGC + 255) % 256)], s.lastGC,
                           "after \(k) cycles: the most recent pause end is at PauseEnd[(NumGC+255)%256] and equals LastGC")
            XCTAssertEqual(s.pauseEnd.filter { $0 != 0 }.count, k, "after \(k) cycles: one ring entry per cycle")
            XCTAssertEqual(s.pauseNs.reduce(0, +), s.pauseTotalNs, "after \(k) cycles")
            let g = heap.gcStats()
            XCTAssertEqual(g.numGC, k)
            XCTAssertEqual(g.pause.count, k)
            XCTAssertEqual(g.pause.reduce(0, +), g.pauseTotal, "after \(k) cycles: GCStats.Pause holds every cycle")
            XCTAssertEqual(g.pauseEnd.first, g.lastGC, "after \(k) cycles: GCStats.PauseEnd[0] is the most recent")
            if s.pauseEnd[Int((s.numGC + 255) % 256)] != s.lastGC || g.pause.count != k { break }
        }
    }

    /// The ring wraps after 256 cycles; GCStats keeps the last 256, allPauses all of them.
    func testPauseRingWraps() throws {
        let (heap, _) = try makeHeap()
        for _ in 0..<260 { heap.collect() }
        let s = heap.memStats()
        XCTAssertEqual(s.numGC, 260)
        XCTAssertEqual(s.pauseEnd.filter { $0 == 0 }.count, 0, "every ring entry written")
        let g = heap.gcStats()
        XCTAssertEqual(g.pause.count, 256)
        XCTAssertGreaterThanOrEqual(g.allPauses.count, 260)
        XCTAssertEqual(g.allPauses.reduce(0, +), g.pauseTotal)
        XCTAssertEqual(s.pauseTotalNs, g.pauseTotal)
    }

    /// BySize counts exactly what was allocated and freed per class, cached spans included.
    func testBySizeCountsPerClass() throws {
        let (heap, _) = try makeHeap()
        let t48 = try heap.register(TypeLayout(name: "test.48", size: 48, pointerWords: [0]))
        let holderType = try heap.register(TypeLayout(name: "test.Holder", size: 8, pointerWords: [0]))
        let c48 = SizeClassTable.sizeToClass(48)
        let c100 = SizeClassTable.sizeToClass(100)
        let cHolder = SizeClassTable.sizeToClass(400 * 8)
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocateArray(holderType, count: 400)
                for i in 0..<1000 {
                    let r = m.allocate(t48)
                    if i % 5 < 2 { m.store(f[0], i / 5 * 2 + i % 5, r) }
                }
                for _ in 0..<10 { _ = m.allocateBytes(100) }
                var s = heap.memStats()       // spans still cached: counted anyway
                XCTAssertEqual(s.bySize[c48].mallocs, 1000)
                XCTAssertEqual(s.bySize[c100].mallocs, 10)
                XCTAssertEqual(s.bySize[cHolder].mallocs, c100 == cHolder ? 11 : 1)
                XCTAssertEqual(s.mallocs, 1011)
                XCTAssertEqual(s.bySize.dropFirst().reduce(0) { $0 + $1.mallocs }, 1011)
                heap.collect()
                s = heap.memStats()
                XCTAssertEqual(s.bySize[c48].frees, 600)
                XCTAssertEqual(s.bySize[c100].frees, 10)
                XCTAssertEqual(s.heapObjects, 401)
                XCTAssertEqual(s.heapAlloc, UInt64(400 * 48 + Int(SizeClassTable.classToSize[cHolder])))
                f[0] = .null
            }
        }
    }

    // MARK: configuration

    func testParseGOGC() throws {
        XCTAssertEqual(try Configuration.parseGOGC("100"), 100)
        XCTAssertEqual(try Configuration.parseGOGC("0"), 0)
        XCTAssertEqual(try Configuration.parseGOGC("250"), 250)
        XCTAssertNil(try Configuration.parseGOGC("off"))
        XCTAssertNil(try Configuration.parseGOGC("-1"))
        for bad in ["abc", "10%", "1e3", "OFF2", " 100"] {
            XCTAssertThrowsError(try Configuration.parseGOGC(bad), bad) { error in
                XCTAssertTrue("\(error)".contains(bad), "message should name \"\(bad)\": \(error)")
                XCTAssertTrue("\(error)".contains("GOGC"), "\(error)")
            }
        }
    }

    func testConfigurationFromEnvironment() throws {
        XCTAssertEqual(try Configuration.fromEnvironment([:]), Configuration())
        XCTAssertEqual(try Configuration.fromEnvironment(["GOGC": "50"]).gcPercent, 50)
        XCTAssertNil(try Configuration.fromEnvironment(["GOGC": "off"]).gcPercent)
        XCTAssertThrowsError(try Configuration.fromEnvironment(["GOGC": "abc"])) { error in
            XCTAssertTrue("\(error)".contains("abc"), "\(error)")
        }
        XCTAssertThrowsError(try Configuration.fromEnvironment(["GODEBUG": "gctrace=x"])) { error in
            XCTAssertTrue("\(error)".contains("gctrace=x"), "\(error)")
        }
        XCTAssertThrowsError(try Configuration.fromEnvironment(["GODEBUG": "clobberfree=-1"])) { error in
            XCTAssertTrue("\(error)".contains("clobberfree=-1"), "\(error)")
        }
        let c = try Configuration.fromEnvironment(["GODEBUG": "madvdontneed=1,gctrace=1,unknownkey=zzz,gccheckmark=1,clobberfree=1,tricolorcheck=1,,scavtrace=1"])
        XCTAssertTrue(c.gctrace)
        XCTAssertTrue(c.checkmark)
        XCTAssertTrue(c.clobberFree)
        XCTAssertTrue(c.checked)
        XCTAssertEqual(c.gcPercent, 100)
        let off = try Configuration.fromEnvironment(["GODEBUG": "gctrace=0,tricolorcheck=0"])
        XCTAssertFalse(off.gctrace)
        XCTAssertFalse(off.checked)
    }

    /// A GODEBUG entry with an empty key ("=", "=1") must be ignored like any unknown key
    /// or rejected with an error, not crash the process. Run in a child: a crash here
    /// would take the test runner down.
    func testGODEBUGWithEmptyKeyDoesNotCrash() {
        for value in ["=", "gctrace=1,=", "=1"] {
            let r = runInChild {
                _ = try? Configuration.fromEnvironment(["GODEBUG": value])
            }
            XCTAssertEqual(r.exitStatus, 0, "GODEBUG=\"\(value)\": the child \(r.signal.map { "died of signal \($0)" } ?? "exited with \(r.exitStatus ?? -1)"): \(r.stderr)")
        }
    }

    func testInvalidHeapConfigurationIsRejected() {
        XCTAssertThrowsError(try Heap(configuration: .init(reservedAddressSpace: 1000))) { error in
            XCTAssertTrue("\(error)".contains("1000"), "\(error)")
        }
        XCTAssertThrowsError(try Heap(configuration: .init(reservedAddressSpace: 1 << 50))) { error in
            XCTAssertTrue("\(error)".contains(String(1 << 50)), "\(error)")
        }
        XCTAssertNoThrow(try Heap(configuration: .init(reservedAddressSpace: 64 << 20)))
    }

    func testRegisterRejectsBadLayouts() throws {
        let heap = try Heap()
        XCTAssertThrowsError(try heap.register(TypeLayout(name: "Bad1", size: 16, pointerWords: [2]))) { error in
            XCTAssertTrue("\(error)".contains("Bad1"), "\(error)")
            XCTAssertTrue("\(error)".contains("2"), "\(error)")
        }
        XCTAssertThrowsError(try heap.register(TypeLayout(name: "Bad2", size: 16, pointerWords: [-1])))
        XCTAssertThrowsError(try heap.register(TypeLayout(name: "Bad3", size: 32, pointerWords: [1, 1]))) { error in
            XCTAssertTrue("\(error)".contains("Bad3"), "\(error)")
        }
        XCTAssertThrowsError(try heap.register(TypeLayout(name: "Bad4", size: -8, pointerWords: [])))
        // Sizes round up to 8 bytes; a pointer word in the rounded-up part is inside.
        let t = try heap.register(TypeLayout(name: "Odd", size: 13, pointerWords: [1]))
        XCTAssertEqual(t.size, 16)
        XCTAssertTrue(t.hasPointers)
        XCTAssertFalse(try heap.register(TypeLayout(name: "Plain", size: 40, pointerWords: [])).hasPointers)
    }

    // MARK: GOGC and triggering

    /// Allocating 10× the 4 MiB minimum goal starts cycles by itself, and the heap stays
    /// near its goal. No background workers: the allocating thread does all the marking
    /// through assists and finishes each cycle itself, so how far the heap grows does not
    /// depend on when the OS runs a worker thread (with a worker kept off its CPU on a
    /// busy machine, allocation ran on past the goal). Fails if the heap goal starts no
    /// cycle, or if cycles do not keep the heap near its goal.
    func testHeapGoalTriggersCollections() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 100, markWorkers: 0))
        heap.withMutator { m in
            for _ in 0..<10_000 { _ = m.allocateBytes(4096) }   // 40 MiB of garbage
        }
        let s = heap.memStats()
        XCTAssertGreaterThanOrEqual(s.numGC, 5, "allocating 10× the 4 MiB minimum goal must start (and finish) several cycles")
        XCTAssertEqual(s.numForcedGC, 0)
        XCTAssertLessThan(s.heapSys, 32 << 20, "the heap should stay near its goal, not grow to 40 MiB")
        XCTAssertTrue(s.enableGC)
        XCTAssertGreaterThan(s.nextGC, 0)
        heap.checkHeapInvariants()
    }

    /// GOGC=off: no cycle starts by itself, however much is allocated; `collect()`
    /// still runs one. (In a child process: see `checkInChild`.)
    func testGOGCOffNeverCollectsAutomatically() {
        checkInChild { c in
            for config in [Configuration(gcPercent: nil), try! Configuration.fromEnvironment(["GOGC": "off"])] {
                let heap = try! Heap(configuration: config)
                heap.withMutator { m in
                    for _ in 0..<10_000 { _ = m.allocateBytes(4096) }
                }
                let s = heap.memStats()
                c.expectEqual(s.numGC, 0, "numGC with GOGC=off")
                c.expect(s.heapSys >= 10_000 * 4096, "heapSys \(s.heapSys): nothing was collected")
                c.expectEqual(s.heapObjects, 10_000)
                // Go 1.19: EnableGC stays true with GOGC=off, and NextGC is the memory
                // limit's goal with the limit at MaxInt64.
                c.expect(s.enableGC, "enableGC with GOGC=off")
                c.expect(s.nextGC > UInt64(Int64.max) - (1 << 40), "nextGC \(s.nextGC) with GOGC=off")
                // An explicit collection still works.
                heap.collect()
                c.expectEqual(heap.memStats().heapObjects, 0, "heapObjects after collect()")
                c.expectEqual(heap.memStats().numGC, 1, "numGC after collect()")
            }
        }
    }

    func testSetGCPercentReturnsThePreviousValueAndTakesEffect() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: 100))
            c.expectEqual(heap.setGCPercent(50), 100)
            c.expectEqual(heap.setGCPercent(nil), 50)
            c.expectEqual(heap.setGCPercent(-1), nil)
            c.expectEqual(heap.setGCPercent(200), nil)
            c.expectEqual(heap.setGCPercent(nil), 200)
            heap.withMutator { m in
                for _ in 0..<5_000 { _ = m.allocateBytes(4096) }   // 20 MiB, collector off
            }
            c.expectEqual(heap.memStats().numGC, 0, "numGC while off")
            c.expect(heap.memStats().enableGC, "enableGC while off (always true, as in Go)")
            c.expectEqual(heap.setGCPercent(100), nil)
            heap.withMutator { m in
                for _ in 0..<5_000 { _ = m.allocateBytes(4096) }   // back on: cycles start
            }
            // A cycle the heap goal started may still be marking (its background worker
            // not run yet on a busy machine): collect() finishes it before its own forced
            // cycle, so a cycle not forced shows whenever the goal started one.
            heap.collect()
            let s = heap.memStats()
            c.expect(s.numGC > s.numForcedGC, "no cycle after GOGC went back to 100")
            c.expect(heap.memStats().enableGC, "enableGC after GOGC=100")
        }
    }

    // MARK: running out of memory without dying

    func testTryAllocateReturnsNilWhenTheHeapCannotGrow() {
        checkInChild { c in
            // Precise roots: the test counts exactly what a collection frees, and a stale
            // copy of the last big object's address on the native stack would keep it.
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, reservedAddressSpace: 64 << 20).precise)
            let big = try! heap.register(TypeLayout(name: "test.Big3M", size: 3 << 20, pointerWords: [0]))
            let node = try! heap.register(TypeLayout(name: "test.Node", size: 24, pointerWords: [0, 1]))
            heap.withMutator { m in
                var n = 0
                while m.tryAllocate(big) != nil {
                    n += 1
                    if n > 100 { c.expect(false, "a 64 MiB heap cannot hold 100 3-MiB objects"); return }
                }
                c.expectEqual(n, 21, "21 × 3 MiB fit in 64 MiB")
                c.expect(m.tryAllocateBytes(2 << 20) == nil, "2 MiB should not fit")
                c.expect(m.tryAllocateArray(big, count: 2) == nil, "6 MiB should not fit")
                // Small objects still fit in the last megabyte.
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    m.storeWord(f[0], 2, 5)
                    let s = heap.memStats()
                    c.expectEqual(s.heapObjects, 22)
                    c.expectEqual(s.heapIdle + s.heapInuse, s.heapSys)
                    // A collection frees the unrooted large objects; large allocation works again.
                    heap.collect()
                    c.expectEqual(heap.memStats().heapObjects, 1, "after collect()")
                    c.expect(m.tryAllocate(big) != nil, "a large object fits again after collect()")
                    c.expectEqual(m.loadWord(f[0], 2), 5)
                }
            }
            heap.checkHeapInvariants()
        }
    }

    func testTryAllocateRejectsImpossibleSizes() throws {
        let (heap, node) = try makeHeap(Configuration())
        heap.withMutator { m in
            XCTAssertNil(m.tryAllocateBytes(-1))
            XCTAssertNil(m.tryAllocateBytes(1 << 50), "more than the reservation")
            XCTAssertNil(m.tryAllocateArray(node, count: -1))
            XCTAssertNil(m.tryAllocateArray(node, count: Int.max / 8), "size overflows")
            XCTAssertNotNil(m.tryAllocate(node))
            XCTAssertNotNil(m.tryAllocateBytes(100))
        }
        heap.checkHeapInvariants()
    }

    // MARK: collector robustness (crashes and hangs are caught in child processes)

    /// gccheckmark re-marks every reachable object, element by element for arrays,
    /// including typed arrays too large for a size class.
    func testCheckmarkHandlesLargeTypedArrays() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(checkmark: true))
            let node = try! heap.register(TypeLayout(name: "test.Node", size: 24, pointerWords: [0, 1]))
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocateArray(node, count: 2_000)          // 48000 bytes: a large object
                    for e in 0..<2_000 where e % 7 == 0 {
                        let leaf = m.allocate(node)
                        m.storeWord(leaf, 2, e)
                        m.store(f[0], 3 * e, leaf)
                    }
                    heap.collect()
                    c.expectEqual(heap.memStats().heapObjects, UInt64(1 + 286))
                    c.expectEqual(m.loadWord(m.load(f[0], 3 * 1_995), 2), 1_995)
                }
            }
        }
    }

    /// collect() from an attached mutator, many times in a row, with data to mark: it must
    /// always return (the cycle may be finished by a background mark worker, which then
    /// has to stop the world while the caller is helping to mark).
    func testRepeatedCollectFromAMutatorReturns() {
        checkInChild(timeout: 30) { c in
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "test.Node", size: 24, pointerWords: [0, 1]))
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    f[0] = BinaryTrees.make(m, node, 12)                // 8191 live nodes
                    for _ in 0..<200 {
                        for _ in 0..<500 { _ = m.allocate(node) }
                        heap.collect()
                    }
                    c.expectEqual(heap.memStats().heapObjects, 8191)
                }
            }
        }
    }

    /// collect() from a thread that is not attached as a mutator (the main thread here)
    /// runs exactly one cycle per call and returns with its statistics recorded.
    func testCollectFromAnUnattachedThreadRunsOneCycle() throws {
        let (heap, node) = try makeHeap()
        let h = heap.withMutator { m in heap.makeHandle(BinaryTrees.make(m, node, 10)) }
        for k in 1...400 {
            heap.collect()
            let s = heap.memStats()
            XCTAssertEqual(s.numGC, UInt32(k), "collect() #\(k) should run exactly one cycle (and none should still be running)")
            XCTAssertEqual(s.heapObjects, 2047)
            XCTAssertEqual(s.pauseEnd[Int((s.numGC + 255) % 256)], s.lastGC, "collect() #\(k): the cycle's pause is recorded")
            if s.numGC != UInt32(k) { break }
        }
        withExtendedLifetime(h) {}
    }

    // MARK: workloads

    static let binaryTrees10 = [
        "stretch tree of depth 11\t check: 4095",
        "1024\t trees of depth 4\t check: 31744",
        "256\t trees of depth 6\t check: 32512",
        "64\t trees of depth 8\t check: 32704",
        "16\t trees of depth 10\t check: 32752",
        "long lived tree of depth 10\t check: 2047",
    ]

    func testBinaryTreesOutput() throws {
        for threads in [1, 2] {
            let heap = try Heap(configuration: Configuration(gcPercent: 100))
            var lines: [String] = []
            try BinaryTrees.run(heap: heap, n: 10, threads: threads) { lines.append($0) }
            XCTAssertEqual(lines, Self.binaryTrees10, "threads: \(threads)")
            heap.collect()
            let s = heap.memStats()
            XCTAssertEqual(s.heapObjects, 0, "nothing is rooted after the run")
            heap.checkHeapInvariants()
        }
    }

    /// The same workload with the collector's self-checks on (gccheckmark) and a small GOGC.
    func testBinaryTreesWithCheckmark() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 10, checkmark: true))
        var lines: [String] = []
        try BinaryTrees.run(heap: heap, n: 10, threads: 1) { lines.append($0) }
        XCTAssertEqual(lines, Self.binaryTrees10)
        // A cycle the heap goal started may still be marking (its background worker not
        // run yet on a busy machine): collect() finishes it before its own forced cycle.
        heap.collect()
        let s = heap.memStats()
        XCTAssertGreaterThan(s.numGC, s.numForcedGC, "GOGC=10 must have started cycles")
    }

    /// GODEBUG=gctrace=1 prints one line per cycle on stderr in Go's format.
    func testGCTracePrintsOneLinePerCycle() {
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration(gctrace: true))
            heap.withMutator { _ in heap.collect(); heap.collect() }
        }
        XCTAssertEqual(r.exitStatus, 0)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, r.stderr)
        XCTAssertTrue(lines.first?.hasPrefix("gc 1 @") ?? false, r.stderr)
        XCTAssertTrue(lines.last?.hasPrefix("gc 2 @") ?? false, r.stderr)
        for l in lines {
            XCTAssertTrue(l.contains("ms clock"), String(l))
            XCTAssertTrue(l.contains("MB goal"), String(l))
            XCTAssertTrue(l.hasSuffix("(forced)"), String(l))
        }
    }
}
