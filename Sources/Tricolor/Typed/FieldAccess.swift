import CTricolor

// Typed field access: `m[obj].field` and `m[array, i].field`, compiled to the raw word
// access (no Go file: the Go compiler emits these accesses itself).
//
// Each access is an `@inlinable @inline(__always)` wrapper: the field's byte offset is
// `MemoryLayout<T>.offset(of: keyPath)`, which the optimizer folds to a constant once the
// key-path literal at the call site is inlined, and the body is exactly
// `Mutator.load/store/loadWord/storeWord` with that word index (pointer stores keep the
// write barrier: they *are* `Mutator.store`). Sub-word fields (`Bool`, `Int32`, …) use
// the same flags test and slow path as `loadWord`/`storeWord`, then a load or store of
// their width. BENCHMARKS.md shows the disassembly.
//
// Invariants: an `ObjView` names an object (`object`, the address the checked mode
// validates) and a byte offset inside it (`offset`: 0 for an object, i × stride for an
// array element, plus the offsets of enclosing nested structs); every access goes
// through the same flags word test as the raw API, so checked mode, detach and
// safepoint requests behave identically.

// MARK: field kinds

extension Ref: HeapField {
    /// A `Ref` field is a pointer word.
    @inlinable public static var isHeapPointer: Bool { true }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Ref {
        m.load(object, byteOffset &>> 3)
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Ref) {
        m.store(object, byteOffset &>> 3, value)
    }
}

extension Obj: HeapField {
    /// An `Obj` field is a pointer word.
    @inlinable public static var isHeapPointer: Bool { true }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Obj<T> {
        Obj(unchecked: m.load(object, byteOffset &>> 3))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Obj<T>) {
        m.store(object, byteOffset &>> 3, value.ref)
    }
}

extension ObjArray: HeapField {
    /// An `ObjArray` field is a pointer word.
    @inlinable public static var isHeapPointer: Bool { true }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> ObjArray<T> {
        ObjArray(unchecked: m.load(object, byteOffset &>> 3))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: ObjArray<T>) {
        m.store(object, byteOffset &>> 3, value.ref)
    }
}

extension Int: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Int {
        m.loadWord(object, byteOffset &>> 3)
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Int) {
        m.storeWord(object, byteOffset &>> 3, value)
    }
}

extension UInt: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> UInt {
        UInt(bitPattern: m.loadWord(object, byteOffset &>> 3))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: UInt) {
        m.storeWord(object, byteOffset &>> 3, Int(bitPattern: value))
    }
}

extension Int64: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Int64 {
        Int64(m.loadWord(object, byteOffset &>> 3))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Int64) {
        m.storeWord(object, byteOffset &>> 3, Int(value))
    }
}

extension UInt64: HeapField {
    /// Plain data (no bit casts to write: the typed layer does them).
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> UInt64 {
        UInt64(UInt(bitPattern: m.loadWord(object, byteOffset &>> 3)))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: UInt64) {
        m.storeWord(object, byteOffset &>> 3, Int(bitPattern: UInt(value)))
    }
}

extension Double: HeapField {
    /// Plain data (stored as its bit pattern).
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Double {
        Double(bitPattern: UInt64(UInt(bitPattern: m.loadWord(object, byteOffset &>> 3))))
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Double) {
        m.storeWord(object, byteOffset &>> 3, Int(bitPattern: UInt(value.bitPattern)))
    }
}

/// Sub-word plain data: the flags test and slow path of `loadWord`/`storeWord` (on the
/// word holding the field), then a load or store of the field's own width.
extension Mutator {
    @inlinable @inline(__always)
    func loadSubWord<V: BitwiseCopyable>(_ object: Ref, _ byteOffset: Int, as: V.Type) -> V {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { scalarSlow(object, byteOffset &>> 3, store: false) }
        return UnsafeRawPointer(bitPattern: object.address &+ UInt(bitPattern: byteOffset)).unsafelyUnwrapped.load(as: V.self)
    }

    @inlinable @inline(__always)
    func storeSubWord<V: BitwiseCopyable>(_ object: Ref, _ byteOffset: Int, _ value: V) {
        if _slowPath(state.flags & MutatorState.flagsNotBarrier != 0) { scalarSlow(object, byteOffset &>> 3, store: true) }
        UnsafeMutableRawPointer(bitPattern: object.address &+ UInt(bitPattern: byteOffset)).unsafelyUnwrapped.storeBytes(of: value, as: V.self)
    }
}

extension Bool: HeapField {
    /// Plain data (one byte).
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Bool {
        m.loadSubWord(object, byteOffset, as: UInt8.self) != 0
    }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Bool) {
        m.storeSubWord(object, byteOffset, value ? 1 as UInt8 : 0)
    }
}

extension Int32: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Int32 { m.loadSubWord(object, byteOffset, as: Int32.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Int32) { m.storeSubWord(object, byteOffset, value) }
}

extension UInt32: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> UInt32 { m.loadSubWord(object, byteOffset, as: UInt32.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: UInt32) { m.storeSubWord(object, byteOffset, value) }
}

extension Int16: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Int16 { m.loadSubWord(object, byteOffset, as: Int16.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Int16) { m.storeSubWord(object, byteOffset, value) }
}

extension UInt16: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> UInt16 { m.loadSubWord(object, byteOffset, as: UInt16.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: UInt16) { m.storeSubWord(object, byteOffset, value) }
}

extension Int8: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Int8 { m.loadSubWord(object, byteOffset, as: Int8.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Int8) { m.storeSubWord(object, byteOffset, value) }
}

extension UInt8: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> UInt8 { m.loadSubWord(object, byteOffset, as: UInt8.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: UInt8) { m.storeSubWord(object, byteOffset, value) }
}

extension Float: HeapField {
    /// Plain data.
    @inlinable public static var isHeapPointer: Bool { false }
    /// Reads the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapLoad(_ m: Mutator, _ object: Ref, _ byteOffset: Int) -> Float { m.loadSubWord(object, byteOffset, as: Float.self) }
    /// Writes the field with the raw access (see ``HeapField``).
    @inlinable @inline(__always)
    public static func _heapStore(_ m: Mutator, _ object: Ref, _ byteOffset: Int, _ value: Float) { m.storeSubWord(object, byteOffset, value) }
}

// MARK: views

/// The fields of one typed object (or array element, or nested struct), by name:
/// `m[obj].field` reads and `m[obj].field = x` writes, each compiled to the raw access.
/// A short-lived value: make it where it is used.
@frozen @dynamicMemberLookup
public struct ObjView<T: HeapObject> {
    /// The mutator doing the accesses.
    public let mutator: Mutator
    /// The object the fields belong to.
    public let object: Ref
    /// Byte offset of this view's `T` inside `object` (array element, nested struct).
    public let offset: Int

    /// A view of the `T` at byte `offset` of `object`. `offset` must be where a layout
    /// can put a `T`: a non-negative multiple of its alignment (so word fields land on
    /// whole words); anything else is a fatal error naming it.
    @inlinable @inline(__always)
    public init(_ mutator: Mutator, _ object: Ref, offset: Int = 0) {
        if _slowPath(offset < 0 || offset & (MemoryLayout<T>.alignment &- 1) != 0) {
            badViewOffset("ObjView<\(T.self)>", offset, MemoryLayout<T>.alignment)
        }
        self.init(mutator, object, uncheckedOffset: offset)
    }

    /// The same without the check, for offsets the typed accessors computed from a layout.
    @usableFromInline @inline(__always)
    init(_ mutator: Mutator, _ object: Ref, uncheckedOffset offset: Int) {
        self.mutator = mutator
        self.object = object
        self.offset = offset
    }

    /// A field: read with the raw load, written with the raw store (barriered for
    /// pointer kinds).
    @inlinable
    public subscript<V: HeapField>(dynamicMember field: KeyPath<T, V>) -> V {
        @inline(__always) get {
            V._heapLoad(mutator, object, offset &+ MemoryLayout<T>.offset(of: field).unsafelyUnwrapped)
        }
        @inline(__always) nonmutating set {
            V._heapStore(mutator, object, offset &+ MemoryLayout<T>.offset(of: field).unsafelyUnwrapped, newValue)
        }
    }

    /// A nested `HeapObject` struct field: a view of its fields.
    @inlinable
    public subscript<U: HeapObject>(dynamicMember field: KeyPath<T, U>) -> ObjView<U> {
        @inline(__always) get {
            ObjView<U>(mutator, object, uncheckedOffset: offset &+ MemoryLayout<T>.offset(of: field).unsafelyUnwrapped)
        }
    }

    /// A fixed-size array field (`InlineArray<N, E>`): indexable, `N` elements.
    @inlinable
    public subscript<let N: Int, E: HeapField>(dynamicMember field: KeyPath<T, InlineArray<N, E>>) -> FixedFieldArray<E> {
        @inline(__always) get {
            FixedFieldArray<E>(mutator, object, uncheckedOffset: offset &+ MemoryLayout<T>.offset(of: field).unsafelyUnwrapped, count: N)
        }
    }
}

/// A fixed-size array field of an object (an `InlineArray<N, E>` in the layout):
/// `m[obj].regs[2] = 7`. Indexes are checked against `count` (one compare).
@frozen
public struct FixedFieldArray<E: HeapField> {
    /// The mutator doing the accesses.
    public let mutator: Mutator
    /// The object holding the array.
    public let object: Ref
    /// Byte offset of element 0 inside `object`.
    public let offset: Int
    /// Number of elements (the `InlineArray`'s count).
    public let count: Int

    /// A view of `count` elements of `E` at byte `offset` of `object`. `count` must not be
    /// negative (the index check compares unsigned, so a negative count would pass every
    /// index), and `offset` must be a non-negative multiple of `E`'s alignment (so word
    /// elements land on whole words); anything else is a fatal error naming it.
    @inlinable @inline(__always)
    public init(_ mutator: Mutator, _ object: Ref, offset: Int, count: Int) {
        if _slowPath(count < 0) { badFixedArrayCount("FixedFieldArray<\(E.self)>", count) }
        if _slowPath(offset < 0 || offset & (MemoryLayout<E>.alignment &- 1) != 0) {
            badViewOffset("FixedFieldArray<\(E.self)>", offset, MemoryLayout<E>.alignment)
        }
        self.init(mutator, object, uncheckedOffset: offset, count: count)
    }

    /// The same without the checks, for an `InlineArray` field of a layout.
    @usableFromInline @inline(__always)
    init(_ mutator: Mutator, _ object: Ref, uncheckedOffset offset: Int, count: Int) {
        self.mutator = mutator
        self.object = object
        self.offset = offset
        self.count = count
    }

    /// Element `i` (0 ≤ i < count; anything else traps with the index).
    @inlinable
    public subscript(i: Int) -> E {
        @inline(__always) get {
            if _slowPath(UInt(bitPattern: i) >= UInt(bitPattern: count)) { fixedIndexOutOfRange(i, count) }
            return E._heapLoad(mutator, object, offset &+ i &* MemoryLayout<E>.stride)
        }
        @inline(__always) nonmutating set {
            if _slowPath(UInt(bitPattern: i) >= UInt(bitPattern: count)) { fixedIndexOutOfRange(i, count) }
            E._heapStore(mutator, object, offset &+ i &* MemoryLayout<E>.stride, newValue)
        }
    }
}

@usableFromInline @inline(never)
func fixedIndexOutOfRange(_ i: Int, _ count: Int) -> Never {
    runtimeFatal("index \(i) out of range 0..<\(count)")
}

/// A view made at an offset no layout produces. `view` is the view's type, for the message.
@usableFromInline @inline(never)
func badViewOffset(_ view: String, _ offset: Int, _ alignment: Int) -> Never {
    runtimeFatal("\(view): offset \(offset) is not a non-negative multiple of \(alignment) (the alignment of its type)")
}

/// A `FixedFieldArray` made with a negative count.
@usableFromInline @inline(never)
func badFixedArrayCount(_ view: String, _ count: Int) -> Never {
    runtimeFatal("\(view): count \(count) is negative")
}

/// The byte offset of element `i` of an array whose elements are `stride` bytes apart.
/// An index whose offset would be negative or not fit in an Int traps, in every build
/// and mode: wrapped, it would land inside the array (1 << 61 Ints wrap to offset 0)
/// where even checked mode's word check passes it. One compare with a constant.
@inlinable @inline(__always)
func arrayElementOffset(_ i: Int, stride: Int) -> Int {
    if _slowPath(UInt(bitPattern: i) > UInt(bitPattern: Int.max / max(1, stride))) { arrayIndexOutOfRange(i, stride) }
    return i &* stride
}

@usableFromInline @inline(never)
func arrayIndexOutOfRange(_ i: Int, _ stride: Int) -> Never {
    runtimeFatal("index \(i) out of range: its byte offset (\(i) × \(stride) bytes) is negative or overflows")
}


// MARK: the mutator's typed API

extension Mutator {
    /// The fields of `object`, by name: `m[node].left`, `m[node].value = 3`.
    @inlinable
    public subscript<T: HeapObject>(_ object: Obj<T>) -> ObjView<T> {
        @inline(__always) get { ObjView(self, object.ref, uncheckedOffset: 0) }
    }

    /// The fields of element `i` of `array`, by name: `m[points, i].x`. A negative index,
    /// or one whose byte offset overflows, traps; past the end the index is not checked
    /// (as with raw word indexes); checked mode traps outside the object.
    @inlinable
    public subscript<T: HeapObject>(_ array: ObjArray<T>, _ i: Int) -> ObjView<T> {
        @inline(__always) get {
            ObjView(self, array.ref, uncheckedOffset: arrayElementOffset(i, stride: ObjArray<T>.elementStride))
        }
    }

    /// Element `i` of an array of field values (`ObjArray<Ref>`, `ObjArray<Int>`, …).
    /// A negative index, or one whose byte offset overflows, traps; past the end the
    /// index is not checked (as with raw word indexes); checked mode traps outside the
    /// object.
    @inlinable
    public subscript<T: HeapField>(_ array: ObjArray<T>, _ i: Int) -> T {
        @inline(__always) get { T._heapLoad(self, array.ref, arrayElementOffset(i, stride: ObjArray<T>.elementStride)) }
        @inline(__always) nonmutating set {
            T._heapStore(self, array.ref, arrayElementOffset(i, stride: ObjArray<T>.elementStride), newValue)
        }
    }

    /// Allocate one zeroed object of a registered typed layout (the inlined fast path of
    /// `allocate(_:)`).
    @inlinable @inline(__always)
    public func allocate<T>(_ type: HeapType<T>) -> Obj<T> {
        Obj(unchecked: allocate(type.objectType))
    }

    /// Allocate a zeroed array of at least `count` elements of a typed layout. The array
    /// may hold a few more elements (zeroed) when the size class is larger than `count`
    /// elements, as Go's `append` rounds capacity up: `count(of:)` says how many.
    @inlinable
    public func allocateArray<T>(_ type: HeapType<T>, count: Int) -> ObjArray<T> {
        ObjArray(unchecked: allocateArray(type.objectType, count: count))
    }

    /// Like `allocate(_:)`, but nil instead of a fatal error when memory
    /// cannot be had.
    public func tryAllocate<T>(_ type: HeapType<T>) -> Obj<T>? {
        tryAllocate(type.objectType).map { Obj(unchecked: $0) }
    }

    /// Like `allocateArray(_:count:)`, but nil instead of a fatal
    /// error when memory cannot be had or the count is invalid.
    public func tryAllocateArray<T>(_ type: HeapType<T>, count: Int) -> ObjArray<T>? {
        tryAllocateArray(type.objectType, count: count).map { ObjArray(unchecked: $0) }
    }

    /// Point a global root slot at a typed object.
    @inlinable @inline(__always)
    public func store<T>(_ global: Global, _ value: Obj<T>) { store(global, value.ref) }
}

extension Frame {
    /// Slot `i` as a typed reference: `f[0, as: Cons.self] = c`. The read does not
    /// check the type (see ``Mutator/cast(_:to:)``).
    @inlinable
    public subscript<T>(i: Int, as type: T.Type) -> Obj<T> {
        @inline(__always) get { Obj(unchecked: self[i]) }
        @inline(__always) nonmutating set { self[i] = newValue.ref }
    }
}
