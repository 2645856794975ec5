import CTricolor
import Glibc

// Conservative roots: the native stacks of mutator threads (Boehm GC's stack scan, V8
// cppgc's conservative stack scanning, Go's scanConservative for asynchronously
// preempted frames).
//
// A `Ref` that lives only in a Swift local, a parameter or a register is a root: once per
// cycle, when a mutator's shadow stack is scanned, the words of its native stack are
// scanned too, and every word that points into an allocated heap object (at its start
// or anywhere inside it) keeps that object alive for the cycle. The object is treated
// as a pinned root; Tricolor never moves objects, so pinning asks nothing more.
//
// Where the words come from (CTricolor's tc_spill_registers):
// - A mutator scanning itself (at a full safepoint, `mutatorGCDuties`) stores its
//   callee-saved registers into a buffer in its own frame and scans from its stack
//   pointer to the top of its thread's stack. Values the compiler keeps across the call
//   into the runtime are in those registers or in the frames above, so all are seen.
// - A mutator entering a blocking region or parking does the same store and records
//   its stack pointer (`MutatorState.nativeSP`) before its status changes under the
//   sched lock; the frame holding the buffer stays live until it leaves the region. A
//   collector that scans a blocking mutator (mark termination's ragged barrier) scans
//   from the recorded pointer, under the sched lock, so the thread cannot return into
//   the frames being read. Frames below the recorded pointer belong to the blocking
//   body, which may not hold heap references.
//
// What it does not see: a `Ref` kept only inside Swift heap memory (a class instance, an
// `Array`'s buffer, an escaping closure's context, an `async` frame). Those still need a
// frame slot, a global or a `Handle`.
//
// Filtering a word (`greyConservative`), as Go's scanConservative does: it must point
// into an arena of this heap, into an in-use span of objects (not a stack span, not a
// free page), below the span's limit, at an allocated slot. Free slots are never marked:
// a marked free slot would turn into a phantom object at the next sweep. The
// allocation state of a span that another mutator may be caching right now is read
// without synchronization (tc_peek64), which is safe: during marking a span being cached
// has all its free slots pre-marked (allocate-black) and their pre-marks withdrawn when
// it leaves the cache, so marking a free slot of it changes nothing; a span not being
// cached does not change while it is read.
//
// False retention: a word that merely looks like an address (an integer, a stale
// value in a dead part of a frame) keeps at most the object it points into, for as long
// as the word stays on the stack. It corrupts nothing.
//
// Invariants: only `.inUse` spans are marked through; marking goes through
// `greyObject`, so everything found is queued and scanned like any grey object; the
// scan of a thread's stack never reads outside [sp, top) of that thread's stack.

/// Room for the callee-saved registers `tc_spill_registers` stores.
struct SpillBuffer {
    var words: (UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt,
                UInt, UInt, UInt, UInt, UInt, UInt, UInt, UInt) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
}

/// Run `body` with the calling thread's callee-saved registers stored in a buffer in a
/// frame that stays live until `body` returns; `body` receives the stack pointer below
/// which nothing of the callers' lies (see the file comment).
@inline(never)
func withRegistersSpilled<R>(_ body: (UInt) throws -> R) rethrows -> R {
    var spill = SpillBuffer()
    return try withUnsafeMutablePointer(to: &spill) { p in
        let sp = p.withMemoryRebound(to: UInt.self, capacity: Int(TC_SPILL_WORDS)) { UInt(tc_spill_registers($0)) }
        let r = try body(sp)
        // Keep the buffer's contents alive (and in memory) until here.
        _ = tc_peek64(UnsafeRawPointer(p))
        return r
    }
}

extension Heap {
    // MARK: conservative roots

    /// Scan the native stack of mutator `st` from `sp` to its thread's stack top, greying
    /// every allocated object a word points into. Returns the bytes scanned. Called by the
    /// mutator itself (sp from `withRegistersSpilled`) or, for a blocking mutator, by a
    /// collector holding the sched lock (sp recorded at entry).
    func scanNativeStack(_ st: UnsafeMutablePointer<MutatorState>, from sp: UInt, _ gcw: inout GCWork) -> UInt {
        var found = 0
        guard let bytes = forEachNativeStackWord(st, from: sp, { if greyConservative($0, &gcw) { found += 1 } }) else {
            // Not on its own stack (a signal or fiber stack) or bounds unknown: nothing we
            // can read safely. Counted, and said by `GCStats.nativeStackScansSkipped`.
            marking.nativeScansSkipped.add(1, .relaxed)
            return 0
        }
        marking.nativeScanBytes.add(bytes, .relaxed)
        marking.conservativeRoots.add(UInt(found), .relaxed)
        return bytes
    }

    /// Call `body` with every word of `st`'s native stack, from `sp` to the stack top,
    /// that lies in this heap's reservation. Returns the bytes read, or nil when `sp` is
    /// not inside the thread's stack (nothing is read then). The caller owns the mutator's
    /// candidate buffer: the mutator itself, or a thread holding the sched lock or the
    /// stopped world while the mutator blocks or parks.
    func forEachNativeStackWord(_ st: UnsafeMutablePointer<MutatorState>, from sp: UInt, _ body: (UInt) -> Void) -> UInt? {
        let lo = st.pointee.nativeStackLo
        let hi = st.pointee.nativeStackHi
        guard hi != 0, sp >= lo, sp < hi else { return nil }
        var cursor = sp
        let candidates = conservativeBuffer(st)
        while cursor < hi {
            let n = tc_scan_words(&cursor, hi, arenaBase, arenaBase &+ reservedBytes, candidates, MutatorState.conservativeBufferWords)
            for i in 0..<n { body(candidates[i]) }
        }
        return hi &- sp
    }

    /// The mutator's buffer for candidate words (allocated on first use; owned by
    /// whoever scans the mutator's stack: the mutator, or the collector holding the
    /// sched lock while the mutator blocks).
    private func conservativeBuffer(_ st: UnsafeMutablePointer<MutatorState>) -> UnsafeMutablePointer<UInt> {
        if let b = st.pointee.conservativeCandidates { return b }
        let b = UnsafeMutablePointer<UInt>.allocate(capacity: MutatorState.conservativeBufferWords)
        st.pointee.conservativeCandidates = b
        return b
    }

    /// Grey the object `p` points into if `p` is inside an allocated object of this heap.
    /// Returns whether it was one (marked now or before).
    func greyConservative(_ p: UInt, _ gcw: inout GCWork) -> Bool {
        guard let (s, idx) = objectSlot(p) else { return false }
        if s.isMarked(idx) { return true }
        guard isAllocatedForScan(s, idx) else { return false }
        greyObject(s.pointee.startAddr &+ idx &* s.pointee.elemSize, &gcw)
        return true
    }

    /// The in-use object span and slot index an arbitrary word points into, if any (the
    /// first filter of a conservative word: arena, span state, limit).
    func objectSlot(_ p: UInt) -> (UnsafeMutablePointer<MSpan>, UInt)? {
        guard let s = spanOfAcquiring(p),
              tc_load8_relaxed(UnsafeRawPointer(s) + MSpan.stateOffset) == MSpanState.inUse.rawValue,
              p >= s.pointee.startAddr, p < s.pointee.limit else { return nil }
        return (s, s.objectIndex(p))
    }

    /// `spanOf` for an arbitrary word: the arena and span tables are read with acquire
    /// loads, pairing with the release stores that publish a new span (`setSpans`), so a
    /// span found here is initialized.
    func spanOfAcquiring(_ p: UInt) -> UnsafeMutablePointer<MSpan>? {
        let off = p &- arenaBase
        if off >= reservedBytes { return nil }
        let a = tc_load_acquire(UnsafeRawPointer(arenaSpans + Int(off >> HeapArena.logBytes)))
        guard let table = UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>(bitPattern: a) else { return nil }
        let entry = table + Int((off >> SizeClassTable.pageShiftU) & UInt(HeapArena.pagesPerArena - 1))
        return UnsafeMutablePointer<MSpan>(bitPattern: tc_load_acquire(UnsafeRawPointer(entry)))
    }

    /// Whether slot `idx` of in-use span `s` holds an allocated object, for the
    /// conservative scanner: see the file comment for why the unsynchronized reads are
    /// safe. A span in a mutator's cache counts every unmarked slot as allocated (its
    /// free slots are pre-marked while marking).
    private func isAllocatedForScan(_ s: UnsafeMutablePointer<MSpan>, _ idx: UInt) -> Bool {
        let sg = sweepgen
        let g = s.loadSweepgen()
        if g == sg &+ 3 || g == sg &+ 1 { return true }
        let raw = UnsafeRawPointer(s)
        let nelems = tc_peek64(raw + MSpan.nelemsOffset)
        if UInt64(idx) >= nelems { return false }
        let freeIndex = UInt(tc_peek64(raw + MSpan.freeIndexOffset))
        if idx < freeIndex { return true }
        let w = Int(idx / 64)
        let bit = UInt64(1) << UInt64(idx % 64)
        if UInt(w) * 64 == freeIndex {
            let free = tc_peek64(raw + MSpan.allocCacheOffset) | tc_peek64(raw + MSpan.heldCacheOffset)
            return free & bit == 0
        }
        guard let bits = UnsafeRawPointer(bitPattern: UInt(tc_peek64(raw + MSpan.allocBitsOffset))) else { return false }
        return tc_peek64(bits + w * 8) & bit != 0
    }

    /// Scan the native stack of the calling mutator, registers spilled here.
    func scanOwnNativeStack(_ st: UnsafeMutablePointer<MutatorState>, _ gcw: inout GCWork) -> UInt {
        withRegistersSpilled { sp in scanNativeStack(st, from: sp, &gcw) }
    }
}

extension MSpan {
    static let stateOffset = MemoryLayout<MSpan>.offset(of: \MSpan.state)!
    static let nelemsOffset = MemoryLayout<MSpan>.offset(of: \MSpan.nelems)!
    static let freeIndexOffset = MemoryLayout<MSpan>.offset(of: \MSpan.freeIndex)!
    static let allocCacheOffset = MemoryLayout<MSpan>.offset(of: \MSpan.allocCache)!
    static let heldCacheOffset = MemoryLayout<MSpan>.offset(of: \MSpan.heldCache)!
    static let allocBitsOffset = MemoryLayout<MSpan>.offset(of: \MSpan.allocBits)!
}
