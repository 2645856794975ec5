// The code shown in the DocC articles (Sources/Tricolor/Tricolor.docc), run as written,
// with checks of what the articles say about it. An example changed in an article is
// changed here too. Follows no Go file.
//
// Nothing here is timed; threads join before anything is checked.

import Dispatch
import Foundation
import XCTest
@_spi(Testing) @testable import Tricolor
import TricolorProfiling

final class DocExamplesTests: XCTestCase {
    /// Tricolor.md, the landing page's example.
    func testLandingPageExample() throws {
        let heap = try Heap(configuration: .init(gcPercent: 100))
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(Node)
                m.store(frame[0], 0, m.allocate(Node))   // a pointer store, with the write barrier
                XCTAssertFalse(m.load(frame[0], 0).isNull)
            }
        }
        XCTAssertEqual(heap.memStats().heapObjects, 2)
    }

    /// GettingStarted.md, "Reading and writing": pointer and data words of a Pair.
    func testGettingStartedReadingAndWriting() throws {
        let heap = try Heap()
        // struct Pair { var first: Ref; var second: Ref; var count: Int }
        let Pair = try heap.register(TypeLayout(name: "Pair", size: 24, pointerWords: [0, 1]))
        var seen: (Bool, Int) = (true, 0)
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(Pair)
                m.store(frame[0], 0, m.allocate(Pair))   // pointer word: write barrier
                m.storeWord(frame[0], 2, 42)             // data word: a plain store
                let first = m.load(frame[0], 0)          // pointer word
                let count = m.loadWord(frame[0], 2)      // data word: 42
                _ = (first, count)
                seen = (first.isNull, count)
                // "Memory is always zeroed, so pointer words start as Ref.null."
                XCTAssertTrue(m.load(frame[0], 1).isNull)
            }
        }
        XCTAssertFalse(seen.0)
        XCTAssertEqual(seen.1, 42)
        XCTAssertEqual(heap.memStats().heapObjects, 2)
    }

    /// RootsAndSafepoints.md: the list walk that holds a local `Ref` between full
    /// safepoints, and the rooted allocation that fixes the bug it shows.
    func testRootsAndSafepointsExamples() throws {
        let heap = try Heap(configuration: .init(checked: true))
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0]))
        // Sums the data word of each node of a rooted list: no allocation, so no full
        // safepoint, so `p` may stay a local.
        func sum(_ m: Mutator, _ list: Ref) -> Int {
            var total = 0
            var p = list
            while !p.isNull {
                total += m.loadWord(p, 1)
                p = m.load(p, 0)
            }
            return total
        }
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(Node)
                let b = m.allocate(Node)          // frame[0] keeps the first one alive
                m.store(b, 0, frame[0])
                m.storeWord(frame[0], 1, 2)
                m.storeWord(b, 1, 3)
                frame[0] = b                      // the two-node list, rooted
                heap.collect()
                XCTAssertEqual(sum(m, frame[0]), 5)
            }
        }
    }

    /// RootsAndSafepoints.md: with the conservative stack scan on (the default), a `Ref`
    /// held only in a local survives an allocation that collects; checked mode would
    /// trap on the store if it had been freed.
    func testLocalsSurviveWithTheConservativeScan() throws {
        let heap = try Heap(configuration: .init(checked: true))
        XCTAssertTrue(heap.configuration.conservativeStackScan)
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        heap.withMutator { m in
            let a = m.allocate(Node)      // a is only in a local…
            heap.collect()                // …a whole cycle runs…
            let b = m.allocate(Node)
            m.store(b, 0, a)              // …and a is still a live object
            XCTAssertEqual(m.load(b, 0), a)
        }
    }

    /// ThreadsLocksAndAsync.md: a handle shared by four threads, each attaching its own
    /// mutator; the shared object survives collections because the handle roots it.
    func testThreadsShareAHandle() throws {
        // Precise roots: the exact object count below must not see stale stack words.
        let heap = try Heap(configuration: Configuration().precise)
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        let shared = heap.withMutator { m in heap.makeHandle(m.allocate(Node)) }

        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            heap.withMutator { m in                     // each thread attaches its own mutator
                m.withFrame(slots: 1) { frame in
                    frame[0] = m.allocate(Node)
                    m.store(frame[0], 0, shared.value)  // link to the shared object
                    heap.collect()
                    XCTAssertEqual(m.load(frame[0], 0), shared.value)
                }
            }
        }
        heap.collect()
        XCTAssertEqual(heap.memStats().heapObjects, 1, "only the handle's object is left")
        XCTAssertFalse(shared.value.isNull)
    }

    /// ThreadsLocksAndAsync.md: a lock taken inside `blocking`, then heap work while it
    /// is held, on two threads at once. Without `blocking`, a collection started by one
    /// thread while the other waits for the lock could wait forever.
    func testLockTakenInsideBlocking() throws {
        let heap = try Heap(configuration: .init(gcPercent: 1))   // collect often
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        let lock = NSLock()
        let counter = heap.makeGlobal()
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            heap.withMutator { m in
                for _ in 0..<2_000 {
                    m.blocking { lock.lock() }           // the wait: collections go on without us
                    defer { lock.unlock() }
                    m.withFrame(slots: 1) { frame in     // holding the lock, allocate freely
                        frame[0] = m.allocate(Node)
                        m.store(frame[0], 0, counter.value)
                        m.store(counter, frame[0])
                    }
                }
            }
        }
        // The global holds a list of all 4000 nodes.
        let length = heap.withMutator { m -> Int in
            var n = 0
            var p = counter.value
            while !p.isNull { n += 1; p = m.load(p, 0) }
            return n
        }
        XCTAssertEqual(length, 4_000)
    }

    /// ThreadsLocksAndAsync.md, "Async code": synchronous segments, a handle across the
    /// `await`.
    func testAsyncSegmentsWithAHandle() async throws {
        func build(heap: Heap, node: ObjectType) async -> Handle {
            let handle = heap.withMutator { m in heap.makeHandle(m.allocate(node)) }
            await Task.yield()                       // may resume on another thread
            heap.withMutator { m in                  // a new segment, a new attachment
                m.store(handle.value, 0, m.allocate(node))
            }
            return handle
        }
        let heap = try Heap()
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        let handle = await build(heap: heap, node: Node)
        heap.collect()
        let child = heap.withMutator { m in m.load(handle.value, 0) }
        XCTAssertFalse(child.isNull)
        XCTAssertEqual(heap.memStats().heapObjects, 2)
    }

    /// SeeingInside.md: statistics, the heap profile and the allocation-path table.
    func testSeeingInsideExamples() throws {
        // Precise roots, for the exact counts below.
        let heap = try Heap(configuration: Configuration(memProfileRate: 1, allocPathStats: true).precise)
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                for _ in 0..<1000 {
                    let n = m.allocate(Node)
                    m.store(n, 0, frame[0])
                    frame[0] = n
                }
            }
        }
        heap.collect()
        let stats = heap.memStats()
        print(stats.heapAlloc, stats.heapObjects, stats.numGC, stats.nextGC)
        XCTAssertEqual(stats.numGC, 1)
        XCTAssertEqual(stats.heapObjects, 0)
        let gc = heap.gcStats(pauseQuantiles: 5)  // min, 25%, 50%, 75%, max of recent cycles
        print(gc.pauseQuantiles)
        XCTAssertEqual(gc.pauseQuantiles.count, 5)
        XCTAssertEqual(gc.pauseQuantiles.last, gc.pause.max())

        let profile: [UInt8] = heap.heapProfile()   // write it to heap.pb.gz
        XCTAssertEqual(Array(profile.prefix(2)), [0x1f, 0x8b], "gzip")
        // Rate 1 samples every allocation; all 1000 are garbage now, so only the records
        // with nothing in use (inuseZero) hold them.
        XCTAssertEqual(heap.memProfile(inuseZero: true).reduce(0) { $0 + $1.allocObjects }, 1000)
        XCTAssertEqual(heap.memProfile(inuseZero: true).reduce(0) { $0 + $1.inUseObjects }, 0)

        let table = heap.allocPathStats().formatted()
        XCTAssertTrue(table.hasPrefix("allocation path: mcache -> mcentral -> mheap -> OS"), table)
        XCTAssertEqual(heap.allocPathStats().levels.reduce(0) { $0 + $1.count }, 1000)
    }
}

/// Getting Started, "Typed objects" (the lines below are the article's).
struct Cell: HeapObject {                 // a heap type, declared once
    var next: Obj<Cell>                  // a typed reference: traced, barriered
    var weight: Double                   // plain data, no bit casts
}

final class TypedGettingStartedTests: XCTestCase {
    func testTypedObjectsExample() throws {
        let heap = try Heap(configuration: Configuration().precise)
        let cell = try heap.register(Cell.self)  // pointer words derived from the fields
        var seen = -1.0
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let c = m.allocate(cell)         // Obj<Cell>
                f[0, as: Cell.self] = c          // a typed frame slot
                m[c].next = m.allocate(cell)     // m.store(c, 0, …), barrier included
                m[c].weight = 0.5                // m.storeWord(c, 1, …)
                print(m[m[c].next].weight)       // 0.0
                seen = m[m[c].next].weight
                XCTAssertEqual(m.load(c.ref, 0), m[c].next.ref)
                XCTAssertEqual(m.loadWord(c.ref, 1), Int(bitPattern: UInt(0.5.bitPattern)))
            }
        }
        XCTAssertEqual(seen, 0.0)
    }

    /// SeeingInside.md, "Examining an address": inspect, the allocator state, a dump.
    func testSeeingInsideInspectionExample() throws {
        let heap = try Heap(configuration: Configuration().precise)
        let Node = try heap.register(TypeLayout(name: "Node", size: 16, pointerWords: [0, 1]))
        let path = NSTemporaryDirectory() + "tricolor-docs-\(getpid()).tchd"
        defer { unlink(path) }
        try heap.withMutator { m in
            try m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(Node)
                let ref = frame[0]
                let info = heap.inspect(ref)
                print(info)                        // arena, span, slot, type, sweep state
                print(heap.allocatorState())       // per size class: mcaches, mcentral, fragmentation
                try heap.writeHeapDump(to: path)   // read it with `tricolor heapdump`
                XCTAssertEqual(info.kind, .object)
                XCTAssertEqual(info.object?.typeName, "Node")
                XCTAssertEqual(info.span?.sweepStatus, "cached")
            }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
    }

    /// ObjectLifecycle.md: a finalizer closing a "file", the weak cache, a pool.
    func testObjectLifecycleExamples() throws {
        final class Closed: @unchecked Sendable {
            let lock = NSLock()
            var all: [Int] = []
            func add(_ v: Int) { lock.lock(); all.append(v); lock.unlock() }
        }
        var configuration = Configuration()
        configuration.conservativeStackScan = false               // precise roots only
        let heap = try Heap(configuration: configuration)
        let File = try heap.register(TypeLayout(name: "File", size: 16, pointerWords: []))
        let closed = Closed()
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(File)
                m.storeWord(frame[0], 0, 3)                       // the descriptor
                m.setFinalizer(frame[0]) { m, file in closed.add(m.loadWord(file, 0)) }
                frame[0] = .null                                  // unreachable from here on
            }
            heap.collect()                                        // finds it unreachable: queues the finalizer
            heap.waitForFinalizers()                              // closed.all == [3]
        }
        XCTAssertEqual(closed.all, [3])

        var cache: [String: Handle] = [:]                         // key → weak reference
        heap.withMutator { m in
            m.withFrame(slots: 1) { frame in
                frame[0] = m.allocate(File)
                cache["a"] = heap.makeHandle(m.makeWeak(frame[0]).handle)
                let hit = m.value(WeakRef(handle: cache["a"]!.value))   // frame[0]'s object
                XCTAssertEqual(hit, frame[0])
                frame[0] = .null
                heap.collect()
                let miss = m.value(WeakRef(handle: cache["a"]!.value))  // Ref.null: the entry vanished
                _ = (hit, miss)
                XCTAssertEqual(miss, .null)
            }
        }

        let buffers = heap.makePool { m in m.allocateBytes(4096) }
        heap.withMutator { m in
            let buf = buffers.get(m)                              // new(m) on a miss
            buffers.put(m, buf)                                   // for the next get, on any mutator
            XCTAssertEqual(buffers.get(m), buf)
        }
    }
}
