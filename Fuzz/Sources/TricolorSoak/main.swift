// Soak test: nothing hangs, nothing leaks, nothing is lost.
//
//   TricolorSoak MINUTES [--threads N] [--seed S] [--round-seconds R]
//   (or Scripts/soak.sh MINUTES, which builds it)
//
// For MINUTES, in rounds of R seconds: N worker threads attach and detach (withMutator)
// over and over, build random object graphs (a spine of Nodes with cross edges and bytes
// payloads, stamped with serial numbers), allocate garbage around them, hand some to other
// threads through handles, and check every graph before letting it go; a settings thread
// flips GOGC and the memory limit and calls collect() meanwhile; a heap thread creates and
// drops small heaps (see TRICOLOR_SOAK_DROP_HEAPS below). Two heaps: one with background
// mark workers and automatic collections, one with neither (collected by collect() only).
// Not a benchmark.
//
// At the start, after round 1 (the baseline: thread stacks, malloc arenas and the
// long-lived heap have reached their working size) and at the end it reports the
// process's threads (/proc/self/status Threads:), resident memory (/proc/self/statm) and
// address space (VmSize). It exits 1 if an object was lost or the end is not flat against
// the baseline (tolerances in `Tolerance`), 0 otherwise.
//
// Heaps come and go by default (both were once defects, now fixed: dropped heaps kept
// their metadata mapped, and a heap that had run automatic collections kept its threads
// and reservation). Set a flag to 0 to leave that part out:
//   TRICOLOR_SOAK_DROP_HEAPS=0  no dropped heaps: the second heap lives for the whole run
//       too (otherwise each round gets a heap of its own, dropped at its end, and a heap
//       thread creates, uses and drops small heaps as fast as it can).
//   TRICOLOR_SOAK_DROP_COLLECTED_HEAPS=0  the dropped heaps have no mark workers and GOGC
//       off, and are collected by explicit collect() calls only (otherwise they run
//       automatic collections with background mark workers).

import Glibc
import Synchronization
import Tricolor

// MARK: options

struct Options {
    var minutes = 1.0
    var threads = 4
    var seed: UInt64 = 1
    var roundSeconds = 2.0
    var dropHeaps = envFlag("TRICOLOR_SOAK_DROP_HEAPS", default: true)
    var dropCollectedHeaps = envFlag("TRICOLOR_SOAK_DROP_COLLECTED_HEAPS", default: true)

    static func parse() -> Options {
        var o = Options()
        var args = CommandLine.arguments.dropFirst()
        func usage() -> Never {
            print("usage: TricolorSoak MINUTES [--threads N] [--seed S] [--round-seconds R]")
            exit(2)
        }
        guard let first = args.popFirst(), let m = Double(first), m > 0 else { usage() }
        o.minutes = m
        while let a = args.popFirst() {
            guard let v = args.popFirst() else { usage() }
            switch a {
            case "--threads": guard let n = Int(v), n >= 1 else { usage() }; o.threads = n
            case "--seed": guard let n = UInt64(v) else { usage() }; o.seed = n
            case "--round-seconds": guard let n = Double(v), n > 0 else { usage() }; o.roundSeconds = n
            default: usage()
            }
        }
        return o
    }
}

func envFlag(_ name: String, default value: Bool = false) -> Bool {
    guard let v = getenv(name) else { return value }
    return ["1", "true", "on", "yes"].contains(String(cString: v))
}

/// How far the end may be from the baseline (both taken with every worker joined, every
/// round heap dropped, and the long-lived heap collected and scavenged to its live set).
enum Tolerance {
    /// Threads: exactly equal. At both points the process is the main thread plus the
    /// long-lived heap's collector threads; any other thread is one that was not joined.
    static let threads = 0
    /// Resident memory: 48 MiB. What may legitimately still grow after round 1: malloc
    /// arenas' free lists (at most `mallocArenas` arenas), the long-lived heap's span and
    /// metadata chunks (never unmapped, sized by its peak heap, which the settings thread's
    /// GOGC flips can push a little higher in a later round), and glibc's cache of thread
    /// stacks (40 MiB of address space, mostly untouched). A leaked round heap holds
    /// megabytes, and a leak per round grows with the length of the run.
    static let rssBytes = 48 << 20
    /// Address space: 512 MiB. Less than one leaked round heap (it reserves 2 GiB). Covers
    /// malloc arenas created after round 1 (64 MiB of address space each, at most
    /// `mallocArenas`, set with mallopt) and glibc's thread stack cache (40 MiB).
    static let vmBytes = 512 << 20
    static let mallocArenas: Int32 = 4
}

// MARK: measuring the process

/// glibc's mallopt (malloc.h is not in the Glibc module) and its M_ARENA_MAX parameter.
@_silgen_name("mallopt") func mallopt(_ param: Int32, _ value: Int32) -> Int32
let mArenaMax: Int32 = -8

struct ProcessSnapshot {
    var threads = 0
    var rssBytes = 0
    var vmBytes = 0

    static func take() -> ProcessSnapshot {
        var s = ProcessSnapshot()
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        if let statm = readFile("/proc/self/statm") {
            let f = statm.split(separator: " ")
            if f.count > 1, let r = Int(f[1]) { s.rssBytes = r * page }
        }
        if let status = readFile("/proc/self/status") {
            for line in status.split(separator: "\n") {
                let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" })
                guard parts.count >= 2, let v = Int(parts[1]) else { continue }
                if parts[0] == "Threads" { s.threads = v }
                if parts[0] == "VmSize" { s.vmBytes = v * 1024 }
            }
        }
        return s
    }

    var text: String { "threads \(threads), rss \(mib(rssBytes)), vmsize \(mib(vmBytes))" }
}

func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n <= 0 { break }
        bytes += buf[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

func mib(_ b: Int) -> String {
    let v = Double(b) / 1048576
    return (v >= 0 ? "" : "-") + String(Int(abs(v))) + "." + String(Int(abs(v) * 10) % 10) + " MiB"
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func say(_ s: String) {
    let line = s + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}

// MARK: shared state

/// Counters and the first few losses, shared by every thread.
final class Shared: Sendable {
    let lost = Atomic<Int>(0)
    let graphs = Atomic<Int>(0)
    let objectsChecked = Atomic<Int>(0)
    let handoffs = Atomic<Int>(0)
    let flips = Atomic<Int>(0)
    let collections = Atomic<Int>(0)
    let heapsCreated = Atomic<Int>(0)
    let heapsDropped = Atomic<Int>(0)
    let attaches = Atomic<Int>(0)
    let reports = Atomic<Int>(0)

    func lose(_ what: String) {
        lost.add(1, ordering: .relaxed)
        if reports.add(1, ordering: .relaxed).newValue <= 20 { say("soak: LOST: " + what) }
    }
}

/// A small deterministic generator (SplitMix64).
struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// A heap and the types the workers use on it.
final class TestHeap: Sendable {
    let heap: Heap
    let node: ObjectType     // words: 0 serial, 1 next, 2 cross, 3 index, 4 payload, 5 payload length
    let pair: ObjectType     // garbage
    let handoffs = Mutex<[Handoff]>([])

    init(_ configuration: Configuration) {
        do {
            heap = try Heap(configuration: configuration)
            node = try heap.register(TypeLayout(name: "Node", size: 48, pointerWords: [1, 2, 4]))
            pair = try heap.register(TypeLayout(name: "Pair", size: 24, pointerWords: [1, 2]))
        } catch {
            say("soak: cannot create a heap: \(error)")
            exit(2)
        }
    }
}

/// A graph handed to another thread: the handle keeps it alive, the rest says what it holds.
struct Handoff: @unchecked Sendable {
    let handle: Handle
    let expect: GraphShape
}

/// What a graph built by `buildGraph` must contain.
struct GraphShape: Sendable {
    let serialBase: Int
    let count: Int
    /// For node i, the index of the node its cross edge points to (or -1).
    let cross: [Int]
    let payload: [Int]
}

// MARK: graphs

/// Build a graph of `count` Nodes on `m`, rooted in `f[0]`: node i points to node i-1
/// (the spine), to a random earlier node (cross edge) and to a bytes payload, with garbage
/// allocated in between. Refs to nodes are kept in a Swift array only while those nodes
/// are reachable from f[0].
func buildGraph(_ m: Mutator, _ th: TestHeap, _ f: Frame, _ rng: inout Rng, serialBase: Int, count: Int) -> GraphShape {
    var refs: [Ref] = []
    refs.reserveCapacity(count)
    var cross = [Int](repeating: -1, count: count)
    var payload = [Int](repeating: 0, count: count)
    for i in 0..<count {
        // The payload first, rooted in f[1] across the node's allocation.
        let len = 1 + rng.below(200)
        let p = m.allocateBytes(len)
        p.rawPointer.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: serialBase &+ i), count: len)
        f[1] = p
        let n = m.allocate(th.node)
        m.storeWord(n, 0, serialBase &+ i)
        m.storeWord(n, 3, i)
        m.storeWord(n, 5, len)
        m.store(n, 1, f[0])
        m.store(n, 4, f[1])
        if i > 0 && rng.below(3) == 0 {
            let j = rng.below(i)
            m.store(n, 2, refs[j])
            cross[i] = j
        }
        payload[i] = len
        f[0] = n
        f[1] = .null
        refs.append(n)
        if rng.below(4) == 0 {
            // Garbage: a short chain, rooted in f[1] only while it is being built.
            f[1] = m.allocate(th.pair)
            for _ in 0..<rng.below(8) {
                let h = m.allocate(th.pair)
                m.store(h, 1, f[1])
                f[1] = h
            }
            f[1] = .null
        }
    }
    return GraphShape(serialBase: serialBase, count: count, cross: cross, payload: payload)
}

/// Walk the graph rooted at `head` and compare it with `shape`; count a loss per mismatch.
func checkGraph(_ m: Mutator, _ head: Ref, _ shape: GraphShape, _ shared: Shared, _ who: String) {
    var byIndex = [Ref](repeating: .null, count: shape.count)
    var n = head
    var i = shape.count - 1
    var checked = 0
    while !n.isNull && i >= 0 {
        byIndex[i] = n
        n = m.load(n, 1)
        i -= 1
    }
    if i != -1 || !n.isNull {
        shared.lose("\(who): graph \(shape.serialBase): spine has the wrong length (stopped at index \(i))")
        return
    }
    for i in 0..<shape.count {
        let n = byIndex[i]
        let serial = m.loadWord(n, 0)
        if serial != shape.serialBase &+ i || m.loadWord(n, 3) != i {
            shared.lose("\(who): graph \(shape.serialBase): node \(i) at \(n) holds serial \(serial) index \(m.loadWord(n, 3))")
            return
        }
        let c = m.load(n, 2)
        let want = shape.cross[i] < 0 ? Ref.null : byIndex[shape.cross[i]]
        if c != want {
            shared.lose("\(who): graph \(shape.serialBase): node \(i) cross edge is \(c), expected \(want)")
            return
        }
        let p = m.load(n, 4)
        let len = m.loadWord(n, 5)
        if p.isNull || len != shape.payload[i] {
            shared.lose("\(who): graph \(shape.serialBase): node \(i) payload \(p) of \(len) bytes, expected \(shape.payload[i])")
            return
        }
        let b = UInt8(truncatingIfNeeded: shape.serialBase &+ i)
        let raw = p.rawPointer.assumingMemoryBound(to: UInt8.self)
        for k in 0..<len where raw[k] != b {
            shared.lose("\(who): graph \(shape.serialBase): node \(i) payload byte \(k) is \(raw[k]), expected \(b)")
            return
        }
        checked += 2
    }
    shared.objectsChecked.add(checked, ordering: .relaxed)
    shared.graphs.add(1, ordering: .relaxed)
}

// MARK: threads

func spawn(_ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let f: @Sendable () -> Void; init(_ f: @escaping @Sendable () -> Void) { self.f = f } }
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    var t = pthread_t()
    let rc = pthread_create(&t, nil, { arg in
        Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().f()
        return nil
    }, box)
    if rc != 0 { say("soak: pthread_create failed: \(rc)"); exit(2) }
    return t
}

/// A worker: attach to one of the heaps, build and check graphs, hand some over, detach; repeat.
func worker(_ id: Int, _ heaps: [TestHeap], _ deadline: Double, _ seed: UInt64, _ shared: Shared) {
    var rng = Rng(state: seed)
    var serial = Int(seed & 0xFFFF) << 32
    while now() < deadline {
        let th = heaps[rng.below(heaps.count)]
        shared.attaches.add(1, ordering: .relaxed)
        th.heap.withMutator { m in
            // Someone else's graph first, if one is waiting.
            if let h = th.handoffs.withLock({ $0.popLast() }) {
                checkGraph(m, h.handle.value, h.expect, shared, "thread \(id) (handed over)")
                shared.handoffs.add(1, ordering: .relaxed)
            }
            for _ in 0..<(1 + rng.below(6)) {
                m.withFrame(slots: 2) { f in
                    let count = 20 + rng.below(400)
                    let shape = buildGraph(m, th, f, &rng, serialBase: serial, count: count)
                    serial &+= count
                    switch rng.below(8) {
                    case 0: m.safepoint()
                    case 1: _ = m.blocking { usleep(UInt32(rng.below(500))) }
                    case 2:
                        // Hand over: a handle keeps it alive once this frame is gone.
                        let h = th.heap.makeHandle(f[0])
                        let kept = th.handoffs.withLock { list -> Bool in
                            guard list.count < 16 else { return false }
                            list.append(Handoff(handle: h, expect: shape))
                            return true
                        }
                        if kept { return }
                    default: break
                    }
                    checkGraph(m, f[0], shape, shared, "thread \(id)")
                }
            }
        }
    }
}

/// Flip GOGC and the memory limit of `heaps` and collect now and then, from a detached thread.
func settingsThread(_ heaps: [TestHeap], _ autoGC: [Bool], _ deadline: Double, _ seed: UInt64, _ shared: Shared) {
    var rng = Rng(state: seed)
    let percents: [Int?] = [nil, 10, 25, 50, 100, 400]
    let limits = [Int.max, 8 << 20, 32 << 20, 256 << 20]
    while now() < deadline {
        let i = rng.below(heaps.count)
        let h = heaps[i].heap
        switch rng.below(5) {
        case 0, 1: if autoGC[i] { h.setGCPercent(percents[rng.below(percents.count)]) }
        case 2: if autoGC[i] { h.setMemoryLimit(limits[rng.below(limits.count)]) }
        case 3:
            h.collect()
            shared.collections.add(1, ordering: .relaxed)
        default: break
        }
        shared.flips.add(1, ordering: .relaxed)
        usleep(UInt32(1000 + rng.below(9000)))
    }
}

/// Create and drop small heaps, using each briefly.
func heapThread(_ options: Options, _ deadline: Double, _ seed: UInt64, _ shared: Shared) {
    var rng = Rng(state: seed)
    while now() < deadline {
        let th = TestHeap(secondHeapConfiguration(options, reserve: 256 << 20))
        shared.heapsCreated.add(1, ordering: .relaxed)
        th.heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                let shape = buildGraph(m, th, f, &rng, serialBase: 7 << 40, count: 50 + rng.below(500))
                if rng.below(2) == 0 { th.heap.collect(); shared.collections.add(1, ordering: .relaxed) }
                checkGraph(m, f[0], shape, shared, "short-lived heap")
            }
        }
        shared.heapsDropped.add(1, ordering: .relaxed)
    }
}

/// Bring the long-lived heap down to its live set and give its free pages back, so that
/// its resident size does not depend on where the last round left it.
func quiesce(_ th: TestHeap) {
    th.handoffs.withLock { $0.removeAll() }
    let old = th.heap.setMemoryLimit(1 << 20)
    th.heap.collect()
    th.heap.collect()
    th.heap.setMemoryLimit(old)
}

/// The second heap's configuration: GOGC off and no mark workers (collect() only), unless
/// TRICOLOR_SOAK_DROP_COLLECTED_HEAPS asks for dropped heaps with automatic collections.
func secondHeapConfiguration(_ options: Options, reserve: Int) -> Configuration {
    var c = Configuration(gcPercent: options.dropCollectedHeaps ? 25 : nil, reservedAddressSpace: reserve)
    if !options.dropCollectedHeaps { c.markWorkers = 0 }
    return c
}

/// One round: the workers, the settings thread and (TRICOLOR_SOAK_DROP_HEAPS) the heap
/// thread, on the long-lived heap and the second heap (with DROP_HEAPS, one of the round's
/// own, dropped at its end); returns once every thread is joined and every handed-over
/// graph checked.
func runRound(_ round: Int, _ longLived: TestHeap, _ persistentSecond: TestHeap?, _ options: Options, _ endTime: Double, _ shared: Shared) {
    let second = persistentSecond ?? TestHeap(secondHeapConfiguration(options, reserve: 2 << 30))
    if persistentSecond == nil { shared.heapsCreated.add(1, ordering: .relaxed) }
    let heaps = [longLived, second]
    let deadline = min(now() + options.roundSeconds, max(endTime, now() + 0.5))
    var threads: [pthread_t] = []
    for w in 0..<options.threads {
        let seed = options.seed &* 1_000_003 &+ UInt64(round * 64 + w)
        threads.append(spawn { worker(w, heaps, deadline, seed, shared) })
    }
    let s = options.seed &+ UInt64(round) &* 7919
    threads.append(spawn { settingsThread(heaps, [true, options.dropCollectedHeaps], deadline, s, shared) })
    if options.dropHeaps { threads.append(spawn { heapThread(options, deadline, s &+ 1, shared) }) }
    for t in threads { pthread_join(t, nil) }
    // Graphs still waiting for a taker: check them here, then drop the handles.
    for th in heaps {
        let left = th.handoffs.withLock { list -> [Handoff] in defer { list.removeAll() }; return list }
        if !left.isEmpty {
            th.heap.withMutator { m in for h in left { checkGraph(m, h.handle.value, h.expect, shared, "main (left over)") } }
        }
    }
    if persistentSecond == nil { shared.heapsDropped.add(1, ordering: .relaxed) }
}

// MARK: main

func soak() -> Int32 {
    let options = Options.parse()
    _ = mallopt(mArenaMax, Tolerance.mallocArenas)
    let shared = Shared()
    let start = ProcessSnapshot.take()
    say("soak: \(options.threads) worker threads + a settings thread\(options.dropHeaps ? " + a heap thread" : ""), \(options.minutes) min in rounds of \(options.roundSeconds) s, seed \(options.seed); TRICOLOR_SOAK_DROP_HEAPS=\(options.dropHeaps ? 1 : 0) TRICOLOR_SOAK_DROP_COLLECTED_HEAPS=\(options.dropCollectedHeaps ? 1 : 0)")
    say("soak start: \(start.text)")

    let longLived = TestHeap(Configuration(gcPercent: 50, reservedAddressSpace: 4 << 30))
    let second = options.dropHeaps ? nil : TestHeap(secondHeapConfiguration(options, reserve: 2 << 30))
    if second != nil { shared.heapsCreated.add(1, ordering: .relaxed) }
    let endTime = now() + options.minutes * 60
    var round = 0
    var baseline: ProcessSnapshot? = nil
    shared.heapsCreated.add(1, ordering: .relaxed)
    while round == 0 || now() < endTime {
        round += 1
        runRound(round, longLived, second, options, endTime, shared)
        // Every thread of the round is joined (and with DROP_HEAPS its heap dropped).
        quiesce(longLived)
        if let second { quiesce(second) }
        if round == 1 {
            baseline = ProcessSnapshot.take()
            say("soak baseline (after round 1): \(baseline!.text)")
        } else if round % 10 == 0 {
            say("soak round \(round): \(ProcessSnapshot.take().text), lost \(shared.lost.load(ordering: .relaxed))")
        }
    }
    let end = ProcessSnapshot.take()
    let base = baseline!
    say("soak end (after round \(round)): \(end.text)")
    let dThreads = end.threads - base.threads
    let dRSS = end.rssBytes - base.rssBytes
    let dVM = end.vmBytes - base.vmBytes
    let lost = shared.lost.load(ordering: .relaxed)
    let heapsDropped = shared.heapsDropped.load(ordering: .relaxed)
    say("soak: \(round) rounds, \(shared.heapsCreated.load(ordering: .relaxed)) heaps created, \(heapsDropped) dropped, \(shared.attaches.load(ordering: .relaxed)) attaches, \(shared.graphs.load(ordering: .relaxed)) graphs (\(shared.objectsChecked.load(ordering: .relaxed)) objects) checked, \(shared.handoffs.load(ordering: .relaxed)) handed between threads, \(shared.flips.load(ordering: .relaxed)) settings changes, \(shared.collections.load(ordering: .relaxed)) collect() calls; lost objects: \(lost)")
    say("soak: threads \(dThreads >= 0 ? "+" : "")\(dThreads) (allowed +\(Tolerance.threads)), rss \(dRSS >= 0 ? "+" : "")\(mib(dRSS)) (allowed +\(mib(Tolerance.rssBytes))), vmsize \(dVM >= 0 ? "+" : "")\(mib(dVM)) (allowed +\(mib(Tolerance.vmBytes)))")
    var failures: [String] = []
    if lost != 0 { failures.append("\(lost) lost objects") }
    if dThreads > Tolerance.threads { failures.append("thread count grew by \(dThreads)") }
    if dRSS > Tolerance.rssBytes { failures.append("resident memory grew by \(mib(dRSS))") }
    if dVM > Tolerance.vmBytes { failures.append("address space grew by \(mib(dVM))") }
    if failures.isEmpty {
        say("soak: PASS")
        return 0
    }
    say("soak: FAIL: " + failures.joined(separator: ", "))
    return 1
}

exit(soak())
