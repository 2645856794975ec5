import CTricolor
import Glibc

// The shadow stack: a mutator's precise roots, Tricolor's analogue of a goroutine stack
// (Go's stack.go). Frames of root slots are pushed and popped in LIFO order; the
// collector scans slots 0..<stackTop. Its memory comes from the stack allocator
// (Allocator/StackAlloc.swift: manual spans of the page heap, counted in StackInuse).
// The stack starts at 2 KiB (Go's _StackMin), is copied into one twice as large when a
// push does not fit (Go's newstack/copystack; a `Frame` holds an offset, so it stays
// valid), is halved when it is scanned using less than a quarter of itself (Go's
// shrinkstack; `GODEBUG=gcshrinkstackoff=1` turns that off), and is freed at detach.
// Growing past the heap's maximum (`Heap.setMaxStack`, Go's debug.SetMaxStack) is
// fatal, as in Go.
//
// Frames have no boundaries in the stack itself: the inlined push and pop store only the
// stack top. Checked mode records them on the side, for the allocator state, the fatal
// report and gdb (`MutatorState.debugFrames`): a checked mutator's every push already
// takes the slow path (`growStack`, its flags send it there) and every pop `checkPop`,
// and those two append and drop the records, so unchecked code pays nothing.
//
// Invariants: 0 ≤ stackTop ≤ stackCap; stackCap × 8 is a power of two ≥ 2 KiB while
// attached (0 while detached); frames are popped in reverse order of their pushes; the
// stack memory is replaced only by its owner, under the sched lock, so a collector
// scanning a blocking mutator's stack never reads freed memory; in checked mode the
// frame records, in order, tile 0..<stackTop (each starts where the previous ends).

extension Heap {
    /// Checked mode: each attached mutator's frame records tile its stack, 0..<stackTop
    /// (see the top of this file). World stopped (`checkInvariantsStopped`).
    func checkFrameRecords() {
        guard checked else { return }
        forEachMutator { m in
            var end: UInt64 = 0
            for k in 0..<m.pointee.debugFrameCount {
                let f = m.pointee.debugFrames![k]
                runtimeCheck(f.offset == end, "frames: mutator \(m.pointee.id)'s frame \(k) starts at slot \(f.offset), the one before ends at \(end)")
                end = f.offset &+ f.slots
            }
            runtimeCheck(end == UInt64(m.pointee.stackTop), "frames: mutator \(m.pointee.id)'s \(m.pointee.debugFrameCount) frames end at slot \(end), its stack top is \(m.pointee.stackTop)")
        }
    }

    /// Give a new mutator its first stack. Owner thread, at attach.
    func allocInitialStack(_ st: UnsafeMutablePointer<MutatorState>) {
        guard let s = stackAlloc(StackAlloc.minStack, cache: st.pointee.mcache) else {
            runtimeFatal("out of memory: cannot allocate a \(StackAlloc.minStack)-byte stack for a new mutator")
        }
        st.pointee.stack = s
        st.pointee.stackTop = 0
        st.pointee.stackCap = MutatorState.initialStackSlots
    }

    /// Free a detaching mutator's stack and empty its stack cache. Owner thread; the
    /// mutator is running (no collector reads its stack).
    func freeStack(_ st: UnsafeMutablePointer<MutatorState>) {
        let old = st.pointee.stack
        let bytes = st.pointee.stackCap * 8
        schedLock.withLock {
            st.pointee.stack = MutatorState.noStack
            st.pointee.stackTop = 0
            st.pointee.stackCap = 0
        }
        if bytes > 0 { stackFree(old, bytes, cache: st.pointee.mcache) }
        stackCacheClear(st.pointee.mcache)
    }

    /// Move a mutator's frames to a stack of `newSlots` slots (Go's copystack). Owner
    /// thread. Returns false when no memory can be had (the stack is unchanged).
    func copyStack(_ st: UnsafeMutablePointer<MutatorState>, newSlots: Int) -> Bool {
        guard let n = stackAlloc(newSlots * 8, cache: st.pointee.mcache) else { return false }
        let old = st.pointee.stack
        let oldBytes = st.pointee.stackCap * 8
        n.update(from: old, count: st.pointee.stackTop)
        // Publish under the sched lock: a collector may be reading stacks of blocked mutators.
        schedLock.withLock {
            st.pointee.stack = n
            st.pointee.stackCap = newSlots
        }
        stackFree(old, oldBytes, cache: st.pointee.mcache)
        return true
    }

    /// Halve a shadow stack that uses less than a quarter of itself (Go's shrinkstack),
    /// when its owner scans it. Owner thread, at a full safepoint.
    func shrinkStack(_ st: UnsafeMutablePointer<MutatorState>) {
        guard shrinkStacks else { return }
        let cap = st.pointee.stackCap
        if cap / 2 >= MutatorState.initialStackSlots && st.pointee.stackTop < cap / 4 {
            if copyStack(st, newSlots: cap / 2) { marking.stacksShrunk.add(1, .relaxed) }
        }
    }

    /// Set the largest shadow stack a mutator may grow, in bytes, and return the previous
    /// setting (Go's debug.SetMaxStack; default 1 GB). A mutator growing past it ends
    /// the program ("stack exceeds N-byte limit"). Values below 2 KiB or above 2^40 are
    /// rejected with `HeapError.invalidArgument`.
    @discardableResult
    public func setMaxStack(_ bytes: Int) throws -> Int {
        guard bytes >= StackAlloc.minStack && bytes <= StackAlloc.maxStackCeiling else {
            throw HeapError.invalidArgument("setMaxStack(\(bytes)): must be in \(StackAlloc.minStack)...\(StackAlloc.maxStackCeiling)")
        }
        return statsLock.withLock {
            let old = Int(flags.maxStack.load(.relaxed))
            flags.maxStack.store(UInt(bytes), .relaxed)
            return old
        }
    }
}

extension Mutator {
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
        // One unsigned compare: a negative count wraps to a huge one, so bad counts take
        // the slow path too (growStack checks them). top <= stackCap, so no overflow.
        if _slowPath(UInt(bitPattern: slots) > UInt(bitPattern: st.pointee.stackCap &- top) || st.flags & MutatorState.flagsNotBarrier != 0) { growStack(slots) }
        let base = st.pointee.stack + top
        for i in 0..<slots { base[i] = 0 }
        st.pointee.stackTop = top &+ slots
        return Frame(state: st, offset: top, count: slots)
    }

    /// Pop `f`, which must be the frame most recently pushed with `pushFrame(slots:)` and
    /// not yet popped; its slots stop being roots. Frames pop in the reverse order of
    /// their pushes. Checked mode traps on a frame of another mutator or one popped out
    /// of order.
    @inlinable @inline(__always)
    public func popFrame(_ f: Frame) {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { checkPop(f) }
        state.pointee.stackTop = f.offset
    }

    /// Grow the shadow stack by copying it into one twice as large, or larger if the
    /// push needs it (Go's newstack + copystack).
    @usableFromInline @inline(never)
    func growStack(_ slots: Int) {
        let st = state
        slowPathSafepoint()
        if st.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 { checkUsable("push a frame") }
        // The heap borrowed (+0), as MCache.refill does: a strong copy of the
        // unowned(unsafe) field would retain and release it, and this is also the frame
        // push's safepoint, taken once per request.
        st.heapUnretained._withUnsafeGuaranteedRef { growStack(slots, heap: $0) }
    }

    private func growStack(_ slots: Int, heap: Heap) {
        let st = state
        let maxBytes = Int(heap.flags.maxStack.load(.relaxed))
        // A count no stack could hold is a bad argument, not an overflow; checked before
        // any arithmetic on it, in every mode.
        if slots < 0 || slots > StackAlloc.maxStackCeiling / 8 {
            runtimeFatal("pushFrame: invalid slot count \(slots) (must be 0...\(StackAlloc.maxStackCeiling / 8))")
        }
        // Checked mode records the frame last, after any growth (which may block, and so
        // let the world stop): from here to the caller's store of the new stack top there
        // is no safepoint, so whoever stops the world sees records that tile the stack.
        defer { if st.flags & MutatorState.flagChecked != 0 { recordFrame(offset: st.pointee.stackTop, slots: slots) } }
        let need = st.pointee.stackTop + slots
        if need <= st.pointee.stackCap { return }
        var cap = Swift.max(st.pointee.stackCap, MutatorState.initialStackSlots)
        while cap < need { cap *= 2 }
        if cap * 8 > maxBytes {
            runtimeFatal("stack overflow: shadow stack exceeds \(maxBytes)-byte limit (mutator \(st.pointee.id) needs \(cap * 8) bytes; see Heap.setMaxStack)")
        }
        if !heap.copyStack(st, newSlots: cap) {
            runtimeFatal("out of memory: cannot grow the shadow stack to \(cap * 8) bytes")
        }
        heap.marking.stacksGrown.add(1, .relaxed)
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
        if state.flags & MutatorState.flagChecked != 0 {
            let st = state
            let n = st.pointee.debugFrameCount
            let last = n > 0 ? st.pointee.debugFrames![n - 1] : tc_debug_frame(offset: .max, slots: .max)
            runtimeCheck(last.offset == UInt64(f.offset) && last.slots == UInt64(f.count),
                         "popFrame: frame at slot \(f.offset) of \(f.count) is not the last recorded one (\(n) recorded)")
            st.pointee.debugFrameCount = n - 1
        }
    }

    /// Checked mode: append a frame record (see the top of this file). Owner thread, with
    /// no safepoint before the push stores the new stack top.
    func recordFrame(offset: Int, slots: Int) {
        let st = state
        let n = st.pointee.debugFrameCount
        if n == st.pointee.debugFrameCap {
            let cap = Swift.max(16, n * 2)
            guard let p = realloc(st.pointee.debugFrames, cap * MemoryLayout<tc_debug_frame>.stride) else {
                runtimeFatal("out of memory: cannot record \(cap) shadow-stack frames")
            }
            st.pointee.debugFrames = p.bindMemory(to: tc_debug_frame.self, capacity: cap)
            st.pointee.debugFrameCap = cap
        }
        st.pointee.debugFrames![n] = tc_debug_frame(offset: UInt64(offset), slots: UInt64(slots))
        st.pointee.debugFrameCount = n + 1
    }
}


/// A frame of root slots on a mutator's shadow stack. A `Ref` stored in a slot is a
/// root until the frame is popped. Trivially copyable; valid until popped.
@frozen
public struct Frame {
    @usableFromInline let state: UnsafeMutablePointer<MutatorState>
    @usableFromInline let offset: Int
    /// The number of slots, as given to `pushFrame(slots:)` or `withFrame(slots:_:)`.
    public let count: Int

    @usableFromInline init(state: UnsafeMutablePointer<MutatorState>, offset: Int, count: Int) {
        self.state = state
        self.offset = offset
        self.count = count
    }

    /// Slot `i` (0 ..< `count`). Storing a `Ref` in a slot makes it a root: the object stays
    /// alive until the frame is popped or the slot is overwritten. Frame stores need no write
    /// barrier (a frame is part of the mutator's stack). Checked mode traps on an index out of
    /// range, a popped frame, or a stored `Ref` that is not a live object of this heap.
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
        if !value.isNull { _ = state.heapUnretained._withUnsafeGuaranteedRef { $0.checkRef(value, .frameSlot(i)) } }
    }
}
