import CTricolor
import Glibc

// A mutator is a thread attached to a heap: Go's P (it owns an MCache) and G (it owns a
// stack of roots, the shadow stack). All heap access goes through it.
//
// Fast paths here are @inlinable and compile into user code: they touch only this
// mutator's cache and stack, take no lock, do no atomic read-modify-write and no
// reference counting. Everything else is in one outlined slow path per operation.
//
// Safepoints: a mutator answers a stop-the-world request in allocation slow paths, in
// `safepoint()`, and when entering or leaving a blocking region. A thread that computes
// for a long time without allocating should call `safepoint()` now and then, or do that
// work inside `blocking { }` if it does not touch the heap.

@usableFromInline
enum MutatorStatus: UInt32 {
    case running = 0, parked, blocking, detached
}

@usableFromInline
struct MutatorState {
    /// This mutator's span cache (Go's p.mcache). First field: nothing at offset 0 is
    /// ever read by another thread (see `rawShared`).
    @usableFromInline let mcache: UnsafeMutablePointer<MCache>
    /// Words other threads change atomically while the mutator runs (slow-path flags,
    /// stack-scan and ragged-barrier state), in an allocation of their own so that the
    /// mutator's plain accesses to this struct never overlap them.
    @usableFromInline let shared: UnsafeMutablePointer<MutatorShared>
    // -- allocation-path counters (AllocPath.swift), nil when off --
    var pathCounters: AllocPathCounters? = nil
    var pathLevel: UInt8 = 0
    // -- slow-path timing for the allocation benchmark (`Mutator._timeSlowPath`) --
    var slowTiming = false
    var slowTicks: UInt64 = 0
    var slowCalls: UInt64 = 0
    /// The shadow stack's slots (memory from the stack allocator), the slots in use and
    /// the capacity in slots. Owner thread; replaced (grown, shrunk) only by the owner,
    /// publishing under the sched lock, since a collector may read the stack of a
    /// blocking mutator. stackCap is 0 while detached.
    @usableFromInline var stack: UnsafeMutablePointer<UInt>
    @usableFromInline var stackTop: Int
    @usableFromInline var stackCap: Int
    /// Checked mode: the frames on the shadow stack, outermost first, as C records
    /// (CTricolor's tc_debug_frame: offset, slots), `debugFrameCount` of them in a
    /// malloc'd array of `debugFrameCap` (nil until the first push). Every checked push
    /// takes the slow path (`growStack`), which appends, and every checked pop
    /// `checkPop`, which drops the last: so the records tile 0..<stackTop exactly. Owner
    /// thread only; emptied at detach, freed in `releaseStorage`. Read with the world
    /// stopped (`allocatorState`), best effort by the fatal report (the count only), and
    /// by debuggers (gdb's `tricolor mutators`). Unchecked mutators record nothing: the
    /// inlined push and pop store nothing but the stack top.
    var debugFrames: UnsafeMutablePointer<tc_debug_frame>? = nil
    var debugFrameCount = 0
    var debugFrameCap = 0
    // -- the native stack (Collector/ConservativeScan.swift) --
    /// The thread's stack [lo, hi), recorded at attach by the owner.
    var nativeStackLo: UInt = 0
    var nativeStackHi: UInt = 0
    /// The stack pointer below which nothing of the mutator's callers lies, recorded
    /// (registers spilled) by the owner before it enters a blocking region or parks,
    /// under or before the status change made under the sched lock; read by a
    /// collector holding the sched lock while the mutator is not running.
    var nativeSP: UInt = 0
    /// Native bytes scanned at this mutator's last stack scan (for the pacer's stack
    /// estimate). Written by the scanner, read in pause #1.
    var lastNativeScan: UInt = 0
    /// Candidate words of a conservative scan (allocated on first use).
    var conservativeCandidates: UnsafeMutablePointer<UInt>? = nil
    @usableFromInline let stopFlag: UnsafeMutablePointer<UInt>
    @usableFromInline unowned(unsafe) let heap: Heap
    /// The heap's `typeTag`, here so that the typed slow paths check a type's heap
    /// without touching the heap object (no retain).
    let typeTag: UInt8
    /// `Configuration.gcStress` (0: off) and this mutator's full safepoints since its
    /// last stress collection (owner thread only; see `Mutator.gcStressPoint`).
    @usableFromInline let gcStress: Int
    /// `heap` as a raw pointer, for calls that must not retain it (`heapUnretained`).
    let heapOpaque: UnsafeMutableRawPointer
    var stressCount = 0
    // -- collector --
    /// Write-barrier buffer (Go's wbBuf): old and new values of barriered stores.
    @usableFromInline let wbBuf: UnsafeMutablePointer<UInt>
    @usableFromInline var wbCount = 0
    /// The slots of a span that was empty when this mutator cached it during the current
    /// mark phase: `[blackBase, blackBase + blackBytes)`. No object in it is older than
    /// the phase, and every object allocated there during the phase took a pre-marked
    /// slot (allocate-black: any mutator that caches the span while marking pre-marks its
    /// free slots first; uncaching withdraws the marks of free slots only). So every
    /// object in the range is marked until the phase ends, and the barrier need not record
    /// a pointer into it (`Mutator.store`). Written by the owner at a refill while marking
    /// (`MCache.refill`); emptied for every mutator in pause #1 (`gcStart`), with the world
    /// stopped, before the barrier is turned on, so a range from an earlier cycle is never
    /// used; emptied again in pause #2 and at attach.
    @usableFromInline var blackBase: UInt = 0
    @usableFromInline var blackBytes: UInt = 0
    /// Grey objects from this mutator's stack scan, barrier flushes and assists. In its
    /// own allocation, so that marking through it is not an access to the whole state
    /// (whose flags other threads change atomically).
    let gcw: UnsafeMutablePointer<GCWork>
    /// Scan work owed (positive) for allocation during marking.
    var assistDebt: Double = 0
    // -- scheduling (sched lock) --
    var status: MutatorStatus = .running
    var next: UnsafeMutablePointer<MutatorState>? = nil
    var threadID: UInt64 = 0
    let id: Int
    /// This mutator's local in every `Pool` (Go's P id): small, unique among attached
    /// mutators, reused after detach. Set at attach under the sched lock; read by the
    /// owner.
    var poolIndex = 0

    static let initialStackSlots = StackAlloc.minStack / 8   // 2 KiB, Go's _StackMin
    /// The stack of a detached mutator (capacity 0): a valid address nothing reads.
    nonisolated(unsafe) static let noStack = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    /// The stop flag of a mutator under gcstress: always nonzero, never written.
    nonisolated(unsafe) static let alwaysSet: UnsafeMutablePointer<UInt> = {
        let p = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
        p.initialize(to: 1)
        return p
    }()
    /// Candidate words gathered per call of the native stack scanner.
    static let conservativeBufferWords = 256
    static let flagChecked: UInt8 = 1
    static let flagDetached: UInt8 = 2
    @usableFromInline static let flagBarrier: UInt8 = 4
    @usableFromInline static let flagSafepoint: UInt8 = 8
    /// Flags that send loads, scalar accesses and frame operations to the slow path
    /// (the write barrier concerns pointer stores only).
    @usableFromInline static let flagsNotBarrier: UInt8 = flagChecked | flagDetached | flagSafepoint
    @usableFromInline static let wbBufEntries = 512

    init(heap: Heap, id: Int) {
        self.heap = heap
        self.typeTag = heap.typeTag
        self.gcStress = heap.gcStress
        self.heapOpaque = Unmanaged.passUnretained(heap).toOpaque()
        self.id = id
        mcache = .allocate(capacity: 1)
        mcache.initialize(to: MCache(heap: heap))
        stack = MutatorState.noStack
        stackTop = 0
        stackCap = 0
        shared = .allocate(capacity: 1)
        shared.initialize(to: MutatorShared(flags: 0, stackScanned: 1, flushAck: 0, lastSafepoint: UInt(tc_nanotime())))
        // Under gcstress every `safepoint()` call must reach the slow path, which counts
        // it: such a mutator polls a word that is always set, so the inlined poll stays
        // one load and one branch (gcSafepoint reads the attention word itself).
        stopFlag = heap.gcStress != 0 ? MutatorState.alwaysSet : heap.sched.attention.address
        wbBuf = .allocate(capacity: MutatorState.wbBufEntries)
        gcw = .allocate(capacity: 1)
        gcw.initialize(to: GCWork(capacity: 256))
    }

    func releaseStorage() {
        mcache.pointee.destroy()
        mcache.deallocate()
        pathCounters?.destroy()
        conservativeCandidates?.deallocate()
        free(debugFrames)
        wbBuf.deallocate()
        gcw.pointee.destroy()
        gcw.deallocate()
        shared.deallocate()
    }
}

extension MutatorState {
    /// Whether the barrier may leave out `p` as a new value: null, or in the black range.
    @inlinable @inline(__always)
    func barrierSkips(_ p: UInt) -> Bool { p == 0 || p &- blackBase < blackBytes }

    /// Make the slots of `s`, empty and cached while marking, the black range.
    mutating func setBlackRange(_ s: UnsafeMutablePointer<MSpan>) {
        blackBase = s.pointee.startAddr
        blackBytes = s.pointee.limit &- s.pointee.startAddr
    }

    /// Empty the black range (pauses #1 and #2, attach).
    mutating func clearBlackRange() {
        blackBase = 0
        blackBytes = 0
    }

    static let sharedOffset = MemoryLayout<MutatorState>.offset(of: \MutatorState.shared)!
    static let statusOffset = MemoryLayout<MutatorState>.offset(of: \MutatorState.status)!
    static let nextOffset = MemoryLayout<MutatorState>.offset(of: \MutatorState.next)!
    static let threadIDOffset = MemoryLayout<MutatorState>.offset(of: \MutatorState.threadID)!
}

/// See `MutatorState.shared`. All fields are accessed atomically.
@usableFromInline
struct MutatorShared {
    /// Nonzero: loads, stores and frames take the slow path (checked mode, detached,
    /// write barrier on, safepoint requested). The mutator reads it with a relaxed
    /// atomic load; the collector sets and clears bits with atomic OR/AND.
    @usableFromInline var flags: UInt8
    /// 1 once this cycle's stack scan is done.
    var stackScanned: UInt8
    /// The last ragged-barrier generation this mutator answered.
    var flushAck: UInt
    /// tc_nanotime() when the mutator last answered a safepoint request (`gcSafepoint`)
    /// or attached; relaxed store by the mutator, relaxed load by the stop-the-world
    /// watchdog (Runtime/StopTheWorldWatchdog.swift).
    var lastSafepoint: UInt = 0
}

extension UnsafeMutablePointer where Pointee == MutatorState {
    /// The slow-path flags, read with a relaxed atomic load.
    @inlinable @inline(__always)
    var flags: UInt8 { tc_load8_relaxed(UnsafeRawPointer(pointee.shared)) }
    func setFlags(_ f: UInt8) { _ = tc_or8(UnsafeMutableRawPointer(rawShared), f) }
    func clearFlags(_ f: UInt8) { _ = tc_and8(UnsafeMutableRawPointer(rawShared), ~f) }
    func storeFlags(_ f: UInt8) { tc_store8_relaxed(UnsafeMutableRawPointer(rawShared), f) }

    var stackScannedAddress: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(rawShared) + MemoryLayout<MutatorShared>.offset(of: \MutatorShared.stackScanned)!
    }
    var lastSafepointAddress: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(rawShared) + MemoryLayout<MutatorShared>.offset(of: \MutatorShared.lastSafepoint)!
    }
    var flushAckAddress: UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(rawShared) + MemoryLayout<MutatorShared>.offset(of: \MutatorShared.flushAck)!
    }

    // Reads by other threads (the collector) of fields of a running mutator go through
    // plain loads at the field's offset rather than `pointee`: a Swift access to
    // `pointee` covers the whole struct and would overlap the mutator's own accesses
    // (ThreadSanitizer reports that as an access race even though the bytes differ).
    var rawShared: UnsafeMutablePointer<MutatorShared> {
        UnsafeRawPointer(self).load(fromByteOffset: MutatorState.sharedOffset, as: UnsafeMutablePointer<MutatorShared>.self)
    }
    /// The mutator's status (sched lock held by the reader).
    var rawStatus: MutatorStatus {
        UnsafeRawPointer(self).load(fromByteOffset: MutatorState.statusOffset, as: MutatorStatus.self)
    }
    /// The mutator's kernel thread id (set at attach, before the mutator is listed).
    var rawThreadID: UInt64 {
        UnsafeRawPointer(self).load(fromByteOffset: MutatorState.threadIDOffset, as: UInt64.self)
    }
    /// The next attached mutator (sched lock held by the reader).
    var rawNext: UnsafeMutablePointer<MutatorState>? {
        UnsafeRawPointer(self).load(fromByteOffset: MutatorState.nextOffset, as: UnsafeMutablePointer<MutatorState>?.self)
    }
}

/// A thread's handle on a heap. Obtain one with `Heap.withMutator` or `Heap.attach`;
/// use it only on the thread that attached it.
@frozen
public struct Mutator {
    @usableFromInline let state: UnsafeMutablePointer<MutatorState>
    @usableFromInline let cache: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>>

    @usableFromInline init(state: UnsafeMutablePointer<MutatorState>) {
        self.state = state
        cache = state.pointee.mcache.pointee.alloc
    }

    /// The heap this mutator is attached to.
    public var heap: Heap { state.pointee.heap }

    // MARK: safepoints and blocking

    /// Answer a pending stop-the-world request. Cheap when none is pending.
    @inlinable @inline(__always)
    public func safepoint() {
        if _slowPath(tc_load_relaxed(state.pointee.stopFlag) != 0) { parkSlow() }
    }

    @usableFromInline @inline(never)
    func parkSlow() {
        state.heapUnretained._withUnsafeGuaranteedRef { $0.gcSafepoint(state, mayFinishMark: true) }
        if state.pointee.gcStress != 0 { gcStressPoint() }
    }

    /// Run `body`, which must not touch the heap, without holding up collections
    /// (Go's entersyscall/exitsyscall). Roots in frames stay roots, and so do `Ref`s in
    /// the locals of the callers (the native stack up to here is scanned while `body`
    /// runs); `body` itself must not hold or move `Ref`s.
    public func blocking<R>(_ body: () throws -> R) rethrows -> R {
        let st = state
        return try withRegistersSpilled { sp in
            st.pointee.nativeSP = sp
            st.pointee.heap.enterBlocking(st)
            defer { st.pointee.heap.exitBlocking(st) }
            return try body()
        }
    }

}

extension Heap {
    /// Calls `body` with each attached mutator (Go's allp walk). The caller holds the
    /// sched lock or has the world stopped: the list changes only under the sched lock.
    /// Reads the links with `rawNext`, never through the running mutator's `pointee`.
    @inline(__always)
    func forEachMutator(_ body: (UnsafeMutablePointer<MutatorState>) throws -> Void) rethrows {
        var p = mutators
        while let m = p {
            p = m.rawNext
            try body(m)
        }
    }

    /// Runs `body` with the world stopped (Go's stopTheWorld … startTheWorld), on behalf
    /// of the calling thread's mutator if it has one. If another thread is stopping the
    /// world, waits for it to finish first.
    func withWorldStopped<R>(_ body: () throws -> R) rethrows -> R {
        let caller = currentMutator()
        while !stopTheWorld(caller) {}
        defer { startTheWorld(caller) }
        return try body()
    }
}
