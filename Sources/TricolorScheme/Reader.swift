// The reader shared by both interpreters: Scheme text → `Datum` trees. Each
// interpreter turns a datum into its own data (heap cons cells or ARC objects) and
// evaluates that, so the two differ only in how they keep their values.
//
// Syntax: integers, symbols, strings ("…" with \" \\ \n), #t/#f, lists with an
// optional dotted tail, 'x for (quote x), ; comments to the end of the line.

/// A value as read from text, before an interpreter stores it.
public indirect enum Datum: Equatable, Sendable {
    /// An integer literal.
    case int(Int)
    /// A symbol (identifier).
    case symbol(String)
    /// A string literal.
    case string(String)
    /// `#t` or `#f`.
    case bool(Bool)
    /// A list `(a b c)`, or with a dotted tail `(a b . c)`.
    case list([Datum], tail: Datum?)
}

/// An error of the reader or an interpreter, thrown to the caller (the REPL prints it
/// and goes on).
public enum SchemeError: Error, Equatable, CustomStringConvertible {
    /// Malformed text, or a special form with the wrong shape.
    case syntax(String)
    /// A variable with no binding.
    case unboundVariable(String)
    /// A procedure called with the wrong number of arguments.
    case wrongArity(procedure: String, expected: String, got: Int)
    /// An argument of the wrong type, e.g. `car` of a non-pair.
    case wrongType(procedure: String, expected: String, got: String)
    /// Something that is not a procedure, called.
    case notAProcedure(String)
    /// Division by zero.
    case divisionByZero
    /// `(error "message" irritant…)` called by the program.
    case user(String)

    /// The message the REPL prints.
    public var description: String {
        switch self {
        case .syntax(let s): return "syntax error: \(s)"
        case .unboundVariable(let s): return "unbound variable: \(s)"
        case .wrongArity(let p, let e, let g): return "\(p): wrong number of arguments: expected \(e), got \(g)"
        case .wrongType(let p, let e, let g): return "\(p): expected \(e), got \(g)"
        case .notAProcedure(let s): return "not a procedure: \(s)"
        case .divisionByZero: return "division by zero"
        case .user(let s): return "error: \(s)"
        }
    }
}

/// Reads Scheme text into data.
public struct Reader {
    private let chars: [Character]
    private var i = 0

    /// A reader over `text`.
    public init(_ text: String) { chars = Array(text) }

    /// Every datum in `text`, in order.
    public static func readAll(_ text: String) throws -> [Datum] {
        var r = Reader(text)
        var out: [Datum] = []
        while let d = try r.next() { out.append(d) }
        return out
    }

    /// True when `text` holds only complete data (every list closed, no open string):
    /// what a REPL waits for before evaluating.
    public static func isComplete(_ text: String) -> Bool {
        var depth = 0, inString = false, escape = false, comment = false
        for c in text {
            if comment { if c == "\n" { comment = false }; continue }
            if inString {
                if escape { escape = false } else if c == "\\" { escape = true } else if c == "\"" { inString = false }
                continue
            }
            switch c {
            case ";": comment = true
            case "\"": inString = true
            case "(": depth += 1
            case ")": depth -= 1
            default: break
            }
        }
        return depth <= 0 && !inString
    }

    /// The next datum, or nil at the end of the text.
    public mutating func next() throws -> Datum? {
        skipSpace()
        guard i < chars.count else { return nil }
        return try datum()
    }

    private mutating func skipSpace() {
        while i < chars.count {
            if chars[i] == ";" {
                while i < chars.count && chars[i] != "\n" { i += 1 }
            } else if chars[i].isWhitespace {
                i += 1
            } else {
                return
            }
        }
    }

    private mutating func datum() throws -> Datum {
        skipSpace()
        guard i < chars.count else { throw SchemeError.syntax("unexpected end of input") }
        let c = chars[i]
        switch c {
        case "(", "[":
            i += 1
            return try list(close: c == "(" ? ")" : "]")
        case ")", "]":
            throw SchemeError.syntax("unexpected '\(c)'")
        case "'":
            i += 1
            return .list([.symbol("quote"), try datum()], tail: nil)
        case "\"":
            i += 1
            var s = ""
            while true {
                guard i < chars.count else { throw SchemeError.syntax("unterminated string") }
                let d = chars[i]; i += 1
                if d == "\"" { break }
                if d == "\\" {
                    guard i < chars.count else { throw SchemeError.syntax("unterminated string") }
                    let e = chars[i]; i += 1
                    s.append(e == "n" ? "\n" : e)
                } else {
                    s.append(d)
                }
            }
            return .string(s)
        default:
            var tok = ""
            while i < chars.count, !chars[i].isWhitespace, !"()[]\";'".contains(chars[i]) {
                tok.append(chars[i]); i += 1
            }
            if tok == "#t" { return .bool(true) }
            if tok == "#f" { return .bool(false) }
            if let n = Int(tok) { return .int(n) }
            if tok.hasPrefix("#") { throw SchemeError.syntax("unknown token '\(tok)'") }
            return .symbol(tok.lowercased())
        }
    }

    private mutating func list(close: Character) throws -> Datum {
        var items: [Datum] = []
        while true {
            skipSpace()
            guard i < chars.count else { throw SchemeError.syntax("unterminated list: missing '\(close)'") }
            if chars[i] == close { i += 1; return .list(items, tail: nil) }
            if chars[i] == ")" || chars[i] == "]" { throw SchemeError.syntax("mismatched '\(chars[i])', expected '\(close)'") }
            if chars[i] == ".", i + 1 < chars.count, chars[i + 1].isWhitespace || chars[i + 1] == "(" {
                guard !items.isEmpty else { throw SchemeError.syntax("'.' at the start of a list") }
                i += 1
                let tail = try datum()
                skipSpace()
                guard i < chars.count, chars[i] == close else { throw SchemeError.syntax("expected '\(close)' after the dotted tail") }
                i += 1
                return .list(items, tail: tail)
            }
            items.append(try datum())
        }
    }
}
