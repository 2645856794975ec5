import CTricolor
import Glibc

// Checked mode (GODEBUG=tricolorcheck=1): misuse traps with a message instead of
// corrupting the heap. Every load, store and frame access goes to its slow path, which
// validates the mutator (attached, on its own thread) and the object (a live object of
// the heap, the word inside it, pointer words only for pointer accesses).
//
// Cost rules (issue #12: checked mode within 5× of unchecked on binary-trees 18):
// - the thread check is a thread-local load and a compare, never a system call;
// - no message is built unless a check fails: callers describe the access with a
//   `CheckSite` (a few words, no allocation) and a `StaticString`, and the failure
//   functions (`@inline(never)`, `Never`) turn them into text;
// - a check touches no Swift object: no retain, release, lock or allocation (the type
//   table is runtime memory, the heap is reached `unowned(unsafe)`).
// The checks run only when the mutator's flags word says checked mode, so unchecked
// code pays nothing for them.
//
// Stale references (issue #11 part 5): in checked mode freed slots sit in a quarantine
// for a few cycles (Collector/Quarantine.swift). `checkRef` looks there first, so a
// `Ref` to a freed object traps naming the type, the address and the cycle that freed
// it, deterministically, however few allocations happened since.

/// What a checked access was doing with a `Ref`, for the message of a failed check.
/// Trivial (no reference-counted payload): building one costs a couple of register moves.
@usableFromInline
enum CheckSite {
    case object                       // the object of a load or store
    case loaded(word: Int, from: Ref)
    case stored(word: Int, into: Ref)
    case frameSlot(Int)
    case root
    case handle

    var text: String {
        switch self {
        case .object: return "used as an object"
        case .loaded(let w, let o): return "loaded from word \(w) of \(o)"
        case .stored(let w, let o): return "stored into word \(w) of \(o)"
        case .frameSlot(let i): return "stored into frame slot \(i)"
        case .root: return "stored into a root"
        case .handle: return "given to makeHandle"
        }
    }
}

extension UnsafeMutablePointer where Pointee == MutatorState {
    /// The mutator's heap, borrowed without a retain: reading the `unowned(unsafe)`
    /// field makes a strong copy (a retain/release pair around every call), which
    /// checked mode cannot afford on every access. The heap outlives its mutators.
    @inline(__always)
    var heapUnretained: Unmanaged<Heap> {
        Unmanaged<Heap>.fromOpaque(pointee.heapOpaque)
    }
}

extension Heap {
    // MARK: checked mode

    /// Trap unless `r` is the start of a live object (or points into a live tiny block).
    /// Returns the object's span and slot index (nil span for the zero-size base).
    @discardableResult
    func checkRef(_ r: Ref, _ site: CheckSite) -> (UnsafeMutablePointer<MSpan>?, UInt) {
        let p = r.address
        if p == zeroBase { return (nil, 0) }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            badRef(r, site, .notInHeap)
        }
        let idx = s.objectIndex(p)
        let base = s.pointee.startAddr &+ idx &* s.pointee.elemSize
        if base != p && s.pointee.spanClass != .tiny { badRef(r, site, .interior(base)) }
        // The span may be swept by another thread (the background sweeper, another
        // mutator) while we read its bits: its mark bits become the alloc bits and fresh
        // zero mark bits are installed. Read the bits between two reads of the span's
        // sweepgen, and wait out a sweep in progress (sweepgen == heap's − 1), so that a
        // live object is never judged from a half-swept span. (The heap's sweepgen cannot
        // move meanwhile: that needs a stopped world, and this mutator is not at a
        // safepoint.) Found by the fuzzer in checked mode: "the object was freed" for an
        // object read from a live chain.
        let sg = sweepgen
        var live = false
        var freedIn: UInt32 = 0
        while true {
            let before = s.loadSweepgen()
            if before == sg &- 1 { tc_yield(); continue }
            let unswept = before == sg &- 2
            freedIn = quarantineEntry(s, idx)
            live = s.isAllocated(idx) && !(unswept && !s.isMarked(idx))
            if s.loadSweepgen() == before { break }
        }
        if freedIn & Quarantine.inQuarantine != 0 { badRef(r, site, .quarantined(s, idx, freedIn)) }
        if !live { badRef(r, site, .freed(s, idx, freedIn)) }
        return (s, idx)
    }

    /// Why `checkRef` failed.
    enum BadRef {
        case notInHeap
        case interior(UInt)
        case quarantined(UnsafeMutablePointer<MSpan>, UInt, UInt32)
        case freed(UnsafeMutablePointer<MSpan>, UInt, UInt32)
    }

    /// The message of a failed `checkRef`, built here and only here.
    @inline(never)
    func badRef(_ r: Ref, _ site: CheckSite, _ why: BadRef) -> Never {
        switch why {
        case .notInHeap:
            runtimeFatal("invalid pointer \(r) \(site.text): not a live heap object")
        case .interior(let base):
            runtimeFatal("invalid pointer \(r) \(site.text): points inside an object (object starts at \(Ref(address: base)))")
        case .quarantined(let s, let idx, let e):
            runtimeFatal("invalid pointer \(r) \(site.text): use after free of a \(quarantineTypeName(s, idx)) at \(r), freed in GC cycle \(e & ~Quarantine.inQuarantine) (stale Ref: it was not in a frame, global or handle at a collection; see \"Roots and Safepoints\")")
        case .freed(let s, let idx, let e):
            let when = e != 0 ? ", freed in GC cycle \(e & ~Quarantine.inQuarantine)" : ""
            runtimeFatal("invalid pointer \(r) \(site.text): the object was freed (use after free) (a \(quarantineTypeName(s, idx)) at \(r)\(when))")
        }
    }
}

extension Mutator {
    // MARK: checked mode

    /// Traps if this mutator is detached or used from a thread other than its own.
    /// `what` names the operation in the message.
    @usableFromInline @inline(__always)
    func checkUsable(_ what: StaticString) {
        let st = state
        let flags = st.flags
        if _slowPath(flags & MutatorState.flagDetached != 0) { usedAfterDetach(what) }
        // The thread's current mutator is a thread-local load, not a system call.
        if _slowPath(flags & MutatorState.flagChecked != 0 && tc_get_current_mutator() != UnsafeMutableRawPointer(st)) {
            usedOnAnotherThread(what)
        }
    }

    @usableFromInline @inline(never)
    func usedAfterDetach(_ what: StaticString) -> Never {
        runtimeFatal("use of a mutator after detach (\(what))")
    }

    @usableFromInline @inline(never)
    func usedOnAnotherThread(_ what: StaticString) -> Never {
        runtimeFatal("mutator used from another thread (\(what)): attached on thread \(state.pointee.threadID), used on thread \(tc_thread_id())")
    }

    /// The whole check of a load or store of word `word` of `object`: the mutator, the
    /// object (live, not quarantined, not interior), the word (inside the object, of the
    /// right kind). One span lookup; no allocation, no reference counting.
    @usableFromInline
    func checkAccess(_ object: Ref, _ word: Int, pointer: Bool, store: Bool) {
        checkUsable(store ? "store" : "load")
        state.heapUnretained._withUnsafeGuaranteedRef { checkAccess($0, object, word, pointer: pointer, store: store) }
    }

    @inline(__always)
    func checkAccess(_ heap: Heap, _ object: Ref, _ word: Int, pointer: Bool, store: Bool) {
        let (span, idx) = heap.checkRef(object, .object)
        // The zero-size base, which every zero-size allocation shares, has no words: a
        // store there would change what every empty array reads.
        guard let s = span else { badAccess(object, word, pointer: pointer, store: store, .outside(0)) }
        let large = s.pointee.isLarge
        let objectWords = Int((large ? s.pointee.limit &- s.pointee.startAddr : s.pointee.elemSize) &>> 3)
        let objectBase = s.pointee.startAddr &+ idx &* s.pointee.elemSize
        let wordInSlot = Int((object.address &- objectBase) &>> 3) &+ word
        if _slowPath(word < 0 || wordInSlot >= objectWords) {
            badAccess(object, word, pointer: pointer, store: store, .outside(objectWords))
        }
        if s.pointee.spanClass.noscan {
            if _slowPath(pointer) { badAccess(object, word, pointer: pointer, store: store, .noPointers) }
            return
        }
        let tid = (large ? UInt16(truncatingIfNeeded: s.pointee.largeType) : s.pointee.typeIDs.unsafelyUnwrapped[Int(idx)]) & ~arrayTypeBit
        let t = heap.types + Int(tid)
        // The word within its element: a division only for arrays (it cost a quarter of
        // this function when done for every access).
        let typeWords = Int(t.pointee.size &>> 3)
        let isPtr = t.pointee.isPointerWord(wordInSlot < typeWords ? wordInSlot : wordInSlot % typeWords)
        if _slowPath(pointer != isPtr) && (pointer || store) {
            badAccess(object, word, pointer: pointer, store: store, .wrongKind(tid))
        }
    }

    /// Why `checkAccess` failed (past `checkRef`).
    enum BadAccess {
        case outside(Int)
        case noPointers
        case wrongKind(UInt16)
    }

    /// The message of a failed `checkAccess`, built here and only here.
    @inline(never)
    func badAccess(_ object: Ref, _ word: Int, pointer: Bool, store: Bool, _ why: BadAccess) -> Never {
        unowned(unsafe) let heap = state.pointee.heap
        switch why {
        case .outside(let words):
            if words == 0 { runtimeFatal("word \(word) is outside object \(object), which has no words (a zero-size allocation)") }
            runtimeFatal("word \(word) is outside object \(object) of \(words) words")
        case .noPointers:
            runtimeFatal("pointer \(store ? "store into" : "load from") word \(word) of \(object), which holds no pointers")
        case .wrongKind(let tid):
            if pointer {
                runtimeFatal("pointer \(store ? "store into" : "load from") non-pointer word \(word) of \(object) (type \(heap.typeName(tid)))")
            }
            runtimeFatal("integer store into pointer word \(word) of \(object) (type \(heap.typeName(tid))): use store(_:_:_:)")
        }
    }
}

extension Mutator {
    /// A mutator used on a thread that is not attached as it: detached (its state may
    /// since have been recycled for another thread's attach) or handed to another thread.
    @usableFromInline @inline(never)
    func wrongThread() -> Never {
        runtimeFatal("mutator used from another thread or after detach: a Mutator belongs to the thread that attached it, until it detaches (this thread's mutator: \(tc_get_current_mutator().map { "\($0)" } ?? "none"))")
    }
}

extension Mutator {
    /// `GODEBUG=gcstress=N`: called at each full safepoint of this mutator (every
    /// allocation, since gcstress sends them all to the slow path, and every
    /// `safepoint()`); runs a whole collection at every N-th. Everything not in a root
    /// is freed right there, so a `Ref` kept only in a Swift local across an allocation
    /// is dead at once, and in checked mode (with the quarantine) the next access to it
    /// traps naming the cycle that freed it.
    @inline(never)
    func gcStressPoint() {
        let st = state
        st.pointee.stressCount += 1
        if st.pointee.stressCount < st.pointee.gcStress { return }
        st.pointee.stressCount = 0
        st.pointee.heap.collect()
    }
}
