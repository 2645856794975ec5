import CTricolor
import Glibc

// Pointer loads and stores, and the write barrier (Go's mbarrier.go and mwbbuf.go).
//
// Go's hybrid barrier (Yuasa deletion + Dijkstra insertion, proposal 17503): while
// marking, a pointer store shades both the value overwritten and the value written.
// Tricolor buffers both (Go's wbBuf) and shades the buffer when it fills or when the
// collector asks (ragged barrier, pause #2). With the barrier off the store is a plain
// release store: the only cost is one relaxed load of the mutator's flags word.
//
// Where we differ from Go: Go's wbBuf records both values whatever they are and filters
// at the flush. Ours leaves out, at the store, null values and a new value in the
// mutator's black range (`MutatorState.blackBase`: a span that was empty when cached in
// this mark phase, so everything in it is allocate-black). A tree built while marking
// stores fresh nodes into fresh nodes, and those stores then record nothing: the flush
// was 6% of binary-trees' mutator time.
//
// Also here: what a mutator owes the collector during marking (`mutatorGCDuties`: scan
// its own stack once per cycle at a full safepoint, flush its buffer when asked).
//
// Invariants: with the barrier on, every pointer overwritten in a heap object, global or
// handle during marking, and every pointer stored, is in a barrier buffer, a grey
// queue, or was already marked; the buffer holds at most `wbBufEntries` words; a
// mutator's black range holds marked objects only (it is emptied in pause #1).

extension Heap {
    // MARK: mutator duties during marking

    /// What a mutator owes the collector while marking: a scan of its own stack (once per
    /// cycle) and, when a ragged barrier asks, a flush of its write-barrier buffer.
    func mutatorGCDuties(_ st: UnsafeMutablePointer<MutatorState>, scanStack canScan: Bool = true) {
        guard phase == .mark else { return }
        var did = false
        if canScan && tc_load8_relaxed(st.stackScannedAddress) == 0 {
            scanStack(st, &st.pointee.gcw.pointee)
            tc_store8_relaxed(st.stackScannedAddress, 1)
            // Shrink where Go does, at the stack scan: the owner is at a full safepoint,
            // so nothing holds an address inside its stack.
            shrinkStack(st)
            did = true
        }
        let gen = marking.flushGen.load(.relaxed)
        if tc_load_relaxed(st.flushAckAddress) != gen {
            flushWriteBarrierBuffer(st)
            tc_store_relaxed(st.flushAckAddress, gen)
            did = true
        }
        if did {
            flushMarkedStats(&st.pointee.gcw.pointee)
            work.putAll(from: &st.pointee.gcw.pointee)
            schedLock.withLock { stateChanged.broadcast() }
        }
    }

    /// Grey the contents of a mutator's write-barrier buffer into its gcWork.
    func flushWriteBarrierBuffer(_ st: UnsafeMutablePointer<MutatorState>) {
        let n = st.pointee.wbCount
        if n == 0 { return }
        let buf = st.pointee.wbBuf
        for i in 0..<n { greyObject(buf[i], &st.pointee.gcw.pointee) }
        st.pointee.wbCount = 0
    }

    /// Everything a mutator holds for the collector, published (caller owns the mutator:
    /// it is the mutator itself, or the mutator is stopped and the sched lock is held).
    func flushMutatorGCWork(_ st: UnsafeMutablePointer<MutatorState>) {
        flushWriteBarrierBuffer(st)
        flushMarkedStats(&st.pointee.gcw.pointee)
        work.putAll(from: &st.pointee.gcw.pointee)
        tc_store_relaxed(st.flushAckAddress, marking.flushGen.load(.relaxed))
    }

    /// The write barrier's buffer is full: shade its contents (Go's wbBufFlush).
    func writeBarrierBufferFull(_ st: UnsafeMutablePointer<MutatorState>) {
        flushWriteBarrierBuffer(st)
        flushMarkedStats(&st.pointee.gcw.pointee)
        work.putAll(from: &st.pointee.gcw.pointee)
    }
}

extension Mutator {
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
            // Go's buffered hybrid barrier, inline: record the old and the new value,
            // without branches leaving out null values and a new value known to be
            // marked already (allocated black in this mutator's `blackBase` range: a
            // node just built, stored into its parent, the common case).
            let n = st.pointee.wbCount
            if _fastPath(n &+ 2 <= MutatorState.wbBufEntries) {
                let old = tc_load_relaxed(slot)
                let new = value.address
                st.pointee.wbBuf[n] = old
                let k = n &+ (old != 0 ? 1 : 0)
                st.pointee.wbBuf[k] = new
                st.pointee.wbCount = k &+ (st.pointee.barrierSkips(new) ? 0 : 1)
                tc_store_release(slot, new)
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
            st.heapUnretained._withUnsafeGuaranteedRef { $0.gcSafepoint(st, full: false) }
        }
    }

    @usableFromInline @inline(never)
    func loadSlow(_ object: Ref, _ word: Int) -> Ref {
        slowPathSafepoint()
        if state.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkAccess(object, word, pointer: true, store: false)
        }
        let v = Ref(address: tc_load_relaxed(UnsafeRawPointer(bitPattern: object.address + UInt(word) * 8)!))
        // The loaded value needs no check of its own in checked mode: its holder is a
        // live object (checked above), every pointer stored into a checked heap was
        // checked when stored, and the collector keeps what a live object points to.
        // Only a collector bug would make it stale, which is what internal checks and
        // gccheckmark look for; so it is checked with internal checks only (it was a
        // fifth of checked binary-trees).
        if state.flags & MutatorState.flagChecked != 0 && !v.isNull && state.heapUnretained._withUnsafeGuaranteedRef({ $0.internalChecks }) {
            _ = state.heapUnretained._withUnsafeGuaranteedRef { $0.checkRef(v, .loaded(word: word, from: object)) }
        }
        return v
    }

    @usableFromInline @inline(never)
    func storeSlow(_ object: Ref, _ word: Int, _ value: Ref) {
        slowPathSafepoint()
        let flags = state.flags
        if flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 {
            checkAccess(object, word, pointer: true, store: true)
            if !value.isNull { _ = state.heapUnretained._withUnsafeGuaranteedRef { $0.checkRef(value, .stored(word: word, into: object)) } }
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
            st.heapUnretained._withUnsafeGuaranteedRef { $0.writeBarrierBufferFull(st) }
            n = 0
        }
        if old != 0 { st.pointee.wbBuf[n] = old; n += 1 }
        if !st.pointee.barrierSkips(new) { st.pointee.wbBuf[n] = new; n += 1 }
        st.pointee.wbCount = n
    }
}
