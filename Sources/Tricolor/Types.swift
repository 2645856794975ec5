// Registered object layouts (Go's _type, reduced to what the collector needs):
// the size and which 8-byte words hold pointers. Registration happens once per type;
// the returned `ObjectType` carries everything the allocation fast path needs
// (span class, size) so allocation never looks the registry up.

/// The layout of a kind of object: its size in bytes and the indexes of the 8-byte
/// words that hold `Ref`s. Every other word is plain data the collector never reads.
public struct TypeLayout: Sendable, Hashable {
    public var name: String
    public var size: Int
    public var pointerWords: [Int]

    public init(name: String, size: Int, pointerWords: [Int]) {
        self.name = name
        self.size = size
        self.pointerWords = pointerWords
    }
}

/// A registered type: a handle that allocation takes. Trivially copyable.
public struct ObjectType: Sendable, Hashable {
    /// Index in the heap's type registry (0 is reserved for pointer-free bytes).
    public let id: UInt16
    /// Size of one object in bytes (the layout's size rounded up to 8).
    public let size: Int
    @usableFromInline let spanClass: SpanClass
    /// True when the object fits a size class (≤ 32 KiB); larger objects get their own span.
    @usableFromInline let isSmall: Bool
    public var hasPointers: Bool { !spanClass.noscan }
}

/// Registry entry, in runtime-owned memory read by the marker.
@usableFromInline
struct TypeInfo {
    var size: UInt                                // bytes, multiple of 8, > 0
    var ptrWords: UnsafeMutablePointer<UInt32>?   // word offsets of pointer fields, ascending
    var numPtrWords: Int
    var ptrMask: UnsafeMutablePointer<UInt64>?    // one bit per word: 1 = pointer (checked mode)

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
