import Tricolor

// Pairs of small functions, one written with the typed layer and one with raw word
// indexes, kept out of line so that their machine code can be compared with objdump
// (BENCHMARKS.md, "Typed objects"). Each pair must disassemble to the same instructions.

/// A layout with one field of each word kind, for the disassembly comparison.
public struct CodegenSample: HeapObject {
    /// Word 0: a pointer.
    public var next: Obj<CodegenSample>
    /// Word 1: an integer.
    public var count: Int
    /// Word 2: a double (bit pattern).
    public var weight: Double
}

/// Out-of-line typed and raw accessors whose disassembly BENCHMARKS.md compares.
public enum TypedCodegen {
    /// Typed pointer store: `m[o].next = v`.
    @inline(never) public static func typedStore(_ m: Mutator, _ o: Obj<CodegenSample>, _ v: Obj<CodegenSample>) { m[o].next = v }
    /// Raw pointer store: `m.store(o, 0, v)`.
    @inline(never) public static func rawStore(_ m: Mutator, _ o: Ref, _ v: Ref) { m.store(o, 0, v) }
    /// Typed pointer load: `m[o].next`.
    @inline(never) public static func typedLoad(_ m: Mutator, _ o: Obj<CodegenSample>) -> Obj<CodegenSample> { m[o].next }
    /// Raw pointer load: `m.load(o, 0)`.
    @inline(never) public static func rawLoad(_ m: Mutator, _ o: Ref) -> Ref { m.load(o, 0) }
    /// Typed Double load: `m[o].weight`.
    @inline(never) public static func typedDouble(_ m: Mutator, _ o: Obj<CodegenSample>) -> Double { m[o].weight }
    /// Raw Double load: `Double(bitPattern: UInt64(bitPattern: Int64(m.loadWord(o, 2))))`.
    @inline(never) public static func rawDouble(_ m: Mutator, _ o: Ref) -> Double { Double(bitPattern: UInt64(bitPattern: Int64(m.loadWord(o, 2)))) }
    /// Typed Int store: `m[o].count = v`.
    @inline(never) public static func typedInt(_ m: Mutator, _ o: Obj<CodegenSample>, _ v: Int) { m[o].count = v }
    /// Raw Int store: `m.storeWord(o, 1, v)`.
    @inline(never) public static func rawInt(_ m: Mutator, _ o: Ref, _ v: Int) { m.storeWord(o, 1, v) }
}
