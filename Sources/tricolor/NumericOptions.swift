// Range-checked numeric option values for the tricolor commands.

import ArgumentParser

/// Transform closures for numeric options and arguments. A value that is not a number, or
/// is out of range, is reported by ArgumentParser as
/// `The value '-5' is invalid for '--threads <threads>': must be between 1 and 256`,
/// followed by a usage line, with exit status 64 (`ExitStatus.usage`).
///
/// Numeric options are declared with `parsing: .unconditional`: otherwise ArgumentParser
/// reads a value with a leading '-' as the next option and reports "Missing value for
/// '--threads'" for `--threads -5`.
enum NumericValue {
    /// A decimal integer in `range`.
    static func integer(_ range: ClosedRange<Int>) -> @Sendable (String) throws -> Int {
        { text in
            guard let n = Int(text) else {
                if isDecimal(text) { throw ValidationError("out of range: \(describe(range))") }
                throw ValidationError("expected an integer (\(describe(range)))")
            }
            guard range.contains(n) else { throw ValidationError(describe(range)) }
            return n
        }
    }

    /// A finite decimal number greater than `lower` and at most `upper`.
    static func seconds(above lower: Double, atMost upper: Double) -> @Sendable (String) throws -> Double {
        { text in
            guard let x = Double(text), x.isFinite else {
                throw ValidationError("expected a number of seconds (more than \(format(lower)), at most \(format(upper)))")
            }
            guard x > lower && x <= upper else {
                throw ValidationError("must be more than \(format(lower)) and at most \(format(upper))")
            }
            return x
        }
    }

    /// A finite decimal number from `lower` to `upper`, both included.
    static func seconds(atLeast lower: Double, atMost upper: Double) -> @Sendable (String) throws -> Double {
        { text in
            guard let x = Double(text), x.isFinite else {
                throw ValidationError("expected a number of seconds (\(format(lower)) to \(format(upper)))")
            }
            guard x >= lower && x <= upper else {
                throw ValidationError("must be between \(format(lower)) and \(format(upper))")
            }
            return x
        }
    }

    /// Whether `text` is a decimal integer (optional sign, digits), whatever its size.
    static func isDecimal(_ text: String) -> Bool {
        let digits = text.first == "-" || text.first == "+" ? text.dropFirst() : Substring(text)
        return !digits.isEmpty && digits.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        if range == Int.min...Int.max { return "any integer" }
        if range.upperBound == Int.max { return "must be at least \(range.lowerBound)" }
        return "must be between \(range.lowerBound) and \(range.upperBound)"
    }

    private static func format(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x)
    }
}
