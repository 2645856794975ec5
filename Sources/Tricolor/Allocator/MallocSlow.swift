import CTricolor
import Glibc

// The allocation slow path (Go's mallocgc, below the fast paths that Malloc.swift inlines
// into the caller): answer a pending safepoint, check the mutator in checked mode, pick
// the size category and call its allocator (MallocTiny, MallocSmall, MallocLarge), then
// count the allocation for the allocation-path statistics and call the allocation hook.
// Heap profile sampling of tiny and large objects counts bytes here (`sampleBytes`);
// small objects are sampled by the cache window (MemProfile.swift).

extension Mutator {
    /// Go's mallocgc minus the fast paths above. Returns 0 only when `canFail`.
    ///
    /// `cachedSlot`: the cache slot of a small typed allocation (`ObjectType.cacheSlot`:
    /// its span class's, or the type's own), which the allocation refills. Checked mode
    /// and gcstress send every allocation here for the checks above; when nothing else
    /// wants the slow path (no hook, no path counters, no clobbering), the slot is then
    /// taken the way the inlined fast path takes it, from the cached span's window,
    /// instead of through the general `nextFree` (an eighth of checked binary-trees).
    @usableFromInline @inline(never)
    func allocateSlow(size: Int, typeID: UInt16, noscan: Bool, canFail: Bool, cachedSlot: Int? = nil) -> UInt {
        let st = state
        if _slowPath(st.pointee.slowTiming) {
            return timedAllocateSlow(size: size, typeID: typeID, noscan: noscan, canFail: canFail, cachedSlot: cachedSlot)
        }
        unowned(unsafe) let heap = st.pointee.heap
        if st.flags != 0 { checkUsable("allocate") }
        // Misuse that one compare on this slow path catches in every mode: a Mutator used
        // on a thread it is not attached to (detached, or its state since recycled for
        // another thread's attach), allocation inside `blocking { }` or inside a hook.
        if _slowPath(tc_get_current_mutator() != UnsafeMutableRawPointer(st)) { wrongThread() }
        if _slowPath(st.pointee.status == .blocking) {
            runtimeFatal("allocation inside a blocking region: the body of blocking { } must not touch the heap")
        }
        if _slowPath(heap.flags.hooksInstalled.load(.relaxed) != 0) && HookGuard.inHook { HookGuard.misuse("allocation") }
        // Borrowed, not `heap.`: the unowned(unsafe) read retains and releases the heap
        // around the call, an atomic pair on every window refill of the mark phase.
        if tc_load_relaxed(st.pointee.stopFlag) != 0 { st.heapUnretained._withUnsafeGuaranteedRef { $0.gcSafepoint(st, mayFinishMark: true) } }
        if _slowPath(st.pointee.gcStress != 0) { gcStressPoint() }
        if size < 0 {
            if canFail { return 0 }
            runtimeFatal("allocation size out of range: \(size)")
        }
        if size == 0 { return heap.zeroBase }
        if let slot = cachedSlot, st.pointee.pathCounters == nil, !heap.allocHookInstalled, !heap.configuration.clobberFree {
            let s = st.pointee.mcache.pointee.spans[slot]
            let idx = s.nextFreeFast()
            if idx != .max {
                if !noscan { s.pointee.typeIDs.unsafelyUnwrapped[Int(idx)] = typeID }
                return s.pointee.startAddr &+ idx &* s.pointee.elemSize
            }
        }
        let t0: UInt64 = st.pointee.pathCounters != nil ? tc_cputicks() : 0
        st.pointee.pathLevel = 0
        // Go 1.22+ splits mallocgc by size category the same way (mallocgcTiny,
        // mallocgcSmall…, mallocgcLarge).
        let p: UInt
        // The tiny allocator packs objects into shared 16-byte blocks, so an object's
        // slot says nothing about its own size. Arrays stay out of it (their count is
        // read from their slot, `count(of:)`), and so does checked mode, where every
        // access is checked against the object's slot: exact bounds need a slot each.
        if noscan && size < 16 && typeID & arrayTypeBit == 0 && !heap.checked {
            p = allocateTiny(size, canFail: canFail)
        } else if size <= SizeClassTable.maxSmallSize {
            p = allocateSmall(size, typeID: typeID, noscan: noscan, canFail: canFail, slot: cachedSlot)
        } else {
            p = allocateLarge(size, typeID: typeID, noscan: noscan, canFail: canFail)
        }
        if p == 0 { return 0 }
        if st.pointee.pathCounters != nil {
            heap.recordAllocPath(st, start: t0)
        }
        if st.pointee.mcache.pointee.slowAlloc && heap.allocHookInstalled {
            callAllocationHook(p, size: size, typeID: typeID)
        }
        return p
    }

    /// `allocateSlow` bracketed by cycle-counter reads (see `_timeSlowPath`).
    @inline(never)
    func timedAllocateSlow(size: Int, typeID: UInt16, noscan: Bool, canFail: Bool, cachedSlot: Int?) -> UInt {
        let st = state
        st.pointee.slowTiming = false
        let t0 = tc_cputicks()
        let p = allocateSlow(size: size, typeID: typeID, noscan: noscan, canFail: canFail, cachedSlot: cachedSlot)
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
    @_spi(Testing) public func _timeSlowPath(_ on: Bool) {
        state.pointee.slowTiming = on
        state.pointee.slowTicks = 0
        state.pointee.slowCalls = 0
    }

    /// Slow-path calls and their total duration in nanoseconds since `_timeSlowPath(true)`.
    @_spi(Testing) public var _slowPathTime: (calls: UInt64, ns: Double) {
        (state.pointee.slowCalls, Double(state.pointee.slowTicks) * CPUTicks.nsPerTick)
    }

    /// Tiny and large allocations: Go's byte countdown to the next heap profile sample.
    func sampleBytes(_ size: Int, _ p: UInt, _ s: UnsafeMutablePointer<MSpan>) {
        let c = state.pointee.mcache
        unowned(unsafe) let heap = state.pointee.heap
        if c.pointee.profRate == 1 || size >= c.pointee.nextSampleBytes {
            c.pointee.nextSampleBytes = nextExponential(&c.pointee.rngState, mean: c.pointee.profRate)
            heap.profileAlloc(p, size: size, span: s)
        } else {
            c.pointee.nextSampleBytes -= size
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
        let s = heap.spanOf(p)
        let tiny = s?.pointee.spanClass == .tiny
        let slot = tiny ? 16 : s.map { $0.pointee.isLarge ? Int($0.pointee.npages << SizeClassTable.pageShiftU) : Int($0.pointee.elemSize) } ?? size
        let event = AllocationEvent(address: p, size: size, slotSize: slot,
                                    sizeClass: s.map { $0.pointee.spanClass.sizeClass } ?? 0,
                                    typeName: heap.typeName(typeID & ~arrayTypeBit), tiny: tiny, stack: stack)
        HookGuard.run { hook(event) }
    }
}
