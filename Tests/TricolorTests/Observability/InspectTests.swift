@_spi(Testing) @testable import Tricolor
// Heap.inspect: addresses of every kind (each size class, large objects, interior
// pointers, free slots, span tails, tiny blocks, each span state, stack spans,
// metadata, free pages, outside the heap), the sampled allocation stack, JSON, and the
// allocator-state snapshot. Follows Go's mspan/mheap fields (mheap.go, mbitmap.go).
import XCTest
import Foundation
import Glibc
import TricolorProfiling

final class InspectTests: WatchdogTestCase {

    /// Every size class, typed (scan) and pointer-free (noscan): base and interior
    /// addresses land on the same slot, with the class's element size and the type.
    func testEverySizeClassBaseAndInterior() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let n = SizeClassTable.numSizeClasses
        var typesByClass: [Int: ObjectType] = [:]
        for c in 1..<n {
            let size = Int(SizeClassTable.classToSize[c])
            typesByClass[c] = try heap.register(TypeLayout(name: "inspect.C\(c)", size: size, pointerWords: [0]))
        }
        heap.withMutator { m in
            m.withFrame(slots: 2 * n) { f in
                var addrs: [UInt] = []
                for c in 1..<n {
                    f[2 * c] = m.allocate(typesByClass[c]!)
                    let size = Int(SizeClassTable.classToSize[c])
                    f[2 * c + 1] = size >= 16 ? m.allocateBytes(size) : m.allocateBytes(16)
                    addrs += [f[2 * c].address, f[2 * c].address + UInt(size / 2), f[2 * c + 1].address + UInt(size - 1)]
                }
                let infos = heap.inspect(addrs)
                for c in 1..<n {
                    let size = Int(SizeClassTable.classToSize[c])
                    let base = infos[3 * (c - 1)], interior = infos[3 * (c - 1) + 1], bytes = infos[3 * (c - 1) + 2]
                    XCTAssertEqual(base.kind, .object, "class \(c): \(base)")
                    XCTAssertEqual(base.span?.sizeClass, c)
                    XCTAssertEqual(base.span?.noscan, false)
                    XCTAssertEqual(base.span?.elemSize, size)
                    XCTAssertEqual(base.object?.offset, 0)
                    XCTAssertEqual(base.object?.typeName, "inspect.C\(c)")
                    XCTAssertEqual(base.object?.pointerWords, [0])
                    XCTAssertEqual(base.object?.allocated, true)
                    XCTAssertEqual(base.span?.sweepStatus, "cached", "\(base)")
                    XCTAssertNotNil(base.span?.cachedByMutator)
                    XCTAssertEqual(interior.kind, .object)
                    XCTAssertEqual(interior.object?.base, f[2 * c].address)
                    XCTAssertEqual(interior.object?.offset, size / 2)
                    XCTAssertEqual(interior.object?.index, base.object?.index)
                    XCTAssertEqual(bytes.kind, .object, "\(bytes)")
                    XCTAssertEqual(bytes.span?.noscan, true)
                    XCTAssertEqual(bytes.object?.typeName, "<bytes>")
                    XCTAssertEqual(bytes.object?.base, f[2 * c + 1].address)
                }
            }
        }
    }

    /// Large objects (interior pointers far into them), typed arrays, tiny blocks, the
    /// zero-size object, span tails and free slots.
    func testLargeArraysTinyZeroTailAndFreeSlots() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let node = try heap.register(TypeLayout(name: "inspect.Node", size: 48, pointerWords: [0, 2]))
        heap.withMutator { m in
            m.withFrame(slots: 5) { f in
                f[0] = m.allocateBytes(100_000)
                f[1] = m.allocateArray(node, count: 3)      // 144 bytes: class 144
                f[2] = m.allocateBytes(8)                   // tiny
                f[3] = m.allocate(node)                     // class 48: 170 slots, 32 bytes of tail
                f[4] = m.allocateArray(node, count: 1000)   // large typed array
                let zero = m.allocateBytes(0)
                let span48 = heap.spanOf(f[3].address)!
                let tail = span48.pointee.startAddr + span48.pointee.nelems * 48
                let free = f[3].address + 48                // the next slot: not allocated yet
                let infos = heap.inspect([f[0].address + 50_000, f[1].address, f[2].address, zero.address, tail, free, f[4].address + 48 * 999 + 8])
                let large = infos[0]
                XCTAssertEqual(large.kind, .object)
                XCTAssertEqual(large.span?.sizeClass, 0)
                XCTAssertEqual(large.span?.pages, 13)
                XCTAssertEqual(large.object?.offset, 50_000)
                XCTAssertGreaterThanOrEqual(large.object?.size ?? 0, 100_000)
                let array = infos[1]
                XCTAssertEqual(array.object?.isArray, true)
                XCTAssertEqual(array.object?.count, 3)
                XCTAssertEqual(array.object?.typeName, "inspect.Node")
                XCTAssertEqual(infos[2].object?.tinyBlock, true)
                XCTAssertEqual(infos[3].kind, .zeroBase)
                XCTAssertEqual(infos[4].kind, .spanTail, "\(infos[4])")
                XCTAssertEqual(infos[5].kind, .freeSlot)
                XCTAssertEqual(infos[5].object?.allocated, false)
                let big = infos[6]
                XCTAssertEqual(big.kind, .object)
                XCTAssertEqual(big.object?.isArray, true)
                XCTAssertEqual(big.object?.count, 1000)
                XCTAssertEqual(big.object?.offset, 48 * 999 + 8)
                XCTAssertTrue(big.description.contains("[1000]inspect.Node"), big.description)
            }
        }
    }

    /// Each span state a stopped world can see, stepped one phase at a time: a span in
    /// a mutator's cache ("cached"), after mark termination ("needs sweeping": the
    /// unmarked object is unreachable, the marked one live), and after sweeping ("swept":
    /// the dead slot is free).
    func testSweepStatesAndMarks() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0).precise)
        let node = try heap.register(TypeLayout(name: "inspect.Live", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocate(node)
                let dead = m.allocate(node).address
                let live = f[0].address
                var i = heap.inspect([live, dead])
                XCTAssertEqual(i[0].span?.sweepStatus, "cached")
                XCTAssertEqual(i[1].kind, .object)
                heap.debugStartCycle()
                heap.debugFinishCycle()
                i = heap.inspect([live, dead])
                XCTAssertEqual(i[0].span?.sweepStatus, "needs sweeping", "\(i[0])")
                XCTAssertEqual(i[0].kind, .object)
                XCTAssertEqual(i[0].object?.marked, true)
                XCTAssertEqual(i[1].kind, .freeSlot)
                XCTAssertEqual(i[1].object?.marked, false)
                XCTAssertTrue(i[1].note.contains("unreachable"), i[1].note)
                while heap.debugSweepSome(100) > 0 {}
                i = heap.inspect([live, dead])
                XCTAssertEqual(i[0].span?.sweepStatus, "swept")
                XCTAssertEqual(i[0].kind, .object)
                XCTAssertEqual(i[1].kind, .freeSlot)
                XCTAssertEqual(i[1].note, "")
                XCTAssertEqual(i[0].span?.allocCount, 1)
            }
        }
        XCTAssertEqual(sweepStatusName(span: 8, heap: 10), "needs sweeping")
        XCTAssertEqual(sweepStatusName(span: 9, heap: 10), "being swept")
        XCTAssertEqual(sweepStatusName(span: 10, heap: 10), "swept")
        XCTAssertEqual(sweepStatusName(span: 11, heap: 10), "cached (needs sweeping)")
        XCTAssertEqual(sweepStatusName(span: 13, heap: 10), "cached")
    }

    /// Stack memory, runtime metadata, free pages, unmapped arenas and addresses
    /// outside the heap each get their own answer.
    func testStackMetadataFreePagesAndOutside() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocateBytes(64)
                let stackSlot = UInt(bitPattern: m.state.pointee.stack) + 8 * UInt(m.state.pointee.stackTop - 1)
                let spanStruct = UInt(bitPattern: heap.spanOf(f[0].address)!)
                var freePage: UInt = 0
                for p in 0..<heap.pages.grownPages where !heap.pages.isUsed(p) {
                    freePage = heap.arenaBase + UInt(p) << 13; break
                }
                XCTAssertNotEqual(freePage, 0)
                let malloced = malloc(64)!
                defer { free(malloced) }
                let lastArena = heap.arenaBase + UInt(heap.numArenas - 1) << 26
                let infos = heap.inspect([stackSlot, spanStruct, freePage, UInt(bitPattern: malloced), lastArena, 8])
                XCTAssertEqual(infos[0].kind, .stack, "\(infos[0])")
                XCTAssertTrue(infos[0].note.contains("shadow stack"), infos[0].note)
                XCTAssertTrue(infos[0].note.contains("(in use)"), infos[0].note)
                XCTAssertEqual(infos[0].span?.state, "stack")
                XCTAssertEqual(infos[1].kind, .metadata)
                XCTAssertEqual(infos[1].note, "span structures (FixAlloc)")
                XCTAssertEqual(infos[2].kind, .freePage, "\(infos[2])")
                XCTAssertEqual(infos[3].kind, .notInHeap)
                XCTAssertEqual(infos[4].kind, .unmappedArena)
                XCTAssertEqual(infos[5].kind, .notInHeap)
                XCTAssertNil(infos[5].span)
            }
        }
    }

    /// With every allocation sampled, inspect carries the allocation stack, and the
    /// symbolized form names this test. JSON round-trips; the text reads like a debugger.
    func testSampledStackSymbolizedAndJSON() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, memProfileRate: 1).precise)
        let node = try heap.register(TypeLayout(name: "inspect.Sampled", size: 64, pointerWords: [1]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocate(node)
                let info = heap.inspectSymbolized(f[0].address + 8)
                XCTAssertNotNil(info.allocationStack)
                XCTAssertTrue(info.allocationFrames?.contains { $0.contains("testSampledStackSymbolizedAndJSON") } ?? false,
                              "\(info.allocationFrames ?? [])")
                let text = info.description
                XCTAssertTrue(text.contains("heap object"), text)
                XCTAssertTrue(text.contains("inspect.Sampled"), text)
                XCTAssertTrue(text.contains("allocated at (sampled)"), text)
                let data = try! JSONEncoder().encode(info)
                XCTAssertEqual(try! JSONDecoder().decode(AddressInfo.self, from: data), info)
            }
        }
    }

    /// Full spans a mutator hands back wait in its batch (`MCache.uncached`) until
    /// `Tuning.uncacheBatch` of their class have gathered, or until the next pause. The
    /// snapshot counts them as full swept spans meanwhile, and the pause hands every one
    /// to its central list, so the sweep after it frees them once their objects are dead.
    /// Without the pause's flush, the spans still waiting would never be swept.
    func testFullSpansWaitingInAMutatorsBatchAreCountedAndSwept() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise.withSelfChecks)
        let node = try heap.register(TypeLayout(name: "inspect.Batch", size: 32, pointerWords: [0]))
        let sc = SizeClassTable.sizeToClass(32)
        let perSpan = Int(SizeClassTable.classToAllocNPages[sc]) * SizeClassTable.pageSize / Int(SizeClassTable.classToSize[sc])
        func row() -> AllocatorState.SpanClassState? {
            let s = heap.allocatorState()
            for c in s.spanClasses {
                XCTAssertEqual(c.cached + c.partialSwept + c.partialUnswept + c.fullSwept + c.fullUnswept, c.spans, "\(c)")
            }
            return s.spanClasses.first { $0.sizeClass == sc && !$0.noscan }
        }
        let spc = Int(SpanClass(sizeClass: sc, noscan: false).raw)
        heap.withMutator { m in
            heap.collect()
            let freed0 = heap.allocPathStats().spansFreed
            // Three full spans, all still in the batch.
            for _ in 0..<(3 * perSpan + 10) { _ = m.allocate(node) }
            XCTAssertEqual(row()?.fullSwept, 3)
            XCTAssertEqual(m.state.pointee.mcache.pointee.uncachedCount[spc], 3)
            // Twenty more: two batches reach the central list at refills, the rest wait.
            for _ in 0..<(20 * perSpan) { _ = m.allocate(node) }
            XCTAssertEqual(row()?.fullSwept, 23)
            XCTAssertEqual(m.state.pointee.mcache.pointee.uncachedCount[spc], 23 % Tuning.uncacheBatch)
            heap.checkInvariants()   // the batch's own checks: count, class, full, swept
            // Nothing refers to the objects: the collection's sweep frees all 24 spans
            // (the 23 full ones and the one the cache held).
            heap.collect()
            XCTAssertEqual(m.state.pointee.mcache.pointee.uncachedCount[spc], 0)
            XCTAssertGreaterThanOrEqual(heap.allocPathStats().spansFreed - freed0, 24)
            XCTAssertEqual(row()?.spans ?? 0, 0)
            heap.checkInvariants()
        }
    }

    /// A refill that finds swept spans with free slots in its central list takes up to
    /// `Tuning.stashBatch` of them at once: it caches one and the rest wait in the
    /// mutator's stash (`MCache.stash`) for its next refills of the class. The snapshot
    /// counts them as swept partial spans meanwhile, the next refill takes the next one
    /// without the list, and every pause hands the stash back to the central list, so the
    /// sweep after it sees every span and frees none that holds a reachable object.
    /// Without the pause's flush, the stashed spans would never be swept again.
    func testSweptSpansTakenAheadWaitInTheStashAndGoBackAtThePause() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise.withSelfChecks)
        let node = try heap.register(TypeLayout(name: "inspect.Stash", size: 32, pointerWords: [0]))
        let holder = try heap.register(TypeLayout(name: "inspect.StashHolder", size: 8, pointerWords: [0]))
        let sc = SizeClassTable.sizeToClass(32)
        let perSpan = Int(SizeClassTable.classToAllocNPages[sc]) * SizeClassTable.pageSize / Int(SizeClassTable.classToSize[sc])
        let spc = Int(SpanClass(sizeClass: sc, noscan: false).raw)
        let spans = 6
        let batch = Int(Tuning.stashBatch)
        precondition(batch >= 2 && batch <= spans, "the test needs more swept spans than a batch takes")
        func row() -> AllocatorState.SpanClassState? {
            let s = heap.allocatorState()
            for c in s.spanClasses {
                XCTAssertEqual(c.cached + c.partialSwept + c.partialUnswept + c.fullSwept + c.fullUnswept, c.spans, "\(c)")
            }
            return s.spanClasses.first { $0.sizeClass == sc && !$0.noscan }
        }
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                heap.collect()
                // One reachable object (the first) in each of six spans, the rest garbage.
                f[0] = m.allocateArray(holder, count: spans)
                for i in 0..<(spans * perSpan) {
                    let r = m.allocate(node)
                    if i % perSpan == 0 {
                        m.storeWord(r, 1, 1000 + i / perSpan)
                        m.store(f[0], i / perSpan, r)
                    }
                }
                // The sweep leaves six swept spans with free slots in the central list.
                heap.collect()
                XCTAssertEqual(row()?.partialSwept, spans)
                XCTAssertEqual(m.state.pointee.mcache.pointee.stashCount[spc], 0)
                // The first refill caches one and stashes the next batch - 1.
                _ = m.allocate(node)
                XCTAssertEqual(row()?.cached, 1)
                XCTAssertEqual(row()?.partialSwept, spans - 1)
                XCTAssertEqual(Int(m.state.pointee.mcache.pointee.stashCount[spc]), batch - 1)
                heap.checkInvariants()   // the stash's own checks: count, class, free slot, swept
                // Using up the cached span's free slots: the next refill takes the
                // stash's next span, not the list's.
                for _ in 0..<(perSpan - 1) { _ = m.allocate(node) }
                XCTAssertEqual(Int(m.state.pointee.mcache.pointee.stashCount[spc]), batch - 2)
                XCTAssertEqual(row()?.partialSwept, spans - 2)
                XCTAssertEqual(row()?.fullSwept, 1)
                heap.checkInvariants()
                // The pause hands the stash back; the sweep frees the garbage of the
                // two spans used and keeps every span that holds a reachable object
                // (their objects are intact).
                heap.collect()
                XCTAssertEqual(m.state.pointee.mcache.pointee.stashCount[spc], 0)
                XCTAssertEqual(row()?.spans, spans)
                XCTAssertEqual(row()?.partialSwept, spans)
                for k in 0..<spans {
                    XCTAssertEqual(m.loadWord(m.load(f[0], k), 1), 1000 + k, "object \(k) lost its contents")
                }
                heap.checkInvariants()
                // The stash fills from the list once more, for the detach below.
                _ = m.allocate(node)
                XCTAssertEqual(Int(m.state.pointee.mcache.pointee.stashCount[spc]), batch - 1)
                XCTAssertEqual(row()?.partialSwept, spans - 1)
            }
        }
        // Detaching hands the stash back too (and the cached span): all six spans are
        // in the central list again, none in a cache the snapshot no longer sees.
        XCTAssertEqual(row()?.cached, 0)
        XCTAssertEqual(row()?.partialSwept, spans)
        XCTAssertEqual(row()?.spans, spans)
        heap.checkInvariants()
    }

    /// The allocator snapshot agrees with itself: per class, the spans found in caches
    /// and central sets add up to the spans in the span table; free-run pages add up to
    /// the free pages; a mutator is listed with its stack depth.
    func testAllocatorStateCountsAgree() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let node = try heap.register(TypeLayout(name: "inspect.State", size: 32, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 3) { f in
                for _ in 0..<5000 { f[0] = m.allocate(node); f[1] = m.allocateBytes(200) }
                f[2] = m.allocateBytes(1 << 20)
                heap.collect()
                for _ in 0..<100 { _ = m.allocate(node) }
                let s = heap.allocatorState()
                for c in s.spanClasses {
                    XCTAssertEqual(c.cached + c.partialSwept + c.partialUnswept + c.fullSwept + c.fullUnswept, c.spans, "\(c)")
                    XCTAssertLessThanOrEqual(c.objectsInUse, c.slots)
                }
                XCTAssertEqual(s.pageHeap.freeRuns.reduce(0) { $0 + $1.pages }, s.pageHeap.freePages)
                XCTAssertEqual(s.mutators.count, 1)
                XCTAssertEqual(s.mutators[0].stackDepth, 3)
                XCTAssertEqual(s.mutators[0].liveRoots, 3)
                XCTAssertTrue(s.spanClasses.contains { $0.sizeClass == 0 && $0.spans == 1 })
                XCTAssertTrue(s.description.contains("spanclass"), s.description)
                let data = try! JSONEncoder().encode(s)
                XCTAssertEqual(try! JSONDecoder().decode(AllocatorState.self, from: data), s)
            }
        }
    }
}
