import Glibc
import XCTest
import CTricolor
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

// Conservative scanning of native stacks (Collector/ConservativeScan.swift): a `Ref` held
// only in a Swift local, a parameter or a register survives allocations and collections,
// in the shapes optimised code gives it. Every heap here runs with clobberfree, so an
// object freed by mistake reads 0xdeadbeef instead of its contents, and most with
// gccheckmark. Each test checks the objects' contents afterwards.

/// Hands a value to code the optimiser cannot see, so that it must exist (in a register
/// or on the stack) at the call.
@inline(never) func opaque<T>(_ x: T) -> T {
    var v = x
    withUnsafeMutablePointer(to: &v) { tc_compiler_use($0) }
    return v
}

/// Hands the variable's address to code the optimiser cannot see (which may read or
/// change it), so the value is in memory on the stack at the call.
@inline(never) func touchSlot(_ p: UnsafeMutablePointer<UInt>) { tc_compiler_use(p) }

final class ConservativeScanTests: WatchdogTestCase {

    /// Node: pointer words 0 and 1, data words 2 and 3 (32 bytes).
    private func makeHeap(_ c: Configuration = Configuration(gcPercent: 10, clobberFree: true, checkmark: true)) -> (Heap, ObjectType) {
        let heap = try! Heap(configuration: c)
        let node = try! heap.register(TypeLayout(name: "cons.Node", size: 32, pointerWords: [0, 1]))
        return (heap, node)
    }

    @inline(never)
    private func churn(_ m: Mutator, _ node: ObjectType, _ n: Int) {
        for i in 0..<n { m.storeWord(m.allocate(node), 2, i) }
    }

    // MARK: a thread whose stack cannot be found

    /// A thread whose stack bounds cannot be read (`pthread_getattr_np` fails; for the
    /// main thread glibc reads /proc/self/maps, so a process without /proc) cannot
    /// attach to a heap that scans native stacks: the scan would skip its stack every
    /// cycle, and an object held only in one of its locals would be freed under it.
    /// Before, attach went on and each cycle only counted the skipped scan. The failure
    /// comes from the fault seam `tc_set_fake_stack_bounds_error`, on a new thread (the
    /// bounds are cached per thread).
    func testAttachTrapsWhenTheThreadsStackCannotBeFound() throws {
        // A forked child of a multi-threaded process cannot start threads under TSan.
        try XCTSkipIf(lifeUnderSanitizer, "child processes under a sanitizer")
        expectFatal("attach: cannot find this thread's stack (pthread_getattr_np: Cannot allocate memory, error 12)") {
            let heap = try! Heap(configuration: Configuration())
            tc_set_fake_stack_bounds_error(ENOMEM)
            let t = lifeStartThread { _ = heap.attach() }
            lifeJoin(t)
        }
    }

    /// Without conservative scanning the same thread attaches and works: its frames'
    /// slots are its only roots, and its stack bounds are not needed.
    func testAttachWithoutStackBoundsWorksWithConservativeScanningOff() throws {
        try XCTSkipIf(lifeUnderSanitizer, "child processes under a sanitizer")
        checkInChild { c in
            var config = Configuration(clobberFree: true, checkmark: true)
            config.conservativeStackScan = false
            let (heap, node) = self.makeHeap(config)
            tc_set_fake_stack_bounds_error(ENOMEM)
            let ok = LifeFlag()
            let t = lifeStartThread {
                heap.withMutator { m in
                    m.withFrame(slots: 1) { f in
                        f[0] = m.allocate(node)
                        m.storeWord(f[0], 2, 42)
                        for i in 0..<50_000 { m.storeWord(m.allocate(node), 2, i) }
                        heap.collect()
                        if m.loadWord(f[0], 2) == 42 { ok.set(1) }
                    }
                }
            }
            lifeJoin(t)
            tc_set_fake_stack_bounds_error(0)
            c.expect(ok.value == 1, "the rooted object lost its contents")
        }
    }

    // MARK: the shapes of optimised code

    /// A list built in a loop, its head only in a local, across 200k allocations and
    /// explicit and automatic collections.
    func testListHeadInALocal() {
        let (heap, node) = makeHeap()
        heap.withMutator { m in
            var head = Ref.null
            for i in 0..<1_000 {
                let n = m.allocate(node)
                m.store(n, 0, head)
                m.storeWord(n, 2, i)
                head = n
            }
            for round in 0..<20 {
                churn(m, node, 10_000)
                if round % 5 == 0 { heap.collect() }
            }
            var p = head, i = 999, count = 0
            while !p.isNull {
                XCTAssertEqual(m.loadWord(p, 2), i)
                p = m.load(p, 0)
                i -= 1
                count += 1
            }
            XCTAssertEqual(count, 1_000)
            XCTAssertGreaterThan(heap.memStats().numGC, 5)
        }
    }

    /// Go's `&entry{payload: &[6]uint64{…}}`: two allocations in one expression, the
    /// first object only in a register while the second is allocated.
    func testTwoAllocationsInOneExpression() {
        let (heap, node) = makeHeap()
        let payloadType = try! heap.register(TypeLayout(name: "cons.Payload", size: 48, pointerWords: []))
        @inline(__always) func payload(_ m: Mutator, _ v: Int) -> Ref {
            let p = m.allocate(payloadType)
            for w in 0..<6 { m.storeWord(p, w, v &+ w) }
            return p
        }
        @inline(never) func entry(_ m: Mutator, payload: Ref, _ v: Int) -> Ref {
            let e = m.allocate(node)
            m.store(e, 0, payload)
            m.storeWord(e, 2, v)
            return e
        }
        heap.withMutator { m in
            var entries: [Ref] = []      // Swift heap memory: NOT a root; checked below only
            var last = Ref.null
            for i in 0..<20_000 {
                let e = entry(m, payload: payload(m, i), i)
                m.store(e, 1, last)      // chain them so one local keeps all alive
                last = e
                if i % 4_000 == 0 { heap.collect() }
                if i >= 19_990 { entries.append(e) }
            }
            heap.collect()
            var p = last, i = 19_999
            while !p.isNull {
                XCTAssertEqual(m.loadWord(p, 2), i)
                let pl = m.load(p, 0)
                for w in 0..<6 { XCTAssertEqual(m.loadWord(pl, w), i &+ w) }
                p = m.load(p, 1)
                i -= 1
            }
            XCTAssertEqual(i, -1)
            XCTAssertEqual(entries.count, 10)
        }
    }

    /// Values passed through generic code and closures, and a `Ref` kept across a call
    /// only in a callee-saved register or a spill slot.
    func testRefsThroughGenericCodeAndAcrossCalls() {
        let (heap, node) = makeHeap()
        @inline(never) func through<T>(_ x: T, _ f: (T) -> Void) -> T { f(x); return x }
        heap.withMutator { m in
            let a = m.allocate(node)
            m.storeWord(a, 2, 0xA)
            let b = through(a) { _ in churn(m, node, 50_000); heap.collect() }
            let pair = opaque((a, m.allocate(node)))
            m.storeWord(pair.1, 2, 0xB)
            churn(m, node, 50_000)
            heap.collect()
            let c = opaque(pair.1)
            churn(m, node, 50_000)
            XCTAssertEqual(m.loadWord(b, 2), 0xA)
            XCTAssertEqual(m.loadWord(pair.0, 2), 0xA)
            XCTAssertEqual(m.loadWord(c, 2), 0xB)
        }
    }

    /// Deep recursion, each level holding its object in a local across the deeper ones.
    func testRecursionHoldsOneObjectPerLevel() {
        let (heap, node) = makeHeap()
        @inline(never) func level(_ m: Mutator, _ d: Int) -> Int {
            if d == 0 { churn(m, node, 20_000); heap.collect(); return 0 }
            let r = m.allocate(node)
            m.storeWord(r, 2, d)
            m.storeWord(r, 3, ~d)
            let below = level(m, d - 1)
            return below + (m.loadWord(r, 2) == d && m.loadWord(r, 3) == ~d ? 1 : 0)
        }
        heap.withMutator { m in
            XCTAssertEqual(level(m, 2_000), 2_000)
        }
    }

    /// Every kind of object held only in locals: a large object (its own span), a tiny
    /// pointer-free block, an array, a pointer-free byte block; the array's element
    /// kept through an interior pointer only.
    func testEveryObjectKindInLocals() {
        let (heap, node) = makeHeap()
        heap.withMutator { m in
            let large = m.allocateBytes(1 << 20)
            large.rawPointer.storeBytes(of: 0x1A, toByteOffset: (1 << 20) - 8, as: UInt.self)
            let tiny = m.allocateBytes(8)
            tiny.rawPointer.storeBytes(of: 0x71, as: UInt.self)
            let array = m.allocateArray(node, count: 100)
            m.storeWord(array, 4 * 99 + 2, 0xA7)
            var element = array.address &+ UInt(32 * 50)       // an element in the middle
            touchSlot(&element)
            let bytes = m.allocateBytes(200)
            bytes.rawPointer.storeBytes(of: 0xB7, toByteOffset: 192, as: UInt.self)
            for _ in 0..<4 { churn(m, node, 50_000); heap.collect() }
            touchSlot(&element)
            XCTAssertEqual(large.rawPointer.load(fromByteOffset: (1 << 20) - 8, as: UInt.self), 0x1A)
            XCTAssertEqual(tiny.rawPointer.load(as: UInt.self), 0x71)
            XCTAssertEqual(m.loadWord(array, 4 * 99 + 2), 0xA7)
            XCTAssertEqual(bytes.rawPointer.load(fromByteOffset: 192, as: UInt.self), 0xB7)
            XCTAssertEqual(Ref(address: element &- UInt(32 * 50)), array)
        }
    }

    // MARK: interior pointers and false retention

    /// A word pointing into the middle of an object keeps the object.
    func testInteriorPointerKeepsItsObject() {
        let (heap, node) = makeHeap()
        heap.withMutator { m in
            var interior: UInt = 0
            do {
                let r = m.allocate(node)
                m.storeWord(r, 3, 0x5EED)
                interior = r.address &+ 24     // word 3, inside the object
            }
            touchSlot(&interior)
            churn(m, node, 100_000)
            heap.collect()
            heap.collect()
            touchSlot(&interior)
            XCTAssertEqual(Ref(address: interior &- 24).rawPointer.load(fromByteOffset: 24, as: UInt.self), 0x5EED)
        }
    }

    /// A word that only looks like an address keeps at most the object it points into,
    /// corrupts nothing, and keeps nothing once it is gone; a word pointing at a free slot
    /// does not bring the slot back.
    func testFalseRetentionKeepsAtMostTheObjectAndCorruptsNothing() {
        let (heap, node) = makeHeap(Configuration(gcPercent: nil, clobberFree: true, checkmark: true, markWorkers: 0))
        heap.withMutator { m in
            var fake: UInt = 0
            var free: UInt = 0
            let g = heap.makeGlobal()
            m.store(g, m.allocate(node))
            do {
                let dead = m.allocate(node)
                m.storeWord(dead, 2, 77)
                fake = dead.address &+ 8       // "an integer" that happens to point into it
                free = m.allocate(node).address
            }
            touchSlot(&fake); touchSlot(&free)
            // Clear the registers that may still hold the last two addresses.
            churn(m, node, 1)
            free = opaque(free)
            heap.collect()
            touchSlot(&fake)
            let s = heap.memStats()
            XCTAssertEqual(s.heapObjects, s.mallocs - s.frees)
            XCTAssertEqual(Ref(address: fake &- 8).rawPointer.load(fromByteOffset: 16, as: UInt.self), 77, "the falsely retained object is intact")
            // `free` may or may not have been retained this time (it is in a local); free it
            // for sure, then point at its free slot and collect again: no object returns.
            let before = heap.memStats().heapObjects
            fake = 0
            touchSlot(&fake)
            heap.collect()
            heap.collect()
            let after = heap.memStats()
            XCTAssertLessThan(after.heapObjects, before + 1)
            XCTAssertEqual(after.heapObjects, after.mallocs - after.frees)
            heap.checkInvariants()
            m.store(g, .null)
        }
    }

    /// With conservative scanning off, a `Ref` only in a local is not a root (the switch
    /// works, and precise programs get exact freeing).
    func testPreciseOnlyModeIgnoresNativeStacks() {
        var c = Configuration(gcPercent: nil, clobberFree: true, markWorkers: 0)
        c.conservativeStackScan = false
        let (heap, node) = makeHeap(c)
        XCTAssertEqual(try! Configuration.fromEnvironment(["GODEBUG": "tricolorconservative=0"]).conservativeStackScan, false)
        XCTAssertEqual(try! Configuration.fromEnvironment([:]).conservativeStackScan, true)
        heap.withMutator { m in
            var addr = m.allocate(node).address
            touchSlot(&addr)
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0, "precise mode freed the object held only in a local")
            XCTAssertEqual(heap.gcStats().lastNativeStackScanBytes, 0)
        }
    }

    /// The statistics: bytes scanned per cycle and objects found.
    func testScanIsCountedInStatistics() {
        let (heap, node) = makeHeap(Configuration(gcPercent: nil, markWorkers: 0))
        heap.withMutator { m in
            var keep = m.allocate(node).address
            touchSlot(&keep)
            heap.collect()
            touchSlot(&keep)
            let g = heap.gcStats()
            XCTAssertGreaterThan(g.lastNativeStackScanBytes, 0)
            XCTAssertGreaterThanOrEqual(g.lastConservativeRoots, 1)
            XCTAssertEqual(heap.memStats().heapObjects, 1)
        }
    }

    // MARK: threads

    /// A thread in a blocking region keeps the objects its callers hold in locals while
    /// other threads collect; two threads at once hold and verify their own.
    func testBlockingThreadsAndConcurrentMutatorsKeepTheirLocals() {
        let (heap, node) = makeHeap(Configuration(gcPercent: 20, clobberFree: true))
        let entered = LifeFlag(), release = LifeFlag(), failures = LifeFlag()
        heap.withMutator { m in
            m.blocking {
                runThreads(3) { t in
                    heap.withMutator { tm in
                        if t == 0 {
                            let r = tm.allocate(node)
                            tm.storeWord(r, 2, 4242)
                            tm.blocking { entered.set(1); release.wait() }
                            if tm.loadWord(r, 2) != 4242 { failures.increment() }
                        } else {
                            var head = Ref.null
                            for i in 0..<30_000 {
                                let n = tm.allocate(node)
                                tm.store(n, 0, head)
                                tm.storeWord(n, 2, i)
                                head = n
                                if i % 3 == 0 { _ = tm.allocate(node) }   // garbage
                                if i == 15_000 { entered.wait(); heap.collect() }
                            }
                            var i = 29_999
                            while !head.isNull {
                                if tm.loadWord(head, 2) != i { failures.increment(); break }
                                head = tm.load(head, 0)
                                i -= 1
                            }
                            release.set(1)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(failures.value, 0)
    }
}
