import CTricolor

// What the runtime knows about an object, told: its type, its element count and its
// size (Go answers these from the span and the heap bitmap; reflect.TypeOf reads the
// type word Go keeps in the interface, which Tricolor's objects do not have).
//
// Where the answers come from: the span map (address → MSpan, two loads) and, for a
// small object with pointers, the span's per-slot type id (one 16-bit load); a large
// object keeps its type in its span (`largeType`) and its exact size in `limit`. No
// lock is taken: a live object's slot, span and type id do not change while the
// caller holds it (the sweeper frees only unmarked slots).
//
// What it cannot tell: the type of a *small pointer-free* object. Pointer-free spans
// keep no type ids (the collector never scans them; Go's noscan spans keep no heap bits
// either), so `type(of:)` is nil for them and for `allocateBytes` memory. A typed array
// (`ObjArray<T>`) knows its element type statically, so its count is always known.

extension ObjectType {
    /// The registered type whose packed bits are `bits`.
    init(bits: UInt64) { self.bits = bits }
}

extension Mutator {
    /// The registered type of `object`: for an array, its element type. Nil for null,
    /// for `allocateBytes` memory and for small objects of a type with no pointer
    /// fields (the runtime records types only where the collector needs them). `object`
    /// must be the start of a live object. Cheap: a span lookup and one load, no lock.
    public func type(of object: Ref) -> ObjectType? {
        guard let (s, idx) = spanAndIndex(object) else { return nil }
        let tid: UInt16
        if s.pointee.isLarge {
            tid = UInt16(truncatingIfNeeded: s.pointee.largeType)
        } else if let ids = s.pointee.typeIDs {
            tid = ids[Int(idx)]
        } else {
            return nil
        }
        let id = Int(tid & ~arrayTypeBit)
        if id == 0 { return nil }
        // (Through an unretained reference: no retain/release on this path.)
        let bits = Unmanaged.passUnretained(state.pointee.heap)._withUnsafeGuaranteedRef { $0.types[id].objectTypeBits }
        return ObjectType(bits: bits)
    }

    /// The number of elements of its type `object` holds: 1 for an object allocated with
    /// `allocate`, and for an array at least the count it was allocated with (a small
    /// array fills its size class, as Go's `append` rounds capacity up; a large array's
    /// count is exact). Nil where ``type(of:)`` is nil.
    public func count(of object: Ref) -> Int? {
        guard let t = type(of: object), let size = size(of: object) else { return nil }
        return t.size == 0 ? 0 : size / t.size
    }

    /// The number of elements of `array` (see `count(of:)`): its slot size over
    /// the element stride. Known for every element type, with or without pointers.
    public func count<T>(of array: ObjArray<T>) -> Int {
        guard let size = size(of: array.ref) else { return 0 }
        return size / ObjArray<T>.elementStride
    }

    /// The bytes `object` occupies: its size class's slot size (or a large object's own
    /// size). For a pointer-free object under 16 bytes outside checked mode, the tiny
    /// allocator's 16-byte block, which it may share with others (arrays never share
    /// one). Nil for null and for addresses outside the heap.
    public func size(of object: Ref) -> Int? {
        guard let (s, _) = spanAndIndex(object) else { return nil }
        return Int(s.pointee.isLarge ? s.pointee.limit - s.pointee.startAddr : s.pointee.elemSize)
    }

    /// `object` as an `Obj<T>` if its type is `type` (an object, or an array of them:
    /// the view is then of element 0), else nil (also for null). A pointer-free small
    /// `T` cannot be checked (see ``type(of:)``): the cast is nil.
    public func cast<T>(_ object: Ref, to type: HeapType<T>) -> Obj<T>? {
        guard let t = self.type(of: object), t == type.objectType else { return nil }
        return Obj(unchecked: object)
    }

    /// `object` as an `ObjArray<T>` if it is an array of `type`, else nil.
    public func castArray<T>(_ object: Ref, to type: HeapType<T>) -> ObjArray<T>? {
        guard let t = self.type(of: object), t == type.objectType else { return nil }
        return ObjArray(unchecked: object)
    }

    /// True when `object` was allocated as an array (`allocateArray`). A large object
    /// counts as an array when it holds more than one element; pointer-free small
    /// objects, whose type is not recorded, answer false.
    public func isArray(_ object: Ref) -> Bool {
        guard let (s, idx) = spanAndIndex(object) else { return false }
        if s.pointee.isLarge { return (s.pointee.limit - s.pointee.startAddr) > UInt(type(of: object)?.size ?? Int.max) }
        guard let ids = s.pointee.typeIDs else { return false }
        return ids[Int(idx)] & arrayTypeBit != 0
    }

    func spanAndIndex(_ object: Ref) -> (UnsafeMutablePointer<MSpan>, UInt)? {
        if object.isNull { return nil }
        let span = Unmanaged.passUnretained(state.pointee.heap)._withUnsafeGuaranteedRef { $0.spanOf(object.address) }
        guard let s = span, s.pointee.state == MSpanState.inUse.rawValue,
              object.address < s.pointee.limit else { return nil }
        return (s, s.objectIndex(object.address))
    }
}
