@_exported import Tricolor

// The macro form of a typed heap layout (the macro-free form, which the core uses, is
// `struct Cons: HeapObject { … }`; see Sources/Tricolor/Typed/HeapObject.swift).

/// Declares a struct as a heap object layout: adds the conformance to
/// ``Tricolor/HeapObject`` and checks at compile time that every stored property has a
/// type the heap can hold (`Ref`, `Obj<T>`, `ObjArray<T>`, integers, `Double`,
/// `Float`, `Bool`, `InlineArray`, or another layout struct) — the checks that
/// `Heap.register(_:)` otherwise makes when the program runs.
///
/// ```swift
/// @HeapObject struct Cons {
///     var car: Ref
///     var cdr: Ref
/// }
/// let cons = try heap.register(Cons.self)
/// ```
@attached(extension, conformances: HeapObject)
public macro HeapObject() = #externalMacro(module: "TricolorMacrosPlugin", type: "HeapObjectMacro")
