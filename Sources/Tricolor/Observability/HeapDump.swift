import CTricolor
import Glibc

// Heap dumps (Go's debug.WriteHeapDump, runtime/heapdump.go), in Tricolor's own format,
// version 1, documented in docs/heapdump-format.md and read by the TricolorHeapDump
// library (`tricolor heapdump`).
//
// What a dump holds: parameters, types, arenas, free page runs, spans, every live
// object with its type, size and outgoing pointers (resolved to the base of the object
// they point into), every root named (mutator stack slot, global, handle, conservative
// native-stack word), the mutators, MemStats, the heap profile's buckets and which live
// objects they sampled, and the symbolized frames of those stacks when the caller gives
// a symbolizer (written after the world restarts).
//
// Writing stops the world once (holding the background sweeper off, as inspection
// does) and streams every record through one fixed buffer straight to the file
// descriptor: nothing proportional to the heap is built in memory, so dumping a 1 GiB
// heap needs a 1 MiB buffer, not a second GiB. Objects are written in address order.
//
// Which slots are objects: allocated slots, except in spans that still need sweeping,
// where only marked ones are (the rest is garbage the sweep frees; Go's dump sweeps
// every span first, which we avoid so that dumping does not change the heap).
//
// The fatal-error dump (Fatal.swift) calls `writeDumpBody` with `locking: false`: the
// world is not stopped (the failing thread may hold any lock) and locks are only tried;
// see FatalDump.swift for what that costs.
//
// Invariants: every OBJECT address is the base of a live slot, in increasing order;
// every edge and root target is the base of a slot of an in-use span; the END record
// repeats the counts of OBJECT and ROOT records.

/// Record tags of the heap dump format (docs/heapdump-format.md).
enum DumpTag: UInt {
    case end = 0, params = 1, type = 2, span = 3, object = 4, root = 5, mutator = 6, memStats = 7
    case bucket = 8, sample = 9, frame = 10, freeRun = 11, special = 12, arena = 13, text = 14
}

/// Root kinds of the heap dump format.
enum DumpRootKind: UInt {
    case stackSlot = 1, global = 2, handle = 3, conservative = 4, finalizerQueue = 5, special = 6, pool = 7
}

/// A buffered writer of uvarints and strings to a file descriptor. Never allocates after
/// init; a failed write is remembered (errno) and later writes are dropped.
struct DumpWriter {
    static let magic = "tricolor heapdump\n"
    static let version: UInt = 1
    let fd: Int32
    let buf: UnsafeMutablePointer<UInt8>
    let cap: Int
    var n = 0
    var written: UInt64 = 0
    var error: Int32 = 0

    init(fd: Int32, capacity: Int = 1 << 20) {
        self.fd = fd
        cap = capacity
        buf = .allocate(capacity: capacity)
    }
    func destroy() { buf.deallocate() }

    mutating func flush() {
        var off = 0
        while off < n && error == 0 {
            let r = write(fd, buf + off, n - off)
            if r > 0 { off += r } else if r < 0 && errno == EINTR { continue } else { error = r < 0 ? errno : EIO }
        }
        written += UInt64(n)
        n = 0
    }

    @inline(__always)
    mutating func uvarint(_ v: UInt) {
        if n > cap - 10 { flush() }
        var x = v
        while x >= 0x80 { buf[n] = UInt8(truncatingIfNeeded: x) | 0x80; n += 1; x >>= 7 }
        buf[n] = UInt8(x); n += 1
    }
    mutating func uvarint(_ v: Int) { uvarint(UInt(bitPattern: v)) }
    mutating func uvarint(_ v: UInt64) { uvarint(UInt(v)) }
    mutating func uvarint(_ v: UInt32) { uvarint(UInt(v)) }

    mutating func bytes(_ p: UnsafeRawBufferPointer) {
        uvarint(p.count)
        var off = 0
        while off < p.count {
            if n == cap { flush() }
            let k = min(cap - n, p.count - off)
            (buf + n).update(from: p.baseAddress!.assumingMemoryBound(to: UInt8.self) + off, count: k)
            n += k; off += k
        }
    }
    mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }
    mutating func raw(_ s: String) {
        for b in s.utf8 { if n == cap { flush() }; buf[n] = b; n += 1 }
    }
}

/// What `Heap.writeHeapDump(to:)` wrote.
public struct HeapDumpSummary: Sendable, Codable, Equatable {
    /// Objects written.
    public var objects: Int
    /// Pointers between objects written (edges).
    public var edges: Int
    /// Roots written.
    public var roots: Int
    /// Bytes of the live objects (slot sizes).
    public var objectBytes: Int
    /// Bytes of the dump file.
    public var fileBytes: UInt64
    /// How long the world was stopped to write it, in nanoseconds.
    public var pauseNs: UInt64
}

/// A heap dump could not be written: the path could not be opened or a write failed.
public struct HeapDumpError: Error, CustomStringConvertible, Equatable {
    /// What failed, naming the path and the system's reason.
    public var description: String
}

/// Counts of a dump body.
struct DumpCounts {
    var objects = 0, edges = 0, roots = 0, objectBytes = 0
    var pcs: Set<UInt> = []
    /// Per slot type word: objects and bytes (two words each), when the caller wants a
    /// tally (the fatal report's top types); nil otherwise.
    var typeTally: UnsafeMutablePointer<UInt>? = nil
}

extension Heap {
    /// Writes a heap dump (Go's `debug.WriteHeapDump`) to the file at `path`: every live
    /// object with its type, size and outgoing pointers, every root named, spans, size
    /// classes, MemStats and the heap profile's sampled stacks, in Tricolor's versioned
    /// format (docs/heapdump-format.md). Read it with `tricolor heapdump` or the
    /// `TricolorHeapDump` library.
    ///
    /// The file is replaced, never written in place: the dump goes to a temporary file
    /// beside it (after following the path's symlinks), which is fsynced and renamed over
    /// it, so a failure leaves an existing file as it was and no partial one. An existing
    /// file keeps its mode; a new one gets 0644 less the umask. Only a regular file (or
    /// none) is accepted at `path`: a FIFO, device or directory is refused, not opened
    /// (write to those with `writeHeapDump(toFileDescriptor:symbolize:)`).
    ///
    /// Stops the world once, for the whole write, and streams through a fixed 1 MiB
    /// buffer (no copy of the heap is made). `symbolize`, when given, names the
    /// functions of the sampled stacks' return addresses; it runs after the world has
    /// restarted (`TricolorProfiling`'s `writeHeapDumpSymbolized(to:)` passes its
    /// symbolizer).
    /// - Throws: `HeapDumpError` naming the path when it cannot be created or written.
    @discardableResult
    public func writeHeapDump(to path: String, symbolize: ((UInt) -> String?)? = nil) throws -> HeapDumpSummary {
        func failed(_ what: String, _ code: Int32) -> HeapDumpError {
            HeapDumpError(description: "cannot \(what) heap dump '\(path)': \(String(cString: strerror(code)))")
        }
        if path.isEmpty { throw failed("create", ENOENT) }
        let final: String
        switch FilePaths.followingFinalSymlinks(path) {
        case .success(let p): final = p
        case .failure(let e): throw failed("create", e.code)
        }
        var st = stat()
        var mode: mode_t? = nil
        if stat(final, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFREG else {
                throw HeapDumpError(description: "cannot create heap dump '\(path)': not a regular file")
            }
            // Replacing needs only the directory's permission; insist on the file's too.
            if access(final, W_OK) != 0 { throw failed("create", errno) }
            mode = st.st_mode & 0o7777
        } else if errno != ENOENT {
            throw failed("create", errno)
        }
        let (dir, base) = FilePaths.split(final)
        // O_EXCL on a fresh name (mkstemp's 0600 would need the umask, which cannot be
        // read without setting it, racing other threads).
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<100 {
            temporary = "\(dir)/.\(base).tmp-\(getpid())-\(UInt32.random(in: .min ... .max))"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else { throw failed("create", errno) }
        var summary: HeapDumpSummary? = nil
        var failure: HeapDumpError? = nil
        do {
            summary = try writeHeapDump(toFileDescriptor: fd, symbolize: symbolize)
        } catch {
            failure = HeapDumpError(description: "cannot write heap dump '\(path)': \(error)")
        }
        if failure == nil, let mode, fchmod(fd, mode) != 0 { failure = failed("write", errno) }
        if failure == nil && fsync(fd) != 0 { failure = failed("write", errno) }
        // close's EINTR on Linux still releases the descriptor.
        if close(fd) != 0 && failure == nil && errno != EINTR { failure = failed("write", errno) }
        if failure == nil && rename(temporary, final) != 0 { failure = failed("write", errno) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        return summary!
    }

    /// `writeHeapDump(to:symbolize:)` to an open file descriptor (a file, a pipe, a
    /// socket), which is left open and not fsynced. A descriptor in non-blocking mode
    /// fails the dump (EAGAIN) when a write would block.
    ///
    /// - Important: Everything but the FRAME records is written while the world is
    ///   stopped. The reader of a pipe or socket must therefore be another process, or
    ///   a thread that is not attached to this heap: an attached reader is stopped too,
    ///   the pipe fills, and the writer and the reader wait for each other for ever.
    /// - Throws: `HeapDumpError` when a write fails.
    @discardableResult
    public func writeHeapDump(toFileDescriptor fd: Int32, symbolize: ((UInt) -> String?)? = nil) throws -> HeapDumpSummary {
        var w = DumpWriter(fd: fd)
        defer { w.destroy() }
        var counts = DumpCounts()
        var pause: UInt64 = 0
        withInspectionStop {
            let t0 = tc_nanotime()
            counts = writeDumpBody(&w, locking: true)
            w.flush()
            pause = tc_nanotime() &- t0
        }
        // Frames, after the world restarted: symbolizing reads debug info and allocates.
        if let symbolize {
            for pc in counts.pcs.sorted() {
                // The call site: a return address minus 1.
                if let name = symbolize(pc &- 1) {
                    w.uvarint(DumpTag.frame.rawValue); w.uvarint(pc); w.string(name)
                }
            }
        }
        w.uvarint(DumpTag.end.rawValue)
        w.uvarint(counts.objects); w.uvarint(counts.roots)
        w.flush()
        if w.error != 0 { throw HeapDumpError(description: String(cString: strerror(w.error))) }
        return HeapDumpSummary(objects: counts.objects, edges: counts.edges, roots: counts.roots,
                               objectBytes: counts.objectBytes, fileBytes: w.written, pauseNs: pause)
    }

    /// The base of the live-or-allocated slot `v` points into, or nil (edge and root
    /// targets). World stopped, or best effort on the fatal path.
    @inline(__always)
    func dumpTarget(_ v: UInt) -> UInt? {
        guard v != 0, let (s, idx) = objectSlot(v) else { return nil }
        return s.pointee.startAddr &+ idx &* s.pointee.elemSize
    }

    /// Everything but the frames and the END record. World stopped and no sweep in
    /// flight (`locking`), or best effort (fatal path: locks only tried).
    func writeDumpBody(_ w: inout DumpWriter, locking: Bool, typeTally: UnsafeMutablePointer<UInt>? = nil) -> DumpCounts {
        var c = DumpCounts()
        c.typeTally = typeTally
        let sg = sweepgen
        w.raw(DumpWriter.magic)
        w.uvarint(DumpWriter.version)
        // PARAMS
        w.uvarint(DumpTag.params.rawValue)
        w.uvarint(8); w.uvarint(SizeClassTable.pageSize); w.uvarint(arenaBase); w.uvarint(reservedBytes)
        w.uvarint(HeapArena.bytes); w.uvarint(sg); w.uvarint(marking.phase.load(.relaxed))
        w.uvarint(marking.numGC.load(.relaxed)); w.uvarint(configuration.memProfileRate); w.uvarint(Int(getpid()))
        // TYPES (index 0 is pointer-free bytes)
        if acquire(typesLock, locking) {
            for id in 0..<typeNames.count {
                let t = types[id]
                w.uvarint(DumpTag.type.rawValue); w.uvarint(id); w.string(typeNames[id])
                w.uvarint(id == 0 ? 0 : t.size); w.uvarint(id == 0 ? 0 : t.numPtrWords)
                if id != 0, let pw = t.ptrWords { for k in 0..<t.numPtrWords { w.uvarint(pw[k]) } }
            }
            typesLock.unlock()
        }
        // ARENAS
        for i in 0..<numArenas {
            let mapped = tc_load_acquire(UnsafeRawPointer(arenas + i)) != 0
            if mapped { w.uvarint(DumpTag.arena.rawValue); w.uvarint(i); w.uvarint(arenaBase + UInt(i) << HeapArena.logBytes) }
        }
        // MUTATORS (and the cached spans)
        let cached = cachedSpans()
        forEachMutator { m in
            w.uvarint(DumpTag.mutator.rawValue)
            w.uvarint(m.pointee.id); w.uvarint(m.rawThreadID); w.string(mutatorStatusName(m.rawStatus))
            w.uvarint(m.pointee.stackTop); w.uvarint(m.pointee.stackCap)
            w.uvarint(m.pointee.nativeStackLo); w.uvarint(m.pointee.nativeStackHi)
        }
        // Heap profile: sampled live objects, by span (their profile specials).
        var samples: [UInt: [(addr: UInt, bucket: Int32)]] = [:]
        if acquire(specials.lock, locking) {
            for (base, list) in specials.bySpan {
                let l = list.filter { $0.kind == .profile }.map { (addr: $0.addr, bucket: Int32(truncatingIfNeeded: $0.arg)) }
                if !l.isEmpty { samples[base] = l }
            }
            specials.lock.unlock()
        }
        let profLocked = acquire(memProfiler.lock, locking)
        if profLocked {
            for (i, b) in memProfiler.buckets.enumerated() {
                w.uvarint(DumpTag.bucket.rawValue); w.uvarint(i); w.uvarint(b.key.size)
                w.uvarint(b.active.allocs); w.uvarint(b.active.allocBytes); w.uvarint(b.active.frees); w.uvarint(b.active.freeBytes)
                w.uvarint(b.key.stack.count)
                for pc in b.key.stack { w.uvarint(pc); c.pcs.insert(pc) }
            }
            memProfiler.lock.unlock()
        }
        // SPANS, free runs and OBJECTS, in address order.
        do {
            // The page heap under its lock for the whole walk (a scavenger or grower thread
            // may take it while the world is stopped); the fatal path only tries it.
            let heapLocked = acquire(heapLock, locking)
            defer { if heapLocked { heapLock.unlock() } }
            let grown = pages.grownPages
            var p = 0
            var runStart = -1, runScav = 0
            func endRun(_ at: Int) {
                if runStart >= 0 {
                    w.uvarint(DumpTag.freeRun.rawValue); w.uvarint(arenaBase + UInt(runStart) << SizeClassTable.pageShiftU)
                    w.uvarint(at - runStart); w.uvarint(runScav)
                    runStart = -1; runScav = 0
                }
            }
            while p < grown {
                let addr = arenaBase + UInt(p) << SizeClassTable.pageShiftU
                guard let s = spanOfAcquiring(addr), s.pointee.startAddr == addr, s.pointee.npages > 0 else {
                    if spanOfAcquiring(addr) == nil {
                        if runStart < 0 { runStart = p }
                        if pages.isScavenged(p) { runScav += 1 }
                    }
                    p += 1
                    continue
                }
                endRun(p)
                p += Int(s.pointee.npages)
                let st = s.pointee.state
                let manual = st == MSpanState.manual.rawValue
                guard st == MSpanState.inUse.rawValue || manual else { continue }
                let g = s.loadSweepgen()
                let cachedBy = cached[UInt(bitPattern: s)]
                w.uvarint(DumpTag.span.rawValue)
                w.uvarint(s.pointee.startAddr); w.uvarint(s.pointee.npages); w.uvarint(UInt(st)); w.uvarint(UInt(s.pointee.spanClass.raw))
                w.uvarint(s.pointee.elemSize); w.uvarint(s.pointee.nelems)
                w.uvarint(manual ? s.pointee.allocCount : (cachedBy != nil ? s.countAllocated() : s.pointee.allocCount))
                w.string(manual ? "" : sweepStatusName(span: g, heap: sg))
                w.uvarint(cachedBy.map { $0 + 1 } ?? 0)
                if manual { continue }
                writeSpanObjects(s, unswept: g == sg &- 2 || g == sg &+ 1, &w, &c, samples: samples[s.pointee.startAddr])
            }
            endRun(grown)
        }   // heap lock released: roots and MemStats take lower-ranked locks and the heap lock
        // ROOTS
        writeRoots(&w, &c, locking: locking)
        // MEMSTATS (the fields by name; arrays and per-class rows left out). The fatal
        // path cannot take the locks MemStats needs: it writes the lock-free counters.
        var fields: [(String, UInt64)] = []
        if locking {
            for child in Mirror(reflecting: readMemStatsLocked()).children {
                guard let name = child.label else { continue }
                if let v = child.value as? UInt64 { fields.append((name, v)) }
                else if let v = child.value as? UInt32 { fields.append((name, UInt64(v))) }
            }
        } else {
            fields = memStatsWithoutLocks()
        }
        w.uvarint(DumpTag.memStats.rawValue); w.uvarint(fields.count)
        for (name, v) in fields { w.string(name); w.uvarint(v) }
        return c
    }

    /// The live objects of an in-use span, with their edges and heap-profile samples.
    private func writeSpanObjects(_ s: UnsafeMutablePointer<MSpan>, unswept: Bool, _ w: inout DumpWriter, _ c: inout DumpCounts,
                                  samples: [(addr: UInt, bucket: Int32)]?) {
        let large = s.pointee.isLarge
        let n = s.pointee.nelems
        let elem = s.pointee.elemSize
        let scan = !s.pointee.spanClass.noscan
        let objSize = large ? s.pointee.limit - s.pointee.startAddr : elem
        for wi in 0..<Int(s.pointee.bitmapWords) {
            var bits = s.allocatedWord(wi)
            if unswept { bits &= s.markWord(wi) }
            while bits != 0 {
                let idx = UInt(wi * 64 + bits.trailingZeroBitCount)
                bits &= bits &- 1
                if idx >= n { break }
                let base = s.pointee.startAddr &+ idx &* elem
                var tid: UInt16 = 0
                if large { tid = UInt16(truncatingIfNeeded: s.pointee.largeType) }
                else if let ids = s.pointee.typeIDs { tid = ids[Int(idx)] }
                w.uvarint(DumpTag.object.rawValue)
                w.uvarint(base); w.uvarint(UInt(tid)); w.uvarint(objSize)
                c.objects += 1
                c.objectBytes += Int(objSize)
                if let t = c.typeTally { t[Int(tid) &* 2] &+= 1; t[Int(tid) &* 2 &+ 1] &+= objSize }
                let id = Int(tid & ~arrayTypeBit)
                if scan && id != 0, let pw = types[id].ptrWords {
                    let np = types[id].numPtrWords
                    let tsize = types[id].size
                    let count = tid & arrayTypeBit != 0 || large ? objSize / tsize : 1
                    // Count first (two passes over the words: no buffer).
                    var ne = 0
                    var e = base
                    for _ in 0..<count {
                        for k in 0..<np where dumpTarget(UnsafeRawPointer(bitPattern: e &+ UInt(pw[k]) &* 8)!.load(as: UInt.self)) != nil { ne += 1 }
                        e &+= tsize
                    }
                    w.uvarint(ne)
                    e = base
                    for _ in 0..<count {
                        for k in 0..<np {
                            let off = e &+ UInt(pw[k]) &* 8
                            if let t = dumpTarget(UnsafeRawPointer(bitPattern: off)!.load(as: UInt.self)) {
                                w.uvarint(off &- base); w.uvarint(t)
                            }
                        }
                        e &+= tsize
                    }
                    c.edges += ne
                } else {
                    w.uvarint(0)
                }
                if let list = samples, let hit = list.first(where: { $0.addr >= base && $0.addr < base &+ elem }) {
                    w.uvarint(DumpTag.sample.rawValue); w.uvarint(base); w.uvarint(Int(hit.bucket))
                }
            }
        }
    }

    private func writeRoots(_ w: inout DumpWriter, _ c: inout DumpCounts, locking: Bool) {
        func root(_ kind: DumpRootKind, _ target: UInt, _ a: UInt, _ b: UInt) {
            w.uvarint(DumpTag.root.rawValue); w.uvarint(kind.rawValue); w.uvarint(target); w.uvarint(a); w.uvarint(b)
            c.roots += 1
        }
        forEachMutator { m in
            let stack = m.pointee.stack
            for i in 0..<m.pointee.stackTop {
                if let t = dumpTarget(stack[i]) { root(.stackSlot, t, UInt(m.pointee.id), UInt(i)) }
            }
        }
        if acquire(globalsLock, locking) {
            for i in 0..<globalSlots.used { if let t = dumpTarget(tc_load_acquire(UnsafeRawPointer(globalSlots.slot(i)))) { root(.global, t, UInt(i), 0) } }
            for i in 0..<handleSlots.used { if let t = dumpTarget(tc_load_acquire(UnsafeRawPointer(handleSlots.slot(i)))) { root(.handle, t, UInt(i), 0) } }
            globalsLock.unlock()
        }
        // Lifecycle records (Runtime/Specials.swift): each as a SPECIAL record of its
        // object, and what the collector treats as roots because of them: a finalizer's
        // object (marked through), a weak handle object, a cleanup's argument; then the
        // finalizer queue and the pools.
        if acquire(specials.lock, locking) {
            for (_, list) in specials.bySpan {
                for sp in list where sp.kind != .profile {   // samples are written with their objects
                    w.uvarint(DumpTag.special.rawValue); w.uvarint(sp.addr); w.string(describeSpecial(sp))
                    switch sp.kind {
                    case .finalizer: if let t = dumpTarget(sp.addr) { root(.special, t, UInt(sp.kind.rawValue), 0) }
                    case .weakHandle: if let t = dumpTarget(sp.arg) { root(.special, t, UInt(sp.kind.rawValue), 0) }
                    case .cleanup: if let t = dumpTarget(sp.arg) { root(.special, t, UInt(sp.kind.rawValue), UInt(sp.id)) }
                    case .swiftBox, .profile: break
                    }
                }
            }
            specials.lock.unlock()
        }
        if locking {
            _ = finalizerQueue.forEachRoot { if let t = dumpTarget($0) { root(.finalizerQueue, t, 0, 0) } }
            _ = forEachPooled { if let t = dumpTarget($0) { root(.pool, t, 0, 0) } }
        }
        guard conservativeStacks else { return }
        let me = currentMutator()
        forEachMutator { m in
            let id = UInt(m.pointee.id)
            func visit(_ v: UInt) {
                if let (s, idx) = objectSlot(v), slotIsLiveStopped(s, idx) {
                    root(.conservative, s.pointee.startAddr &+ idx &* s.pointee.elemSize, id, v)
                }
            }
            if m == me {
                withRegistersSpilled { sp in _ = forEachNativeStackWord(m, from: sp) { visit($0) } }
            } else if m.rawStatus != .running || !locking {
                // Parked or blocking: from the stack pointer it recorded.
                _ = forEachNativeStackWord(m, from: m.pointee.nativeSP) { visit($0) }
            }
        }
    }

    /// The MemStats fields that atomic counters hold, read without any lock (the fatal
    /// path). heapAlloc and the object counts leave out objects allocated from spans
    /// still cached by mutators.
    func memStatsWithoutLocks() -> [(String, UInt64)] {
        var allocBytes: UInt = 0, freeBytes: UInt = 0, mallocs: UInt = 0, frees: UInt = 0
        for c in 1..<SizeClassTable.numSizeClasses {
            let size = UInt(SizeClassTable.classToSize[c])
            let a = heapStats.smallAllocs[c].load(.relaxed), f = heapStats.smallFrees[c].load(.relaxed)
            allocBytes &+= a &* size; freeBytes &+= f &* size; mallocs &+= a; frees &+= f
        }
        mallocs &+= heapStats.largeAllocCount.load(.relaxed); frees &+= heapStats.largeFreeCount.load(.relaxed)
        allocBytes &+= heapStats.largeAllocBytes.load(.relaxed); freeBytes &+= heapStats.largeFreeBytes.load(.relaxed)
        let stacks = heapStats.stackInuse.load(.relaxed)
        let goal = gcController.heapGoal.load(.relaxed)
        return [("heapAlloc", UInt64(allocBytes &- freeBytes)), ("totalAlloc", UInt64(allocBytes)),
                ("mallocs", UInt64(mallocs)), ("frees", UInt64(frees)), ("heapObjects", UInt64(mallocs &- frees)),
                ("heapSys", UInt64(heapStats.heapSys.load(.relaxed) &- stacks)), ("heapInuse", UInt64(heapStats.heapInuse.load(.relaxed))),
                ("heapReleased", UInt64(heapStats.heapReleased.load(.relaxed))), ("stackInuse", UInt64(stacks)),
                ("nextGC", goal == UInt.max ? 0 : UInt64(goal)), ("numGC", UInt64(marking.numGC.load(.relaxed))),
                ("heapLive", UInt64(gcController.heapLive.load(.relaxed)))]
    }

    /// Whether slot `idx` of in-use span `s` holds a live object (world stopped, no
    /// sweep in flight): allocated, and marked if the span still needs sweeping.
    func slotIsLiveStopped(_ s: UnsafeMutablePointer<MSpan>, _ idx: UInt) -> Bool {
        guard s.isAllocated(idx) else { return false }
        let g = s.loadSweepgen(), sg = sweepgen
        return !(g == sg &- 2 || g == sg &+ 1) || s.isMarked(idx)
    }
}

func mutatorStatusName(_ s: MutatorStatus) -> String {
    switch s {
    case .running: return "running"
    case .parked: return "parked"
    case .blocking: return "blocking"
    case .detached: return "detached"
    }
}
