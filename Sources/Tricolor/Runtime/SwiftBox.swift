import CTricolor
import Glibc

// Boxes: heap objects that own a Swift class instance (no Go counterpart: the Go
// equivalent is a finalizer that closes a host resource; this is the same mechanism
// with the reference count as the resource).
//
// A box is a 16-byte pointer-free heap object whose first word holds the Swift object's
// address, retained once on the box's behalf (`Unmanaged.passRetained`). A swiftBox
// special record on the box remembers the same pointer. When a collection finds the box
// dead, the sweeper moves the pointer from the record to the finalizer queue and the
// finalizer thread releases it (Runtime/Finalizers.swift), so the Swift object's
// `deinit` runs on that thread, after the box is gone, exactly once, and never on a
// mutator's allocation path. A box with a finalizer that revives it keeps its Swift
// object until it really dies. When the heap itself is freed, the objects of all its
// boxes are released by its deinit.
//
// Invariants: a live box has exactly one swiftBox record, whose pointer equals the
// box's first word; the Swift object is retained once per live box.

extension Mutator {
    /// A new heap object owning `object` (a strong reference, released on the finalizer
    /// thread after the box has been collected). Read it back with `unbox(_:)`.
    ///
    /// The box is pointer-free: it keeps the Swift object, and nothing on the heap.
    /// Keep the box reachable (a frame slot, a field, a global) for as long as the Swift
    /// object must live.
    public func makeBox(_ object: AnyObject) -> Ref {
        checkUsable("makeBox")
        let heap = state.pointee.heap
        heap.startFinalizerThreadIfNeeded()
        let box = allocateBytes(16)
        let p = Unmanaged.passRetained(object).toOpaque()
        tc_store_release(box.rawPointer, UInt(bitPattern: p))
        let (s, _) = heap.objectForSpecial(box.address, "makeBox")
        heap.specials.lock.withLock {
            _ = heap.insertSpecialLocked(Special(addr: box.address, kind: .swiftBox, box: p), span: s)
        }
        return box
    }

    /// The Swift object `box` owns (a new strong reference). `box` must be a box made by
    /// `makeBox` and be reachable; checked mode traps on anything else.
    public func unbox(_ box: Ref) -> AnyObject {
        let heap = state.pointee.heap
        if heap.checked {
            checkUsable("unbox")
            let (s, _) = heap.checkRef(box, .object)
            let isBox = s.map { span in
                heap.specials.lock.withLock { heap.findSpecialLocked(span: span, addr: box.address, kind: .swiftBox) != nil }
            } ?? false
            if !isBox { runtimeFatal("unbox: \(box) is not a box made by makeBox") }
        }
        let raw = tc_load_acquire(UnsafeRawPointer(box.rawPointer))
        return Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(bitPattern: raw)!).takeUnretainedValue()
    }
}
