import SwiftCompilerPlugin
import SwiftDiagnostics
import SwiftSyntax
import SwiftSyntaxMacros

// `@HeapObject`: an extension macro adding `HeapObject` conformance to a struct, after
// checking its stored properties' declared types. What can be decided from syntax is
// decided here (not a struct; a stored property without a type annotation; optionals,
// arrays, dictionaries, tuples, functions, String, Any); a named type the macro does not
// know (a nested layout struct) is left to `Heap.register`, which reads the real types.

/// The `@HeapObject` macro's implementation.
public struct HeapObjectMacro: ExtensionMacro {
    /// Field types that are always fine.
    static let fieldTypes: Set<String> = [
        "Ref", "Int", "UInt", "Int64", "UInt64", "Int32", "UInt32", "Int16", "UInt16", "Int8", "UInt8",
        "Double", "Float", "Bool",
    ]
    /// Generic field types (any arguments).
    static let genericFieldTypes: Set<String> = ["Obj", "ObjArray", "InlineArray"]
    /// Named types that can never be fields, with the reason.
    static let refused: [String: String] = [
        "String": "a String owns memory the collector cannot see; store the bytes in an ObjArray<UInt8>",
        "Substring": "a Substring owns memory the collector cannot see",
        "Character": "a Character may own memory the collector cannot see",
        "Any": "an existential may hold references the collector cannot see",
        "AnyObject": "a class reference is counted by ARC, not traced by the collector",
        "Optional": "use a null Ref/Obj instead of an optional",
        "Array": "an Array owns memory the collector cannot see; use ObjArray<T> or InlineArray",
        "Dictionary": "a Dictionary owns memory the collector cannot see",
        "Set": "a Set owns memory the collector cannot see",
    ]

    public static func expansion(
        of node: AttributeSyntax,
        attachedTo declaration: some DeclGroupSyntax,
        providingExtensionsOf type: some TypeSyntaxProtocol,
        conformingTo protocols: [TypeSyntax],
        in context: some MacroExpansionContext
    ) throws -> [ExtensionDeclSyntax] {
        guard let s = declaration.as(StructDeclSyntax.self) else {
            context.diagnose(Diagnostic(node: node, message: HeapObjectDiagnostic("@HeapObject applies to a struct (a heap layout is a struct of fields)")))
            return []
        }
        var ok = true
        for member in s.memberBlock.members {
            guard let v = member.decl.as(VariableDeclSyntax.self) else { continue }
            if v.modifiers.contains(where: { $0.name.tokenKind == .keyword(.static) || $0.name.tokenKind == .keyword(.class) }) { continue }
            for binding in v.bindings {
                if let accessors = binding.accessorBlock, !isObserverBlock(accessors) { continue }   // computed
                let name = binding.pattern.trimmedDescription
                guard let t = binding.typeAnnotation?.type else {
                    context.diagnose(Diagnostic(node: binding, message: HeapObjectDiagnostic("field '\(name)' needs an explicit type: the type is the field's layout")))
                    ok = false
                    continue
                }
                if let why = problem(with: t) {
                    context.diagnose(Diagnostic(node: t, message: HeapObjectDiagnostic("field '\(name)' of type \(t.trimmedDescription) cannot live in the heap: \(why)")))
                    ok = false
                }
            }
        }
        guard ok else { return [] }
        if protocols.isEmpty { return [] }   // already conforms
        let ext: DeclSyntax = "extension \(type.trimmed): Tricolor.HeapObject {}"
        return [ext.cast(ExtensionDeclSyntax.self)]
    }

    static func isObserverBlock(_ a: AccessorBlockSyntax) -> Bool {
        guard case .accessors(let list) = a.accessors else { return false }
        return list.allSatisfy { [.keyword(.willSet), .keyword(.didSet)].contains($0.accessorSpecifier.tokenKind) }
    }

    /// Why `t` cannot be a field, or nil when it can (or cannot be decided from syntax).
    static func problem(with t: TypeSyntax) -> String? {
        if t.is(OptionalTypeSyntax.self) || t.is(ImplicitlyUnwrappedOptionalTypeSyntax.self) { return refused["Optional"] }
        if t.is(ArrayTypeSyntax.self) { return refused["Array"] }
        if t.is(DictionaryTypeSyntax.self) { return refused["Dictionary"] }
        if t.is(FunctionTypeSyntax.self) { return "a closure is counted by ARC, not traced by the collector" }
        if t.is(TupleTypeSyntax.self) { return "use InlineArray<N, T> for a fixed array, or a nested @HeapObject struct" }
        if t.is(SomeOrAnyTypeSyntax.self) { return refused["Any"] }
        if let id = t.as(IdentifierTypeSyntax.self) {
            let name = id.name.text
            if let why = refused[name] { return why }
            if genericFieldTypes.contains(name) || fieldTypes.contains(name) { return nil }
            return nil   // another layout struct: checked at registration
        }
        if let m = t.as(MemberTypeSyntax.self) {
            if let why = refused[m.name.text], m.baseType.trimmedDescription == "Swift" { return why }
            return nil
        }
        return nil
    }
}

struct HeapObjectDiagnostic: DiagnosticMessage {
    let message: String
    init(_ message: String) { self.message = message }
    var diagnosticID: MessageID { MessageID(domain: "TricolorMacros", id: "HeapObject") }
    var severity: DiagnosticSeverity { .error }
}

@main
struct TricolorMacrosPlugin: CompilerPlugin {
    let providingMacros: [Macro.Type] = [HeapObjectMacro.self]
}
