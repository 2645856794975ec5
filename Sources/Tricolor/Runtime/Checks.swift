import CTricolor
import Glibc

// Checked mode (GODEBUG=tricolorcheck=1): misuse traps with a message instead of
// corrupting the heap. Every load, store and frame access goes to its slow path, which
// validates the mutator (attached, on its own thread) and the object (a live object of
// the heap, the word inside it, pointer words only for pointer accesses).
//
// The checks here cost a span lookup or two; they run only when the mutator's flags
// word says checked mode, so unchecked code pays nothing for them.

extension Heap {
    // MARK: checked mode

    /// Trap unless `r` is the start of a live object (or points into a live tiny block).
    func checkRef(_ r: Ref, _ what: String) {
        let p = r.address
        if p == zeroBase { return }
        guard let s = spanOf(p), s.pointee.state == MSpanState.inUse.rawValue, p < s.pointee.limit else {
            runtimeFatal("invalid pointer \(r) \(what): not a live heap object")
        }
        let idx = s.objectIndex(p)
        let base = s.pointee.startAddr + idx * s.pointee.elemSize
        if base != p && s.pointee.spanClass != .tiny {
            runtimeFatal("invalid pointer \(r) \(what): points inside an object (object starts at \(Ref(address: base)))")
        }
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
        while true {
            let before = s.loadSweepgen()
            if before == sg &- 1 { tc_yield(); continue }
            let unswept = before == sg &- 2
            live = s.isAllocated(idx) && !(unswept && !s.isMarked(idx))
            if s.loadSweepgen() == before { break }
        }
        if !live {
            runtimeFatal("invalid pointer \(r) \(what): the object was freed (use after free)")
        }
    }
}

extension Mutator {
    // MARK: checked mode

    /// Traps if this mutator is detached or used from a thread other than its own.
    @usableFromInline
    func checkUsable(_ what: String) {
        let st = state
        if st.flags & MutatorState.flagDetached != 0 {
            runtimeFatal("use of a mutator after detach (\(what))")
        }
        // The thread's current mutator is a thread-local load, not a system call.
        if st.flags & MutatorState.flagChecked != 0 && tc_get_current_mutator() != UnsafeMutableRawPointer(st) {
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

extension Mutator {
    /// A mutator used on a thread that is not attached as it: detached (its state may
    /// since have been recycled for another thread's attach) or handed to another thread.
    @usableFromInline @inline(never)
    func wrongThread() -> Never {
        runtimeFatal("mutator used from another thread or after detach: a Mutator belongs to the thread that attached it, until it detaches (this thread's mutator: \(tc_get_current_mutator().map { "\($0)" } ?? "none"))")
    }
}
