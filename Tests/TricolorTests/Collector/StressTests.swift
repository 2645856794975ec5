import Foundation
import XCTest
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

/// The value every object keeps in its data word(s): its identity mixed with a constant.
func stressChecksum(_ id: Int) -> Int {
    Int(bitPattern: UInt(truncatingIfNeeded: (UInt64(id) &* 0x9E37_79B9_7F4A_7C15) ^ 0x5EED_C0DE_1234_5678))
}

/// The object types of the model-based stress test.
struct StressTypes: Sendable {
    /// 24 bytes: pointer words 0 and 1; word 2 holds the checksum.
    let a: ObjectType
    /// 48 bytes: pointer words 0…3; word 4 holds the checksum, word 5 the id.
    let b: ObjectType
    /// 40000 bytes (a large object): pointer words 0, 1, 2500, 4999; words 2 and 4998 hold data.
    let large: ObjectType
    static let largeWords = 5000
    static let largePointerWords = [0, 1, 2500, 4999]

    init(_ heap: Heap) throws {
        a = try heap.register(TypeLayout(name: "stress.A", size: 24, pointerWords: [0, 1]))
        b = try heap.register(TypeLayout(name: "stress.B", size: 48, pointerWords: [0, 1, 2, 3]))
        large = try heap.register(TypeLayout(name: "stress.Large", size: 8 * StressTypes.largeWords,
                                             pointerWords: StressTypes.largePointerWords))
    }
}

struct StressOptions {
    var ops = 10_000
    /// Verify the graph (no collection) every this many operations.
    var verifyEvery = 1_000
    /// Collect explicitly and check HeapObjects every this many operations (nil: never
    /// during the run; the final check always collects).
    var collectEvery: Int? = 1_500
    /// Chance per operation, in 1/1000, of a `collect()` with no check.
    var randomCollectPermille = 0
    var allowLarge = true
    var allowArrays = true
    /// Share of operations that allocate unreachable garbage.
    var garbagePercent = 15
    /// Roots are dropped when more objects than this are reachable, and kept when fewer
    /// than minLive are.
    var maxLive = 2_500
    var minLive = 600
    var frameSlots = 16
    var globals = 4
    var maxHandles = 6
    /// Compare HeapObjects with the model's reachable count (single mutator only).
    var checkHeapObjects = true
    /// Hold part of the roots only in Swift locals of nested calls (conservative stack
    /// scanning keeps them): HeapObjects is then checked to be at least the reachable
    /// count, not equal to it (stale stack words may retain a little more).
    var nativeRoots = false
    /// Add finalizers, weak references and a pool to the random operations, and predict
    /// at each checkpoint which finalizers run and which weak references read nil.
    /// Needs collections only at checkpoints (GOGC=off, no random collections), so that
    /// the mirror knows when each cycle happens; HeapObjects is not compared (weak
    /// handles and finalizer-kept objects are heap objects the graph does not count).
    var lifecycle = false
}

/// A random object graph on the heap and its mirror in Swift. Operations keep the two in
/// step; `verify` walks the mirror from the roots and checks every reachable object's
/// data words and pointer fields on the heap. Failures are collected as strings (so the
/// model can run on any thread) and asserted by the test.
final class GraphModel {
    enum Kind: Equatable {
        case a, b
        case bytes(Int)        // pointer-free, ≥ 16 bytes (no tiny allocations), multiple of 8
        case array(Int)        // typed array of `count` A elements
        case large             // StressTypes.large
        case largeBytes(Int)   // pointer-free, > 32 KiB
    }

    struct Node {
        var ref: Ref
        var kind: Kind
        var ptrWords: [Int]     // word index of each pointer slot
        var edges: [Int]        // target id per pointer slot, -1 = null
    }

    let heap: Heap
    var m: Mutator
    let types: StressTypes
    let options: StressOptions
    var rng: SplitMix64
    var frame: Frame?
    var frameRoots: [Int]
    let globals: [Global]
    var globalRoots: [Int]
    var handles: [(handle: Handle, id: Int)] = []
    var nodes: [Int: Node] = [:]
    var nextID = 1
    var failures: [String] = []
    var allocations = 0
    var explicitCollections = 0
    var lastReachable = 0

    // -- lifecycle mirror (options.lifecycle) --
    /// Objects with a finalizer set and not yet queued.
    var finSet: Set<Int> = []
    /// Finalizers predicted to have run, and what the finalizer thread reported.
    var expectedFinalized: Set<Int> = []
    let finLog = LifeLog()
    /// Weak references, each kept in a Handle (a root for the weak handle, not for
    /// its target), with the target and whether it is predicted nil.
    var weaks: [(handle: Handle, target: Int, isNil: Bool)] = []
    var pool: Pool?
    /// The pool, as Pool.swift behaves for one mutator: private slot, LIFO queue,
    /// and the same pair as victims.
    var poolPrivate = -1, victimPrivate = -1
    var poolStack: [Int] = [], victimStack: [Int] = []
    var lifecycleOps = 0

    init(heap: Heap, mutator: Mutator, types: StressTypes, options: StressOptions, seed: UInt64, globals: [Global]) {
        self.heap = heap
        self.m = mutator
        self.types = types
        self.options = options
        rng = SplitMix64(seed: seed)
        frame = mutator.pushFrame(slots: options.frameSlots)
        frameRoots = Array(repeating: -1, count: options.frameSlots)
        self.globals = globals
        globalRoots = Array(repeating: -1, count: globals.count)
        if options.lifecycle {
            let a = types.a
            pool = heap.makePool { m in m.allocate(a) }
        }
    }

    /// Pooled object ids (primary and victim).
    var pooledIDs: [Int] { [poolPrivate, victimPrivate].filter { $0 >= 0 } + poolStack + victimStack }

    func fail(_ message: String) {
        if failures.count < 20 { failures.append(message) }
    }

    func ref(_ id: Int) -> Ref { id < 0 ? .null : nodes[id]!.ref }

    // MARK: roots

    var rootIDs: [Int] { frameRoots + globalRoots + handles.map(\.id) + nativeRootIDs }

    /// Objects rooted only by Swift locals of `runHoldingNativeRoots` frames.
    var nativeRootIDs: [Int] = []

    /// Run the operations with `depth` objects rooted only by Swift locals of nested
    /// calls: each level allocates an object, keeps its `Ref` in a local (a register or
    /// a spill slot, as optimised code keeps it) across everything deeper, and checks
    /// the object through that local on the way out.
    @inline(never)
    func runHoldingNativeRoots(_ context: String, depth: Int) {
        if depth == 0 { run(context); return }
        let id = newNode(depth % 2 == 0 ? .a : .b)
        let r = nodes[id]!.ref          // from here on only this local roots it
        nativeRootIDs.append(id)
        runHoldingNativeRoots(context, depth: depth - 1)
        if let n = nodes[id], n.ref != r { fail("\(context): native root \(id) moved from \(r) to \(n.ref)") }
        let kind: Kind = depth % 2 == 0 ? .a : .b
        for (w, v) in dataWords(id, kind) {
            let got = m.loadWord(r, w)
            if got != v { fail("\(context): native root \(id) at \(r): data word \(w) is \(got), expected \(v)"); break }
        }
        nativeRootIDs.removeLast()
    }

    func setFrameRoot(_ i: Int, _ id: Int) {
        frame![i] = ref(id)
        frameRoots[i] = id
    }

    func setGlobalRoot(_ i: Int, _ id: Int) {
        m.store(globals[i], ref(id))
        globalRoots[i] = id
    }

    /// Root `id` in an empty frame slot, global or handle. With `replacing`, when none
    /// is empty, overwrite a random root (which may cut its graph loose). False if `id`
    /// was not rooted.
    @discardableResult
    func rootSomewhere(_ id: Int, replacing: Bool) -> Bool {
        let r = rng.int(10)
        if r < 6 || globals.isEmpty {
            if let i = emptySlot(frameRoots) { setFrameRoot(i, id); return true }
        } else if r < 8 {
            if let i = emptySlot(globalRoots) { setGlobalRoot(i, id); return true }
        } else if handles.count < options.maxHandles {
            handles.append((heap.makeHandle(ref(id)), id))
            return true
        }
        if let i = emptySlot(frameRoots) { setFrameRoot(i, id); return true }
        guard replacing else { return false }
        switch rng.int(3) {
        case 0 where !globals.isEmpty:
            setGlobalRoot(rng.int(globals.count), id)
        case 1 where !handles.isEmpty:
            let i = rng.int(handles.count)
            m.store(handles[i].handle, ref(id))     // point an existing handle elsewhere
            handles[i].id = id
        default:
            setFrameRoot(rng.int(frameRoots.count), id)
        }
        return true
    }

    private func emptySlot(_ ids: [Int]) -> Int? {
        if ids.isEmpty { return nil }
        let start = rng.int(ids.count)
        for k in 0..<ids.count where ids[(start + k) % ids.count] < 0 { return (start + k) % ids.count }
        return nil
    }

    // MARK: choosing live objects

    /// A reachable object, found by a random walk from a random root (so it is reachable
    /// now, whatever the mirror still holds). With `withPointers`, one that has pointer slots.
    func randomReachable(withPointers: Bool) -> Int? {
        let roots = rootIDs.filter { $0 >= 0 }
        if roots.isEmpty { return nil }
        // Some roots hold pointer-free objects: try a few walks.
        for _ in 0..<7 {
            if let id = walk(from: roots[rng.int(roots.count)], withPointers: withPointers) { return id }
        }
        return walk(from: roots[rng.int(roots.count)], withPointers: withPointers)
    }

    private func walk(from root: Int, withPointers: Bool) -> Int? {
        var cur = root
        var best: Int? = (!withPointers || !nodes[cur]!.edges.isEmpty) ? cur : nil
        let steps = rng.int(24)
        for _ in 0..<steps {
            let edges = nodes[cur]!.edges
            if edges.isEmpty { break }
            var next = -1
            for _ in 0..<3 where next < 0 { next = edges[rng.int(edges.count)] }
            if next < 0 { break }
            cur = next
            if !withPointers || !nodes[cur]!.edges.isEmpty { best = cur }
        }
        return best
    }

    // MARK: allocation

    func randomKind() -> Kind {
        let r = rng.int(100)
        if options.allowLarge && r < 2 {
            switch rng.int(3) {
            case 0: return .large
            case 1: return .largeBytes(32_776 + 8 * rng.int(5_000))
            default: return .array(1_400 + rng.int(300))     // 24 B elements: > 32 KiB
            }
        }
        if options.allowArrays && r < 8 { return .array(2 + rng.int(30)) }
        if r < 45 { return .a }
        if r < 75 { return .b }
        return .bytes(16 + 8 * rng.int(rng.chance(80) ? 16 : 200))
    }

    func pointerWords(_ k: Kind) -> [Int] {
        switch k {
        case .a: return [0, 1]
        case .b: return [0, 1, 2, 3]
        case .bytes, .largeBytes: return []
        case .array(let n): return (0..<n).flatMap { [3 * $0, 3 * $0 + 1] }
        case .large: return StressTypes.largePointerWords
        }
    }

    func sizeInBytes(_ k: Kind) -> Int {
        switch k {
        case .a: return 24
        case .b: return 48
        case .bytes(let n), .largeBytes(let n): return n
        case .array(let n): return 24 * n
        case .large: return 8 * StressTypes.largeWords
        }
    }

    func rawAllocate(_ k: Kind) -> Ref {
        switch k {
        case .a: return m.allocate(types.a)
        case .b: return m.allocate(types.b)
        case .bytes(let n), .largeBytes(let n): return m.allocateBytes(n)
        case .array(let n): return m.allocateArray(types.a, count: n)
        case .large: return m.allocate(types.large)
        }
    }

    /// Every word of a new object must be zero (all of it for small objects, a sample
    /// for large ones).
    func checkZeroed(_ r: Ref, _ k: Kind) {
        let words = sizeInBytes(k) / 8
        let p = r.rawPointer
        if words <= 256 {
            for w in 0..<words where p.load(fromByteOffset: 8 * w, as: UInt.self) != 0 {
                fail("new \(k) object \(r): word \(w) is not zero")
                return
            }
        } else {
            for w in [0, 1, words / 2, words - 1] + (0..<32).map({ _ in rng.int(words) })
            where p.load(fromByteOffset: 8 * w, as: UInt.self) != 0 {
                fail("new \(k) object \(r): word \(w) is not zero")
                return
            }
        }
    }

    /// Data words of object `id`: (word, value).
    func dataWords(_ id: Int, _ k: Kind) -> [(Int, Int)] {
        let c = stressChecksum(id)
        switch k {
        case .a: return [(2, c)]
        case .b: return [(4, c), (5, id)]
        case .bytes(let n): return (0..<(n / 8)).map { ($0, c &+ $0) }
        case .array(let n):
            // Every element of small arrays, a spread of elements of large ones.
            let elems = n <= 64 ? Array(0..<n) : [0, 1, n / 3, n / 2, n - 2, n - 1]
            return elems.map { (3 * $0 + 2, c ^ $0) }
        case .large: return [(2, c), (4998, c ^ 1)]
        case .largeBytes(let n):
            let last = n / 8 - 1
            return [(0, c), (last / 2, c &+ 1), (last, c &+ 2)]
        }
    }

    /// Allocate an object of kind `k`, check it is zero, write its data. The caller must
    /// link it before the next allocation.
    func newNode(_ k: Kind) -> Int {
        let r = rawAllocate(k)
        allocations += 1
        checkZeroed(r, k)
        let id = nextID
        nextID += 1
        for (w, v) in dataWords(id, k) { m.storeWord(r, w, v) }
        let pw = pointerWords(k)
        nodes[id] = Node(ref: r, kind: k, ptrWords: pw, edges: Array(repeating: -1, count: pw.count))
        return id
    }

    func setEdge(_ from: Int, _ slot: Int, _ to: Int) {
        let n = nodes[from]!
        m.store(n.ref, n.ptrWords[slot], ref(to))
        nodes[from]!.edges[slot] = to
    }

    // MARK: operations

    func opAllocate() {
        // Choose the parent first: it is reachable, so a collection during the
        // allocation keeps it.
        let parent = randomReachable(withPointers: true)
        let toRoot = parent == nil || rng.chance(15)
        let id = newNode(randomKind())
        if toRoot {
            if rootSomewhere(id, replacing: false) { return }
            if parent == nil { rootSomewhere(id, replacing: true); return }
        }
        // Prefer an empty slot (of this parent or of a few others), so the graph grows
        // rather than churns; otherwise overwrite one, cutting its old target loose.
        var p = parent!
        for attempt in 0..<6 {
            let edges = nodes[p]!.edges
            for _ in 0..<4 {
                let slot = rng.int(edges.count)
                if edges[slot] < 0 { setEdge(p, slot, id); return }
            }
            if attempt == 2 && rootSomewhere(id, replacing: false) { return }
            if let q = randomReachable(withPointers: true) { p = q }
        }
        setEdge(p, rng.int(nodes[p]!.edges.count), id)
    }

    func opRewire() {
        guard let from = randomReachable(withPointers: true) else { return opAllocate() }
        let to = rng.chance(lastReachable < options.minLive ? 2 : 12) ? -1 : (randomReachable(withPointers: false) ?? -1)
        // Half the time into an empty slot (sharing, cycles), else over whatever is there
        // (which may cut a subgraph loose).
        let edges = nodes[from]!.edges
        var slot = rng.int(edges.count)
        let growing = lastReachable < options.minLive
        if growing || rng.chance(60) { for _ in 0..<6 where edges[slot] >= 0 { slot = rng.int(edges.count) } }
        if growing && edges[slot] >= 0 { return }     // do not cut anything loose while small
        setEdge(from, slot, to)
    }

    func opDropRoot() {
        let r = rng.int(3)
        if r == 0 && !handles.isEmpty {
            handles.remove(at: rng.int(handles.count))      // the Handle deinit releases the slot
        } else if r == 1 && !globals.isEmpty {
            setGlobalRoot(rng.int(globals.count), -1)
        } else {
            setFrameRoot(rng.int(frameRoots.count), -1)
        }
    }

    func opCopyRoot() {
        guard let id = randomReachable(withPointers: false) else { return }
        rootSomewhere(id, replacing: lastReachable >= options.minLive && rng.chance(10))
    }

    func opGarbage() {
        // Unreachable at once; exercises sweeping and zeroing of reused slots.
        let k: Kind
        if options.allowLarge && rng.chance(2) {
            k = .largeBytes(32_776 + 8 * rng.int(10_000))
        } else if rng.chance(50) {
            k = .bytes(16 + 8 * rng.int(500))
        } else {
            k = rng.chance(50) ? .a : .b
        }
        let r = rawAllocate(k)
        allocations += 1
        checkZeroed(r, k)
        // Dirty it so that reuse without zeroing would show.
        let words = min(sizeInBytes(k) / 8, 64)
        for w in 0..<words where !pointerWords(k).contains(w) { m.storeWord(r, w, -1) }
    }

    // MARK: checking

    /// Object ids reachable from the roots, per the mirror.
    func reachable() -> [Int] {
        var seen = Set<Int>()
        var order: [Int] = []
        var stack = rootIDs.filter { $0 >= 0 }
        // Alive though perhaps unreachable: pooled objects (roots), objects with
        // finalizers and what they refer to, targets of weak references not yet nil
        // (alive until the next collection finds them dead).
        stack += pooledIDs + Array(finSet) + weaks.filter { !$0.isNil }.map(\.target)
        while let id = stack.popLast() {
            if !seen.insert(id).inserted { continue }
            order.append(id)
            for e in nodes[id]!.edges where e >= 0 && !seen.contains(e) { stack.append(e) }
        }
        return order
    }

    /// Check the roots and every reachable object; forget unreachable objects.
    /// Returns the number of reachable objects.
    @discardableResult
    func verify(_ context: String) -> Int {
        if let f = frame {
            for (i, id) in frameRoots.enumerated() where f[i] != ref(id) {
                fail("\(context): frame slot \(i) holds \(f[i]), expected \(ref(id)) (object \(id))")
            }
        }
        for (i, id) in globalRoots.enumerated() where globals[i].value != ref(id) {
            fail("\(context): global \(i) holds \(globals[i].value), expected \(ref(id))")
        }
        for (i, h) in handles.enumerated() where h.handle.value != ref(h.id) {
            fail("\(context): handle \(i) holds \(h.handle.value), expected \(ref(h.id))")
        }
        let live = reachable()
        for id in live {
            let n = nodes[id]!
            for (w, v) in dataWords(id, n.kind) {
                let got = m.loadWord(n.ref, w)
                if got != v {
                    fail("\(context): object \(id) (\(n.kind)) at \(n.ref): data word \(w) is \(got), expected \(v)")
                    break
                }
            }
            for (k, w) in n.ptrWords.enumerated() {
                let got = m.load(n.ref, w)
                let want = ref(n.edges[k])
                if got != want {
                    fail("\(context): object \(id) (\(n.kind)) at \(n.ref): pointer word \(w) is \(got), expected \(want) (object \(n.edges[k]))")
                    break
                }
            }
            if failures.count >= 20 { break }
        }
        // Forget what is unreachable: it can never be chosen again.
        if live.count != nodes.count {
            let keep = Set(live)
            nodes = nodes.filter { keep.contains($0.key) }
        }
        lastReachable = live.count
        return live.count
    }

    /// Recount what is reachable and forget the rest (no heap access).
    func refreshLive() {
        let live = reachable()
        if live.count != nodes.count {
            let keep = Set(live)
            nodes = nodes.filter { keep.contains($0.key) }
        }
        lastReachable = live.count
    }

    var summary: String {
        "\(allocations) allocations, \(lastReachable) objects reachable, \(explicitCollections) explicit collections, \(heap.memStats().numGC) cycles"
    }

    /// Collect, verify, and compare HeapObjects with the reachable count.
    func checkpoint(_ context: String) {
        if options.lifecycle { return lifecycleCheckpoint(context) }
        heap.collect()
        explicitCollections += 1
        let n = verify(context)
        if options.checkHeapObjects {
            let stats = heap.memStats()
            if options.nativeRoots ? stats.heapObjects < UInt64(n) : stats.heapObjects != UInt64(n) {
                fail("\(context): HeapObjects \(stats.heapObjects), but \(n) objects are reachable")
            }
            if stats.heapObjects != stats.mallocs - stats.frees {
                fail("\(context): HeapObjects \(stats.heapObjects) != Mallocs \(stats.mallocs) - Frees \(stats.frees)")
            }
            heap.checkHeapInvariants()
        }
    }

    func run(_ context: String) {
        for op in 1...options.ops {
            let r = rng.int(100)
            if options.lifecycle && rng.chance(12) {
                opLifecycle()
            } else if r < 45 {
                opAllocate()
            } else if r < 72 {
                opRewire()
            } else if r < 80 {
                if lastReachable >= options.minLive && rng.chance(30) { opDropRoot() } else { opCopyRoot() }
            } else if r < 100 - options.garbagePercent {
                opCopyRoot()
            } else {
                opGarbage()
            }
            if options.randomCollectPermille > 0 && rng.int(1000) < options.randomCollectPermille {
                heap.collect()
                explicitCollections += 1
            }
            if let every = options.collectEvery, op % every == 0 {
                checkpoint("\(context) op \(op)")
            } else if op % options.verifyEvery == 0 {
                verify("\(context) op \(op)")
            } else if op % 250 == 0 {
                refreshLive()
            }
            // Keep the live set bounded.
            if lastReachable > options.maxLive && rng.chance(30) { opDropRoot() }
            if !failures.isEmpty { return }
        }
    }

    // MARK: lifecycle operations and predictions

    func opLifecycle() {
        lifecycleOps += 1
        switch rng.int(10) {
        case 0, 1:
            // A finalizer on a reachable object that has none.
            guard let id = randomReachable(withPointers: false), !finSet.contains(id), !expectedFinalized.contains(id) else { return }
            let n = nodes[id]!
            let words = dataWords(id, n.kind)
            let log = finLog
            m.setFinalizer(n.ref) { m, obj in
                // The object is intact when its finalizer sees it.
                for (w, v) in words where m.loadWord(obj, w) != v { log.add("bad \(id)"); return }
                log.add("\(id)")
            }
            finSet.insert(id)
        case 2, 3:
            // A weak reference to a reachable object; equal to any earlier live one.
            guard let id = randomReachable(withPointers: false) else { return }
            let w = m.makeWeak(ref(id))
            if let old = weaks.first(where: { $0.target == id && !$0.isNil }), old.handle.value != w.handle {
                fail("makeWeak(\(id)) gave \(w), an earlier live weak reference to it is \(old.handle.value)")
            }
            if weaks.count >= 48 { weaks.remove(at: rng.int(weaks.count)) }
            weaks.append((heap.makeHandle(w.handle), id, false))
        case 4, 5:
            // Read a weak reference; sometimes root what it gives back.
            guard !weaks.isEmpty else { return }
            let w = weaks[rng.int(weaks.count)]
            let v = m.value(WeakRef(handle: w.handle.value))
            let want = w.isNil ? Ref.null : ref(w.target)
            if v != want { fail("weak reference to \(w.target) reads \(v), expected \(want)") }
            if !v.isNull && rng.chance(30) { rootSomewhere(w.target, replacing: lastReachable >= options.minLive) }
        case 6, 7:
            // Put a fresh leaf object in the pool.
            let id = newNode(.a)
            pool!.put(m, ref(id))
            if poolPrivate < 0 { poolPrivate = id } else { poolStack.append(id) }
        default:
            // Get from the pool: exactly the object the mirror predicts, or a new one.
            var want = -1
            if poolPrivate >= 0 { want = poolPrivate; poolPrivate = -1 }
            else if let x = poolStack.popLast() { want = x }
            else if victimPrivate >= 0 { want = victimPrivate; victimPrivate = -1 }
            else if let x = victimStack.popLast() { want = x }
            let got = pool!.get(m)
            if want >= 0 {
                if got != ref(want) { fail("pool get gave \(got), expected \(ref(want)) (object \(want))"); return }
                for (w, v) in dataWords(want, .a) where m.loadWord(got, w) != v { fail("pooled object \(want) corrupted") }
                rootSomewhere(want, replacing: true)
            } else {
                // New: a zeroed A; adopt it as a node.
                checkZeroed(got, .a)
                let id = nextID
                nextID += 1
                for (w, v) in dataWords(id, .a) { m.storeWord(got, w, v) }
                nodes[id] = Node(ref: got, kind: .a, ptrWords: [0, 1], edges: [-1, -1])
                rootSomewhere(id, replacing: true)
            }
        }
    }

    /// Ids reachable from `from` through the mirror's edges.
    func reach(_ from: [Int], into seen: inout Set<Int>) {
        var stack = from.filter { $0 >= 0 }
        while let id = stack.popLast() {
            if !seen.insert(id).inserted { continue }
            for e in nodes[id]!.edges where e >= 0 && !seen.contains(e) { stack.append(e) }
        }
    }

    /// Predict the collection (Runtime/Specials.swift's rules), collect, wait for the
    /// finalizers, and compare: the set of finalizers run, every weak reference's value.
    func lifecycleCheckpoint(_ context: String) {
        // Pause #1 turns the pool's primaries into victims and drops the old victims.
        victimPrivate = poolPrivate; poolPrivate = -1
        victimStack = poolStack; poolStack = []
        // Marking: the roots, the pool; then through each finalizer's object (not the
        // object itself).
        var marked = Set<Int>()
        reach(rootIDs + pooledIDs, into: &marked)
        for f in finSet { reach(nodes[f]!.edges, into: &marked) }
        let queued = finSet.subtracting(marked)
        for i in weaks.indices where !weaks[i].isNil && !marked.contains(weaks[i].target) { weaks[i].isNil = true }
        finSet.subtract(queued)
        expectedFinalized.formUnion(queued)
        heap.collect()
        explicitCollections += 1
        heap.waitForFinalizers()
        let ran = Set(finLog.all)
        let want = Set(expectedFinalized.map { "\($0)" })
        if ran != want {
            fail("\(context): finalizers run \(ran.subtracting(want).sorted()) not predicted, \(want.subtracting(ran).sorted()) predicted but not run")
        }
        for w in weaks {
            let v = m.value(WeakRef(handle: w.handle.value))
            let expect = w.isNil ? Ref.null : ref(w.target)
            if v != expect { fail("\(context): weak reference to \(w.target) reads \(v), expected \(expect)") }
        }
        if pool!.count != pooledIDs.count { fail("\(context): pool holds \(pool!.count), expected \(pooledIDs.count)") }
        verify(context)
        heap.checkHeapInvariants()
        heap.checkSpecialsInvariants()
        if heap.lifecycleStats().finalizersRun != expectedFinalized.count {
            fail("\(context): finalizersRun \(heap.lifecycleStats().finalizersRun), expected \(expectedFinalized.count)")
        }
    }

    /// Move frame roots into handles and pop the frame, so the graph stays rooted after
    /// this mutator detaches.
    func releaseFrame() {
        guard let f = frame else { return }
        for (i, id) in frameRoots.enumerated() where id >= 0 {
            handles.append((heap.makeHandle(ref(id)), id))
            frameRoots[i] = -1
        }
        m.popFrame(f)
        frame = nil
        frameRoots = []
    }
}

final class StressTests: WatchdogTestCase {

    private func assertNoFailures(_ g: GraphModel, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(g.failures, [], "\(what): model disagrees with the heap", file: file, line: line)
    }

    /// The model with part of its roots only in native locals (conservative stack
    /// scanning), with checkmark and clobberfree: every object the model reaches, those
    /// roots' objects included, stays intact through automatic and explicit cycles.
    func testRandomGraphWithNativeRootsAndCheckmark() {
        var o = StressOptions()
        o.nativeRoots = true
        o.ops = 8_000
        o.collectEvery = 1_000
        o.verifyEvery = 400
        checkGraphInChild(Configuration(gcPercent: 30, clobberFree: true, checkmark: true), o, seed: 17, name: "native roots")
        checkGraphInChild(Configuration(gcPercent: 10), o, seed: 18, name: "native roots, GOGC=10")
    }

    /// Random graphs with explicit collections: after each one, every reachable object
    /// is intact and HeapObjects equals the number of reachable objects.
    func testRandomGraphWithExplicitCollections() throws {
        for seed: UInt64 in [1, 2] {
            let heap = try Heap(configuration: Configuration(gcPercent: 100).withSelfChecks.precise)
            let types = try StressTypes(heap)
            let globals = (0..<4).map { _ in heap.makeGlobal() }
            heap.withMutator { m in
                var o = StressOptions()
                o.ops = 24_000
                o.collectEvery = 2_000
                let g = GraphModel(heap: heap, mutator: m, types: types, options: o, seed: seed, globals: globals)
                g.run("seed \(seed)")
                g.checkpoint("seed \(seed) end")
                assertNoFailures(g, "seed \(seed)")
                XCTAssertGreaterThan(g.lastReachable, 50, "the graph should not have collapsed")
                print("explicit collections, seed \(seed): \(g.summary)")
                // Drop every root: everything goes.
                for i in 0..<g.frameRoots.count { g.setFrameRoot(i, -1) }
                for i in 0..<g.globalRoots.count { g.setGlobalRoot(i, -1) }
                g.handles.removeAll()
                g.checkpoint("seed \(seed) no roots")
                XCTAssertEqual(g.lastReachable, 0)
                assertNoFailures(g, "seed \(seed) after dropping roots")
                g.releaseFrame()
            }
            let stats = heap.memStats()
            XCTAssertEqual(stats.heapObjects, 0)
            XCTAssertEqual(stats.heapAlloc, 0)
            XCTAssertGreaterThanOrEqual(stats.numForcedGC, 14)
            heap.checkHeapInvariants()
        }
    }

    /// Small objects only, collections triggered by the heap goal (GOGC=20) and never
    /// explicitly during the run; the graph is verified between cycles, and HeapObjects
    /// is checked with explicit collections at two checkpoints only.
    ///
    /// No background workers: the mutator's assists mark and finish every cycle, so how
    /// many cycles the run sees is set by what it allocates, not by when the OS runs a
    /// worker thread (a starved worker finished fewer than three on a busy machine).
    /// The other stress tests run with workers and the background sweeper.
    func testRandomGraphWithAutomaticCollectionsOnly() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 20, markWorkers: 0).withSelfChecks.precise)
        let types = try StressTypes(heap)
        let globals = (0..<4).map { _ in heap.makeGlobal() }
        heap.withMutator { m in
            var o = StressOptions()
            o.ops = 20_000
            o.collectEvery = nil
            o.verifyEvery = 1_000
            o.allowLarge = false
            o.garbagePercent = 20
            let g = GraphModel(heap: heap, mutator: m, types: types, options: o, seed: 77, globals: globals)
            g.run("auto part 1")
            let automatic = heap.memStats().numGC
            g.checkpoint("auto checkpoint 1")
            g.run("auto part 2")
            g.checkpoint("auto checkpoint 2")
            assertNoFailures(g, "automatic")
            print("automatic collections: \(g.summary)")
            let stats = heap.memStats()
            XCTAssertGreaterThanOrEqual(automatic, 3, "the heap goal should have triggered several cycles")
            XCTAssertEqual(stats.numForcedGC, 2)
            XCTAssertGreaterThanOrEqual(stats.numGC, stats.numForcedGC + automatic)
            g.releaseFrame()
        }
        heap.checkHeapInvariants()
    }

    /// Checked mode (every load, store and frame slot validated) on a smaller graph.
    func testRandomGraphCheckedMode() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: 50, checked: true).withSelfChecks.precise)
        let types = try StressTypes(heap)
        let globals = (0..<3).map { _ in heap.makeGlobal() }
        heap.withMutator { m in
            var o = StressOptions()
            o.ops = 6_000
            o.collectEvery = 1_000
            o.verifyEvery = 500
            o.maxLive = 1_000
            let g = GraphModel(heap: heap, mutator: m, types: types, options: o, seed: 5, globals: globals)
            g.run("checked")
            g.checkpoint("checked end")
            assertNoFailures(g, "checked")
            print("checked mode: \(g.summary)")
            g.releaseFrame()
        }
        heap.checkHeapInvariants()
    }

    /// The collector's own verification modes: GODEBUG=gccheckmark=1 (re-mark with the
    /// world stopped and compare) and clobberfree=1 (poison freed memory, so a freed
    /// object still in the graph would fail verification). Run in a child process so
    /// that a fatal error in the runtime fails this test instead of ending the suite.
    func testRandomGraphWithCheckmarkAndClobberFree() {
        var o = StressOptions()
        o.ops = 6_000
        o.collectEvery = 1_000
        o.verifyEvery = 500
        o.maxLive = 1_000
        checkGraphInChild(Configuration(gcPercent: 30, clobberFree: true, checkmark: true), o, seed: 55, name: "checkmark")
    }

    /// Finalizers, weak references and a pool among the random operations, with
    /// collections only at checkpoints (GOGC=off) so that the mirror predicts each one
    /// exactly: which finalizers have run, which weak references read nil, what the
    /// pool holds and which object each get returns. Then again under gccheckmark and
    /// clobberfree, and in checked mode, in child processes.
    func testRandomGraphWithFinalizersWeakReferencesAndPool() throws {
        var o = StressOptions()
        o.lifecycle = true
        o.ops = 12_000
        o.collectEvery = 800
        o.verifyEvery = 400
        o.maxLive = 1_500
        for seed: UInt64 in [3, 4] {
            let heap = try Heap(configuration: Configuration(gcPercent: nil).withSelfChecks.precise)
            let types = try StressTypes(heap)
            let globals = (0..<3).map { _ in heap.makeGlobal() }
            heap.withMutator { m in
                let g = GraphModel(heap: heap, mutator: m, types: types, options: o, seed: seed, globals: globals)
                g.run("lifecycle seed \(seed)")
                g.checkpoint("lifecycle seed \(seed) end")
                assertNoFailures(g, "lifecycle seed \(seed)")
                XCTAssertGreaterThan(g.expectedFinalized.count, 10, "finalizers should have run")
                XCTAssertGreaterThan(g.weaks.filter(\.isNil).count, 0, "some weak references should be nil")
                print("lifecycle, seed \(seed): \(g.summary), \(g.lifecycleOps) lifecycle operations, \(g.expectedFinalized.count) finalizers run, \(g.weaks.filter(\.isNil).count)/\(g.weaks.count) weak references nil, stats \(heap.lifecycleStats())")
                g.releaseFrame()
            }
        }
        o.ops = 6_000
        if lifeUnderSanitizer { return }   // no forked children under TSan
        checkGraphInChild(Configuration(gcPercent: nil, clobberFree: true, checkmark: true), o, seed: 56, name: "lifecycle checkmark")
        checkGraphInChild(Configuration(gcPercent: nil, checked: true), o, seed: 57, name: "lifecycle checked")
    }

    /// Three threads, each attached as its own mutator with its own graph and roots,
    /// running concurrently; collections are triggered by the heap goal and by
    /// `collect()` calls from the threads. Each thread verifies its graph as it goes and
    /// at the end; then the main thread collects and checks every graph and HeapObjects.
    func testRandomGraphsOnThreeThreads() throws {
        let threads = 3
        let heap = try Heap(configuration: Configuration(gcPercent: 25).withSelfChecks.precise)
        let types = try StressTypes(heap)
        let globals = (0..<threads).map { _ in (0..<3).map { _ in heap.makeGlobal() } }
        let box = ModelBox(count: threads)
        heap.withMutator { m in
            m.blocking {
                runThreads(threads) { t in
                    heap.withMutator { tm in
                        var o = StressOptions()
                        o.ops = 12_000
                        o.collectEvery = nil
                        o.verifyEvery = 700
                        o.randomCollectPermille = 1
                        o.maxLive = 1_200
                        o.checkHeapObjects = false
                        let g = GraphModel(heap: heap, mutator: tm, types: types, options: o,
                                           seed: 1_000 + UInt64(t), globals: globals[t])
                        g.run("thread \(t)")
                        g.verify("thread \(t) end")
                        g.releaseFrame()
                        g.verify("thread \(t) after moving roots to handles")
                        box.set(t, g)
                    }
                }
            }
            heap.collect()
            print("three threads: \(heap.memStats().numGC) cycles, \(heap.memStats().numForcedGC) forced")
            var total = 0
            for t in 0..<threads {
                guard let g = box.get(t) else { XCTFail("thread \(t) left no model"); continue }
                assertNoFailures(g, "thread \(t)")
                g.m = m
                total += g.verify("main after threads, graph \(t)")
                assertNoFailures(g, "thread \(t) checked from main")
            }
            let stats = heap.memStats()
            XCTAssertEqual(stats.heapObjects, UInt64(total), "HeapObjects vs objects reachable from all graphs")
            XCTAssertGreaterThan(stats.numGC, stats.numForcedGC, "the heap goal should have triggered cycles")
            XCTAssertGreaterThan(stats.numForcedGC, 1)
            for t in 0..<threads { box.get(t)?.handles.removeAll() }
            for t in 0..<threads { for gl in globals[t] { m.store(gl, .null) } }
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
        }
        heap.checkHeapInvariants()
    }
}

extension StressTests {
    /// Two mutator threads run their graphs while a third thread, never attached, calls
    /// `collect()` over and over: cycles started and helped from outside any mutator.
    /// Halfway through its run each mutator waits (answering safepoints) until two more
    /// calls have returned, so whole `collect()` calls run while both graphs are live,
    /// however the OS schedules the threads (a collector thread that started late could
    /// find both mutators done and make no call at all). A collect() from outside that
    /// never returns shows as a hang (60 s bound, then the test fails).
    func testRandomGraphsWhileAnUnattachedThreadCollects() throws {
        let mutators = 2
        let heap = try Heap(configuration: Configuration(gcPercent: 50).withSelfChecks.precise)
        let types = try StressTypes(heap)
        let globals = (0..<mutators).map { _ in (0..<3).map { _ in heap.makeGlobal() } }
        let box = ModelBox(count: mutators)
        runThreads(mutators + 1) { t in
            if t == mutators {
                repeat {
                    heap.collect()
                    box.collected()
                    usleep(500)          // spacing only: lets the mutators run between calls
                } while box.finished < mutators
                return
            }
            heap.withMutator { tm in
                var o = StressOptions()
                o.ops = 5_000            // twice
                o.collectEvery = nil
                o.verifyEvery = 500
                o.maxLive = 1_200
                o.checkHeapObjects = false
                let g = GraphModel(heap: heap, mutator: tm, types: types, options: o,
                                   seed: 2_000 + UInt64(t), globals: globals[t])
                g.run("mutator \(t) part 1")
                let calls = box.collectorCalls
                let deadline = monotonicSeconds() + 60     // bounds a hang only
                while box.collectorCalls < calls + 2 && monotonicSeconds() < deadline {
                    tm.safepoint()
                    sched_yield()
                }
                if box.collectorCalls < calls + 2 { g.fail("hang: collect() from the unattached thread did not return in 60 s") }
                g.run("mutator \(t) part 2")
                g.verify("mutator \(t) end")
                g.releaseFrame()
                box.set(t, g)
            }
            box.finish()
        }
        XCTAssertGreaterThanOrEqual(box.collectorCalls, 2)
        heap.collect()
        heap.withMutator { m in
            var total = 0
            for t in 0..<mutators {
                guard let g = box.get(t) else { XCTFail("mutator \(t) left no model"); continue }
                assertNoFailures(g, "mutator \(t)")
                g.m = m
                total += g.verify("main, graph \(t)")
                assertNoFailures(g, "graph \(t) checked from main")
            }
            XCTAssertEqual(heap.memStats().heapObjects, UInt64(total), "HeapObjects vs objects reachable from both graphs")
            print("unattached collector: \(box.collectorCalls) collect() calls, \(heap.memStats().numGC) cycles")
            for t in 0..<mutators { box.get(t)?.handles.removeAll() }
        }
        heap.checkHeapInvariants()
    }
}

/// Per-thread results handed to the main thread (lock-protected).
final class ModelBox: @unchecked Sendable {
    private let lock = NSLock()
    private var models: [GraphModel?]
    init(count: Int) { models = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ g: GraphModel) { lock.lock(); models[i] = g; lock.unlock() }
    func get(_ i: Int) -> GraphModel? { lock.lock(); defer { lock.unlock() }; return models[i] }
    private var finishedCount = 0
    private var calls = 0
    func finish() { lock.lock(); finishedCount += 1; lock.unlock() }
    func collected() { lock.lock(); calls += 1; lock.unlock() }
    var finished: Int { lock.lock(); defer { lock.unlock() }; return finishedCount }
    var collectorCalls: Int {
        get { lock.lock(); defer { lock.unlock() }; return calls }
        set { lock.lock(); calls = newValue; lock.unlock() }
    }
}

/// One single-mutator random graph run in a forked child (so that a fatal error in the
/// runtime fails the calling test instead of ending the suite): the child exits 1 with
/// the model's failures on stderr if the heap disagrees with the model.
func checkGraphInChild(_ configuration: Configuration, _ options: StressOptions, seed: UInt64, name: String,
                       file: StaticString = #filePath, line: UInt = #line) {
    let r = runInChild {
        // Exact HeapObjects needs precise roots; the native-roots variant scans the
        // native stack (and checks HeapObjects >= reachable instead).
        let heap = try! Heap(configuration: options.nativeRoots ? configuration.withSelfChecks : configuration.withSelfChecks.precise)
        let types = try! StressTypes(heap)
        let globals = (0..<3).map { _ in heap.makeGlobal() }
        var failures: [String] = []
        heap.withMutator { m in
            let g = GraphModel(heap: heap, mutator: m, types: types, options: options, seed: seed, globals: globals)
            if options.nativeRoots { g.runHoldingNativeRoots(name, depth: 12) } else { g.run(name) }
            g.checkpoint("\(name) end")
            failures = g.failures
            g.releaseFrame()
        }
        if !failures.isEmpty {
            let text = failures.joined(separator: "\n") + "\n"
            text.withCString { _ = write(2, $0, strlen($0)) }
            _exit(1)
        }
    }
    let how = r.signal.map { "died of signal \($0)" } ?? "exited with status \(r.exitStatus ?? -1)"
    XCTAssertEqual(r.exitStatus, 0, "the stress run \(how):\n\(r.stderr)", file: file, line: line)
}
