@_spi(Reflection) import Swift

// Typed objects: a heap type declared once, as a Swift struct whose stored properties
// are the object's fields (no Go file: Go's compiler knows every type's layout; here the
// Swift compiler does, and registration reads it from the type's metadata).
//
//     struct Node: HeapObject {          // the layout, declared once
//         var left: Obj<Node>            // a pointer word (traced, barriered)
//         var right: Obj<Node>
//         var value: Int                 // plain data
//     }
//     let node = try heap.register(Node.self)  // HeapType<Node>
//     let n = m.allocate(node)                 // Obj<Node>
//     m[n].value = 42                          // m.storeWord(n, 2, 42)
//     m[n].left = m[other].left                // m.store(n, 0, m.load(other, 0))
//
// The struct is never instantiated in the heap as a Swift value: it is a description.
// Its memory layout (Swift's, read with `MemoryLayout.offset(of:)`, which the optimizer
// folds to a constant) is the object's layout, and registration derives the pointer
// words from the field types (`_forEachField`, the runtime's reflection of stored
// properties). A typed access is therefore the raw word access with a constant index.
//
// Why `Obj<T>` and not `Ref<T>`: `Ref` is a non-generic struct with hundreds of call
// sites (the raw API for runtime authors); Swift cannot have a generic and a
// non-generic type of one name, and making `Ref` generic would change every one of
// them. `Obj<T>` is as short, reads as "an object of type T", and converts to `Ref`
// with `.ref` / `Ref(_:)` for free (same single word).
//
// Invariants: a registered type's pointer words are exactly the 8-byte words holding a
// field whose type is a pointer kind (`Ref`, `Obj`, `ObjArray`), including inside
// nested `HeapObject` structs and `InlineArray` fields; a type with any field the heap
// cannot hold (a class reference, a String, an enum, an Optional) is refused at
// registration, and `BitwiseCopyable` refuses most of them at compile time.

/// A Swift struct that describes a heap object's layout. Its stored properties are the
/// object's fields, each of a ``HeapField`` type (`Ref`, `Obj<T>`, `ObjArray<T>`, `Int`,
/// `UInt64`, `Double`, `Bool`, …), a nested `HeapObject` struct, or an `InlineArray` of
/// a `HeapField` type (a small fixed array).
///
/// Register the type once per heap with `Heap.register(_:)`, then allocate
/// with `Mutator.allocate(_:)` and access fields by name through
/// `Mutator.subscript(_:)`:
///
/// ```swift
/// struct Cons: HeapObject { var car: Ref; var cdr: Ref }
/// let cons = try heap.register(Cons.self)
/// let c = m.allocate(cons)
/// m[c].car = someRef
/// ```
///
/// Declare the fields with `var`. The struct itself is never stored; only its layout is
/// used, so it needs no initializer.
public protocol HeapObject: BitwiseCopyable {}

/// A value that can be a field of a heap object: pointer kinds (`Ref`, `Obj<T>`,
/// `ObjArray<T>`) and plain data (`Int`, `UInt`, `Int64`, `UInt64`, `Int32`, `UInt32`,
/// `Int16`, `UInt16`, `Int8`, `UInt8`, `Double`, `Float`, `Bool`).
///
/// The conformances are Tricolor's own; conforming other types is not supported (the
/// collector must know which words are pointers).
public protocol HeapField: BitwiseCopyable {
    /// True for references the collector traces (stored through the write barrier).
    static var isHeapPointer: Bool { get }
    /// Read the field at `byteOffset` of `object` (the raw access, inlined).
    static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Self
    /// Write the field at `byteOffset` of `object` (the raw access, inlined; pointer
    /// kinds go through the write barrier).
    static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Self)
}

/// A typed reference to a heap object whose layout is `T`: one word, the same bits as
/// a `Ref`. Convert with ``ref`` and ``init(unchecked:)``, or check the type with
/// ``Mutator/cast(_:to:)``. Like `Ref`, it keeps nothing alive by itself: root it in a
/// frame slot, a global or a handle across a full safepoint.
@frozen
public struct Obj<T>: Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    /// The untyped reference (same address).
    public let ref: Ref

    /// A typed view of `ref`, without checking the object's type.
    @inlinable @inline(__always)
    public init(unchecked ref: Ref) { self.ref = ref }

    /// The null reference.
    @inlinable public static var null: Obj<T> { Obj(unchecked: .null) }
    /// True for the null reference.
    @inlinable public var isNull: Bool { ref.address == 0 }
    /// The address in hex, with the type: `Node@0x7f…`.
    public var description: String { "\(T.self)@\(ref)" }
}

/// A typed reference to a heap array of `count` elements of layout `T` (allocated with
/// `Mutator.allocateArray(_:count:)`). The count is read from the
/// object (`Mutator.count(of:)`); elements through
/// `Mutator.subscript(_:_:)`.
@frozen
public struct ObjArray<T>: Hashable, Sendable, BitwiseCopyable, CustomStringConvertible {
    /// The untyped reference (same address).
    public let ref: Ref

    /// A typed view of `ref`, without checking the object's type.
    @inlinable @inline(__always)
    public init(unchecked ref: Ref) { self.ref = ref }

    /// The null reference.
    @inlinable public static var null: ObjArray<T> { ObjArray(unchecked: .null) }
    /// True for the null reference.
    @inlinable public var isNull: Bool { ref.address == 0 }
    /// The address in hex, with the element type: `[Node]@0x7f…`.
    public var description: String { "[\(T.self)]@\(ref)" }
    /// The distance between elements in the heap: the layout's size rounded up to 8
    /// bytes (the registered size).
    @inlinable public static var elementStride: Int { (MemoryLayout<T>.size &+ 7) & ~7 }
}

extension Ref {
    /// The untyped reference to a typed object (no conversion: same word).
    @inlinable @inline(__always)
    public init<T>(_ object: Obj<T>) { self = object.ref }
    /// The untyped reference to a typed array (no conversion: same word).
    @inlinable @inline(__always)
    public init<T>(_ array: ObjArray<T>) { self = array.ref }
}

extension Ref: BitwiseCopyable {}

/// A type registered with a heap: the typed form of ``ObjectType``, returned by
/// `Heap.register(_:)`. Trivially copyable; allocation takes it.
@frozen
public struct HeapType<T>: Hashable, Sendable {
    /// The untyped registered type (its id, size and size class).
    public let objectType: ObjectType
    @usableFromInline init(_ t: ObjectType) { objectType = t }
    /// Size of one object in bytes (the layout's size rounded up to 8).
    @inlinable public var size: Int { objectType.size }
}

extension Heap {
    /// Register the layout described by the struct `T`: its size and, derived from its
    /// field types, its pointer words. Throws ``HeapError/invalidLayout(_:)`` naming the
    /// field when a field's type cannot live in the heap.
    public func register<T: HeapObject>(_ type: T.Type) throws -> HeapType<T> {
        var pointers: [Int] = []
        try HeapLayoutReader.collect(T.self, at: 0, path: "\(T.self)", into: &pointers)
        let layout = TypeLayout(name: "\(T.self)", size: MemoryLayout<T>.size, pointerWords: pointers.map { $0 / 8 })
        return HeapType(try register(layout))
    }

    /// Register a field type as an array element type, for arrays of values:
    /// `let ints = try heap.register(arrayOf: Int.self)`, then
    /// `m.allocateArray(ints, count: n)` and `m[array, i] = 3`.
    public func register<T: HeapField>(arrayOf type: T.Type) throws -> HeapType<T> {
        let layout = TypeLayout(name: "\(T.self)", size: MemoryLayout<T>.size, pointerWords: T.isHeapPointer ? [0] : [])
        return HeapType(try register(layout))
    }
}

/// A fixed-size field array (an `InlineArray` of a `HeapField` type): its element type,
/// for registration.
protocol HeapFixedArrayField {
    static var heapElementType: any HeapField.Type { get }
    static var heapElementCount: Int { get }
}

extension InlineArray: HeapFixedArrayField where Element: HeapField {
    static var heapElementType: any HeapField.Type { Element.self }
    static var heapElementCount: Int { count }
}

/// Reads a `HeapObject` struct's fields from its metadata.
enum HeapLayoutReader {
    /// Append the byte offsets of the pointer fields of `type` (placed at `base`).
    static func collect(_ type: Any.Type, at base: Int, path: String, into pointers: inout [Int]) throws {
        var failure: HeapError?
        let ok = _forEachField(of: type, options: []) { namePtr, offset, fieldType, _ in
            let name = String(cString: namePtr)
            let at = base + offset
            do {
                try field(fieldType, at: at, path: "\(path).\(name)", into: &pointers)
            } catch let e as HeapError {
                failure = e
                return false
            } catch {
                return false
            }
            return true
        }
        if let failure { throw failure }
        if !ok {
            throw HeapError.invalidLayout("\(path): the fields of \(type) cannot be read (declare it as a struct)")
        }
    }

    static func field(_ fieldType: Any.Type, at: Int, path: String, into pointers: inout [Int]) throws {
        if let f = fieldType as? any HeapField.Type {
            if f.isHeapPointer {
                guard at % 8 == 0 else { throw HeapError.invalidLayout("\(path): pointer field at byte \(at) is not word-aligned") }
                pointers.append(at)
            }
        } else if let a = fieldType as? any HeapFixedArrayField.Type {
            let e = a.heapElementType
            if e.isHeapPointer {
                let stride = MemoryLayout<Ref>.stride
                for i in 0..<a.heapElementCount { pointers.append(at + i * stride) }
            }
        } else if fieldType is any HeapObject.Type {
            try collect(fieldType, at: at, path: path, into: &pointers)
        } else {
            throw HeapError.invalidLayout("\(path): a field of type \(fieldType) cannot live in the heap (use Ref, Obj<T>, ObjArray<T>, an integer, Double, Float, Bool, a HeapObject struct or an InlineArray of these)")
        }
    }
}
