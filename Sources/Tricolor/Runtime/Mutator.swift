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
    // -- fast path --
    /// What the inlined fast path allocates from (Go's mcache.alloc[136]). First field:
    /// nothing at offset 0 is ever read by another thread (see `rawShared`).
    @usableFromInline let alloc: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>>
    /// Words other threads change atomically while the mutator runs (slow-path flags,
    /// stack-scan and ragged-barrier state), in an allocation of their own so that the
    /// mutator's plain accesses to this struct never overlap them.
    @usableFromInline let shared: UnsafeMutablePointer<MutatorShared>
    /// The spans this mutator holds, per span class. `alloc` holds the same spans, except
    /// in slow mode (`slowAlloc`: checked mode, clobberfree, an allocation hook, the
    /// allocation-path counters), where `alloc` stays all empty so that every allocation
    /// takes the slow path.
    let spans: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>>
    var slowAlloc = false
    // -- heap profile sampling (MemProfile.swift) --
    /// Per span class: objects to allocate before the next sampled one.
    let toSample: UnsafeMutablePointer<Int>
    /// Bytes of tiny and large allocations before the next sample (Go's nextSample).
    var nextSampleBytes = 0
    var rngState: UInt64 = 1
    /// The heap's MemProfileRate (0: off), here so the slow path need not touch the heap.
    var profRate = 0
    // -- allocation-path counters (AllocPath.swift), nil when off --
    var pathCounters: AllocPathCounters? = nil
    var pathLevel: UInt8 = 0
    // -- slow-path timing for the allocation benchmark (`Mutator._timeSlowPath`) --
    var slowTiming = false
    var slowTicks: UInt64 = 0
    var slowCalls: UInt64 = 0
    @usableFromInline var stack: UnsafeMutablePointer<UInt>    // shadow stack slots
    @usableFromInline var stackTop: Int
    @usableFromInline var stackCap: Int
    @usableFromInline let stopFlag: UnsafeMutablePointer<UInt>
    @usableFromInline unowned(unsafe) let heap: Heap
    // -- collector --
    /// Write-barrier buffer (Go's wbBuf): old and new values of barriered stores.
    @usableFromInline let wbBuf: UnsafeMutablePointer<UInt>
    @usableFromInline var wbCount = 0
    /// Grey objects from this mutator's stack scan, barrier flushes and assists. In its
    /// own allocation, so that marking through it is not an access to the whole state
    /// (whose flags other threads change atomically).
    let gcw: UnsafeMutablePointer<GCWork>
    /// Scan work owed (positive) for allocation during marking.
    var assistDebt: Double = 0
    // -- MCache, rest --
    var tiny: UInt = 0
    var tinyOffset: UInt = 0
    var tinyAllocs: UInt = 0
    // -- scheduling (sched lock) --
    var status: MutatorStatus = .running
    var next: UnsafeMutablePointer<MutatorState>? = nil
    var threadID: UInt64 = 0
    let id: Int

    static let initialStackSlots = 2048 / 8   // 2 KiB, Go's _StackMin
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
        self.id = id
        alloc = .allocate(capacity: SpanClass.count)
        alloc.initialize(repeating: heap.emptySpan, count: SpanClass.count)
        spans = .allocate(capacity: SpanClass.count)
        spans.initialize(repeating: heap.emptySpan, count: SpanClass.count)
        toSample = .allocate(capacity: SpanClass.count)
        toSample.initialize(repeating: 0, count: SpanClass.count)
        stack = .allocate(capacity: MutatorState.initialStackSlots)
        stackTop = 0
        stackCap = MutatorState.initialStackSlots
        shared = .allocate(capacity: 1)
        shared.initialize(to: MutatorShared(flags: 0, stackScanned: 1, flushAck: 0))
        stopFlag = heap.words + HeapWord.stopRequested.rawValue
        wbBuf = .allocate(capacity: MutatorState.wbBufEntries)
        gcw = .allocate(capacity: 1)
        gcw.initialize(to: GCWork(capacity: 256))
    }

    func releaseStorage() {
        spans.deallocate()
        alloc.deallocate()
        toSample.deallocate()
        pathCounters?.destroy()
        stack.deallocate()
        wbBuf.deallocate()
        gcw.pointee.destroy()
        gcw.deallocate()
        shared.deallocate()
    }
}

extension MutatorState {
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
        cache = state.pointee.alloc
    }

    public var heap: Heap { state.pointee.heap }

    // MARK: allocation

    /// Allocate one zeroed object of type `t`. Traps with "out of memory" when the heap
    /// cannot grow (Go's behaviour); see `tryAllocate`.
    @inlinable @inline(__always)
    public func allocate(_ t: ObjectType) -> Ref {
        if _fastPath(t.isSmall) {
            // Go's nextFreeFast, inline: take the lowest free slot of the cache window.
            let s = cache[Int(t.spanClass.raw)]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                let i = c.trailingZeroBitCount
                if !t.spanClass.noscan { s.pointee.windowTypeIDs.unsafelyUnwrapped[i] = t.id }
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: i) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(t))
    }

    /// The typed slow path takes the packed type word only, so that the caller's loop
    /// keeps one register for the type (see `ObjectType.bits`).
    @usableFromInline @inline(never)
    func allocateSlow(_ t: ObjectType) -> UInt {
        allocateSlow(size: t.size, typeID: t.id, noscan: t.spanClass.noscan, canFail: false)
    }

    /// Like `allocate`, but nil instead of a fatal error when memory cannot be had.
    @inlinable
    public func tryAllocate(_ t: ObjectType) -> Ref? {
        let p = allocateSlow(size: t.size, typeID: t.id, noscan: t.spanClass.noscan, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `count` consecutive zeroed objects of type `t` as one object.
    public func allocateArray(_ t: ObjectType, count: Int) -> Ref {
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { runtimeFatal("allocation size out of range: \(count) elements of \(t.size) bytes") }
        return Ref(address: allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: t.spanClass.noscan, canFail: false))
    }

    public func tryAllocateArray(_ t: ObjectType, count: Int) -> Ref? {
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { return nil }
        let p = allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: t.spanClass.noscan, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `size` zeroed bytes that hold no pointers (Go's mallocgc with a nil type).
    /// Sizes under 16 bytes share 16-byte blocks (the tiny allocator).
    @inlinable @inline(__always)
    public func allocateBytes(_ size: Int) -> Ref {
        if _fastPath(size >= 16 && size <= 1016) {
            // Up to 256 bytes Go's classes step by 8 to 32, then by 16: arithmetic that
            // folds away when the size is a constant; the table above that.
            let sc = size <= 256 ? Mutator.classUpTo256(size) : Int(state.pointee.heap.sizeToClass8[(size &+ 7) &>> 3])
            let s = cache[sc &<< 1 | 1]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: c.trailingZeroBitCount) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(size: size, typeID: 0, noscan: true, canFail: false))
    }

    /// Go's size class for 16 ≤ size ≤ 256 (classes 2–18: 16, 24, 32, 48, 64, … 256).
    @inlinable @inline(__always)
    static func classUpTo256(_ size: Int) -> Int {
        size <= 32 ? (size &+ 7) &>> 3 : ((size &+ 15) &>> 4) &+ 2
    }

    public func tryAllocateBytes(_ size: Int) -> Ref? {
        let p = allocateSlow(size: size, typeID: 0, noscan: true, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Go's mallocgc minus the fast paths above. Returns 0 only when `canFail`.
    @usableFromInline @inline(never)
    func allocateSlow(size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        let st = state
        if _slowPath(st.pointee.slowTiming) { return timedAllocateSlow(size: size, typeID: typeID, noscan: noscan, canFail: canFail) }
        unowned(unsafe) let heap = st.pointee.heap
        if st.flags != 0 { checkUsable("allocate") }
        if tc_load_relaxed(st.pointee.stopFlag) != 0 { heap.gcSafepoint(st, mayFinishMark: true) }
        if size < 0 {
            if canFail { return 0 }
            runtimeFatal("allocation size out of range: \(size)")
        }
        if size == 0 { return heap.zeroBase }
        let t0: UInt64 = st.pointee.pathCounters != nil ? tc_cputicks() : 0
        st.pointee.pathLevel = 0
        let p: UInt
        if noscan && size < 16 {
            p = allocateTiny(size, canFail: canFail)
        } else if size <= SizeClassTable.maxSmallSize {
            let c = SizeClassTable.sizeToClass(size)
            let spc = SpanClass(sizeClass: c, noscan: noscan)
            guard let (s, idx, sampled) = nextFree(spc, canFail: canFail, size: size, sample: true) else { return 0 }
            p = s.pointee.startAddr + idx * s.pointee.elemSize
            if !noscan { s.pointee.typeIDs.unsafelyUnwrapped[Int(idx)] = typeID }
            if heap.configuration.clobberFree {
                UnsafeMutableRawPointer(bitPattern: p)!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(s.pointee.elemSize))
            }
            if sampled { heap.profileAlloc(p, size: Int(s.pointee.elemSize), span: s) }
        } else {
            raisePathLevel(st, .large)
            p = heap.allocLarge(st, size: size, typeID: typeID, noscan: noscan, canFail: canFail)
            if p == 0 { return 0 }
            if st.pointee.profRate != 0, let s = heap.spanOf(p) {
                sampleBytes(Int(s.pointee.npages << SizeClassTable.pageShiftU), p, s)
            }
        }
        if p == 0 { return 0 }
        if st.pointee.pathCounters != nil {
            heap.recordAllocPath(st, start: t0)
        }
        if st.pointee.slowAlloc && heap.allocHookInstalled {
            callAllocationHook(p, size: size, typeID: typeID)
        }
        return p
    }

    /// `allocateSlow` bracketed by cycle-counter reads (see `_timeSlowPath`).
    @inline(never)
    func timedAllocateSlow(size: Int, typeID: UInt16, noscan: Bool, canFail: Bool) -> UInt {
        let st = state
        st.pointee.slowTiming = false
        let t0 = tc_cputicks()
        let p = allocateSlow(size: size, typeID: typeID, noscan: noscan, canFail: canFail)
        st.pointee.slowTicks &+= tc_cputicks() &- t0
        st.pointee.slowCalls &+= 1
        st.pointee.slowTiming = true
        return p
    }

    /// For the allocation benchmark: while on, every call of the outlined slow path
    /// (refills of the cache window, span refills, sweeping, heap growth, collections it
    /// runs) is counted and its duration summed, so the benchmark can split the cost of
    /// an allocation into the inlined fast path and the amortized slow path. Off by
    /// default; costs the slow path one predictable branch.
    public func _timeSlowPath(_ on: Bool) {
        state.pointee.slowTiming = on
        state.pointee.slowTicks = 0
        state.pointee.slowCalls = 0
    }

    /// Slow-path calls and their total duration in nanoseconds since `_timeSlowPath(true)`.
    public var _slowPathTime: (calls: UInt64, ns: Double) {
        (state.pointee.slowCalls, Double(state.pointee.slowTicks) * CPUTicks.nsPerTick)
    }

    /// Tiny and large allocations: Go's byte countdown to the next heap profile sample.
    func sampleBytes(_ size: Int, _ p: UInt, _ s: UnsafeMutablePointer<MSpan>) {
        let st = state
        unowned(unsafe) let heap = st.pointee.heap
        if st.pointee.profRate == 1 || size >= st.pointee.nextSampleBytes {
            st.pointee.nextSampleBytes = nextExponential(&st.pointee.rngState, mean: st.pointee.profRate)
            heap.profileAlloc(p, size: size, span: s)
        } else {
            st.pointee.nextSampleBytes -= size
        }
    }

    @inline(never)
    func callAllocationHook(_ p: UInt, size: Int, typeID: UInt16) {
        unowned(unsafe) let heap = state.pointee.heap
        guard let box = heap.currentHooks(), let hook = box.onAlloc else { return }
        var stack: [UInt] = []
        if box.captureStacks {
            var buf = [UInt](repeating: 0, count: 32)
            let n = buf.withUnsafeMutableBufferPointer { captureStack(skip: 1, into: $0.baseAddress!, max: 32) }
            stack = Array(buf[0..<n])
        }
        let tiny = typeID == 0 && size < 16
        let s = heap.spanOf(p)
        let slot = tiny ? 16 : s.map { $0.pointee.isLarge ? Int($0.pointee.npages << SizeClassTable.pageShiftU) : Int($0.pointee.elemSize) } ?? size
        hook(AllocationEvent(address: p, size: size, slotSize: slot,
                             sizeClass: s.map { $0.pointee.spanClass.sizeClass } ?? 0,
                             typeName: heap.typeName(typeID & ~arrayTypeBit), tiny: tiny, stack: stack))
    }

    /// A free slot of span class `spc`, refilling the cache if its span is full; with
    /// `sample`, whether this object is a heap profile sample (see MemProfile.swift).
    func nextFree(_ spc: SpanClass, canFail: Bool, size: Int, sample: Bool) -> (UnsafeMutablePointer<MSpan>, UInt, Bool)? {
        let st = state
        let spans = st.pointee.spans
        let ci = Int(spc.raw)
        let profiling = st.pointee.profRate != 0
        var s = spans[ci]
        if profiling && (s.pointee.allocCache | s.pointee.heldCache) != 0 { disarmSample(st, s, ci) }
        var idx = s.nextFreeIndex()
        // A refill can run a collection whose pauses flush this cache again: retry.
        while idx == s.pointee.nelems {
            let ok = Unmanaged.passUnretained(st.pointee.heap)._withUnsafeGuaranteedRef { $0.refill(st, spc) }
            guard ok else {
                if canFail { return nil }
                st.pointee.heap.throwOutOfMemory(size)
            }
            s = spans[ci]
            idx = s.nextFreeIndex()
        }
        var sampled = false
        if profiling {
            if sample {
                if st.pointee.toSample[ci] <= 0 {
                    sampled = true
                    st.pointee.toSample[ci] = sampleDistance(st, elemSize: s.pointee.elemSize)
                } else {
                    st.pointee.toSample[ci] -= 1
                }
            }
            armSample(st, s, ci)
        }
        return (s, idx, sampled)
    }

    /// Go's tiny allocator: pointer-free objects under 16 bytes are packed into 16-byte
    /// blocks; a block is freed when nothing points into it any more.
    func allocateTiny(_ size: Int, canFail: Bool) -> UInt {
        let st = state
        unowned(unsafe) let heap = st.pointee.heap
        var off = st.pointee.tinyOffset
        if size & 7 == 0 { off = (off + 7) & ~7 }
        else if size & 3 == 0 { off = (off + 3) & ~3 }
        else if size & 1 == 0 { off = (off + 1) & ~1 }
        let p: UInt
        if off + UInt(size) <= 16 && st.pointee.tiny != 0 {
            st.pointee.tinyOffset = off + UInt(size)
            st.pointee.tinyAllocs += 1
            raisePathLevel(st, .tiny)
            p = st.pointee.tiny + off
        } else {
            guard let (s, idx, _) = nextFree(.tiny, canFail: canFail, size: size, sample: false) else { return 0 }
            p = s.pointee.startAddr + idx * s.pointee.elemSize
            if heap.configuration.clobberFree {
                UnsafeMutableRawPointer(bitPattern: p)!.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            }
            // Keep whichever block has more room left.
            if UInt(size) < st.pointee.tinyOffset || st.pointee.tiny == 0 {
                st.pointee.tiny = p
                st.pointee.tinyOffset = UInt(size)
            }
        }
        if st.pointee.profRate != 0, let s = heap.spanOf(p) { sampleBytes(size, p, s) }
        return p
    }

    // MARK: pointer fields

    /// Read the pointer in word `word` of `object`.
    @inlinable @inline(__always)
    public func load(_ object: Ref, _ word: Int) -> Ref {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { return loadSlow(object, word) }
        return Ref(address: tc_load_relaxed(UnsafeRawPointer(bitPattern: object.address &+ UInt(bitPattern: word) &* 8).unsafelyUnwrapped))
    }

    /// Store `value` into pointer word `word` of `object`, through the write barrier.
    @inlinable @inline(__always)
    public func store(_ object: Ref, _ word: Int, _ value: Ref) {
        let st = state
        let flags = st.flags
        let slot = UnsafeMutableRawPointer(bitPattern: object.address &+ UInt(bitPattern: word) &* 8).unsafelyUnwrapped
        if _fastPath(flags == 0) {
            // Release: the object's type and contents are visible to a marker that loads it.
            tc_store_release(slot, value.address)
            return
        }
        if flags == MutatorState.flagBarrier {
            // Go's buffered hybrid barrier, inline: record the old and the new value.
            let n = st.pointee.wbCount
            if _fastPath(n &+ 2 <= MutatorState.wbBufEntries) {
                st.pointee.wbBuf[n] = tc_load_relaxed(slot)
                st.pointee.wbBuf[n &+ 1] = value.address
                st.pointee.wbCount = n &+ 2
                tc_store_release(slot, value.address)
                return
            }
        }
        storeSlow(object, word, value)
    }

    /// Read a non-pointer word.
    @inlinable @inline(__always)
    public func loadWord(_ object: Ref, _ word: Int) -> Int {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { scalarSlow(object, word, store: false) }
        return UnsafePointer<Int>(bitPattern: object.address).unsafelyUnwrapped[word]
    }

    /// Write a non-pointer word. Writing into a pointer word is misuse (trapped in checked mode).
    @inlinable @inline(__always)
    public func storeWord(_ object: Ref, _ word: Int, _ value: Int) {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { scalarSlow(object, word, store: true) }
        UnsafeMutablePointer<Int>(bitPattern: object.address).unsafelyUnwrapped[word] = value
    }

    @usableFromInline @inline(never)
    func scalarSlow(_ object: Ref, _ word: Int, store: Bool) {
        slowPathSafepoint()
        if state.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkAccess(object, word, pointer: false, store: store)
        }
    }

    /// Common to every slow path: answer a safepoint request.
    @usableFromInline
    func slowPathSafepoint() {
        let st = state
        if st.flags & MutatorState.flagSafepoint != 0 {
            st.clearFlags(MutatorState.flagSafepoint)
            st.pointee.heap.gcSafepoint(st, full: false)
        }
    }

    @usableFromInline @inline(never)
    func loadSlow(_ object: Ref, _ word: Int) -> Ref {
        slowPathSafepoint()
        if state.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkAccess(object, word, pointer: true, store: false)
        }
        let v = Ref(address: tc_load_relaxed(UnsafeRawPointer(bitPattern: object.address + UInt(word) * 8)!))
        if state.flags & MutatorState.flagChecked != 0 && !v.isNull {
            state.pointee.heap.checkRef(v, "loaded from word \(word) of \(object)")
        }
        return v
    }

    @usableFromInline @inline(never)
    func storeSlow(_ object: Ref, _ word: Int, _ value: Ref) {
        slowPathSafepoint()
        let flags = state.flags
        if flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkAccess(object, word, pointer: true, store: true)
            if !value.isNull { state.pointee.heap.checkRef(value, "stored into word \(word) of \(object)") }
        }
        let slot = UnsafeMutableRawPointer(bitPattern: object.address + UInt(word) * 8)!
        if flags & MutatorState.flagBarrier != 0 { writeBarrier(slot, value.address) }
        tc_store_release(slot, value.address)
    }

    /// Go's hybrid write barrier, buffered: record the old value (deletion, Yuasa) and the
    /// new value (insertion, Dijkstra); the buffer is shaded when full or when the
    /// collector asks. Also a safepoint for the collector's requests.
    @usableFromInline
    func writeBarrier(_ slot: UnsafeMutableRawPointer, _ new: UInt) {
        let st = state
        let old = tc_load_relaxed(slot)
        var n = st.pointee.wbCount
        if n + 2 > MutatorState.wbBufEntries {
            st.pointee.heap.writeBarrierBufferFull(st)
            n = 0
        }
        if old != 0 { st.pointee.wbBuf[n] = old; n += 1 }
        if new != 0 { st.pointee.wbBuf[n] = new; n += 1 }
        st.pointee.wbCount = n
    }

    // MARK: frames (the shadow stack)

    /// Push a frame of `slots` root slots (all null), run `body`, pop the frame.
    @inlinable @inline(__always)
    public func withFrame<R>(slots: Int, _ body: (Frame) throws -> R) rethrows -> R {
        let f = pushFrame(slots: slots)
        defer { popFrame(f) }
        return try body(f)
    }

    /// Push a frame of `slots` null root slots. Frames are popped in reverse order.
    @inlinable @inline(__always)
    public func pushFrame(slots: Int) -> Frame {
        let st = state
        let top = st.pointee.stackTop
        if _slowPath(top &+ slots > st.pointee.stackCap || st.flags & MutatorState.flagsNotBarrier != 0) { growStack(slots) }
        let base = st.pointee.stack + top
        for i in 0..<slots { base[i] = 0 }
        st.pointee.stackTop = top &+ slots
        return Frame(state: st, offset: top, count: slots)
    }

    @inlinable @inline(__always)
    public func popFrame(_ f: Frame) {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { checkPop(f) }
        state.pointee.stackTop = f.offset
    }

    /// Grow the shadow stack by copying it into one twice as large (Go's copystack).
    @usableFromInline @inline(never)
    func growStack(_ slots: Int) {
        let st = state
        slowPathSafepoint()
        if st.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 { checkUsable("push a frame") }
        if slots < 0 { runtimeFatal("pushFrame: negative slot count \(slots)") }
        let need = st.pointee.stackTop + slots
        if need <= st.pointee.stackCap { return }
        var cap = st.pointee.stackCap
        while cap < need { cap *= 2 }
        if cap * 8 > 1_000_000_000 { runtimeFatal("stack overflow: shadow stack exceeds 1000000000-byte limit") }
        let n = UnsafeMutablePointer<UInt>.allocate(capacity: cap)
        n.moveInitialize(from: st.pointee.stack, count: st.pointee.stackTop)
        // Publish under the sched lock: a collector may be reading stacks of blocked mutators.
        st.pointee.heap.schedLock.withLock {
            st.pointee.stack.deallocate()
            st.pointee.stack = n
            st.pointee.stackCap = cap
        }
    }

    @usableFromInline @inline(never)
    func checkPop(_ f: Frame) {
        slowPathSafepoint()
        if state.flags & (MutatorState.flagChecked | MutatorState.flagDetached) == 0 { return }
        checkUsable("pop a frame")
        if f.state != state { runtimeFatal("popFrame: frame belongs to another mutator") }
        if state.pointee.stackTop != f.offset + f.count {
            runtimeFatal("popFrame: frames popped out of order (frame at slot \(f.offset) of \(f.count), stack top \(state.pointee.stackTop))")
        }
    }

    // MARK: safepoints and blocking

    /// Answer a pending stop-the-world request. Cheap when none is pending.
    @inlinable @inline(__always)
    public func safepoint() {
        if _slowPath(tc_load_relaxed(state.pointee.stopFlag) != 0) { parkSlow() }
    }

    @usableFromInline @inline(never)
    func parkSlow() { state.pointee.heap.gcSafepoint(state, mayFinishMark: true) }

    /// Run `body`, which must not touch the heap, without holding up collections
    /// (Go's entersyscall/exitsyscall). Roots in frames stay roots.
    public func blocking<R>(_ body: () throws -> R) rethrows -> R {
        state.pointee.heap.enterBlocking(state)
        defer { state.pointee.heap.exitBlocking(state) }
        return try body()
    }

    // MARK: checked mode

    /// Traps if this mutator is detached or used from a thread other than its own.
    @usableFromInline
    func checkUsable(_ what: String) {
        let st = state
        if st.flags & MutatorState.flagDetached != 0 {
            runtimeFatal("use of a mutator after detach (\(what))")
        }
        if st.flags & MutatorState.flagChecked != 0 && st.pointee.threadID != tc_thread_id() {
            runtimeFatal("mutator used from another thread (\(what)): attached on thread \(st.pointee.threadID), used on thread \(tc_thread_id())")
        }
    }

    @usableFromInline
    func checkAccess(_ object: Ref, _ word: Int, pointer: Bool, store: Bool) {
        checkUsable(store ? "store" : "load")
        unowned(unsafe) let heap = state.pointee.heap
        heap.checkRef(object, "used as an object")
        guard let s = heap.spanOf(object.address) else { return }
        let objectBase = s.pointee.startAddr + s.objectIndex(object.address) * s.pointee.elemSize
        let objectWords = Int((s.pointee.isLarge ? s.pointee.limit - s.pointee.startAddr : s.pointee.elemSize) / 8)
        let wordInSlot = Int((object.address - objectBase) / 8) + word
        if word < 0 || wordInSlot >= objectWords {
            runtimeFatal("word \(word) is outside object \(object) of \(objectWords) words")
        }
        if s.pointee.spanClass.noscan {
            if pointer { runtimeFatal("pointer \(store ? "store into" : "load from") word \(word) of \(object), which holds no pointers") }
            return
        }
        let tid = (s.pointee.isLarge ? UInt16(s.pointee.largeType) : s.pointee.typeIDs![Int(s.objectIndex(object.address))]) & ~arrayTypeBit
        let t = heap.types[Int(tid)]
        let isPtr = t.isPointerWord(wordInSlot % Int(t.size / 8))
        if pointer && !isPtr {
            runtimeFatal("pointer \(store ? "store into" : "load from") non-pointer word \(word) of \(object) (type \(heap.typeName(tid)))")
        }
        if !pointer && isPtr && store {
            runtimeFatal("integer store into pointer word \(word) of \(object) (type \(heap.typeName(tid))): use store(_:_:_:)")
        }
    }
}

/// A frame of root slots on a mutator's shadow stack. A `Ref` stored in a slot is a
/// root until the frame is popped. Trivially copyable; valid until popped.
@frozen
public struct Frame {
    @usableFromInline let state: UnsafeMutablePointer<MutatorState>
    @usableFromInline let offset: Int
    public let count: Int

    @usableFromInline init(state: UnsafeMutablePointer<MutatorState>, offset: Int, count: Int) {
        self.state = state
        self.offset = offset
        self.count = count
    }

    @inlinable
    public subscript(i: Int) -> Ref {
        @inline(__always) get {
            if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { checkSlot(i) }
            return Ref(address: state.pointee.stack[offset &+ i])
        }
        @inline(__always) nonmutating set {
            if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { checkSlot(i, newValue) }
            state.pointee.stack[offset &+ i] = newValue.address
        }
    }

    @usableFromInline @inline(never)
    func checkSlot(_ i: Int, _ value: Ref = .null) {
        let m = Mutator(state: state)
        m.slowPathSafepoint()
        if state.flags & (MutatorState.flagChecked | MutatorState.flagDetached) == 0 { return }
        m.checkUsable("frame slot")
        if i < 0 || i >= count { runtimeFatal("frame slot \(i) out of range 0..<\(count)") }
        if offset + count > state.pointee.stackTop { runtimeFatal("use of a popped frame") }
        if !value.isNull { state.pointee.heap.checkRef(value, "stored into frame slot \(i)") }
    }
}
