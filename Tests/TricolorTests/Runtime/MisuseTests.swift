import Glibc
import XCTest
import CTricolor
import Foundation
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

final class MisuseTests: WatchdogTestCase {

    /// A checked heap and a 4-word type: pointer words 0 and 1, data words 2 and 3.
    /// Precise roots: the tests here keep a dead object's address in a local on purpose.
    private func checkedHeap(_ body: (Heap, ObjectType, Mutator) -> Void) {
        let heap = try! Heap(configuration: Configuration(checked: true).precise)
        let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
        heap.withMutator { m in body(heap, node, m) }
    }

    func testExpectFatalHelperSeesStatusAndMessage() {
        // The helper itself: a plain exit is not a fatal error, runtimeFatal is.
        let ok = runInChild {}
        XCTAssertEqual(ok.exitStatus, 0)
        XCTAssertEqual(ok.stderr, "")
        expectFatal("the message") { runtimeFatal("the message") }
    }

    /// One fatal-error path, Go's format: the message, then the failing thread's
    /// symbolized stack (this test's function among its frames), exit status 2;
    /// GOTRACEBACK=crash raises SIGABRT instead (for a core dump or the backtracer);
    /// an invariant failure names its place.
    func testFatalErrorPrintsMessageAndSymbolizedStack() {
        let r = runInChild { fatalFromANamedFunctionForTheStackTest() }
        XCTAssertEqual(r.exitStatus, 2, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("fatal error: out of dingos\n"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\nthread "), r.stderr)
        XCTAssertTrue(r.stderr.contains("fatalFromANamedFunctionForTheStackTest"), r.stderr)

        let crash = runInChild {
            setenv("GOTRACEBACK", "crash", 1)
            runtimeFatal("crash please")
        }
        XCTAssertEqual(crash.signal, SIGABRT, crash.stderr)
        XCTAssertTrue(crash.stderr.contains("fatal error: crash please"), crash.stderr)

        expectFatal("invariant violated at TricolorTests/") { runtimeCheck(1 + 1 == 3, "arithmetic") }
    }

    // MARK: misuse caught in every mode (one compare on a slow path)

    /// An ObjectType of one heap used with another: in unchecked mode the object's type
    /// id would index the wrong registry and the collector would lose what it points to.
    func testTypeOfAnotherHeapTrapsInBothModes() {
        for checked in [false, true] {
            expectFatal("registered with another heap") {
                let a = try! Heap(configuration: Configuration(checked: checked))
                let b = try! Heap(configuration: Configuration(checked: checked))
                let nodeOfA = try! a.register(TypeLayout(name: "A.Node", size: 16, pointerWords: [0]))
                _ = try! b.register(TypeLayout(name: "B.Node", size: 16, pointerWords: [0]))
                b.withMutator { m in
                    // Enough allocations that the fast path's window runs dry at least once.
                    for _ in 0..<1_000 { _ = m.allocate(nodeOfA) }
                }
            }
            expectFatal("registered with another heap") {
                let a = try! Heap(configuration: Configuration(checked: checked))
                let b = try! Heap(configuration: Configuration(checked: checked))
                let nodeOfA = try! a.register(TypeLayout(name: "A.Node", size: 16, pointerWords: [0]))
                b.withMutator { m in _ = m.allocateArray(nodeOfA, count: 3) }
            }
        }
    }

    /// In unchecked mode too, at the very first allocation, even with a window of the
    /// same size class cached: a type with a cache slot of its own finds that slot empty
    /// in any heap that did not register it (type slots are numbered per process), so
    /// the inlined fast path never hands it a slot and the slow path's check traps.
    func testTypeOfAnotherHeapTrapsAtItsFirstAllocation() {
        expectFatal("registered with another heap") {
            let a = try! Heap(configuration: Configuration())
            let b = try! Heap(configuration: Configuration())
            let nodeOfA = try! a.register(TypeLayout(name: "A.Node", size: 16, pointerWords: [0]))
            precondition(nodeOfA.cacheSlot >= MCache.firstTypeSlot, "A.Node got no type slot")
            let nodeOfB = try! b.register(TypeLayout(name: "B.Node", size: 16, pointerWords: [0]))
            b.withMutator { m in
                _ = m.allocate(nodeOfB)   // a window of the class is cached now
                _ = m.allocate(nodeOfA)
            }
        }
    }

    func testAllocationInsideBlockingTrapsInBothModes() {
        for checked in [false, true] {
            expectFatal("allocation inside a blocking region") {
                let heap = try! Heap(configuration: Configuration(checked: checked))
                heap.withMutator { m in
                    m.blocking { for _ in 0..<1_000 { _ = m.allocateBytes(64) } }
                }
            }
        }
    }

    /// A free hook that calls collect() used to deadlock (collect waits for the sweep the
    /// hook runs in). The child's watchdog would turn a hang into a signal, not status 2.
    func testFreeHookCallingCollectTraps() {
        expectFatal("collect() inside an allocation or free hook") {
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            heap.setFreeHook { _ in heap.collect() }
            heap.withMutator { m in for _ in 0..<1_000 { _ = m.allocateBytes(64) } }
            heap.collect()
            heap.collect()
        }
    }

    func testAllocationHookThatAllocatesTraps() {
        expectFatal("allocation inside an allocation or free hook") {
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            final class Holder: @unchecked Sendable { var m: Mutator? }
            let holder = Holder()
            heap.setAllocationHook { _ in
                if let m = holder.m { _ = m.allocateBytes(64) }
            }
            heap.withMutator { m in holder.m = m; _ = m.allocateBytes(64) }
        }
    }

    /// A detached Mutator whose state another thread's attach() recycled: two threads
    /// would share one cache (unchecked mode segfaulted). The allocation slow path, which
    /// the stale mutator reaches within one cache window, traps.
    func testStaleMutatorAfterRecyclingTrapsUnchecked() {
        expectFatal("mutator used from another thread or after detach") {
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            let stale = heap.attach()
            heap.detach(stale)
            final class Step: @unchecked Sendable { var attached = 0 }   // read/written with atomics below
            let step = Step()
            let other = Thread {
                let fresh = heap.attach()       // recycles the detached state
                withUnsafeMutablePointer(to: &step.attached) { tc_store_release($0, 1) }
                while true { _ = fresh.blocking { usleep(1_000) } }   // stays attached until the process ends
            }
            other.start()
            while withUnsafeMutablePointer(to: &step.attached, { tc_load_acquire($0) }) == 0 { usleep(100) }
            // This thread is detached; its old handle now names the other thread's state.
            for _ in 0..<1_000 { _ = stale.allocateBytes(32) }
        }
    }

    // MARK: bad pointers

    func testInteriorPointerStoreTraps() {
        expectFatal("points inside an object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocate(node)
                    m.store(f[0], 0, Ref(address: f[1].address + 8))
                }
            }
        }
    }

    func testInteriorPointerInFrameSlotTraps() {
        expectFatal("points inside an object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = Ref(address: f[0].address + 16)
                }
            }
        }
    }

    /// A stale Ref to an object freed by a collection, whose span lives on because a
    /// neighbour survives: storing it is a use after free.
    func testStoringAFreedObjectTraps() {
        expectFatal("use after free") {
            checkedHeap { heap, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(node)    // same span, never rooted
                    heap.collect()
                    m.store(f[0], 0, dead)
                }
            }
        }
    }

    func testUsingAFreedObjectTraps() {
        expectFatal("use after free") {
            checkedHeap { heap, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(node)
                    heap.collect()
                    _ = m.loadWord(dead, 2)
                }
            }
        }
    }

    /// When the freed object's whole span went back to the page heap, the address is no
    /// longer a heap object at all.
    func testStoringAnObjectWhoseSpanWasFreedTraps() {
        expectFatal("invalid pointer") {
            checkedHeap { heap, node, m in
                let big = try! heap.register(TypeLayout(name: "misuse.Big", size: 2048, pointerWords: [0]))
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(big)     // alone in its span
                    heap.collect()
                    m.store(f[0], 0, dead)
                }
            }
        }
    }

    func testForeignPointerTraps() {
        expectFatal("not a live heap object") {
            checkedHeap { _, node, m in
                let foreign = UnsafeMutablePointer<UInt>.allocate(capacity: 4)
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    m.store(f[0], 0, Ref(address: UInt(bitPattern: foreign)))
                }
            }
        }
    }

    /// A foreign pointer written behind the runtime's back is found by the collector.
    func testCollectorTrapsOnBadPointerInCheckedMode() {
        expectFatal("bad pointer") {
            checkedHeap { heap, node, m in
                let foreign = UnsafeMutablePointer<UInt>.allocate(capacity: 4)
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    f[0].rawPointer.storeBytes(of: UInt(bitPattern: foreign), as: UInt.self)
                    heap.collect()
                }
            }
        }
    }

    // MARK: wrong kind of word

    func testPointerStoreIntoNonPointerWordTraps() {
        expectFatal("non-pointer word") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocate(node)
                    m.store(f[0], 2, f[1])
                }
            }
        }
    }

    func testPointerStoreIntoPointerFreeObjectTraps() {
        expectFatal("holds no pointers") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocateBytes(64)
                    f[1] = m.allocate(node)
                    m.store(f[0], 0, f[1])
                }
            }
        }
    }

    func testIntegerStoreIntoPointerWordTraps() {
        expectFatal("pointer word") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    m.storeWord(f[0], 1, 42)
                }
            }
        }
    }

    func testWordOutsideObjectTraps() {
        expectFatal("outside object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    _ = m.loadWord(f[0], 4)
                }
            }
        }
    }

    // MARK: mutator misuse

    func testUseAfterDetachTraps() {
        expectFatal("after detach") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            var saved: Mutator? = nil
            heap.withMutator { m in
                _ = m.allocate(node)
                saved = m
            }
            _ = saved!.allocate(node)
        }
        expectFatal("after detach") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            var saved: Mutator? = nil
            heap.withMutator { m in saved = m }
            saved!.withFrame(slots: 1) { _ in }
        }
    }

    func testUseFromAnotherThreadTraps() {
        expectFatal("another thread") {
            checkedHeap { _, node, m in
                let obj = m.allocate(node)
                let box = UncheckedSendable(value: (m, obj))
                runThreads(1) { _ in
                    let (m, obj) = box.value
                    _ = m.loadWord(obj, 2)
                }
            }
        }
        expectFatal("another thread") {
            checkedHeap { _, _, m in
                let box = UncheckedSendable(value: m)
                runThreads(1) { _ in
                    box.value.withFrame(slots: 1) { _ in }
                }
            }
        }
    }

    /// DESIGN §3.7: "allocation off an attached thread traps with a message in checked
    /// mode". Allocation that hits the inlined fast path (a span of the class is already
    /// cached) must be checked too.
    func testAllocationFromAnotherThreadTraps() {
        expectFatal("another thread") {
            checkedHeap { _, node, m in
                _ = m.allocate(node)               // the owner caches a span of this class
                let box = UncheckedSendable(value: m)
                runThreads(1) { _ in
                    _ = box.value.allocate(node)   // from a thread that is not the owner
                }
            }
        }
    }

    func testFramesPoppedOutOfOrderTrap() {
        expectFatal("out of order") {
            checkedHeap { _, _, m in
                let f1 = m.pushFrame(slots: 1)
                _ = m.pushFrame(slots: 2)
                m.popFrame(f1)
            }
        }
    }

    func testFrameSlotOutOfRangeTraps() {
        expectFatal("out of range") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in f[2] = m.allocate(node) }
            }
        }
        expectFatal("out of range") {
            checkedHeap { _, _, m in
                m.withFrame(slots: 2) { f in _ = f[-1] }
            }
        }
    }

    func testAttachingTheSameThreadTwiceTraps() {
        expectFatal("already attached") {
            let heap = try! Heap()
            _ = heap.attach()
            _ = heap.attach()
        }
        expectFatal("already attached") {
            let a = try! Heap()
            let b = try! Heap()
            a.withMutator { _ in b.withMutator { _ in } }
        }
    }

    func testNegativeSizesTrap() {
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            heap.withMutator { m in _ = m.allocateBytes(-1) }
        }
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            heap.withMutator { m in _ = m.allocateArray(node, count: -3) }
        }
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            heap.withMutator { m in _ = m.allocateArray(node, count: Int.max / 2) }
        }
    }

    // MARK: out of memory

    /// Go's fatal "out of memory" when the heap cannot grow: large objects, small
    /// objects (span refill fails), checked or not.
    func testOutOfMemoryIsFatal() {
        for checked in [false, true] {
            expectFatal("out of memory") {
                let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: checked, reservedAddressSpace: 64 << 20))
                heap.withMutator { m in
                    for _ in 0..<100 { _ = m.allocateBytes(4 << 20) }
                }
            }
            expectFatal("out of memory") {
                let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: checked, reservedAddressSpace: 64 << 20))
                let node = try! heap.register(TypeLayout(name: "misuse.Page", size: 1024, pointerWords: [0]))
                heap.withMutator { m in
                    for _ in 0..<200_000 { _ = m.allocate(node) }
                }
            }
        }
        // Live data cannot be collected: out of memory even with the collector on.
        expectFatal("out of memory") {
            let heap = try! Heap(configuration: Configuration(gcPercent: 100, reservedAddressSpace: 64 << 20))
            heap.withMutator { m in
                m.withFrame(slots: 100) { f in
                    for i in 0..<100 { f[i] = m.allocateBytes(1 << 20) }
                }
            }
        }
    }
}

@inline(never)
func fatalFromANamedFunctionForTheStackTest() {
    runtimeFatal("out of dingos")
}
