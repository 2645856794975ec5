import CTricolor
import Glibc

// A snapshot of the whole allocator (what `tricolor run … --alloc-state` prints and
// the gdb extension's `tricolor heap` shows): per span class, where its spans are
// (mutator caches, the mcentral's partial/full × swept/unswept sets) and how full
// they are; the page heap's free runs by size and the pages returned to the OS; the
// arenas; the stacks; the mutators, with their shadow-stack frames in checked mode
// (Runtime/ShadowStack.swift records them only there: the unchecked push and pop leave
// no trace of where a frame starts, and the report says so). Taken with the world
// stopped and the sweepers held off (`withInspectionStop`), so the counts agree with
// each other.
//
// Invariants (checked by the tests): for each class, cached + the four central sets
// == spans found by walking the span table; objectsInUse ≤ slots; free-run pages add up
// to the page heap's free pages; a mutator's frames, when listed, tile its stack
// (each starts where the one before ends, the last ends at stackDepth) and their roots
// add up to liveRoots.

/// The allocator's state at one moment: see `Heap.allocatorState()`.
public struct AllocatorState: Sendable, Codable, Equatable, CustomStringConvertible {
    /// One span class with spans.
    public struct SpanClassState: Sendable, Codable, Equatable {
        /// Go's span class (size class << 1 | noscan).
        public var spanClass: Int
        /// The size class (0: large objects).
        public var sizeClass: Int
        /// Pointer-free objects only.
        public var noscan: Bool
        /// Bytes per slot (0 for large objects, whose spans differ).
        public var elemSize: Int
        /// Spans in mutator caches.
        public var cached: Int
        /// Spans in the mcentral: partial (free slots) and full, swept and unswept.
        /// Swept partial spans include those waiting in a mutator's stash (taken from the
        /// mcentral ahead of its next refills); swept full ones, those waiting in a
        /// mutator's batch for the mcentral. Both go back to it at every pause.
        public var partialSwept: Int
        /// Partial spans that need sweeping.
        public var partialUnswept: Int
        /// Full spans, swept.
        public var fullSwept: Int
        /// Full spans that need sweeping.
        public var fullUnswept: Int
        /// All spans of the class (from the span table).
        public var spans: Int
        /// Slots in those spans.
        public var slots: Int
        /// Slots allocated (Go's allocCount; unswept garbage included).
        public var objectsInUse: Int
        /// Bytes of the spans.
        public var spanBytes: Int
        /// Bytes of allocated slots.
        public var bytesInUse: Int
        /// 1 − bytesInUse / spanBytes (free slots and tail waste).
        public var fragmentation: Double
    }

    /// Free runs of a range of lengths.
    public struct FreeRunBucket: Sendable, Codable, Equatable {
        /// Shortest run length counted here, in pages.
        public var minPages: Int
        /// Longest, in pages (Int.max for the last bucket).
        public var maxPages: Int
        /// Runs of that length.
        public var runs: Int
        /// Pages in them.
        public var pages: Int
    }

    /// The page heap.
    public struct PageHeap: Sendable, Codable, Equatable {
        /// Pages grown into (HeapSys / 8 KiB).
        public var grownPages: Int
        /// Pages free.
        public var freePages: Int
        /// Free pages returned to the OS.
        public var scavengedPages: Int
        /// Longest free run, in pages.
        public var longestFreeRun: Int
        /// Free runs by length (1, 2–3, 4–7, … pages).
        public var freeRuns: [FreeRunBucket]
    }

    /// A shadow-stack frame (checked mode).
    public struct FrameInfo: Sendable, Codable, Equatable {
        /// The frame's first slot in the shadow stack.
        public var offset: Int
        /// Slots in the frame (`pushFrame(slots:)`).
        public var slots: Int
        /// Slots of them holding an object (non-null roots).
        public var roots: Int
    }

    /// What `MutatorInfo.framesNote` says when frames are not listed.
    public static let framesNotRecorded = "frames are recorded in checked mode only"

    /// A mutator.
    public struct MutatorInfo: Sendable, Codable, Equatable {
        /// Mutator id.
        public var id: Int
        /// Kernel thread id.
        public var threadID: UInt64
        /// "running", "parked", "blocking".
        public var status: String
        /// Shadow-stack slots in use (the stack depth).
        public var stackDepth: Int
        /// Slots of them holding an object (non-null roots).
        public var liveRoots: Int
        /// Shadow-stack capacity in slots.
        public var stackCapacity: Int
        /// Bytes of the thread's native stack (scanned conservatively when enabled).
        public var nativeStackBytes: Int
        /// Spans the mutator's cache holds.
        public var cachedSpans: Int
        /// The frames on the shadow stack, outermost first, in checked mode
        /// (`Configuration.checked`); nil otherwise.
        public var frames: [FrameInfo]?
        /// Why `frames` is nil (`AllocatorState.framesNotRecorded`); nil when it is not.
        public var framesNote: String?
    }

    /// Span classes with at least one span, by span class.
    public var spanClasses: [SpanClassState]
    /// The page heap.
    public var pageHeap: PageHeap
    /// Arenas mapped, of those reserved.
    public var arenasMapped: Int
    /// Arenas the reservation holds.
    public var arenasReserved: Int
    /// Stack spans (shadow stacks) and their bytes.
    public var stackSpans: Int
    /// Bytes of stack spans.
    public var stackBytes: Int
    /// The mutators attached.
    public var mutators: [MutatorInfo]
    /// The heap's sweep generation.
    public var sweepgen: UInt32
    /// "off", "mark", "mark termination".
    public var phase: String
    /// Go's heapLive, trigger and goal, in bytes.
    public var heapLive: UInt64
    /// Next cycle starts when heapLive reaches this.
    public var trigger: UInt64
    /// The heap goal.
    public var heapGoal: UInt64

    /// Tables: span classes, page heap, arenas and stacks, mutators.
    public var description: String {
        func l(_ s: String, _ n: Int) -> String { s.count >= n ? " " + s : String(repeating: " ", count: n - s.count) + s }
        var out = "allocator state: sweepgen \(sweepgen), phase \(phase), heapLive \(heapLive), trigger \(trigger), goal \(heapGoal)\n"
        out += "spanclass class   size  cached  p.swept p.unswpt  f.swept f.unswpt   spans    slots    inuse   frag\n"
        for c in spanClasses {
            out += l("\(c.spanClass)\(c.noscan ? "n" : "s")", 9) + l("\(c.sizeClass)", 6) + l(c.sizeClass == 0 ? "large" : "\(c.elemSize)", 7)
            out += l("\(c.cached)", 8) + l("\(c.partialSwept)", 9) + l("\(c.partialUnswept)", 9) + l("\(c.fullSwept)", 9) + l("\(c.fullUnswept)", 9)
            out += l("\(c.spans)", 8) + l("\(c.slots)", 9) + l("\(c.objectsInUse)", 9) + l(String(Int((c.fragmentation * 100).rounded())) + "%", 7) + "\n"
        }
        let p = pageHeap
        out += "page heap: \(p.grownPages) pages grown, \(p.freePages) free (\(p.scavengedPages) returned to the OS), longest free run \(p.longestFreeRun)\n"
        for b in p.freeRuns where b.runs > 0 {
            out += "  free runs of \(b.minPages)\(b.maxPages == Int.max ? "+" : b.maxPages == b.minPages ? "" : "-\(b.maxPages)") pages: \(b.runs) (\(b.pages) pages)\n"
        }
        out += "arenas: \(arenasMapped) of \(arenasReserved) mapped; stacks: \(stackSpans) spans, \(stackBytes) bytes\n"
        out += "mutators:\n"
        for m in mutators {
            out += "  mutator \(m.id) thread \(m.threadID) \(m.status): stack depth \(m.stackDepth) slots (\(m.liveRoots) roots) of \(m.stackCapacity), native stack \(m.nativeStackBytes) bytes, \(m.cachedSpans) cached spans\n"
            out += AllocatorState.framesText(m)
        }
        return out
    }
}

extension AllocatorState {
    /// The lines under a mutator's: its frames, outermost first, or why there are none.
    static func framesText(_ m: MutatorInfo) -> String {
        guard let frames = m.frames else { return "    \(m.framesNote ?? framesNotRecorded)\n" }
        if frames.isEmpty { return "    no frames\n" }
        var out = ""
        for (i, f) in frames.enumerated() {
            out += "    frame \(i): slots \(f.offset)..<\(f.offset + f.slots) (\(f.slots) slot\(f.slots == 1 ? "" : "s"), \(f.roots) root\(f.roots == 1 ? "" : "s"))\n"
        }
        return out
    }
}

extension Heap {
    /// A snapshot of the allocator: per span class, spans in mutator caches and in the
    /// mcentral's partial/full × swept/unswept sets, objects in use and fragmentation;
    /// the page heap's free runs by size and scavenged pages; arenas; stacks; mutators
    /// with their status and stack depth, and in checked mode their frames (offset,
    /// slots, roots). `print` it for tables; it is `Codable` for JSON.
    /// Stops the world briefly.
    public func allocatorState() -> AllocatorState {
        withInspectionStop { allocatorStateStopped(locking: true) }
    }

    /// A checked mutator's recorded frames with their roots (Runtime/ShadowStack.swift).
    /// World stopped: the owner is not pushing or popping. Records past the stack top
    /// (none, unless the records are corrupt) are clipped rather than read beyond it.
    func mutatorFrames(_ m: UnsafeMutablePointer<MutatorState>) -> [AllocatorState.FrameInfo] {
        guard let fr = m.pointee.debugFrames else { return [] }
        var out: [AllocatorState.FrameInfo] = []
        let top = m.pointee.stackTop
        for k in 0..<m.pointee.debugFrameCount {
            let off = Int(clamping: fr[k].offset), n = Int(clamping: fr[k].slots)
            var roots = 0
            var i = Swift.min(off, top)
            let end = Swift.min(off, top) + Swift.min(n, top - Swift.min(off, top))
            while i < end { if m.pointee.stack[i] != 0 { roots += 1 }; i += 1 }
            out.append(.init(offset: off, slots: n, roots: roots))
        }
        return out
    }

    func allocatorStateStopped(locking: Bool) -> AllocatorState {
        let sg = sweepgen
        var classes = [AllocatorState.SpanClassState?](repeating: nil, count: SpanClass.count)
        func row(_ i: Int) -> AllocatorState.SpanClassState {
            let spc = SpanClass(raw: UInt8(i))
            return classes[i] ?? .init(spanClass: i, sizeClass: spc.sizeClass, noscan: spc.noscan,
                                       elemSize: Int(SizeClassTable.classToSize[spc.sizeClass]), cached: 0, partialSwept: 0, partialUnswept: 0,
                                       fullSwept: 0, fullUnswept: 0, spans: 0, slots: 0, objectsInUse: 0, spanBytes: 0, bytesInUse: 0, fragmentation: 0)
        }
        var mutatorsOut: [AllocatorState.MutatorInfo] = []
        forEachMutator { m in
            var cachedCount = 0
            for i in 0..<MCache.slotCount where m.pointee.mcache.pointee.spans[i] != emptySpan {
                let c = Int(m.pointee.mcache.pointee.spans[i].pointee.spanClass.raw)   // a type slot's class
                var r = row(c); r.cached += 1; classes[c] = r; cachedCount += 1
            }
            // Full spans waiting in the mutator's batch for their central list
            // (`MCache.uncached`) are swept and full: counted as the list will hold them.
            for i in 0..<SpanClass.count where m.pointee.mcache.pointee.uncachedCount[i] != 0 {
                var r = row(i); r.fullSwept += Int(m.pointee.mcache.pointee.uncachedCount[i]); classes[i] = r
            }
            // Swept spans with free slots waiting in its stash (`MCache.stash`) are
            // counted as the central list held them, and will again at the next pause.
            for i in 0..<SpanClass.count where m.pointee.mcache.pointee.stashCount[i] != 0 {
                var r = row(i); r.partialSwept += Int(m.pointee.mcache.pointee.stashCount[i]); classes[i] = r
            }
            var roots = 0
            for i in 0..<m.pointee.stackTop where m.pointee.stack[i] != 0 { roots += 1 }
            let frames = checked ? mutatorFrames(m) : nil
            mutatorsOut.append(.init(id: m.pointee.id, threadID: m.rawThreadID, status: mutatorStatusName(m.rawStatus),
                                     stackDepth: m.pointee.stackTop, liveRoots: roots, stackCapacity: m.pointee.stackCap,
                                     nativeStackBytes: Int(m.pointee.nativeStackHi &- m.pointee.nativeStackLo), cachedSpans: cachedCount,
                                     frames: frames, framesNote: frames == nil ? AllocatorState.framesNotRecorded : nil))
        }
        for i in 0..<SpanClass.count {
            let c = centrals + i
            guard acquire(c.pointee.lock, locking) else { continue }
            for set in 0..<4 {
                var n = 0
                var p = c.pointee.heads[set]
                while let s = p { n += 1; p = s.pointee.next }
                if n == 0 { continue }
                var r = row(i)
                switch set {
                case MCentral.partialSwept(sg): r.partialSwept += n
                case MCentral.partialUnswept(sg): r.partialUnswept += n
                case MCentral.fullSwept(sg): r.fullSwept += n
                default: r.fullUnswept += n
                }
                classes[i] = r
            }
            c.pointee.lock.unlock()
        }
        let cached = cachedSpans()
        var stackSpans = 0, stackBytes = 0
        var runs = (0..<12).map { k in AllocatorState.FreeRunBucket(minPages: 1 << k, maxPages: k == 11 ? Int.max : (2 << k) - 1, runs: 0, pages: 0) }
        var grown = 0, free = 0, scav = 0, longest = 0
        let locked = acquire(heapLock, locking)
        if locked {
            grown = pages.grownPages; free = pages.freePages; scav = pages.scavengedPages; longest = pages.longestFreeRun
        }
        var p = 0
        var run = 0
        func endRun() {
            if run > 0 {
                let k = min(11, Int.bitWidth - 1 - run.leadingZeroBitCount)
                runs[k].runs += 1; runs[k].pages += run
                run = 0
            }
        }
        while p < grown {
            let addr = arenaBase + UInt(p) << SizeClassTable.pageShiftU
            guard let s = spanOfAcquiring(addr), s.pointee.startAddr == addr else {
                if spanOfAcquiring(addr) == nil { run += 1 }
                p += 1
                continue
            }
            endRun()
            p += Int(s.pointee.npages)
            if s.pointee.state == MSpanState.manual.rawValue {
                stackSpans += 1; stackBytes += Int(s.pointee.npages) << SizeClassTable.pageShift
                continue
            }
            guard s.pointee.state == MSpanState.inUse.rawValue else { continue }
            let i = Int(s.pointee.spanClass.raw)
            var r = row(i)
            let inUse = Int(cached[UInt(bitPattern: s)] != nil ? s.countAllocated() : s.pointee.allocCount)
            r.spans += 1
            r.slots += Int(s.pointee.nelems)
            r.objectsInUse += inUse
            r.spanBytes += Int(s.pointee.npages) << SizeClassTable.pageShift
            r.bytesInUse += s.pointee.isLarge ? Int(s.pointee.limit - s.pointee.startAddr) * inUse : inUse * Int(s.pointee.elemSize)
            classes[i] = r
        }
        endRun()
        if locked { heapLock.unlock() }
        var numMapped = 0
        for i in 0..<numArenas where tc_load_acquire(UnsafeRawPointer(arenas + i)) != 0 { numMapped += 1 }
        let rows = classes.compactMap { $0 }.map { r -> AllocatorState.SpanClassState in
            var r = r
            if r.sizeClass == 0 { r.elemSize = 0 }
            r.fragmentation = r.spanBytes == 0 ? 0 : 1 - Double(r.bytesInUse) / Double(r.spanBytes)
            return r
        }
        let ph: String = switch phase { case .off: "off"; case .mark: "mark"; case .markTermination: "mark termination" }
        return AllocatorState(spanClasses: rows,
                              pageHeap: .init(grownPages: grown, freePages: free, scavengedPages: scav, longestFreeRun: longest, freeRuns: runs),
                              arenasMapped: numMapped, arenasReserved: numArenas, stackSpans: stackSpans, stackBytes: stackBytes,
                              mutators: mutatorsOut, sweepgen: sg, phase: ph,
                              heapLive: UInt64(gcController.heapLive.load(.relaxed)), trigger: UInt64(gcController.trigger.load(.relaxed)),
                              heapGoal: UInt64(gcController.heapGoal.load(.relaxed)))
    }
}
