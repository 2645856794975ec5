import CTricolor
import Foundation
import Glibc
@_spi(Testing) @testable import Tricolor
@testable import TricolorProfiling
import TricolorWorkloads
import XCTest

// Issue "See inside": heap profile sampling and publication, pprof files from a real
// heap, hooks, the allocation path counters, runtime lock contention.

/// Allocation sites with names a profile can show.
enum ProfSites {
    @inline(never)
    static func makeNodes(_ m: Mutator, _ t: ObjectType, _ n: Int, keepInto keep: Ref?) {
        for i in 0..<n {
            let o = m.allocate(t)
            if let keep { m.store(keep, i, o) }
        }
    }

    @inline(never)
    static func makeBuffers(_ m: Mutator, size: Int, _ n: Int) {
        for _ in 0..<n { _ = m.allocateBytes(size) }
    }

    @inline(never)
    static func makeTinyStrings(_ m: Mutator, size: Int, _ n: Int) {
        for _ in 0..<n { _ = m.allocateBytes(size) }
    }

    @inline(never)
    static func makeLargeArrays(_ m: Mutator, _ t: ObjectType, count: Int, _ n: Int) {
        for _ in 0..<n { _ = m.allocateArray(t, count: count) }
    }
}

final class ProfilingTests: WatchdogTestCase {
    func node(_ heap: Heap) throws -> ObjectType {
        try heap.register(TypeLayout(name: "prof.Node", size: 48, pointerWords: [0, 1]))
    }

    // MARK: sampling

    /// With a fixed seed and a known mix (small typed objects, small and tiny byte
    /// objects, large arrays), the un-sampled bytes per allocation size come within 25%
    /// of the truth (each site has 200+ expected samples, so ±25% is about 3.5σ; the
    /// seed makes the run reproducible).
    func testSampledEstimatesMatchTrueTotals() throws {
        let rate = 16 * 1024
        let heap = try Heap(configuration: Configuration(memProfileRate: rate, memProfileSeed: 42))
        let t = try node(heap)
        let word = try heap.register(TypeLayout(name: "prof.Word", size: 8, pointerWords: []))
        var truth: [Int: Int] = [:]   // record size → true bytes
        heap.withMutator { m in
            ProfSites.makeNodes(m, t, 100_000, keepInto: nil); truth[48, default: 0] += 100_000 * 48
            ProfSites.makeBuffers(m, size: 4096, 1_000); truth[4096, default: 0] += 1_000 * 4096
            ProfSites.makeTinyStrings(m, size: 8, 500_000); truth[8, default: 0] += 500_000 * 8
            ProfSites.makeLargeArrays(m, word, count: 5 * 1024, 100); truth[40960, default: 0] += 100 * 40960
        }
        // Publish: the profile shows the heap as of the last completed collection.
        heap.collect()
        var estimated: [Int: Int64] = [:]
        var counts: [Int: Int] = [:]
        for r in heap.memProfile(inuseZero: true) {
            let (_, bytes) = scaleHeapSample(count: r.allocObjects, bytes: r.allocBytes, rate: rate)
            estimated[r.size, default: 0] += bytes
            counts[r.size, default: 0] += r.allocObjects
        }
        for (size, bytes) in truth {
            let est = Double(estimated[size] ?? 0)
            XCTAssertGreaterThan(counts[size] ?? 0, 50, "size \(size): too few samples")
            XCTAssertEqual(est / Double(bytes), 1.0, accuracy: 0.25,
                           "size \(size): estimated \(Int(est)) bytes, allocated \(bytes) (\(counts[size] ?? 0) samples)")
        }
        // Reproducible: a second heap with the same seed samples the same objects.
        let heap2 = try Heap(configuration: Configuration(memProfileRate: rate, memProfileSeed: 42))
        let t2 = try node(heap2)
        heap2.withMutator { m in ProfSites.makeNodes(m, t2, 100_000, keepInto: nil) }
        heap2.collect()
        let c2 = heap2.memProfile(inuseZero: true).filter { $0.size == 48 }.reduce(0) { $0 + $1.allocObjects }
        XCTAssertEqual(c2, counts[48])
    }

    /// Rate 1 records every allocation; frees found by the sweeper are attributed, and
    /// the published profile follows Go's cycle rule (allocations and frees of a cycle
    /// appear once a collection has completed).
    func testEveryAllocationAtRateOneAndInUseAfterCollection() throws {
        let heap = try Heap(configuration: Configuration(memProfileRate: 1))
        let t = try node(heap)
        let ptrs = try heap.register(TypeLayout(name: "prof.Ptrs", size: 8, pointerWords: [0]))
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                f[0] = m.allocateArray(ptrs, count: 500)
                ProfSites.makeNodes(m, t, 500, keepInto: f[0])      // kept
                ProfSites.makeNodes(m, t, 1_500, keepInto: nil)     // garbage
                // Nothing published yet: Go folds every pending cycle in.
                let before = heap.memProfile(inuseZero: true).filter { $0.size == 48 }
                XCTAssertEqual(before.reduce(0) { $0 + $1.allocObjects }, 2_000)
                heap.collect()
                let after = heap.memProfile(inuseZero: true).filter { $0.size == 48 }
                XCTAssertEqual(after.reduce(0) { $0 + $1.allocObjects }, 2_000)
                XCTAssertEqual(after.reduce(0) { $0 + $1.freeObjects }, 1_500)
                XCTAssertEqual(after.reduce(0) { $0 + $1.inUseBytes }, 500 * 48)
                XCTAssertEqual(heap.memProfile().filter { $0.size == 48 }.reduce(0) { $0 + $1.inUseObjects }, 500)
            }
            // The kept nodes die with their frame.
            heap.collect()
            let end = heap.memProfile(inuseZero: true).filter { $0.size == 48 }
            XCTAssertEqual(end.reduce(0) { $0 + $1.freeObjects }, 2_000)
            XCTAssertTrue(heap.memProfile().filter { $0.size == 48 }.isEmpty, "no 48-byte object is in use")
        }
    }

    /// Profile samples are specials (Go's specialprofile): at rate 1 a tiny block holds
    /// several samples, one per object inside it; each is freed with its block, a block
    /// kept alive keeps all of them, and none counts as a lifecycle record.
    func testTinySamplesShareABlockAndAreFreedWithIt() throws {
        let heap = try Heap(configuration: Configuration(memProfileRate: 1).withSelfChecks.precise)
        let ptrs = try heap.register(TypeLayout(name: "prof.Ptrs", size: 8, pointerWords: [0]))
        func tiny() -> [MemProfileRecord] { heap.memProfile(inuseZero: true).filter { $0.size == 6 } }
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                f[0] = m.allocateArray(ptrs, count: 10)
                for i in 0..<600 {
                    f[1] = m.allocateBytes(6)     // two fit in a 16-byte tiny block
                    if i % 60 == 0 { m.store(f[0], i / 60, f[1]) }
                }
                f[1] = .null
                XCTAssertEqual(heap.lifecycleStats().specialRecords, 0, "profile samples are not lifecycle records")
                heap.collect()
                let kept = tiny()
                XCTAssertEqual(kept.reduce(0) { $0 + $1.allocObjects }, 600)
                // Each kept object keeps its block, and with it the block's other sample.
                let inUse = kept.reduce(0) { $0 + $1.inUseObjects }
                XCTAssertGreaterThanOrEqual(inUse, 10)
                XCTAssertLessThanOrEqual(inUse, 20)
            }
            heap.collect()
            XCTAssertEqual(tiny().reduce(0) { $0 + $1.freeObjects }, 600, "every sample freed with its block")
            heap.checkSpecialsInvariants()
        }
    }

    /// Allocations after the last completed collection stay out of the published
    /// profile until the next collections complete (Go: the profile is the heap as of
    /// the last GC).
    func testNewAllocationsWaitForTheNextCollections() throws {
        let heap = try Heap(configuration: Configuration(memProfileRate: 1))
        let t = try node(heap)
        heap.withMutator { m in
            ProfSites.makeNodes(m, t, 10, keepInto: nil)
            heap.collect()
            XCTAssertEqual(heap.memProfile(inuseZero: true).filter { $0.size == 48 }.reduce(0) { $0 + $1.allocObjects }, 10)
            ProfSites.makeNodes(m, t, 7, keepInto: nil)
            XCTAssertEqual(heap.memProfile(inuseZero: true).filter { $0.size == 48 }.reduce(0) { $0 + $1.allocObjects }, 10,
                           "allocations since the last collection are not published yet")
            heap.collect()
            XCTAssertEqual(heap.memProfile(inuseZero: true).filter { $0.size == 48 }.reduce(0) { $0 + $1.allocObjects }, 17)
        }
    }

    func testMemProfileRateZeroRecordsNothing() throws {
        let heap = try Heap(configuration: Configuration(memProfileRate: 0))
        let t = try node(heap)
        heap.withMutator { m in ProfSites.makeNodes(m, t, 10_000, keepInto: nil); ProfSites.makeBuffers(m, size: 100_000, 3) }
        heap.collect()
        XCTAssertTrue(heap.memProfile(inuseZero: true).isEmpty)
    }

    func testMemProfileRateConfiguration() throws {
        XCTAssertEqual(try Configuration.fromEnvironment(["GODEBUG": "memprofilerate=1"]).memProfileRate, 1)
        XCTAssertEqual(try Configuration.fromEnvironment([:]).memProfileRate, 512 * 1024)
        XCTAssertThrowsError(try Configuration.fromEnvironment(["GODEBUG": "memprofilerate=lots"])) { e in
            XCTAssertTrue("\(e)".contains("memprofilerate=lots"), "\(e)")
        }
        XCTAssertThrowsError(try Heap(configuration: Configuration(memProfileRate: -5))) { e in
            XCTAssertTrue("\(e)".contains("-5"), "\(e)")
        }
    }

    // MARK: pprof files from a heap

    /// The heap profile decodes with Go's sample types and period, names the allocating
    /// function, and its values are the unscaled counts at rate 1.
    func testHeapProfileNamesTheAllocatingFunction() throws {
        let heap = try Heap(configuration: Configuration(memProfileRate: 1))
        let t = try node(heap)
        heap.withMutator { m in ProfSites.makeNodes(m, t, 300, keepInto: nil) }
        heap.collect()
        let p = try DecodedProfile(gunzip(heap.heapProfile()))
        XCTAssertEqual(p.sampleTypes.map(\.type), ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"])
        XCTAssertEqual(p.sampleTypes.map(\.unit), ["count", "bytes", "count", "bytes"])
        XCTAssertEqual(p.periodType, DecodedValueType(type: "space", unit: "bytes"))
        XCTAssertEqual(p.period, 1)
        XCTAssertFalse(p.mappings.isEmpty, "mappings for the binary")
        var found = false
        for s in p.samples {
            let names = try p.functionNames(s)
            guard let leaf = names.first else { continue }
            XCTAssertFalse(leaf.hasPrefix("Tricolor."), "runtime frames are trimmed: \(names)")
            if leaf.contains("makeNodes") {
                found = true
                XCTAssertEqual(s.values[0], 300)
                XCTAssertEqual(s.values[1], 300 * 48)
                XCTAssertEqual(s.values[2], 0, "all garbage after the collection")
                XCTAssertTrue(s.labels.contains { $0.key == "bytes" && $0.num == 48 })
                XCTAssertTrue(names.contains { $0.contains("testHeapProfileNamesTheAllocatingFunction") }, "\(names)")
            }
        }
        let all = try p.samples.map { try p.functionNames($0) }
        XCTAssertTrue(found, "no sample names ProfSites.makeNodes: \(all)")
    }

    /// Leading runtime frames (and the decorations Swift puts on their names) are trimmed
    /// from heap samples, as Go trims runtime.* frames; lock machinery from mutex samples.
    func testRuntimeFramesAreTrimmed() {
        let names = [
            "Swift.withUnsafeMutableBytes<A, B, C>(of: inout A, _: (Swift.UnsafeMutableRawBufferPointer) throws(B) -> C) throws(B) -> C",
            "Tricolor.Heap.profileAlloc(_: Swift.UInt, size: Swift.Int, span: Swift.UnsafeMutablePointer<Tricolor.MSpan>) -> ()",
            "generic specialization <()> of Tricolor.Mutator.withFrame<A>(slots: Swift.Int, _: (Tricolor.Frame) throws -> A) throws -> A",
            "closure #1 (Tricolor.Frame) -> () in static MyApp.Cache.remember(_: Tricolor.Mutator) -> ()",
            "Tricolor.Heap.withMutator<A>((Tricolor.Mutator) throws -> A) throws -> A",
        ]
        let frames = names.map { ProfileFrame(function: $0) }
        XCTAssertEqual(trimFrames(frames, isRuntimeFrame).map(\.function), Array(names[3...]))
        XCTAssertTrue(isRuntimeFrame(ProfileFrame(function: "function signature specialization <Arg[0] = Dead> of Tricolor.Heap.refill(_: Swift.Int) -> ()")))
        XCTAssertFalse(isRuntimeFrame(ProfileFrame(function: "function signature specialization <Arg[0] = Dead> of TricolorWorkloads.LeakyCache.remember() -> ()")))
        XCTAssertTrue(isLockFrame(ProfileFrame(function: "generic specialization <()> of Tricolor.RuntimeLock.withLock<A>(() throws -> A) throws -> A")))
        XCTAssertFalse(isLockFrame(ProfileFrame(function: "Tricolor.Heap.cacheSpan(Tricolor.SpanClass) -> ()")))
        // Nothing but runtime frames: keep them all rather than show an empty stack.
        XCTAssertEqual(trimFrames(Array(frames[1...2]), isRuntimeFrame).count, 2)
    }

    /// The leak workload, profiled, opened with `go tool pprof`: in-use space points at
    /// the cache that never evicts.
    func testGoToolPprofFindsTheLeak() throws {
        let go = try goTool()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let heap = try Heap(configuration: Configuration(memProfileRate: 64 * 1024))
        try Leak.run(heap: heap, requests: 20_000, output: { _ in })
        heap.collect()
        let file = dir.appendingPathComponent("heap.pb.gz")
        try Data(heap.heapProfile()).write(to: file)
        let inuse = try runTool(go, ["tool", "pprof", "-top", "-sample_index=inuse_space", file.path], home: dir)
        let firstRow = inuse.split(separator: "\n").first { $0.contains("%") && !$0.contains("Showing") && !$0.contains("flat%") } ?? ""
        XCTAssertTrue(firstRow.contains("LeakyCache.remember"), "top in-use function should be the leak:\n\(inuse)")
        let alloc = try runTool(go, ["tool", "pprof", "-top", "-sample_index=alloc_space", file.path], home: dir)
        XCTAssertTrue(alloc.contains("LeakyServer.renderResponse"), alloc)
        let traces = try runTool(go, ["tool", "pprof", "-traces", file.path], home: dir)
        XCTAssertTrue(traces.contains("LeakyServer.handle"), traces)
    }

    // MARK: hooks

    final class HookLog: @unchecked Sendable {
        let lock = NSLock()
        var allocs: [AllocationEvent] = []
        var frees: [FreeEvent] = []
        func add(_ e: AllocationEvent) { lock.lock(); allocs.append(e); lock.unlock() }
        func add(_ e: FreeEvent) { lock.lock(); frees.append(e); lock.unlock() }
        var counts: (Int, Int) { lock.lock(); defer { lock.unlock() }; return (allocs.count, frees.count) }
    }

    /// The hooks see every allocation and every free of a small deterministic workload;
    /// their counts match MemStats; removing them stops the calls.
    func testHooksSeeEveryAllocationAndFree() throws {
        // Exact frees: no stale word on the native stack may keep an object (an
        // unoptimized build leaves many).
        var c = Configuration()
        c.conservativeStackScan = false
        let heap = try Heap(configuration: c)
        let t = try node(heap)
        let ptrs = try heap.register(TypeLayout(name: "prof.Ptrs", size: 8, pointerWords: [0]))
        let log = HookLog()
        heap.withMutator { m in
            ProfSites.makeNodes(m, t, 100, keepInto: nil)   // before: not seen
            heap.collect()
            let before = heap.memStats()
            heap.setAllocationHook(captureStacks: true) { log.add($0) }
            heap.setFreeHook { log.add($0) }
            ProfSites.makeNodes(m, t, 1_000, keepInto: nil)
            ProfSites.makeBuffers(m, size: 100, 300)
            ProfSites.makeLargeArrays(m, ptrs, count: 10_000, 4)
            _ = m.allocateArray(ptrs, count: 7)
            heap.collect()
            let after = heap.memStats()
            let (na, nf) = log.counts
            XCTAssertEqual(na, 1_305)
            XCTAssertEqual(UInt64(na), after.mallocs - before.mallocs, "alloc hook calls vs MemStats.Mallocs")
            XCTAssertEqual(UInt64(nf), after.frees - before.frees, "free hook calls vs MemStats.Frees")
            XCTAssertEqual(Set(log.allocs.map(\.address)), Set(log.frees.map(\.address)), "everything allocated was freed")
            let e = log.allocs[0]
            XCTAssertEqual(e.typeName, "prof.Node")
            XCTAssertEqual(e.size, 48)
            XCTAssertEqual(e.slotSize, 48)
            XCTAssertEqual(e.sizeClass, SizeClassTable.sizeToClass(48))
            XCTAssertFalse(e.stack.isEmpty)
            XCTAssertTrue(heap.symbolize(stack: e.stack).contains { $0.function.contains("makeNodes") },
                          "\(heap.symbolize(stack: e.stack).map(\.function))")
            XCTAssertEqual(log.allocs.filter { $0.typeName == "<bytes>" }.count, 300)
            let large = log.allocs.filter { $0.sizeClass == 0 }
            XCTAssertEqual(large.count, 4)
            XCTAssertEqual(large.first?.slotSize, 80_000 / 8192 * 8192 + 8192)
            XCTAssertEqual(log.frees.filter { $0.sizeClass == 0 }.count, 4)
            XCTAssertEqual(Set(log.frees.filter { $0.sizeClass == 0 }.map(\.typeName)), ["prof.Ptrs"])

            heap.setAllocationHook(nil)
            heap.setFreeHook(nil)
            ProfSites.makeNodes(m, t, 500, keepInto: nil)
            heap.collect()
            XCTAssertEqual(log.counts.0, na, "no calls after removal")
            XCTAssertEqual(log.counts.1, nf)
        }
    }

    // MARK: the allocation path

    /// Every allocation is counted at exactly one level, and each level of the chain is
    /// reached by a workload built to reach it. (No grower thread: with one, growth is
    /// usually done ahead of the allocations and none reaches the OS.)
    func testAllocPathCountsEveryLevel() throws {
        var config = Configuration(allocPathStats: true)
        config.backgroundHeapGrowth = false
        let heap = try Heap(configuration: config)
        let t = try node(heap)
        let ptrs = try heap.register(TypeLayout(name: "prof.Ptrs", size: 8, pointerWords: [0]))
        var made = 0
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                // More than the first 4 MiB chunk of pages, so the heap grows again.
                f[0] = m.allocateArray(ptrs, count: 120_000); made += 1   // large: its own span
                for i in 0..<120_000 { m.store(f[0], i, m.allocate(t)); made += 1 }  // cache, heap, OS
                for _ in 0..<100 { _ = m.allocateBytes(6); made += 1 }               // tiny
                // Free every other node: their spans come back partial from the sweep.
                for i in stride(from: 0, to: 120_000, by: 2) { m.store(f[0], i, .null) }
                heap.collect()
                for _ in 0..<5_000 { _ = m.allocate(t); made += 1 }                  // central
            }
        }
        let s = heap.allocPathStats()
        XCTAssertTrue(s.enabled)
        func count(_ l: AllocPathLevel) -> UInt64 { s.levels[l.rawValue].count }
        XCTAssertEqual(s.levels.reduce(0) { $0 + $1.count }, UInt64(made), "one level per allocation")
        XCTAssertEqual(count(.large), 1)
        for l in [AllocPathLevel.cache, .tiny, .central, .heap, .os] {
            XCTAssertGreaterThan(count(l), 0, "\(l.label) never counted:\n\(s.formatted())")
        }
        XCTAssertGreaterThan(count(.cache), count(.central) * 10)
        for l in s.levels { XCTAssertEqual(l.histogram.reduce(0, +), l.count) }
        XCTAssertGreaterThan(s.spansCreated, 0)
        XCTAssertGreaterThanOrEqual(s.spansCached, s.spansUncached)
        XCTAssertGreaterThan(s.spansSwept, 0)
        XCTAssertGreaterThan(s.heapGrows, 0)
        let text = s.formatted()
        for l in AllocPathLevel.allCases { XCTAssertTrue(text.contains(l.label), text) }
    }

    /// Off, only the lifecycle counts are kept.
    func testAllocPathOffKeepsLifecycleCounts() throws {
        let heap = try Heap(configuration: Configuration())
        let t = try node(heap)
        heap.withMutator { m in ProfSites.makeNodes(m, t, 10_000, keepInto: nil) }
        heap.collect()
        let s = heap.allocPathStats()
        XCTAssertFalse(s.enabled)
        XCTAssertTrue(s.levels.isEmpty)
        XCTAssertGreaterThan(s.spansCreated, 0)
        XCTAssertGreaterThan(s.spansSwept, 0)
    }

    // MARK: lock contention

    /// A wait on a runtime lock is counted for its kind and, at fraction 1, recorded
    /// with the waiter's stack; the mutex profile file decodes with Go's sample types.
    ///
    /// The lock is released only once the waiter is known to be waiting for it, not
    /// after a sleep: glibc marks a mutex a thread sleeps on (its futex word, the
    /// first int of the pthread_mutex_t, goes from 1, locked, to 2, locked with
    /// waiters), and only a thread whose attempt to take it failed does that. Fails if
    /// a contended lock() is not counted or recorded, or if lock() does not wait at
    /// all (the waiter then finishes while the lock is still held).
    func testRuntimeLockWaitIsProfiled() throws {
        let old = Heap.setMutexProfileFraction(1)
        defer { Heap.setMutexProfileFraction(old) }
        let waitsBefore = LockWaits.snapshot().first { $0.lock == "mcentral" }?.waits ?? 0
        let recordsBefore = Heap.mutexProfile().reduce(0) { $0 + $1.count }
        let lock = RuntimeLock(rank: .mcentral)
        defer { lock.destroy() }
        lock.lock()
        let started = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        started.initialize(to: 0)
        defer { started.deallocate() }
        let startedAddr = UInt(bitPattern: started)
        let lockCopy = lock
        let waiter = Thread {
            tc_store_release(UnsafeMutableRawPointer(bitPattern: startedAddr)!, 1)
            lockCopy.lock()
            lockCopy.unlock()
        }
        waiter.start()
        while tc_load_acquire(UnsafeRawPointer(bitPattern: startedAddr)!) == 0 { tc_yield() }
        // The futex word (low half of the first 8 bytes on a little-endian machine).
        let futexWord = { UInt32(truncatingIfNeeded: tc_load_acquire(UnsafeRawPointer(lock.raw))) }
        let deadline = monotonicSeconds() + 60   // bounds a hang only
        while futexWord() != 2 && !waiter.isFinished && monotonicSeconds() < deadline { tc_yield() }
        XCTAssertFalse(waiter.isFinished, "the waiter took the lock while it was held")
        XCTAssertEqual(futexWord(), 2, "the waiter never waited for the held lock")
        lock.unlock()
        while !waiter.isFinished { usleep(1_000) }
        let after = LockWaits.snapshot().first { $0.lock == "mcentral" }
        XCTAssertGreaterThan(after?.waits ?? 0, waitsBefore)
        XCTAssertGreaterThan(after?.totalWaitNs ?? 0, 0)
        XCTAssertGreaterThan(Heap.mutexProfile().reduce(0) { $0 + $1.count }, recordsBefore)
        let p = try DecodedProfile(gunzip(Heap.mutexProfileData()))
        XCTAssertEqual(p.sampleTypes, [DecodedValueType(type: "contentions", unit: "count"), DecodedValueType(type: "delay", unit: "nanoseconds")])
        XCTAssertEqual(p.periodType, DecodedValueType(type: "contentions", unit: "count"))
        XCTAssertFalse(p.samples.isEmpty)
        XCTAssertTrue(p.samples.allSatisfy { $0.values[1] > 0 })
    }

    /// Any rate is accepted (Go takes any int), and the profile's scaled counts and
    /// delays saturate instead of overflowing: at rate Int.max two sampled waits of 1 µs
    /// become Int64.max contentions and Int64.max ns. A normal rate scales exactly. Run
    /// in a child: the records and the rate are process-wide, and a trap fails only this
    /// test.
    func testMutexProfileAtHugeRateSaturates() {
        checkInChild { c in
            let waits = LockWaits.shared
            waits.records = [:]
            Heap.setMutexProfileFraction(1)
            for _ in 0..<2 { waits.recordWait(.mcentral, ns: 1_000) }   // one stack, sampled twice
            let raw = Heap.mutexProfile()
            c.expectEqual(raw.count, 1, "one stack recorded")
            c.expectEqual(raw.first?.count, 2)
            c.expectEqual(raw.first?.delayNs, 2_000)

            c.expectEqual(Heap.setMutexProfileFraction(5), 1)
            var p = try? DecodedProfile(gunzip(Heap.mutexProfileData()))
            c.expectEqual(p?.samples.map(\.values), [[10, 10_000]], "rate 5 scales exactly")

            c.expectEqual(Heap.setMutexProfileFraction(Int.max), 5)
            c.expectEqual(Heap.setMutexProfileFraction(-1), Int.max, "a negative rate only reads")
            waits.recordWait(.mcentral, ns: 1_000)   // sampling at rate Int.max does not trap either
            p = try? DecodedProfile(gunzip(Heap.mutexProfileData()))
            c.expect(p != nil, "the profile decodes")
            c.expect(p?.samples.isEmpty == false, "the sample is there")
            c.expect(p?.samples.allSatisfy { $0.values == [Int64.max, Int64.max] } == true,
                     "scaled values saturate: \(p?.samples.map(\.values) ?? [])")
            Heap.setMutexProfileFraction(0)
        }
    }

    // MARK: the collector stays correct with sampling and hooks

    /// The model-based stress test with every allocation sampled (all in the slow path),
    /// checkmark and clobberfree on, in a child process.
    func testRandomGraphSampledAtRateOneWithCheckmark() {
        var o = StressOptions()
        o.ops = 5_000
        o.collectEvery = 800
        o.verifyEvery = 400
        o.maxLive = 1_000
        checkGraphInChild(Configuration(gcPercent: 30, clobberFree: true, checkmark: true, memProfileRate: 1), o,
                          seed: 91, name: "rate 1")
    }

    /// Three mutators with frequent samples (the fast path's windows cut short all the
    /// time) while the main thread installs and removes hooks (cache mode switches with
    /// the world stopped): every graph stays intact and the profile accounts for frees.
    func testRandomGraphsOnThreeThreadsWithSamplingAndHookSwitches() throws {
        let threads = 3
        let heap = try Heap(configuration: Configuration(gcPercent: 25, memProfileRate: 2048))
        let types = try StressTypes(heap)
        let globals = (0..<threads).map { _ in (0..<3).map { _ in heap.makeGlobal() } }
        let box = ModelBox(count: threads)
        let done = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        done.initialize(to: 0)
        defer { done.deallocate() }
        let doneAddr = UInt(bitPattern: done)
        let log = HookLog()
        heap.withMutator { m in
            m.blocking {
                runThreads(threads + 1) { t in
                    if t == threads {
                        // The switcher, not attached.
                        var on = false
                        while tc_load_acquire(UnsafeRawPointer(bitPattern: doneAddr)!) < UInt(threads) {
                            on.toggle()
                            if on {
                                heap.setAllocationHook { log.add($0) }
                                heap.setFreeHook { log.add($0) }
                            } else {
                                heap.setAllocationHook(nil)
                                heap.setFreeHook(nil)
                            }
                            usleep(2_000)
                        }
                        heap.setAllocationHook(nil)
                        heap.setFreeHook(nil)
                        return
                    }
                    heap.withMutator { tm in
                        var o = StressOptions()
                        o.ops = 8_000
                        o.collectEvery = nil
                        o.verifyEvery = 700
                        o.randomCollectPermille = 1
                        o.maxLive = 1_000
                        o.checkHeapObjects = false
                        let g = GraphModel(heap: heap, mutator: tm, types: types, options: o,
                                           seed: 2_000 + UInt64(t), globals: globals[t])
                        g.run("thread \(t)")
                        g.verify("thread \(t) end")
                        g.releaseFrame()
                        box.set(t, g)
                    }
                    _ = tc_fetch_add(UnsafeMutableRawPointer(bitPattern: doneAddr)!, 1)
                }
            }
            heap.collect()
            var total = 0
            for t in 0..<threads {
                guard let g = box.get(t) else { XCTFail("thread \(t) left no model"); continue }
                XCTAssertEqual(g.failures, [], "thread \(t)")
                g.m = m
                total += g.verify("main, graph \(t)")
            }
            XCTAssertEqual(heap.memStats().heapObjects, UInt64(total))
            for t in 0..<threads { box.get(t)?.handles.removeAll() }
            for t in 0..<threads { for gl in globals[t] { m.store(gl, .null) } }
            heap.collect()
            heap.collect()
            XCTAssertEqual(heap.memStats().heapObjects, 0)
            let live = heap.memProfile().reduce(0) { $0 + $1.inUseObjects }
            XCTAssertEqual(live, 0, "every sampled object was freed and attributed")
            XCTAssertGreaterThan(heap.memProfile(inuseZero: true).reduce(0) { $0 + $1.allocObjects }, 100)
        }
        print("hook switches saw \(log.counts.0) allocations, \(log.counts.1) frees")
        heap.checkHeapInvariants()
    }
}
