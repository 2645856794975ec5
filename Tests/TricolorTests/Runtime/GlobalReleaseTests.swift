@_spi(Testing) @testable import Tricolor
import XCTest

// Globals that can be released (issue #12 part 5; Heap.releaseGlobal in Runtime/Roots.swift).

final class GlobalReleaseTests: WatchdogTestCase {
    private func quietHeap() -> (Heap, ObjectType) {
        var c = Configuration(gcPercent: nil)
        c.markWorkers = 0
        let heap = try! Heap(configuration: c)
        return (heap, try! heap.register(TypeLayout(name: "global.Node", size: 16, pointerWords: [0])))
    }

    /// A released global no longer keeps its object, and its slot is reused.
    func testReleasedGlobalFreesItsObjectAndItsSlot() {
        let (heap, node) = quietHeap()
        let before = heap.globalsInUse
        heap.withMutator { m in
            let g = heap.makeGlobal()
            m.store(g, m.allocate(node))
            let bits = g.value.address ^ 0x5a5a            // hidden from a conservative scan
            heap.collect()
            XCTAssertTrue(heap.debugIsAllocated(Ref(address: bits ^ 0x5a5a)), "rooted by the global")
            XCTAssertEqual(heap.releaseGlobal(g).address, bits ^ 0x5a5a)
            XCTAssertEqual(heap.globalsInUse, before)
            heap.collect()
            XCTAssertFalse(heap.debugIsAllocated(Ref(address: bits ^ 0x5a5a)), "freed once the global is released")
            let again = heap.makeGlobal()
            XCTAssertEqual(again.slot, g.slot, "the slot is reused")
            XCTAssertTrue(again.value.isNull)
        }
    }

    /// Releasing while marking shades the old value (the deletion barrier): an object
    /// moved from the global to an already scanned stack survives the cycle.
    func testReleaseWhileMarkingShadesTheOldValue() {
        let (heap, node) = quietHeap()
        heap.withMutator { m in
            let g = heap.makeGlobal()
            m.store(g, m.allocate(node))
            m.withFrame(slots: 1) { f in
                heap.debugStartCycle()
                m.safepoint()                   // this stack is scanned now: f[0] is null
                XCTAssertEqual(heap.debugPhase, "mark")
                f[0] = g.value                  // the object moves to the (black) stack
                heap.releaseGlobal(g)           // and leaves the global before it is scanned
                heap.debugFinishCycle()
                XCTAssertTrue(heap.debugIsMarked(f[0]), "the released global's value was shaded")
                heap.debugSweepSome(1 << 20)
                XCTAssertTrue(heap.debugIsAllocated(f[0]))
            }
        }
    }

    /// Checked mode: a double release traps (one slot would have two owners).
    func testDoubleReleaseTrapsInCheckedMode() {
        expectFatal("released twice") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            let g = heap.makeGlobal()
            heap.releaseGlobal(g)
            heap.releaseGlobal(g)
        }
    }

    /// Running out of root slots is the program's doing, and the fatal error says so,
    /// naming the limit, instead of blaming the runtime ("invariant violated"). A table
    /// with one chunk (1 024 slots) stands in for the real one (16 777 216 slots), which
    /// would take 128 MiB to fill; released slots do not count against the limit.
    func testTooManyLiveRootSlotsIsAUserFacingError() {
        let limit = RootSlotTable.slotsPerChunk
        checkInChild { c in
            var t = RootSlotTable(maxChunks: 1)
            var slots: [UnsafeMutablePointer<UInt>] = []
            for _ in 0..<limit { slots.append(t.take(.global)) }
            t.release(slots[7])
            c.expectEqual(t.take(.global), slots[7], "a released slot is reused at the limit")
        }
        expectFatal("makeGlobal: more than \(limit) live globals (the limit); release globals you no longer need") {
            var t = RootSlotTable(maxChunks: 1)
            for _ in 0...limit { _ = t.take(.global) }
        }
        expectFatal("makeHandle: more than \(limit) live handles (the limit); release handles you no longer need") {
            var t = RootSlotTable(maxChunks: 1)
            for _ in 0...limit { _ = t.take(.handle) }
        }
        XCTAssertEqual(RootSlotTable.maxRootSlots, 16_777_216, "the documented limit")
    }
}
