// Registered object layouts (Go's _type, reduced to what the collector needs):
// the size and which 8-byte words hold pointers. Registration happens once per type;
// the returned `ObjectType` carries everything the allocation fast path needs
// (span class, size) so allocation never looks the registry up.

/// The layout of a kind of object: its size in bytes and the indexes of the 8-byte
/// words that hold `Ref`s. Every other word is plain data the collector never reads.
public struct TypeLayout: Sendable, Hashable {
    /// The type's name, for profiles, hooks and error messages (`"Node"`). Need not be unique.
    public var name: String
    /// Bytes per object (0 to 4 GiB − 8); rounded up to a multiple of 8 when registered.
    public var size: Int
    /// Indexes of the 8-byte words that hold `Ref`s (word `i` is bytes `8i ..< 8i+8`), each
    /// inside the object and listed once. Only these words are traced, and only these may be
    /// written with `Mutator.store(_:_:_:)`.
    public var pointerWords: [Int]

    /// A layout of `size` bytes whose words at `pointerWords` hold `Ref`s. Nothing is checked
    /// until `Heap.register(_:)`, which throws `HeapError.invalidLayout` for a bad layout.
    public init(name: String, size: Int, pointerWords: [Int]) {
        self.name = name
        self.size = size
        self.pointerWords = pointerWords
    }
}

/// A registered type: a handle that allocation takes. Trivially copyable.
@frozen
public struct ObjectType: Sendable, Hashable {
    /// Everything the inlined fast path needs, packed in one word so that an allocation
    /// loop keeps a type in one register: bits 0–15 the registry index, 16–23 the cache
    /// slot (`MCache.slotCount`: the span class's, or for a small type with pointers one
    /// of its own), bit 24 "fits a size class", bits 25–31 the registering heap's tag
    /// (see `Heap.typeTag`), bits 32–63 the size. (As separate fields the loop in the
    /// allocation benchmark ran out of registers and reloaded the span class from the
    /// stack after every type-id store, at +1 ns per typed allocation.)
    ///
    /// Bit 16, the slot's lowest bit, tells the fast path whether to store the type id
    /// of the slot it takes: a class slot's is its span class's noscan bit (store for
    /// scan classes), and type slots are odd (their spans' ids are filled in when
    /// cached), so one test serves both.
    @usableFromInline let bits: UInt64

    @usableFromInline init(id: UInt16, size: Int, cacheSlot: Int, isSmall: Bool, heapTag: UInt8) {
        bits = UInt64(id) | UInt64(cacheSlot & 0xff) << 16 | (isSmall ? 1 << 24 : 0)
            | UInt64(heapTag & 0x7f) << 25 | UInt64(size) << 32
    }

    /// Index in the heap's type registry (0 is reserved for pointer-free bytes).
    @inlinable public var id: UInt16 { UInt16(truncatingIfNeeded: bits) }
    /// Size of one object in bytes (the layout's size rounded up to 8).
    @inlinable public var size: Int { Int(bits &>> 32) }
    /// The mutator cache slot allocation takes from (`MCache.alloc`).
    @inlinable var cacheSlot: Int { Int(truncatingIfNeeded: (bits &>> 16) & 0xff) }
    /// Whether the fast path stores the object's type id in its slot (see `bits`).
    @inlinable var storesTypeID: Bool { bits & (1 << 16) == 0 }
    /// True when the object fits a size class (≤ 32 KiB); larger objects get their own span.
    @inlinable var isSmall: Bool { bits & (1 << 24) != 0 }
    /// Whether objects of this type have pointer words. Objects without are allocated from
    /// spans the collector never scans (Go's noscan spans): a class slot with the noscan
    /// bit set. Type slots are only for types with pointers.
    public var hasPointers: Bool { cacheSlot >= SpanClass.count || cacheSlot & 1 == 0 }
    /// The tag of the heap that registered this type (1…127).
    var heapTag: UInt8 { UInt8(truncatingIfNeeded: bits &>> 25) & 0x7f }
}

/// Registry entry, in runtime-owned memory read by the marker.
@usableFromInline
struct TypeInfo {
    var size: UInt                                // bytes, multiple of 8, > 0
    var ptrWords: UnsafeMutablePointer<UInt32>?   // word offsets of pointer fields, ascending
    var numPtrWords: Int
    var ptrMask: UnsafeMutablePointer<UInt64>?    // one bit per word: 1 = pointer (checked mode)
    /// For a type of at most 64 words with pointers, its pointer words as one bit each
    /// (bit k: word k), so that scanning a single object walks the bits instead of the
    /// `ptrWords` array (`Heap.scanObject`); 0 for larger types and types without pointers.
    var smallPtrBits: UInt64 = 0
    /// The `ObjectType.bits` registration returned (for `Mutator.type(of:)`). Written
    /// once under the types lock before the type is handed out; read without a lock by
    /// threads that found the id in an object allocated with the type.
    var objectTypeBits: UInt64 = 0

    @inline(__always)
    func isPointerWord(_ w: Int) -> Bool {
        guard let m = ptrMask else { return false }
        return (m[w / 64] >> UInt64(w % 64)) & 1 != 0
    }
}

/// Type IDs are stored per object slot in 16 bits: 15 bits of registry index and a
/// flag for arrays (an array slot holds several elements; a single object is scanned
/// without looking at its span).
let maxTypes = 1 << 15
let arrayTypeBit: UInt16 = 0x8000
