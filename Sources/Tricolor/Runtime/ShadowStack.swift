import CTricolor
import Glibc

// The shadow stack: a mutator's precise roots, Tricolor's analogue of a goroutine stack
// (Go's stack.go). Frames of root slots are pushed and popped in LIFO order; the
// collector scans slots 0..<stackTop. The stack starts at 2 KiB (Go's _StackMin),
// doubles by copying when a push does not fit (Go's copystack; a `Frame` holds an
// offset, so it stays valid), and is halved at GC when less than a quarter is used
// (Go's shrinkstack).
//
// Invariants: 0 ≤ stackTop ≤ stackCap; frames are popped in reverse order of their
// pushes; the stack memory is replaced only under the sched lock, so a collector
// scanning a blocked mutator's stack never reads freed memory.

extension Heap {
    /// Halve a shadow stack that uses less than a quarter of itself (Go's shrinkstack).
    func shrinkStack(_ m: UnsafeMutablePointer<MutatorState>) {
        let cap = m.pointee.stackCap
        if cap / 2 >= MutatorState.initialStackSlots && m.pointee.stackTop < cap / 4 {
            let n = UnsafeMutablePointer<UInt>.allocate(capacity: cap / 2)
            n.moveInitialize(from: m.pointee.stack, count: m.pointee.stackTop)
            m.pointee.stack.deallocate()
            m.pointee.stack = n
            m.pointee.stackCap = cap / 2
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

    @inlinable @inline(__always)
    public func popFrame(_ f: Frame) {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { checkPop(f) }
        state.pointee.stackTop = f.offset
    }

    /// The largest shadow stack, in bytes (Go's maxstacksize on 64-bit: 1 GB).
    static let maxStackBytes = 1_000_000_000

    /// Grow the shadow stack by copying it into one twice as large (Go's copystack).
    @usableFromInline @inline(never)
    func growStack(_ slots: Int) {
        let st = state
        slowPathSafepoint()
        if st.flags & (MutatorState.flagChecked | MutatorState.flagDetached) != 0 { checkUsable("push a frame") }
        // A count no stack could hold is a bad argument, not an overflow; checked before
        // any arithmetic on it, in every mode.
        if slots < 0 || slots > Mutator.maxStackBytes / 8 {
            runtimeFatal("pushFrame: invalid slot count \(slots) (must be 0...\(Mutator.maxStackBytes / 8))")
        }
        let need = st.pointee.stackTop + slots
        if need <= st.pointee.stackCap { return }
        var cap = st.pointee.stackCap
        while cap < need { cap *= 2 }
        if cap * 8 > Mutator.maxStackBytes { runtimeFatal("stack overflow: shadow stack exceeds \(Mutator.maxStackBytes)-byte limit") }
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
        if !value.isNull { _ = state.heapUnretained._withUnsafeGuaranteedRef { $0.checkRef(value, .frameSlot(i)) } }
    }
}
