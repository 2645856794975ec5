import CTricolor
import Glibc

extension Mutator {
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
}
