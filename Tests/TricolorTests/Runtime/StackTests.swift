import Glibc
import XCTest
import CTricolor
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

// Shadow stacks as goroutine stacks: Go's stack allocator (Allocator/StackAlloc.swift)
// and growth by copying, shrinking at GC, the maximum, and their statistics
// (Runtime/ShadowStack.swift).
final class StackTests: WatchdogTestCase {

    private func makeHeap(_ c: Configuration = Configuration(gcPercent: nil, markWorkers: 0)) -> (Heap, ObjectType) {
        var c = c.withSelfChecks
        c.checkmark = true           // every cycle here is verified by gccheckmark
        let heap = try! Heap(configuration: c)
        let node = try! heap.register(TypeLayout(name: "stack.Node", size: 24, pointerWords: [0]))
        return (heap, node)
    }

    // MARK: the allocator

    /// Orders 2–16 KiB come from 32 KiB manual spans through the cache (refilled to half
    /// its capacity); 32 KiB and up are spans of their own; all are manual spans, never
    /// in HeapInuse; everything goes back when freed with the collector off.
    func testOrdersCacheRefillAndLargeStacks() {
        let (heap, _) = makeHeap()
        heap.withMutator { m in
            let st = m.state
            let cache = st.pointee.mcache
            heap.stackCacheClear(cache)
            let base = heap.heapStats.stackInuse.load(.relaxed)
            for order in 0..<StackAlloc.orders {
                let n = StackAlloc.minStack << order
                let p = heap.stackAlloc(n, cache: cache)!
                let s = heap.spanOf(UInt(bitPattern: p))!
                XCTAssertEqual(s.pointee.state, MSpanState.manual.rawValue)
                XCTAssertEqual(s.pointee.npages, 4, "pool spans are 32 KiB")
                XCTAssertEqual(UInt(bitPattern: p) % UInt(n), 0, "stacks are aligned to their size")
                // The cache took half its capacity in one batch and handed one out.
                XCTAssertEqual(Int(cache.pointee.stackCache[order].size), StackAlloc.cacheSize / 2 - n)
                heap.stackFree(p, n, cache: cache)
            }
            for n in [32 << 10, 64 << 10, 1 << 20] {
                let p = heap.stackAlloc(n, cache: cache)!
                let s = heap.spanOf(UInt(bitPattern: p))!
                XCTAssertEqual(s.pointee.state, MSpanState.manual.rawValue)
                XCTAssertEqual(Int(s.pointee.npages) * 8192, n)
                heap.stackFree(p, n, cache: cache)
            }
            XCTAssertEqual(heap.heapStats.heapInuse.load(.relaxed), 0, "stacks are not heap in-use memory")
            heap.stackCacheClear(cache)
            XCTAssertEqual(heap.heapStats.stackInuse.load(.relaxed), base, "freed stacks went back to the page heap")
            heap.checkHeapInvariants()
        }
    }

    /// A cache drains back to the pool when it reaches its capacity, in a batch.
    func testCacheDrainsToHalfItsCapacity() {
        let (heap, _) = makeHeap()
        heap.withMutator { m in
            let cache = m.state.pointee.mcache
            var got: [UnsafeMutablePointer<UInt>] = []
            for _ in 0..<40 { got.append(heap.stackAlloc(2048, cache: cache)!) }
            for p in got {
                heap.stackFree(p, 2048, cache: cache)
                XCTAssertLessThanOrEqual(Int(cache.pointee.stackCache[0].size), StackAlloc.cacheSize + 2048)
            }
            XCTAssertGreaterThanOrEqual(Int(cache.pointee.stackCache[0].size), StackAlloc.cacheSize / 2)
            heap.checkHeapInvariants()
        }
    }

    /// Freed while marking, a large stack waits on the free large stacks and a pool span
    /// stays in the pool; both go back after mark termination.
    func testStacksFreedWhileMarkingWaitForTheCycleToEnd() {
        let (heap, _) = makeHeap()
        heap.withMutator { m in
            let cache = m.state.pointee.mcache
            heap.stackCacheClear(cache)
            let base = heap.heapStats.stackInuse.load(.relaxed)
            let large = heap.stackAlloc(64 << 10, cache: cache)!
            let small = heap.stackAlloc(16 << 10, cache: nil)!
            heap.debugStartCycle()
            heap.stackFree(large, 64 << 10, cache: cache)
            heap.stackFree(small, 16 << 10, cache: nil)
            XCTAssertGreaterThan(heap.heapStats.stackInuse.load(.relaxed), base, "kept while marking")
            heap.debugFinishCycle()
            XCTAssertEqual(heap.heapStats.stackInuse.load(.relaxed), base, "returned after mark termination")
            heap.checkHeapInvariants()
        }
    }

    // MARK: growth, shrinking, the limit

    /// Frames stay intact across repeated growth: 1 MiB of frames pushed by recursion,
    /// each holding objects, with collections at the bottom and on the way.
    func testFramesSurviveGrowthThroughOneMiBOfRecursion() {
        let (heap, node) = makeHeap(Configuration(gcPercent: 20, clobberFree: true))
        // 32,768 native frames: an unoptimized build's outgrow a default 8 MiB thread
        // stack, so the recursion runs on a thread with 256 MiB of it (reserved, touched
        // only as deep as it goes).
        let t = lifeStartThread(name: "deep-recursion", stackBytes: 256 << 20) { Self.recurse(heap, node) }
        lifeJoin(t)
    }

    private static func recurse(_ heap: Heap, _ node: ObjectType) {
        heap.withMutator { m in
            let grownBefore = heap.gcStats().stacksGrown
            @inline(never) func level(_ d: Int) -> Bool {
                m.withFrame(slots: 4) { f in
                    f[0] = m.allocate(node)
                    m.storeWord(f[0], 1, d)
                    f[3] = f[0]
                    if d % 4096 == 0 { heap.collect() }
                    let ok = d == 0 ? true : level(d - 1)
                    return ok && m.loadWord(f[0], 1) == d && f[3] == f[0] && f[1].isNull
                }
            }
            XCTAssertTrue(level(32_768))              // 32768 × 4 slots × 8 bytes = 1 MiB
            XCTAssertGreaterThanOrEqual(m.state.pointee.stackCap * 8, 1 << 20)
            XCTAssertGreaterThanOrEqual(heap.gcStats().stacksGrown - grownBefore, 9)
            heap.checkHeapInvariants()
        }
    }

    /// At a stack scan, a stack using less than a quarter of itself is halved; with
    /// GODEBUG=gcshrinkstackoff=1 it is not.
    func testShrinkAtGCAndShrinkingOff() {
        for shrink in [true, false] {
            var c = Configuration(gcPercent: nil, markWorkers: 0)
            if !shrink { c = try! Configuration.fromEnvironment(["GODEBUG": "gcshrinkstackoff=1", "GOGC": "off"]) }
            XCTAssertEqual(c.shrinkStacks, shrink)
            let (heap, _) = makeHeap(c)
            heap.withMutator { m in
                m.withFrame(slots: 8 * 1024) { _ in }      // grow to 64 KiB
                XCTAssertEqual(m.state.pointee.stackCap * 8, 64 << 10)
                m.withFrame(slots: 3) { f in
                    heap.collect()
                    heap.collect()
                    let cap = m.state.pointee.stackCap * 8
                    if shrink {
                        XCTAssertEqual(cap, 16 << 10, "halved at each of two scans")
                    } else {
                        XCTAssertEqual(cap, 64 << 10)
                    }
                    f[2] = .null
                }
                heap.checkHeapInvariants()
            }
        }
    }

    /// Growing past the maximum is fatal with Go's message; setMaxStack returns the old
    /// maximum and rejects nonsense.
    func testMaxStack() {
        let (heap, _) = makeHeap()
        XCTAssertEqual(try heap.setMaxStack(1 << 20), 1_000_000_000)
        XCTAssertEqual(try heap.setMaxStack(1_000_000_000), 1 << 20)
        XCTAssertThrowsError(try heap.setMaxStack(100))
        XCTAssertThrowsError(try heap.setMaxStack(-1))
        XCTAssertThrowsError(try heap.setMaxStack(Int.max))
        expectFatal("stack exceeds 65536-byte limit") {
            let heap = try! Heap(configuration: Configuration(gcPercent: nil))
            _ = try! heap.setMaxStack(64 << 10)
            heap.withMutator { m in
                @inline(never) func deep(_ d: Int) { m.withFrame(slots: 16) { _ in deep(d + 1) } }
                deep(0)
            }
        }
    }

    // MARK: statistics

    /// Stack scan work reaches the pacer as Go 1.18+ counts it: the bytes of frames
    /// scanned (shadow and native) are the next goal's stack term, and the stacks'
    /// size is the cycle's maxStackScan (gctrace's "MB stacks").
    func testStackScanWorkReachesThePacer() {
        let (heap, _) = makeHeap()
        heap.withMutator { m in
            m.withFrame(slots: 8192) { _ in
                heap.collect()
                XCTAssertGreaterThanOrEqual(heap.pacer.lastStackScan, 64 << 10, "the 64 KiB frame was scanned")
                heap.collect()
                XCTAssertGreaterThanOrEqual(heap.cycle.stacks, 64 << 10)
                XCTAssertGreaterThan(heap.gcStats().lastNativeStackScanBytes, 0)
            }
        }
    }

    /// StackInuse and StackSys describe the stacks, HeapSys excludes them, Sys adds up;
    /// a detached mutator's stack is freed.
    func testMemStatsStackFields() {
        let (heap, _) = makeHeap()
        heap.withMutator { m in
            let s = heap.memStats()
            XCTAssertGreaterThanOrEqual(s.stackInuse, 2048)
            XCTAssertEqual(s.stackInuse, s.stackSys)
            XCTAssertEqual(s.sys, s.heapSys + s.stackSys + s.mSpanSys + s.mCacheSys + s.gcSys + s.otherSys)
            XCTAssertEqual(s.heapSys, s.heapInuse + s.heapIdle)
            m.withFrame(slots: 64 * 1024) { _ in
                let g = heap.memStats()
                XCTAssertGreaterThanOrEqual(g.stackInuse, 512 << 10)
                XCTAssertEqual(g.sys, s.sys, "stack growth takes heap pages, not new memory")
            }
        }
        XCTAssertEqual(heap.memStats().stackInuse, 0, "the detached mutator's stack was freed")
        heap.checkHeapInvariants()
    }
}
