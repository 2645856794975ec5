import Tricolor

/// The obviously correct size-class lookup the tests compare the runtime's tables
/// against: the smallest class whose size holds `size` bytes (1 ≤ size ≤ 32768), found
/// by a linear scan of the table.
public func referenceSizeToClass(_ size: Int) -> Int {
    precondition(size >= 1 && size <= 32768, "referenceSizeToClass: size \(size) is not a small size")
    return SizeClasses.rows.first { $0.size >= size }!.sizeClass
}
