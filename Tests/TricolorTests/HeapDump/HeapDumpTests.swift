@_spi(Testing) @testable import Tricolor
// Heap dumps end to end (Observability/HeapDump.swift → TricolorHeapDump): write, parse
// and compare with the live heap in the same test; dominators against a brute-force
// reference; `why` paths against breadth-first search; `diff` of two leak-workload dumps
// names the leaking type and site; the fatal-error dump in a child process.
// Follows Go's debug.WriteHeapDump (runtime/heapdump.go) in spirit.
import XCTest
import Foundation
import Glibc
import TricolorHeapDump
import TricolorProfiling
import TricolorWorkloads

/// A fresh temporary directory for a test's files.
func temporaryDirectory(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "tricolor-\(name)-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

final class HeapDumpTests: WatchdogTestCase {

    /// Write a dump of a random object graph held by frame slots, a global and a handle,
    /// parse it, and compare objects, edges and roots with the live heap.
    func testDumpRoundTripMatchesLiveHeap() throws {
        let dir = temporaryDirectory("dump")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/graph.tchd"
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let node = try heap.register(TypeLayout(name: "dump.Node", size: 32, pointerWords: [0, 2]))
        let global = heap.makeGlobal()
        var rng = SplitMix64(seed: 7)
        try heap.withMutator { m in
            try m.withFrame(slots: 3) { f in
                let count = 300
                f[0] = m.allocateArray(node, count: count / 2)   // an array holding half the nodes
                var nodes: [UInt] = []
                for i in 0..<count {
                    f[1] = m.allocate(node)
                    nodes.append(f[1].address)
                    if i % 2 == 0 { m.store(f[0], i, f[1]) }      // array element i/2, word 0 (i even: word 2·(i/2)·… )
                }
                _ = m.allocateBytes(5000)                            // garbage: must not be dumped
                for a in nodes {
                    let r = Ref(address: a)
                    if rng.next() % 3 != 0 { m.store(r, 0, Ref(address: nodes[Int(rng.next() % UInt64(count))])) }
                    if rng.next() % 2 == 0 { m.store(r, 2, Ref(address: nodes[Int(rng.next() % UInt64(count))])) }
                    m.storeWord(r, 1, 12345)
                }
                m.store(global, Ref(address: nodes[1]))
                let handle = heap.makeHandle(Ref(address: nodes[3]))
                f[2] = Ref(address: nodes[5])
                heap.collect()
                let before = heap.memStats()
                let summary = try heap.writeHeapDump(to: path)
                let dump = try HeapDump(path: path)
                XCTAssertEqual(dump.objectCount, summary.objects)
                XCTAssertEqual(UInt64(dump.objectCount), before.heapObjects, "every live object, and nothing else")
                XCTAssertEqual(dump.memStats.first { $0.name == "heapObjects" }?.value, before.heapObjects)
                XCTAssertEqual(dump.danglingEdges, 0)
                // Every node: type, size, and its edges are exactly its nonzero pointer words.
                for a in nodes {
                    guard let v = dump.index(ofBase: UInt64(a)) else {
                        // Unreachable nodes were collected: the heap agrees.
                        XCTAssertFalse(heap.debugIsAllocated(Ref(address: a)))
                        continue
                    }
                    XCTAssertEqual(dump.typeName(of: v), "dump.Node")
                    XCTAssertEqual(dump.sizes[v], 32)
                    let r = Ref(address: a)
                    var want: [(UInt32, UInt64)] = []
                    for w in [0, 2] where m.load(r, w).address != 0 { want.append((UInt32(w * 8), UInt64(m.load(r, w).address))) }
                    let got = (Int(dump.edgeStarts[v])..<Int(dump.edgeStarts[v + 1])).map { (dump.edgeOffsets[$0], dump.addresses[Int(dump.edgeTargets[$0])]) }
                    XCTAssertEqual(got.map(\.0), want.map(\.0))
                    XCTAssertEqual(got.map(\.1), want.map(\.1))
                }
                // The array: its type and count, and its edges at element offsets.
                let av = try XCTUnwrap(dump.index(ofBase: UInt64(f[0].address)))
                XCTAssertEqual(dump.typeName(of: av), "[]dump.Node")
                XCTAssertEqual(Int(dump.edgeStarts[av + 1] - dump.edgeStarts[av]), count / 2)
                // Roots, named.
                let named = Set(dump.roots.map { "\($0.name) -> \(dump.addresses[Int($0.target)])" })
                XCTAssertTrue(named.contains("global #0 -> \(nodes[1])"), "\(named)")
                XCTAssertTrue(named.contains { $0.hasPrefix("handle #") && $0.hasSuffix("-> \(nodes[3])") }, "\(named)")
                XCTAssertTrue(named.contains { $0.contains("stack slot 2 -> \(nodes[5])") }, "\(named)")
                XCTAssertTrue(named.contains { $0.contains("stack slot 0 -> \(f[0].address)") }, "\(named)")
                XCTAssertEqual(dump.mutators.count, 1)
                XCTAssertEqual(dump.mutators[0].stackDepth, 3)
                XCTAssertFalse(dump.spans.isEmpty)
                XCTAssertEqual(dump.types.values.first { $0.name == "dump.Node" }?.pointerWords, [0, 2])
                // Everything in the dump is reachable after a full collection, and a root
                // retains what it dominates: the array retains at least itself.
                let a = HeapAnalysis(dump)
                for v in 0..<dump.objectCount { XCTAssertTrue(a.isReachable(v)) }
                XCTAssertGreaterThanOrEqual(a.retained[av], dump.sizes[av])
                withExtendedLifetime(handle) {}
            }
        }
    }

    /// Lifecycle records wherever an object is described: `inspect` lists an object's
    /// finalizer, weak handle, cleanup and box; the dump has a SPECIAL record for each and
    /// names the roots they make (a finalizer's object, a weak handle object, a cleanup's
    /// argument, a pooled object), so `why` can explain what only they keep alive.
    func testSpecialsAppearInInspectionAndDumps() throws {
        let dir = temporaryDirectory("specials")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/specials.tchd"
        final class Host {}
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let node = try heap.register(TypeLayout(name: "spec.Node", size: 16, pointerWords: [0]))
        let pool = heap.makePool()
        try heap.withMutator { m in
            try m.withFrame(slots: 4) { f in
                f[0] = m.allocate(node)                     // finalizer, weak handle, cleanup
                f[1] = m.allocate(node)                     // the cleanup's argument (only it keeps it)
                m.setFinalizer(f[0]) { _, _ in }
                let weak = m.makeWeak(f[0])
                let cleanup = m.addCleanup(f[0], argument: f[1]) { _, _ in }
                let argument = f[1].address
                f[1] = .null
                f[2] = m.makeBox(Host())
                let pooled = m.allocate(node)
                pool.put(m, pooled)
                let info = heap.inspect(f[0])
                XCTAssertEqual(info.specials.count, 3, "\(info.specials)")
                XCTAssertTrue(info.specials.contains("finalizer"), "\(info.specials)")
                XCTAssertTrue(info.specials.contains { $0.hasPrefix("weak handle 0x") }, "\(info.specials)")
                XCTAssertTrue(info.specials.contains { $0.hasPrefix("cleanup #") && $0.hasSuffix("(argument 0x\(String(argument, radix: 16)))") }, "\(info.specials)")
                XCTAssertTrue("\(info)".contains("finalizer"))
                XCTAssertEqual(heap.inspect(f[2]).specials, ["Swift object box"])
                XCTAssertEqual(heap.inspect(Ref(address: argument)).specials, [])

                _ = try heap.writeHeapDump(to: path)
                let dump = try HeapDump(path: path)
                let obj = try XCTUnwrap(dump.index(ofBase: UInt64(f[0].address)))
                let kinds = dump.specials.filter { $0.object == Int32(obj) }.map(\.kind)
                XCTAssertEqual(Set(kinds.map { String($0.prefix(7)) }), ["finaliz", "weak ha", "cleanup"], "\(kinds)")
                let box = try XCTUnwrap(dump.index(ofBase: UInt64(f[2].address)))
                XCTAssertEqual(dump.specials.filter { $0.object == Int32(box) }.map(\.kind), ["Swift object box"])
                func roots(to a: UInt) -> [String] {
                    guard let v = dump.index(ofBase: UInt64(a)) else { return [] }
                    return dump.roots.filter { $0.target == Int32(v) }.map(\.name)
                }
                XCTAssertTrue(roots(to: argument).contains { $0.hasPrefix("cleanup #") }, "\(roots(to: argument))")
                XCTAssertTrue(roots(to: f[0].address).contains("finalizer (its object, marked through)"), "\(roots(to: f[0].address))")
                XCTAssertTrue(roots(to: pooled.address).contains("pool"), "\(roots(to: pooled.address))")
                XCTAssertTrue(roots(to: weak.handle.address).contains("weak handle object"), "\(roots(to: weak.handle.address))")
                // `why` explains the argument, which only the cleanup keeps.
                let a = HeapAnalysis(dump)
                let v = try XCTUnwrap(dump.index(ofBase: UInt64(argument)))
                XCTAssertTrue(a.isReachable(v))
                withExtendedLifetime(cleanup) {}
            }
        }
    }

    /// In checked mode (lock ranks enforced) dumping, inspecting and the allocator state
    /// take their locks in rank order; run in a child so a violation fails this test only.
    func testDumpInspectAndStateRespectLockRanksInCheckedMode() {
        let dir = temporaryDirectory("checked")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(checked: true, memProfileRate: 1))
            let node = try! heap.register(TypeLayout(name: "checked.Node", size: 16, pointerWords: [0]))
            let g = heap.makeGlobal()
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    for _ in 0..<100 { let n = m.allocate(node); m.store(n, 0, f[0]); f[0] = n }
                    m.store(g, f[0])
                    c.expectEqual(heap.inspect(f[0]).kind, .object)
                    c.expect(!heap.allocatorState().spanClasses.isEmpty, "allocator state")
                    let s = try! heap.writeHeapDump(to: dir + "/checked.tchd")
                    c.expect(s.objects >= 100, "objects \(s.objects)")
                }
            }
        }
    }

    /// The dump format rejects what it does not know, naming the problem.
    func testParserRejectsBadInput() {
        XCTAssertThrowsError(try HeapDump(data: Data("not a dump".utf8))) { e in
            XCTAssertTrue("\(e)".contains("not a Tricolor heap dump"), "\(e)")
        }
        XCTAssertThrowsError(try HeapDump(data: Data("tricolor heapdump\n".utf8) + Data([9]))) { e in
            XCTAssertTrue("\(e)".contains("version 9"), "\(e)")
        }
        XCTAssertThrowsError(try HeapDump(data: Data("tricolor heapdump\n".utf8) + Data([1, 99]))) { e in
            XCTAssertTrue("\(e)".contains("unknown record tag 99"), "\(e)")
        }
        XCTAssertThrowsError(try HeapDump(data: Data("tricolor heapdump\n".utf8) + Data([1]))) { e in
            XCTAssertTrue("\(e)".contains("cut short"), "\(e)")
        }
    }

    // MARK: dominators

    /// Brute-force dominators: d dominates v iff v is unreachable from the root once d
    /// is removed; idom(v) is the strict dominator that every other one dominates.
    static func bruteForceIdom(_ adj: [[Int]], root: Int) -> [Int] {
        let n = adj.count
        func reach(without x: Int) -> [Bool] {
            var seen = [Bool](repeating: false, count: n)
            if x == root { return seen }
            var stack = [root]
            seen[root] = true
            while let u = stack.popLast() {
                for w in adj[u] where w != x && !seen[w] { seen[w] = true; stack.append(w) }
            }
            return seen
        }
        let all = reach(without: -1)
        var dom = [[Bool]](repeating: [Bool](repeating: false, count: n), count: n)   // dom[d][v]
        for d in 0..<n {
            let r = reach(without: d)
            for v in 0..<n where all[v] && !r[v] { dom[d][v] = true }
        }
        var idom = [Int](repeating: -1, count: n)
        for v in 0..<n where all[v] && v != root {
            let strict = (0..<n).filter { $0 != v && dom[$0][v] }
            idom[v] = strict.first { d in strict.allSatisfy { $0 == d || dom[$0][d] } } ?? -1
        }
        return idom
    }

    func testDominatorsMatchBruteForceOnRandomGraphs() {
        var rng = SplitMix64(seed: 42)
        for trial in 0..<300 {
            let n = 1 + Int(rng.next() % 40)
            let m = Int(rng.next() % UInt64(3 * n + 1))
            var adj = [[Int]](repeating: [], count: n)
            for _ in 0..<m { adj[Int(rng.next() % UInt64(n))].append(Int(rng.next() % UInt64(n))) }
            // Sometimes a spine, so that long dominator chains occur.
            if trial % 3 == 0 { for i in 0..<(n - 1) where rng.next() % 2 == 0 { adj[i].append(i + 1) } }
            let t = DominatorTree(graph: CSRGraph(adjacency: adj), root: 0)
            let want = HeapDumpTests.bruteForceIdom(adj, root: 0)
            XCTAssertEqual(t.idom.map(Int.init), want, "trial \(trial): \(adj)")
            // Retained sizes: each node's size (v + 1) plus those it dominates.
            let r = t.retainedSizes { UInt64($0 + 1) }
            for v in 0..<n where t.idom[v] >= 0 || v == 0 {
                var sum: UInt64 = 0
                for u in 0..<n where t.idom[u] >= 0 || u == 0 {
                    var x = u
                    while x != -1 && x != v { x = Int(t.idom[x]) }
                    if x == v { sum += UInt64(u + 1) }
                }
                XCTAssertEqual(r[v], sum, "trial \(trial) node \(v)")
            }
        }
    }

    /// A chain of a million nodes: no recursion anywhere, so no stack overflow.
    func testDominatorsOnALongChainNeedNoRecursion() {
        let n = 1_000_000
        var starts = [Int32](repeating: 0, count: n + 1)
        var targets = [Int32]()
        targets.reserveCapacity(n)
        for i in 0..<n {
            if i + 1 < n { targets.append(Int32(i + 1)) }
            starts[i + 1] = Int32(targets.count)
        }
        let t = DominatorTree(graph: CSRGraph(starts: starts, targets: targets), root: 0)
        XCTAssertEqual(t.order.count, n)
        XCTAssertEqual(t.idom[n - 1], Int32(n - 2))
        XCTAssertEqual(t.retainedSizes { _ in 1 }[0], UInt64(n))
    }

    /// `why` gives a shortest path (its length is the breadth-first distance from the
    /// roots), every step is an edge of the dump, and it starts at a root's target; the
    /// dominator chain ends at the object and each link dominates the next.
    func testWhyPathsAreShortestAndValid() throws {
        let dir = temporaryDirectory("why")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let node = try heap.register(TypeLayout(name: "why.Node", size: 24, pointerWords: [0, 1, 2]))
        var rng = SplitMix64(seed: 3)
        try heap.withMutator { m in
            try m.withFrame(slots: 1) { f in
                let n = 400
                f[0] = m.allocateArray(node, count: n)
                var nodes: [Ref] = []
                for i in 0..<n { let r = m.allocate(node); m.store(f[0], 3 * i, r); nodes.append(r) }
                // Drop most array entries; link nodes randomly so paths get long.
                for i in 0..<n {
                    for w in 0..<3 where rng.next() % 2 == 0 { m.store(nodes[i], w, nodes[Int(rng.next() % UInt64(n))]) }
                    if i % 20 != 0 { m.store(f[0], 3 * i, Ref(address: 0)) }
                }
                heap.collect()
                let path = dir + "/why.tchd"
                try heap.writeHeapDump(to: path)
                let dump = try HeapDump(path: path)
                let a = HeapAnalysis(dump)
                // Reference BFS distances from the roots.
                var dist = [Int](repeating: -1, count: dump.objectCount)
                var queue: [Int] = []
                for r in dump.roots where dist[Int(r.target)] < 0 { dist[Int(r.target)] = 1; queue.append(Int(r.target)) }
                var head = 0
                while head < queue.count {
                    let u = queue[head]; head += 1
                    for e in Int(dump.edgeStarts[u])..<Int(dump.edgeStarts[u + 1]) where dist[Int(dump.edgeTargets[e])] < 0 {
                        dist[Int(dump.edgeTargets[e])] = dist[u] + 1
                        queue.append(Int(dump.edgeTargets[e]))
                    }
                }
                for v in 0..<dump.objectCount {
                    let w = a.why(object: v)
                    XCTAssertEqual(w.path.count, dist[v], "object \(v)")
                    guard !w.path.isEmpty else { continue }
                    XCTAssertNotNil(w.root)
                    let idx = w.path.map { dump.index(ofBase: $0.address)! }
                    XCTAssertTrue(dump.roots.contains { Int($0.target) == idx[0] })
                    for k in 1..<idx.count {
                        let es = Int(dump.edgeStarts[idx[k - 1]])..<Int(dump.edgeStarts[idx[k - 1] + 1])
                        XCTAssertTrue(es.contains { Int(dump.edgeTargets[$0]) == idx[k] && Int(dump.edgeOffsets[$0]) == w.path[k].fromOffset })
                    }
                    XCTAssertEqual(w.dominators.last?.address, dump.addresses[v])
                    for k in 1..<w.dominators.count {
                        XCTAssertEqual(a.immediateDominator(dump.index(ofBase: w.dominators[k].address)!), dump.index(ofBase: w.dominators[k - 1].address))
                    }
                }
                let byType = try XCTUnwrap(a.why(type: "why.Node"))
                XCTAssertEqual(byType.target.type, "why.Node")
                let dot = HeapDumpText.dot(byType)
                XCTAssertTrue(dot.hasPrefix("digraph retention {"), dot)
                XCTAssertTrue(HeapDumpText.why(byType).contains("shortest path from a root"))
            }
        }
    }

    // MARK: leak hunting

    /// An allocation's site is its first frame outside the runtime. The standard
    /// library's generic helpers the runtime calls (not inlined in an unoptimized build:
    /// a debug build's leak diff named `Swift.withUnsafeMutableBytes` as the leaking
    /// site) and thunks count as the runtime's; the program's frames, decorated or not,
    /// do not. The profiles trim stacks by the same rule.
    func testSiteSkipsTheRuntimeAndTheStandardLibraryHelpersItCalls() {
        for runtime in [
            "Tricolor.Mutator.allocateSlow(_: Tricolor.ObjectType) -> Tricolor.Ref",
            "closure #1 in Tricolor.Heap.sample(_: Swift.UInt) -> ()",
            "Swift.withUnsafeMutableBytes<A, B, C where B: Swift.Error>(of: inout A, _: (Swift.UnsafeMutableRawBufferPointer) throws(B) -> C) throws(B) -> C",
            "generic specialization <Swift.Int> of Swift.Array.append(A) -> ()",
            "reabstraction thunk helper from @callee_guaranteed () -> () to @escaping @callee_guaranteed () -> (@out ())",
            "thunk for @escaping @callee_guaranteed () -> ()",
        ] {
            XCTAssertTrue(isRuntimeFrameName(runtime), runtime)
        }
        for program in [
            "TricolorWorkloads.LeakyCache.remember(Swift.Int) -> ()",
            "specialized TricolorWorkloads.Leak.run(heap: Tricolor.Heap, requests: Swift.Int) -> ()",
            "closure #2 in leak.main() -> ()",
            "function signature specialization <Arg[0] = Dead> of TricolorWorkloads.LeakyCache.remember() -> ()",
        ] {
            XCTAssertFalse(isRuntimeFrameName(program), program)
        }
    }

    /// Two dumps of the leak workload (a small and a larger run): `diff` puts the cache
    /// entries first among the named types and `LeakyCache.remember` first among the
    /// allocation sites; `top` ranks the cache table first by retained size.
    func testDiffOfLeakDumpsNamesTheLeakingTypeAndSite() throws {
        let dir = temporaryDirectory("leak")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var dumps: [HeapDump] = []
        for (i, requests) in [1000, 4000].enumerated() {
            let heap = try Heap(configuration: Configuration(memProfileRate: 512).precise)
            try Leak.run(heap: heap, requests: requests) { _ in }
            heap.collect()
            let path = dir + "/leak\(i).tchd"
            try heap.writeHeapDumpSymbolized(to: path)
            dumps.append(try HeapDump(path: path))
        }
        let d = HeapAnalysis.diff(HeapAnalysis(dumps[0]), HeapAnalysis(dumps[1]))
        let named = d.byType.filter { $0.key != "<bytes>" }
        XCTAssertEqual(named.first?.key, "leak.CacheEntry", "\(d.byType)")
        XCTAssertEqual(named.first?.countDelta, 3000)
        let site = try XCTUnwrap(d.bySite.first)
        XCTAssertTrue(site.key.contains("LeakyCache.remember"), "\(d.bySite)")
        XCTAssertGreaterThan(site.countDelta, 0)
        let top = HeapAnalysis(dumps[1]).top()
        XCTAssertEqual(top.first?.type, "[]leak.Table", "\(top)")
        XCTAssertTrue(HeapDumpText.diff(d, limit: 5).contains("leak.CacheEntry"))
        let classes = HeapAnalysis.classes(dumps[1])
        XCTAssertTrue(classes.contains { $0.sizeClass == 4 && $0.allocated >= 4000 }, "\(classes)")
    }

    // MARK: fatal errors

    /// GODEBUG=tricolordump=PREFIX: a fatal error writes a report (message, stack,
    /// mutators, MemStats, top types) and a heap dump that parses, in a child process.
    func testFatalErrorWritesReportAndDump() throws {
        let dir = temporaryDirectory("fatal")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prefix = dir + "/crash"
        let r = runInChild {
            setenv("GODEBUG", "gctrace=0,tricolordump=\(prefix)", 1)
            let heap = try! Heap(configuration: Configuration(gcPercent: nil).precise)
            let node = try! heap.register(TypeLayout(name: "fatal.Node", size: 64, pointerWords: [0]))
            let g = heap.makeGlobal()
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    for _ in 0..<2000 { let n = m.allocate(node); m.store(n, 0, f[0]); f[0] = n }
                    m.store(g, f[0])
                    runtimeFatal("out of dingos, on purpose")
                }
            }
        }
        XCTAssertEqual(r.exitStatus, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("fatal error: out of dingos"), r.stderr)
        XCTAssertTrue(r.stderr.contains("wrote the fatal-error report"), r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir)
        let report = try XCTUnwrap(files.first { $0.hasSuffix(".txt") })
        let text = try String(contentsOfFile: dir + "/" + report, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("fatal error: out of dingos, on purpose\n"), text)
        XCTAssertTrue(text.contains("testFatalErrorWritesReportAndDump"), text)   // the failing thread's stack
        XCTAssertTrue(text.contains("(the failing thread)"), text)
        XCTAssertTrue(text.contains("stack depth 1 slots"), text)
        XCTAssertTrue(text.contains("heapInuse"), text)
        XCTAssertTrue(text.contains("2000 objects, 128000 bytes: fatal.Node"), text)
        let dumpFile = try XCTUnwrap(files.first { $0.hasSuffix(".tchd") })
        let dump = try HeapDump(path: dir + "/" + dumpFile)
        XCTAssertEqual((0..<dump.objectCount).filter { dump.typeName(of: $0) == "fatal.Node" }.count, 2000)
        XCTAssertTrue(dump.roots.contains { $0.kind == .global })
        // The list head: held by the frame slot and the global (roots in dump order).
        XCTAssertEqual(HeapAnalysis(dump).why(type: "fatal.Node")?.root, "mutator 1 stack slot 0")
    }
}
