import CTricolor
import Glibc

// Weak references (Go 1.24's weak.Make and Pointer.Value, runtime/mheap.go's weak
// handles: getOrAddWeakHandle, internal_weak_runtime_makeStrongFromWeak).
//
// Each object that has ever been made weak has one handle: a 16-byte pointer-free heap
// object whose first word holds the object's address (untraced: the handle does not keep
// the object alive). The object's weak-handle special record names the handle, and the
// collector marks the handle from that record every cycle while the object lives, so
// every `makeWeak` of one object returns the same handle and weak references compare
// equal exactly when they were made from the same object. A `WeakRef` is the handle's
// `Ref`: it is stored like any reference (frame slots, pointer fields, globals), and
// whatever holds it keeps the handle, never the object.
//
// When the sweeper finds the object unreachable it stores 0 into the handle (before
// queueing the object's finalizer, if it has one, as Go does), so a weak reference
// cannot give back an object that is dead or only kept for its finalizer; 0 is
// final. Between mark termination and the sweep of the object's span the handle still
// holds the address; `value` then helps the sweep until that span is swept (Go's
// ensureSwept), and reads the handle after. While the collector marks, an object `value` returns is shaded: it may have
// just become reachable from an already scanned stack (Go shades it too).
//
// Invariants: a handle's word is an object start of this heap or 0, and once 0 stays 0;
// a live object has at most one handle record; the number of handle records is
// `SpecialsTable.weakHandles`.

/// A weak reference to a heap object (Go 1.24's weak.Pointer): it reads as the object
/// while the object is reachable, and as `Ref.null` for good once it is not.
///
/// A `WeakRef` is itself a reference to a small heap object (the object's weak handle,
/// shared by all weak references to it), so keep it where references are kept: a frame
/// slot, a pointer field (`handle`), a global or a `Handle`. Two weak references made
/// from the same object are equal; weak references to different objects are not, even
/// after both objects are gone.
@frozen
public struct WeakRef: Hashable, Sendable, CustomStringConvertible {
    /// The weak handle: store and load this `Ref` like any other; `Ref.null` for the
    /// weak reference to `Ref.null`.
    public let handle: Ref
    /// The weak reference whose handle is `handle` (a `Ref` read back from where a
    /// `WeakRef.handle` was stored).
    @inlinable public init(handle: Ref) { self.handle = handle }
    /// The weak reference to nothing: its value is `Ref.null`.
    public static let null = WeakRef(handle: .null)
    /// Whether this is the weak reference to nothing (`makeWeak(.null)`).
    @inlinable public var isNull: Bool { handle.isNull }
    public var description: String { "weak(\(handle))" }
}

extension Mutator {
    /// A weak reference to `object` (Go 1.24's weak.Make). `object` must be the start of
    /// an object of this heap, kept reachable by the caller (in a frame slot, say) across
    /// this call, which may allocate. Making a weak reference to an object that already
    /// has one returns an equal one. `Ref.null` gives `WeakRef.null`.
    public func makeWeak(_ object: Ref) -> WeakRef {
        checkUsable("makeWeak")
        if object.isNull { return .null }
        let heap = state.pointee.heap
        let (s, _) = heap.objectForSpecial(object.address, "makeWeak")
        if let existing = heap.specials.lock.withLock({ heap.findSpecialLocked(span: s, addr: object.address, kind: .weakHandle) }) {
            return WeakRef(handle: Ref(address: existing.arg))
        }
        // A new handle. No safepoint between its allocation and its record: the record
        // keeps it from then on.
        let h = allocateBytes(16)
        tc_store_release(h.rawPointer, object.address)
        let handle: UInt = heap.specials.lock.withLock {
            // Another thread may have added one meanwhile: use that one (ours is garbage).
            if let existing = heap.findSpecialLocked(span: s, addr: object.address, kind: .weakHandle) { return existing.arg }
            _ = heap.insertSpecialLocked(Special(addr: object.address, kind: .weakHandle, arg: h.address), span: s)
            return h.address
        }
        return WeakRef(handle: Ref(address: handle))
    }

    /// The object `weak` refers to, or `Ref.null` once that object has been found
    /// unreachable (Go's weak.Pointer.Value). A non-null result is a strong reference:
    /// store it in a frame slot to keep the object.
    public func value(_ weak: WeakRef) -> Ref {
        if weak.handle.isNull { return .null }
        checkUsable("WeakRef value")
        let heap = state.pointee.heap
        if heap.checked { heap.checkRef(weak.handle, .object) }
        let word = UnsafeRawPointer(weak.handle.rawPointer)
        while true {
            let p0 = tc_load_acquire(word)
            if p0 == 0 { return .null }
            // The object's span stays in use while the handle names it; but the sweeper
            // may clear the handle and free the span between our two reads.
            guard let s = heap.spanOf(p0) else {
                if tc_load_acquire(word) == 0 { return .null }
                continue
            }
            let sg = heap.sweepgen
            let spanGen = s.loadSweepgen()
            if spanGen == sg || spanGen == sg &+ 3 {
                // Swept since the last mark (acquire): had the object died, that sweep
                // cleared the handle before publishing the span, and we see 0.
                let p = tc_load_acquire(word)
                if p == 0 { return .null }
                heap.shadeNewSpecial(markThrough: 0, grey: p)
                return Ref(address: p)
            }
            // Not swept yet (or being swept): help the sweep until it is (Go's
            // ensureSwept sweeps the span itself; our central lists are intrusive, so a
            // span cannot be swept out of turn: we sweep the next ones instead).
            if !heap.sweepOne() { tc_yield() }
        }
    }
}

extension Heap {
    /// Weak handles whose objects are alive (or not yet swept).
    var weakHandlesLive: Int { specials.lock.withLock { specials.weakHandles } }
}
