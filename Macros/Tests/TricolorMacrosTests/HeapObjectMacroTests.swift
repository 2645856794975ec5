import SwiftSyntaxMacroExpansion
import SwiftSyntaxMacros
import SwiftSyntaxMacrosTestSupport
import Tricolor
import TricolorMacros
import TricolorMacrosPlugin
import XCTest

// Tests of `@HeapObject`: its expansion, its compile-time refusals, and a layout
// declared with it registered and used on a real heap.

@HeapObject
struct MCons {
    var car: Ref
    var cdr: Obj<MCons>
    var count: Int
    var weight: Double
}

final class HeapObjectMacroTests: XCTestCase {
    let macros: [String: Macro.Type] = ["HeapObject": HeapObjectMacro.self]
    /// As the compiler calls it on a struct not yet conforming: asked for `HeapObject`.
    let specs: [String: MacroSpec] = ["HeapObject": MacroSpec(type: HeapObjectMacro.self, conformances: ["HeapObject"])]

    func testExpansionAddsTheConformance() {
        assertMacroExpansion(
            """
            @HeapObject
            struct Cons {
                var car: Ref
                var cdr: Ref
            }
            """,
            expandedSource: """
            struct Cons {
                var car: Ref
                var cdr: Ref
            }

            extension Cons: Tricolor.HeapObject {
            }
            """,
            macroSpecs: specs)
        // A struct that already says `: HeapObject` gets no second conformance.
        assertMacroExpansion(
            """
            @HeapObject
            struct C: HeapObject {
                var x: Int
            }
            """,
            expandedSource: """
            struct C: HeapObject {
                var x: Int
            }
            """,
            macros: macros)
    }

    func testFieldsTheHeapCannotHoldAreCompileErrors() {
        assertMacroExpansion(
            """
            @HeapObject
            struct Bad {
                var name: String
                var next: Ref?
                var items: [Int]
                var ok: Int
                var untyped = 3
            }
            """,
            expandedSource: """
            struct Bad {
                var name: String
                var next: Ref?
                var items: [Int]
                var ok: Int
                var untyped = 3
            }
            """,
            diagnostics: [
                DiagnosticSpec(message: "field 'name' of type String cannot live in the heap: a String owns memory the collector cannot see; store the bytes in an ObjArray<UInt8>", line: 3, column: 15),
                DiagnosticSpec(message: "field 'next' of type Ref? cannot live in the heap: use a null Ref/Obj instead of an optional", line: 4, column: 15),
                DiagnosticSpec(message: "field 'items' of type [Int] cannot live in the heap: an Array owns memory the collector cannot see; use ObjArray<T> or InlineArray", line: 5, column: 16),
                DiagnosticSpec(message: "field 'untyped' needs an explicit type: the type is the field's layout", line: 7, column: 9),
            ],
            macros: macros)
    }

    func testOnlyStructs() {
        assertMacroExpansion(
            "@HeapObject class C {}",
            expandedSource: "class C {}",
            diagnostics: [DiagnosticSpec(message: "@HeapObject applies to a struct (a heap layout is a struct of fields)", line: 1, column: 1)],
            macros: macros)
    }

    /// A layout declared with the macro works as one declared with `: HeapObject`.
    func testMacroLayoutOnAHeap() throws {
        let heap = try Heap()
        let cons = try heap.register(MCons.self)
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let a = m.allocate(cons)
                f[0] = a.ref
                let b = m.allocate(cons)
                m[a].cdr = b
                m[a].count = 3
                m[a].weight = 0.5
                heap.collect()
                XCTAssertEqual(m[a].cdr, b)
                XCTAssertEqual(m.load(a.ref, 1), b.ref, "cdr is pointer word 1")
                XCTAssertEqual(m[a].count, 3)
                XCTAssertEqual(m[a].weight, 0.5)
                XCTAssertEqual(m.type(of: b.ref), cons.objectType)
            }
        }
    }
}
