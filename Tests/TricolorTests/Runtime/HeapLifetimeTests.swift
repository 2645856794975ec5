import CTricolor
import Glibc
import Synchronization
import XCTest
@_spi(Testing) @testable import Tricolor

// Lifetimes of threads, mutators and heaps: a thread that exits while attached, a heap
// dropped after automatic cycles (its threads and memory), a heap dropped while a thread
// is attached, GOMAXPROCS far above the CPU count, a throwing `withMutator` body, and
// attach/detach racing with collect().
//
// Tests whose failure mode is a hang or a crash run in a child process (checkInChild),
// whose alarm turns a hang into a failure of that test alone. No test times anything:
// every wait is on a hand-shake, and the alarms are hang guards only.

private struct Boom: Error {}

final class HeapLifetimeTests: WatchdogTestCase {

    /// The children's alarms (up to 120 s) are the hang guards here; the process
    /// watchdog only has to outlast them.
    override func setUp() {
        super.setUp()
        armWatchdog(300)
    }

    private static func nodeType(_ heap: Heap) -> ObjectType {
        try! heap.register(TypeLayout(name: "life.Node", size: 24, pointerWords: [0, 1]))
    }

    // MARK: a thread that exits while attached

    /// The repro: attach on a thread, allocate, let the thread end, collect() on another
    /// thread. Before the fix collect() waited forever for the gone mutator.
    func testThreadExitWhileAttachedDetachesItsMutator() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration())
            let node = Self.nodeType(heap)
            let t = lifeStartThread(name: "life-exit") {
                let m = heap.attach()
                let f = m.pushFrame(slots: 4)   // left on the stack: must stop being roots
                for i in 0..<20_000 { f[i % 4] = m.allocate(node) }
                _ = m.allocateBytes(100_000)   // a large object too
                // Returns without detaching.
            }
            lifeJoin(t)
            heap.collect()
            c.expectEqual(heap.attachedMutatorCount, 0, "the exited thread's mutator is still attached")
            c.expectEqual(heap.memStats().heapObjects, 0, "the exited thread's frames are still roots")
            heap.withMutator { m in _ = m.allocate(node) }   // this thread attaches as usual
            heap.collect()
            heap.checkInvariants()
        }
    }

    /// A thread that exits attached in the middle of a mark phase, its stack not yet
    /// scanned: the ragged barrier of mark termination must not wait for it.
    func testThreadExitDuringMarkDoesNotHoldUpMarkTermination() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            let node = Self.nodeType(heap)
            let ready = LifeFlag(), go = LifeFlag()
            let t = lifeStartThread {
                let m = heap.attach()
                let f = m.pushFrame(slots: 1)
                f[0] = m.allocate(node)
                ready.set(1)
                m.blocking { go.wait() }            // pause #1 happens meanwhile
                m.store(f[0], 0, f[0])              // a partial safepoint: no stack scan
                // Exits attached, during marking.
            }
            ready.wait()
            heap.debugStartCycle()
            go.set(1)
            lifeJoin(t)
            c.expectEqual(heap.debugPhase, "mark", "the cycle should still be marking")
            heap.debugFinishCycle()
            c.expectEqual(heap.debugPhase, "off")
            c.expectEqual(heap.attachedMutatorCount, 0)
            heap.collect()
            c.expectEqual(heap.memStats().heapObjects, 0)
            heap.checkInvariants()
        }
    }

    /// A thread that exits attached while another thread is stopping the world (it
    /// never reaches a safepoint before it exits): the stop must complete.
    func testThreadExitWhileTheWorldIsBeingStopped() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            let node = Self.nodeType(heap)
            let ready = LifeFlag()
            let t = lifeStartThread {
                let m = heap.attach()
                _ = m.allocate(node)
                ready.set(1)
                // Running, no safepoint, until a stop is requested; then exit attached.
                while !heap.stopPending { tc_pause() }
            }
            ready.wait()
            heap.collect()   // stops the world while the thread runs
            lifeJoin(t)
            heap.collect()
            c.expectEqual(heap.attachedMutatorCount, 0)
            c.expectEqual(heap.memStats().heapObjects, 0)
            heap.checkInvariants()
        }
    }

    /// A thread that ends (pthread_exit) inside a blocking region while the world is
    /// stopped: its detach waits for the world to restart, then detaches.
    func testThreadExitInsideBlockingRegionWhileWorldStopped() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            let node = Self.nodeType(heap)
            let ready = LifeFlag(), go = LifeFlag(), exiting = LifeFlag()
            let t = lifeStartThread {
                let m = heap.attach()
                let f = m.pushFrame(slots: 1)
                f[0] = m.allocate(node)
                ready.set(1)
                m.blocking {
                    go.wait()
                    exiting.set(1)
                    pthread_exit(nil)
                }
            }
            ready.wait()
            c.expect(heap.stopTheWorld(nil), "stopTheWorld")
            go.set(1)
            exiting.wait()
            for _ in 0..<100 { tc_yield() }   // let it reach its exit (not required for correctness)
            heap.startTheWorld(nil)
            lifeJoin(t)
            heap.collect()
            c.expectEqual(heap.attachedMutatorCount, 0)
            c.expectEqual(heap.memStats().heapObjects, 0)
            heap.checkInvariants()
        }
    }

    /// Checked mode names the thread that forgot to detach (and still detaches it).
    func testCheckedModeWarnsAboutAThreadExitingAttached() {
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration(checked: true))
            let node = Self.nodeType(heap)
            let tid = LifeFlag()
            let t = lifeStartThread(name: "life-forgetful") {
                let m = heap.attach()
                _ = m.allocate(node)
                tid.set(UInt(tc_thread_id()))
            }
            lifeJoin(t)
            heap.collect()
            let text = "tid=\(tid.value) attached=\(heap.attachedMutatorCount)\n"
            text.withCString { _ = write(2, $0, strlen($0)) }
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        let tid = r.stderr.split(separator: "\n").last { $0.hasPrefix("tid=") }.map { String($0.dropFirst(4).prefix { $0 != " " }) } ?? "?"
        XCTAssertTrue(r.stderr.contains("attached=0"), r.stderr)
        XCTAssertTrue(r.stderr.contains("thread \(tid) \"life-forgetful\" exited while attached"), r.stderr)
    }

    /// Without checked mode the detach is silent.
    func testUncheckedThreadExitIsSilent() {
        let r = runInChild {
            let heap = try! Heap(configuration: Configuration())
            let t = lifeStartThread { _ = heap.attach() }
            lifeJoin(t)
            heap.collect()
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
    }

    /// The one way a listed mutator can lose its thread: a fork while another thread is
    /// attached (the child has only the forking thread, and no thread exit ran). A stop
    /// in the child then fails with a message instead of waiting forever.
    func testStopInAForkedChildFailsInsteadOfWaitingForAThreadThatIsGone() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
            let ready = LifeFlag(), stop = LifeFlag()
            let t = lifeStartThread {
                let m = heap.attach()
                ready.set(1)
                while stop.value == 0 { m.safepoint() }
                heap.detach(m)
            }
            ready.wait()
            let r = runInChild { heap.collect() }
            stop.set(1)
            lifeJoin(t)
            c.expectEqual(r.exitStatus, 2, "the forked child should fail: \(r.stderr)")
            c.expect(r.stderr.contains("no longer exists"), "message: \(r.stderr)")
            heap.collect()   // here, where the thread exists, the stop works
        }
    }

    // MARK: throwing bodies

    func testWithMutatorBodyThrowingDetaches() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
        let node = Self.nodeType(heap)
        XCTAssertThrowsError(try heap.withMutator { m in
            try m.withFrame(slots: 1) { f in
                f[0] = m.allocate(node)
                try m.blocking { throw Boom() }
            }
        })
        XCTAssertNil(tc_get_current_mutator())
        XCTAssertEqual(heap.attachedMutatorCount, 0)
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 0)
        XCTAssertThrowsError(try heap.withMutator { _ in throw Boom() })
        heap.withMutator { m in _ = m.allocate(node) }
        XCTAssertEqual(heap.attachedMutatorCount, 0)
    }

    // MARK: a heap dropped while a thread is attached

    /// An attached mutator keeps its heap alive: dropping the last reference while a
    /// thread is attached frees nothing until that thread detaches.
    func testHeapDroppedWhileAttachedLivesUntilDetach() {
        checkInChild { c in
            let threadsBefore = procStatus("Threads")
            weak var weakHeap: Heap?
            var node: ObjectType
            let m: Mutator
            do {
                let heap = try! Heap(configuration: Configuration())
                node = Self.nodeType(heap)
                m = heap.attach()
                weakHeap = heap
            }
            c.expect(weakHeap != nil, "the heap was freed while a thread was attached to it")
            m.withFrame(slots: 1) { f in
                for _ in 0..<10_000 { f[0] = m.allocate(node) }
            }
            m.heap.collect()
            m.heap.detach(m)
            awaitPinnedTeardown(threads: threadsBefore)
            c.expect(weakHeap == nil, "the last detach should free the dropped heap")
            c.expect(tc_get_current_mutator() == nil, "the thread-local still names a mutator")
            // The thread attaches to another heap as if nothing happened.
            let other = try! Heap(configuration: Configuration())
            let otherNode = Self.nodeType(other)
            other.withMutator { m in _ = m.allocate(otherNode) }
        }
    }

    /// A heap whose last reference goes away while a collector thread pins it (every
    /// build's default, `Heap.collectorUnit`) is torn down by that thread
    /// when its unit of work ends: the program's drop frees nothing yet, the unit goes
    /// on with the heap intact, and then the deinit runs on the collector thread, joins
    /// the others, and that thread ends too. Before the pins, an unoptimized build
    /// dropping heaps at random points of a cycle died within a second with "a heap's
    /// last reference was dropped on its own collector thread" (the sweep, mark
    /// termination).
    /// Returns what went wrong (empty: nothing); with `threadsBefore`, also checks that
    /// the heap's threads ended.
    private static func dropWhilePinned(threadsBefore: Int?) -> [String] {
        var failures: [String] = []
        func expect(_ ok: Bool, _ what: String) { if !ok { failures.append(what) } }
        let savedPin = Heap.collectorThreadsPinHeap
        Heap.collectorThreadsPinHeap = true
        defer { Heap.collectorThreadsPinHeap = savedPin }
        let entered = LifeFlag(), proceed = LifeFlag(), target = LifeFlag()
        Heap.collectorUnitHook.set { heap in
            // This heap's first unit of work (the mark worker's, for the cycle below)
            // waits, holding its pin, until the program has dropped it.
            if UInt(bitPattern: heap) == target.value { if tc_fetch_add(entered.word, 1) == 0 { proceed.wait() } }
        }
        defer { Heap.collectorUnitHook.set(nil) }
        let deinitsBefore = Heap.deinitsOnCollectorThreads.load(ordering: .relaxed)
        let id = 7_000_001 + Int(tc_fetch_add(dropWhilePinnedRuns.word, 1))
        weak var weakHeap: Heap?
        do {
            let heap = try! Heap(configuration: Configuration(markWorkers: 1).precise)
            // Before the heap's collector threads start (its first cycle).
            target.set(UInt(bitPattern: Unmanaged.passUnretained(heap).toOpaque()))
            let node = Self.nodeType(heap)
            weakHeap = heap
            let g = heap.makeGlobal()
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    f[1] = m.makeBox(Tracked(id))
                    for _ in 0..<20_000 { f[0] = m.allocate(node); m.store(f[0], 0, f[1]); f[1] = f[0] }
                    m.store(g, f[1])
                }
                heap.gcStart(.forced, caller: heap.currentMutator())
            }
            entered.wait()
        }
        // The program's last reference is gone; the pin keeps the heap.
        expect(weakHeap != nil, "the heap was freed while a collector thread pinned it")
        expect(Tracked.count(id) == 0, "the box was released while the heap was pinned")
        proceed.set(1)
        // Events, not time: the deinit releases the box; the threads end.
        while Tracked.count(id) == 0 { tc_yield() }
        expect(weakHeap == nil, "the heap outlived its deinit")
        expect(Tracked.count(id) == 1, "the box's object was not released exactly once")
        // This heap's teardown released the box: on one of its collector threads. (The
        // process-wide count of such deinits also counts other heaps dropped during a
        // unit of work, which other tests may leave behind in this process.)
        let releasedOn = Tracked.threadName(id)
        expect(releasedOn.hasPrefix("tricolor-"), "the heap's deinit ran on thread \"\(releasedOn)\", not a collector thread")
        let onCollector = Heap.deinitsOnCollectorThreads.load(ordering: .relaxed) - deinitsBefore
        expect(onCollector >= 1, "no deinit ran on a collector thread")
        if let threadsBefore {
            while procStatus("Threads") > threadsBefore { tc_yield() }
            expect(procStatus("Threads") == threadsBefore, "threads left behind")
        }
        // Everything else still works: a new heap, collected, in the same process.
        let other = try! Heap(configuration: Configuration(markWorkers: 1))
        let otherNode = Self.nodeType(other)
        other.withMutator { m in
            m.withFrame(slots: 1) { f in for _ in 0..<10_000 { f[0] = m.allocate(otherNode) } }
        }
        other.collect()
        return failures
    }
    private static let dropWhilePinnedRuns = LifeFlag()

    /// `dropWhilePinned` in a child process, where the heap's threads can be counted.
    func testHeapDroppedWhileACollectorThreadPinsItIsFreedByThatThread() {
        checkInChild(timeout: 120) { c in
            let threadsBefore = procStatus("Threads")
            for f in Self.dropWhilePinned(threadsBefore: threadsBefore) { c.expect(false, f) }
        }
    }

    /// `dropWhilePinned` in this process, so that ThreadSanitizer (which cannot start
    /// threads in a forked child) watches the teardown on a collector thread (.ci/run).
    /// Other tests' heaps may own threads here, so threads are not counted.
    func testHeapDroppedWhilePinnedInProcess() {
        for f in Self.dropWhilePinned(threadsBefore: nil) { XCTFail(f) }
    }

    /// A free hook whose closure holds the heap (here directly; in a program, an object
    /// that owns the heap and counts frees), removed and the heap dropped while the
    /// background sweeper is inside that hook: the sweeper's copy of the closure is then
    /// the heap's last reference, and its release, at the end of the span's sweep, frees
    /// the heap on the sweeper. The heap must be torn down there cleanly, the box
    /// released once and the threads ended. Found by review: with no pin in an
    /// optimized build (which did not pin then) the release ran the deinit deep inside
    /// `sweepSpan`, which stopped the program ("a heap's last reference was dropped on
    /// its own collector thread"). Default settings: what the build does is what is
    /// tested.
    func testFreeHookHoldingTheHeapReleasedOnTheSweeperTearsDownCleanly() {
        checkInChild(timeout: 120) { c in
            let threadsBefore = procStatus("Threads")
            let entered = LifeFlag(), proceed = LifeFlag()
            let id = 7_100_001
            weak var weakHeap: Heap?
            do {
                let heap = try! Heap(configuration: Configuration(markWorkers: 1).precise)
                weakHeap = heap
                let node = Self.nodeType(heap)
                heap.setFreeHook { [heap] _ in
                    withExtendedLifetime(heap) {}
                    var name = [CChar](repeating: 0, count: 32)
                    _ = tc_thread_name(&name, name.count)
                    // The sweeper's first call waits, inside the sweep of a span, until
                    // the program has removed the hook and dropped the heap.
                    if String(cString: name) == "tricolor-sweep" && tc_fetch_add(entered.word, 1) == 0 {
                        proceed.wait()
                    }
                }
                let g = heap.makeGlobal()
                heap.withMutator { m in
                    m.withFrame(slots: 1) { f in
                        f[0] = m.makeBox(Tracked(id))
                        m.store(g, f[0])
                        // Garbage, so that the sweep has objects to free.
                        for _ in 0..<50_000 { f[0] = m.allocate(node) }
                    }
                    heap.gcStart(.forced, caller: heap.currentMutator())
                }
                entered.wait()
                heap.setFreeHook(nil)
            }
            // The program holds no reference now; the sweeper's copy of the hook does.
            c.expect(weakHeap != nil, "the heap was freed while the sweeper's hook still held it")
            c.expect(Tracked.count(id) == 0, "the box was released while the heap lived")
            proceed.set(1)
            // Events, not time: the teardown releases the box; the threads end.
            while Tracked.count(id) == 0 { tc_yield() }
            c.expect(weakHeap == nil, "the heap outlived its deinit")
            c.expect(Tracked.count(id) == 1, "the box's object was not released exactly once")
            while procStatus("Threads") > threadsBefore { tc_yield() }
            c.expect(procStatus("Threads") == threadsBefore, "threads left behind")
        }
    }

    /// Heaps dropped at random points of a cycle they started (marking, mark
    /// termination on a worker, sweeping, scavenging, growing in the background): each
    /// teardown releases every box once and leaves no thread behind, whichever thread
    /// runs it. An unoptimized build without pins died here within a second: a sweep or
    /// mark termination on a collector thread released the heap last, deep inside
    /// collector code. Every build pins now (`Heap.collectorUnit`). The drop point varies with a random
    /// amount of computation between the cycle's start and the drop, not with time.
    func testHeapsDroppedAtRandomPointsOfACycleTearDownCleanly() throws {
        try XCTSkipIf(lifeUnderSanitizer, "child processes under a sanitizer")
        checkInChild(timeout: 240) { c in
            var rng = SystemRandomNumberGenerator()
            let threadsBefore = procStatus("Threads")
            let rounds = 400
            for round in 0..<rounds {
                var config = Configuration(markWorkers: 2)
                config.backgroundHeapGrowth = round % 3 == 0
                let heap = try! Heap(configuration: config.precise)
                let node = Self.nodeType(heap)
                let g = heap.makeGlobal()
                heap.withMutator { m in
                    m.withFrame(slots: 2) { f in
                        f[1] = m.makeBox(Tracked(8_000_000 + round))
                        for i in 0..<Int.random(in: 2_000...20_000, using: &rng) {
                            f[0] = m.allocate(node)
                            if i % 2 == 0 { m.store(f[0], 0, f[1]); f[1] = f[0] }
                        }
                        m.store(g, f[1])
                    }
                    heap.gcStart(.forced, caller: heap.currentMutator())
                }
                // Let the collector get a random distance into the cycle: computation,
                // not yields (beside busy threads each yield gives a CPU away for a
                // whole timeslice, and 400 rounds of them outran the child's timeout).
                var spin = 0
                for i in 0..<Int.random(in: 0...200_000, using: &rng) { spin &+= i &* 31 }
                if spin == 1 { print("") }   // keeps the loop
            }
            // Every teardown is over when the collector threads have ended.
            while procStatus("Threads") > threadsBefore { tc_yield() }
            var wrong: [Int] = []
            for round in 0..<rounds where Tracked.count(8_000_000 + round) != 1 { wrong.append(round) }
            c.expect(wrong.isEmpty, "boxes not released exactly once in rounds \(wrong.prefix(10))")
        }
    }

    /// The same, where the attached thread exits instead of detaching: its exit frees
    /// the heap, threads included.
    func testHeapDroppedWhileAttachedIsFreedByTheThreadsExit() {
        checkInChild { c in
            let threadsBefore = procStatus("Threads")
            weak var weakHeap: Heap?
            let attached = LifeFlag(), go = LifeFlag()
            var t = pthread_t()
            do {
                let heap = try! Heap(configuration: Configuration(gcPercent: 10))
                let node = Self.nodeType(heap)
                weakHeap = heap
                t = lifeStartThread {
                    let m = heap.attach()
                    for _ in 0..<50_000 { _ = m.allocate(node) }   // automatic cycles: background threads
                    attached.set(1)
                    m.blocking { go.wait() }
                }
                attached.wait()
            }
            c.expect(weakHeap != nil, "the heap was freed while a thread was attached to it")
            go.set(1)
            lifeJoin(t)
            awaitPinnedTeardown(threads: threadsBefore)
            c.expect(weakHeap == nil, "the exiting thread's detach should free the dropped heap")
            c.expectEqual(procStatus("Threads"), threadsBefore, "threads left behind")
        }
    }

    /// Attaching to a second heap while still attached to a dropped one is misuse, and
    /// reported as such (not a read of freed memory).
    func testAttachWhileAttachedToADroppedHeapTraps() {
        expectFatal("thread already attached as mutator 1 of another heap") {
            do {
                let heap = try! Heap(configuration: Configuration())
                _ = heap.attach()
            }
            let other = try! Heap(configuration: Configuration())
            _ = other.attach()
        }
    }

    /// The ARC-traffic tests measure what the optimizer leaves: unoptimized code retains
    /// and releases the heap around nearly every call (27,309 retains where the
    /// optimized hot paths have none), so they run on release builds only
    /// (`swift test -c release`, the README's command).
    static func skipUnlessOptimized() throws {
        #if DEBUG
        throw XCTSkip("counts the optimized build's retains of the heap; run with swift test -c release")
        #endif
    }

    /// The reference an attached mutator holds costs one retain at attach and one
    /// release at detach, and nothing on the paths between: `Mutator` stays trivially
    /// copyable, and allocation, loads, stores, frames and safepoints neither retain
    /// nor release the heap. (Heap-profile sampling is off: a sampled allocation, one
    /// per 512 KiB by default, retains the heap once in `allocateSlow`.)
    func testAttachedMutatorAddsNoARCTrafficToHotPaths() throws {
        try Self.skipUnlessOptimized()
        XCTAssertTrue(_isPOD(Mutator.self), "Mutator must stay trivially copyable")
        XCTAssertEqual(MemoryLayout<Mutator>.size, 2 * MemoryLayout<UInt>.size)
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0, memProfileRate: 0))
            let node = Self.nodeType(heap)
            var m: Mutator? = nil
            let attach = RetainCounter.count(heap) { m = heap.attach() }
            guard let attach, let m else { c.expect(false, "no retain hooks in this Swift runtime"); return }
            c.expectEqual(attach.retains - attach.releases, 1, "attach: the mutator's reference")
            func work() {
                m.withFrame(slots: 2) { f in
                    for i in 0..<100_000 {
                        let n = m.allocate(node)       // fast path and, every span, refill
                        m.store(n, 0, f[0])
                        m.storeWord(n, 2, i)
                        _ = m.load(n, 0)
                        _ = m.loadWord(n, 2)
                        f[i & 1] = n
                        m.safepoint()
                        _ = m.allocateBytes(48)
                    }
                }
            }
            // Once with the heap growing (a rare slow path); then after a collection,
            // once to answer its leftover safepoint request, and once measured, with
            // refills sweeping and reusing spans and the heap growing.
            let growing = RetainCounter.count(heap) { work() }!
            heap.collect()
            work()
            let hot = RetainCounter.count(heap) { work() }!
            c.expectEqual(hot.retains, 0, "retains of the heap on hot paths (\(growing.retains) while the heap grew)")
            c.expectEqual(hot.releases, 0, "releases of the heap on hot paths (\(growing.releases) while the heap grew)")
            let detach = RetainCounter.count(heap) { heap.detach(m) }!
            c.expectEqual(detach.releases - detach.retains, 1, "detach: the mutator's reference")
        }
    }

    /// The same while a cycle marks: every allocation slow path then answers the
    /// collector's duties (a safepoint), and every pointer store goes through the write
    /// barrier, whose buffer is shaded when full. Before the fix each of those calls read
    /// the mutator's unowned(unsafe) heap field, which retains and releases the heap:
    /// 1.7% of binary-trees' samples went to that pair.
    func testMarkPhaseSlowPathsAddNoARCTraffic() throws {
        try Self.skipUnlessOptimized()
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0, memProfileRate: 0))
            let node = Self.nodeType(heap)
            let m = heap.attach()
            func work(_ count: Int) {
                m.withFrame(slots: 2) { f in
                    for i in 0..<count {
                        let n = m.allocate(node)       // slow path every 64 objects: a safepoint
                        m.store(n, 0, f[0])            // the barrier: two entries per store
                        m.store(n, 1, f[1])
                        f[i & 1] = n
                        m.safepoint()
                    }
                }
            }
            work(100_000)   // the heap grows once, outside the count
            heap.collect()
            heap.debugStartCycle()
            c.expectEqual(heap.debugPhase, "mark")
            // The first safepoint of the cycle scans this mutator's stack (once per cycle).
            work(100)
            let refillsBefore = heap.allocPathStats().spansCached
            let marking = RetainCounter.count(heap) { work(20_000) }
            guard let marking else { c.expect(false, "no retain hooks in this Swift runtime"); return }
            c.expectEqual(heap.debugPhase, "mark", "the cycle must still be marking: the count covers the mark phase only")
            c.expect(heap.allocPathStats().spansCached > refillsBefore, "the measured work refilled spans")
            c.expectEqual(marking.retains, 0, "retains of the heap on the mark phase's slow paths")
            c.expectEqual(marking.releases, 0, "releases of the heap on the mark phase's slow paths")
            heap.debugFinishCycle()
            heap.detach(m)
        }
    }

    // MARK: dropped heaps free everything

    /// 2,000 heaps, each running automatic (pacer-started) cycles with background
    /// workers, created and dropped in a row: threads, RSS and address space return to
    /// where they started.
    func testDroppedHeapsLeaveNoThreadsMemoryOrAddressSpace() {
        let r = runInChild(timeout: 120) {
            var failures: [String] = []
            var autoCycles = 0, finished = 0
            func useAndDrop(reserve: Int) {
                let heap = try! Heap(configuration: Configuration(gcPercent: 10, reservedAddressSpace: reserve))
                let node = Self.nodeType(heap)
                heap.withMutator { m in
                    m.withFrame(slots: 1) { f in
                        // 32-byte nodes, 1 in 64 kept, until a pacer-started cycle has
                        // finished (heapMinimum is 4 MiB × 10%: ~0.4 MiB), at most 32 MiB.
                        for _ in 0..<256 {
                            for i in 0..<4096 {
                                let n = m.allocate(node)
                                if i % 64 == 0 { m.store(n, 0, f[0]); f[0] = n }
                            }
                            if heap.memStats().numGC > 0 { break }
                        }
                    }
                }
                // A pacer-started cycle (no forced one ran) and its background threads.
                // Normally it has finished; if the OS kept the mark worker off the CPU it
                // may still be marking: dropping the heap must handle both.
                let s = heap.memStats()
                if heap.backgroundThreadCount > 0 && (s.numGC > 0 || heap.debugPhase != "off") && s.numForcedGC == 0 {
                    autoCycles += 1
                    if s.numGC > 0 { finished += 1 }
                } else if failures.count < 5 {
                    failures.append("no automatic cycle: numGC \(s.numGC), forced \(s.numForcedGC), threads \(heap.backgroundThreadCount), phase \(heap.debugPhase)")
                }
            }
            // One malloc arena: glibc otherwise creates a new one (a 64 MiB mapping) when a
            // new thread finds the others busy, which would show as address space here.
            _ = lifeMallopt(lifeMArenaMax, 1)
            // Warm up: glibc's cache of thread stacks, Swift's metadata caches.
            let threadsStart = procStatus("Threads")
            for _ in 0..<50 { useAndDrop(reserve: 64 << 20) }
            // The last warm-up heap may still be tearing down (pins): not in the baseline.
            awaitPinnedTeardown(threads: threadsStart)
            autoCycles = 0
            finished = 0
            let threads0 = procStatus("Threads"), rss0 = procResidentBytes(), vm0 = procStatus("VmSize")
            for i in 0..<2000 { useAndDrop(reserve: i % 100 == 0 ? 256 << 30 : 64 << 20) }
            awaitPinnedTeardown(threads: threads0)
            let threads1 = procStatus("Threads"), rss1 = procResidentBytes(), vm1 = procStatus("VmSize")
            let report = "threads \(threads0) -> \(threads1), RSS \(rss0 >> 10) -> \(rss1 >> 10) KiB, VmSize \(vm0) -> \(vm1) KiB, heaps with automatic cycles \(autoCycles) (finished in \(finished))\n"
            report.withCString { _ = write(2, $0, strlen($0)) }
            if autoCycles < 2000 { failures.append("only \(autoCycles) of 2000 heaps ran an automatic cycle with background workers") }
            if threads1 != threads0 { failures.append("threads \(threads0) -> \(threads1)") }
            // RSS and address space: malloc may keep a little more in its free lists and
            // at the top of its heap (a leaked heap would cost at least its 64 MiB
            // reservation, two 8 MiB thread stacks and its touched arena pages).
            // Not under a sanitizer: ASan keeps freed memory in quarantine.
            if !lifeUnderSanitizer {
                if rss1 - rss0 > 4 << 20 { failures.append("RSS grew by \((rss1 - rss0) >> 10) KiB") }
                if vm1 - vm0 > 4 << 10 { failures.append("VmSize grew by \(vm1 - vm0) KiB") }
            }
            if !failures.isEmpty {
                let text = failures.map { "expectation failed: " + $0 }.joined(separator: "\n") + "\n"
                text.withCString { _ = write(2, $0, strlen($0)) }
                _exit(1)
            }
        }
        XCTAssertEqual(r.exitStatus, 0, r.stderr)
        print("testDroppedHeapsLeaveNoThreadsMemoryOrAddressSpace: \(r.stderr)", terminator: "")
    }

    // MARK: GOMAXPROCS above the CPU count

    /// A huge GOMAXPROCS starts at most one mark worker per usable CPU, and cycles
    /// complete.
    func testHugeGomaxprocsStartsAtMostOneMarkWorkerPerCPU() {
        checkInChild { c in
            let cpus = affinityCPUCount()
            let threads0 = procStatus("Threads")
            for procs in [100_000, Int(Int32.max)] {   // Int32.max: the largest GOMAXPROCS Go parses
                // The previous heap's threads, should a pinned unit be tearing it down.
                awaitPinnedTeardown(threads: threads0)
                let threadsBefore = procTaskCount()
                let heap = try! Heap(configuration: Configuration(gcPercent: 10, gomaxprocs: procs))
                let node = Self.nodeType(heap)
                heap.withMutator { m in
                    for _ in 0..<50_000 { _ = m.allocate(node) }   // automatic cycles
                    heap.collect()
                }
                // The heap's threads: its mark workers, the background sweeper, the
                // scavenger and the grower if it has one (off by default).
                let others = 2 + (heap.backgroundHeapGrowth ? 1 : 0)
                let workers = procTaskCount() - threadsBefore - others
                c.expect(workers >= 1 && workers <= cpus, "gomaxprocs \(procs): \(workers) mark worker threads on \(cpus) CPUs")
                c.expectEqual(workers, heap.backgroundThreadCount - others, "gomaxprocs \(procs): threads in /proc vs the heap's list")
                c.expect(heap.memStats().numGC > heap.memStats().numForcedGC, "gomaxprocs \(procs): no automatic cycle")
                c.expectEqual(heap.gomaxprocs, min(procs, Configuration.maxGomaxprocs), "the pacer counts GOMAXPROCS as configured (clamped as the configuration documents)")
            }
        }
    }

    // MARK: attach/detach racing with collect()

    /// 16 threads attach, allocate and detach many times (some leave by exiting
    /// attached) while another thread runs collect() in a loop. Bounded in iterations;
    /// not a benchmark.
    func testAttachDetachRacingWithCollect() {
        checkInChild(timeout: 120) { c in
            // gccheckmark: every cycle's marks are verified by a second, stop-the-world mark.
            let heap = try! Heap(configuration: Configuration(gcPercent: 20, checkmark: true))
            let node = Self.nodeType(heap)
            let threads = 16, rounds = 500
            let done = LifeFlag(), failures = LifeFlag()
            let collector = lifeStartThread {
                while done.value < UInt(threads) { heap.collect() }
            }
            var workers: [pthread_t] = []
            for w in 0..<threads {
                workers.append(lifeStartThread {
                    for r in 0..<rounds {
                        let body: @Sendable () -> Void = {
                            let m = heap.attach()
                            let f = m.pushFrame(slots: 2)
                            for i in 0..<200 {
                                let n = m.allocate(node)
                                m.storeWord(n, 2, w &* 1_000_000 &+ i)
                                m.store(n, 0, f[0])
                                f[0] = n
                                if i % 50 == 0 { m.safepoint() }
                            }
                            // The list must be intact whatever the collector did meanwhile.
                            var p = f[0], i = 199
                            while !p.isNull {
                                if m.loadWord(p, 2) != w &* 1_000_000 &+ i { failures.increment() }
                                p = m.load(p, 0); i -= 1
                            }
                            if i != -1 { failures.increment() }
                            if r % 8 != 7 { m.popFrame(f); heap.detach(m) }   // else: exit attached
                        }
                        if r % 8 == 7 {
                            lifeJoin(lifeStartThread(body))
                        } else {
                            body()
                        }
                    }
                    done.increment()
                })
            }
            for t in workers { lifeJoin(t) }
            lifeJoin(collector)
            c.expectEqual(failures.value, 0, "damaged lists")
            c.expect(heap.memStats().numForcedGC > 0, "collect() never ran")
            c.expectEqual(heap.attachedMutatorCount, 0)
            heap.collect()
            c.expectEqual(heap.memStats().heapObjects, 0)
            heap.checkInvariants()
        }
    }
}
