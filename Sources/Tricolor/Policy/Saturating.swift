// Saturating arithmetic for the policy types. Their inputs come from settings a user
// may push to the extreme (GOGC=1e14, GOMAXPROCS=Int.max, a memory limit of Int.max)
// and from counters; a policy answer of "as large as representable" is always
// meaningful there (a goal no heap reaches, a bucket that never fills), a trap never is.

extension UInt {
    /// `self + other`, or `UInt.max` if that overflows.
    @inline(__always) func saturatingAdd(_ other: UInt) -> UInt {
        let (r, o) = addingReportingOverflow(other)
        return o ? .max : r
    }

    /// `self × other`, or `UInt.max` if that overflows.
    @inline(__always) func saturatingMultiply(_ other: UInt) -> UInt {
        let (r, o) = multipliedReportingOverflow(by: other)
        return o ? .max : r
    }

    /// `self × numerator / denominator` computed without an intermediate overflow, or
    /// `UInt.max` if the result does not fit.
    /// - Precondition: `denominator > 0`.
    @inline(__always) func saturatingMultiply(_ numerator: UInt, dividedBy denominator: UInt) -> UInt {
        let (high, low) = multipliedFullWidth(by: numerator)
        if high >= denominator { return .max }
        return denominator.dividingFullWidth((high, low)).quotient
    }

    /// A Double converted to UInt: NaN and negatives are 0, values too large are `UInt.max`.
    @inline(__always) init(saturating d: Double) {
        if !(d > 0) { self = 0 } else if d >= 18446744073709551615.0 { self = .max } else { self = UInt(d) }
    }
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` if that overflows.
    @inline(__always) func saturatingAdd(_ other: UInt64) -> UInt64 {
        let (r, o) = addingReportingOverflow(other)
        return o ? .max : r
    }

    /// `self × other`, or `UInt64.max` if that overflows.
    @inline(__always) func saturatingMultiply(_ other: UInt64) -> UInt64 {
        let (r, o) = multipliedReportingOverflow(by: other)
        return o ? .max : r
    }
}

extension UInt64 {
    /// A Double converted to UInt64: NaN and negatives are 0, values too large are `UInt64.max`.
    @inline(__always) init(saturating d: Double) {
        self = UInt64(UInt(saturating: d))
    }
}

extension Int {
    /// A Double converted to Int: NaN is 0, values out of range are clamped.
    @inline(__always) init(saturating d: Double) {
        if d.isNaN { self = 0 } else if d >= 9223372036854775807.0 { self = .max } else if d <= -9223372036854775808.0 { self = .min } else { self = Int(d) }
    }
}
