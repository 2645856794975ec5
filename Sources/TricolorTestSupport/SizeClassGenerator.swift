@_spi(Testing) import Tricolor

// The size-class generator: Go's runtime/mksizeclasses.go rules, as a reference for the
// table the runtime uses (Allocator/SizeClasses.swift). The test suite checks that the
// generator's rows equal the runtime's and that the runtime's generated block is exactly
// `swiftSource()`.

/// Computes Go's size-class table by the rules of Go's runtime/mksizeclasses.go
/// and renders it as Swift source and as a text table.
///
/// The rules, in short:
/// 1. Walk sizes upward in steps of an alignment that grows with the size:
///    8 bytes at first, 16 from 32 bytes, size/8 from each power of two between
///    128 and 1024, and 256 from 2048. Coarser steps keep the class count small;
///    size/8 steps keep round-up waste at about 12.5% or less.
/// 2. For each size, the span is the smallest whole number of pages whose
///    leftover tail is at most 1/8 of the span.
/// 3. A size that gets the same pages and the same object count as the previous
///    class replaces it (the bigger size wastes nothing extra).
/// 4. Each class is then widened to the largest multiple of 128 that still fits
///    the same number of objects in its span (e.g. 8448 → 9472: 6 objects in 7
///    pages). Multiples of 128 keep the 128-byte lookup table exact.
/// 5. The result must have 68 entries (dummy class 0 + 67 classes), and for each
///    class the 32-bit reciprocal `0xFFFFFFFF / size + 1` must turn
///    `offset / size` into a multiply and shift with no error for every offset
///    in a span.
public enum SizeClassGenerator {
    // Go's constants (runtime/malloc.go). The generator keeps its own copy so it
    // does not depend on the table it produces.
    static let pageShift = 13
    static let pageSize = 1 << pageShift
    static let maxSmallSize = 32768
    static let smallSizeDiv = 8
    static let smallSizeMax = 1024
    static let largeSizeDiv = 128
    static let numSizeClasses = 68

    static let beginMarker =
        "// BEGIN GENERATED SIZE CLASSES (do not edit; regenerate with SizeClassGenerator.swiftSource())"
    static let endMarker = "// END GENERATED SIZE CLASSES"

    // MARK: Generation

    /// All 68 classes, indexed by class; row 0 is the dummy class.
    /// Traps if the result breaks one of Go's checks (class count, exact
    /// reciprocal division, lookup-table alignment).
    public static func generate() -> [SizeClassRow] {
        let classes = makeClasses()
        var rows: [SizeClassRow] = []
        rows.reserveCapacity(classes.count)
        var prevSize = 0
        for (index, c) in classes.enumerated() {
            if index == 0 {
                rows.append(SizeClassRow(sizeClass: 0, size: 0, npages: 0, objects: 0,
                                         tailWaste: 0, maxWastePercent: 0))
                continue
            }
            let spanBytes = c.npages * pageSize
            let objects = spanBytes / c.size
            let tailWaste = spanBytes - objects * c.size
            let worstLoss = (c.size - prevSize - 1) * objects + tailWaste
            rows.append(SizeClassRow(
                sizeClass: index, size: c.size, npages: c.npages, objects: objects,
                tailWaste: tailWaste,
                maxWastePercent: 100 * (Double(worstLoss) / Double(spanBytes))))
            prevSize = c.size
        }
        return rows
    }

    /// Steps 1–5 of the rules above; returns (size, npages) per class.
    private static func makeClasses() -> [(size: Int, npages: Int)] {
        var classes: [(size: Int, npages: Int)] = [(0, 0)]  // class 0: dummy

        var align = 8
        var size = align
        while size <= maxSmallSize {
            defer { size += align }
            if isPowerOfTwo(size) {  // coarsen the step now and then
                if size >= 2048 {
                    align = 256
                } else if size >= 128 {
                    align = size / 8
                } else if size >= 32 {
                    align = 16  // Go's heap bitmaps assume 16-byte alignment from 32 bytes
                }
            }
            precondition(isPowerOfTwo(align), "size classes: alignment \(align) is not a power of two")

            // Smallest span whose tail is at most 1/8 of it.
            var spanBytes = pageSize
            while spanBytes % size > spanBytes / 8 {
                spanBytes += pageSize
            }
            let npages = spanBytes / pageSize

            // Same span and same object count as the previous class: take its place.
            if classes.count > 1, let last = classes.last,
               last.npages == npages, spanBytes / last.size == spanBytes / size {
                classes[classes.count - 1].size = size
                continue
            }
            classes.append((size, npages))
        }

        // Widen each class as far as its object count allows, in steps of 128.
        for i in 1..<classes.count {
            let spanBytes = classes[i].npages * pageSize
            let widened = (spanBytes / (spanBytes / classes[i].size)) & ~(largeSizeDiv - 1)
            if widened > classes[i].size {
                classes[i].size = widened
            }
        }

        precondition(classes.count == numSizeClasses,
                     "size classes: got \(classes.count) classes, Go has \(numSizeClasses)")
        for i in 1..<classes.count {
            let size = classes[i].size
            precondition(size > classes[i - 1].size, "size classes: sizes must increase")
            precondition(size % smallSizeDiv == 0, "size classes: \(size) is not a multiple of \(smallSizeDiv)")
            precondition(size <= smallSizeMax || size % largeSizeDiv == 0,
                         "size classes: \(size) > \(smallSizeMax) is not a multiple of \(largeSizeDiv)")
            verifyDivMagic(size: size, npages: classes[i].npages)
        }
        precondition(classes[classes.count - 1].size == maxSmallSize,
                     "size classes: the last class must be \(maxSmallSize) bytes")
        return classes
    }

    /// Proves that `(offset * divMagic) >> 32 == offset / size` for every offset
    /// 0…spanBytes, as Go's computeDivMagic does: first the Lemire/Kaser/Kurz bound
    /// ("Faster Remainder by Direct Computation", arXiv:1902.01961) must need at
    /// most 32 fractional bits, then every offset is checked by brute force.
    private static func verifyDivMagic(size d: Int, npages: Int) {
        let maxOffset = npages * pageSize
        let n = Int.bitWidth - maxOffset.leadingZeroBitCount  // bits in the largest offset
        var fractionalBits: Int
        if isPowerOfTwo(d) {
            fractionalBits = d.trailingZeroBitCount
        } else {
            var l = 0
            while d > (1 << (n + l)) % d + (1 << l) {
                l += 1
                precondition(n + l <= 32, "size classes: \(d) needs more than 32 fractional bits")
            }
            fractionalBits = n + l
        }
        precondition(fractionalBits <= 32, "size classes: \(d) needs more than 32 fractional bits")

        let magic = UInt64(divMagic(size: d))
        for offset in 0...maxOffset {
            precondition((UInt64(offset) * magic) >> 32 == UInt64(offset / d),
                         "size classes: divMagic \(magic) is wrong for size \(d), offset \(offset)")
        }
    }

    /// Go's 32-bit reciprocal: ⌈2^32 / size⌉ for sizes that are not powers of two,
    /// 2^32 / size for powers of two; 0 for class 0.
    static func divMagic(size: Int) -> UInt32 {
        size == 0 ? 0 : UInt32.max / UInt32(size) + 1
    }

    /// `table[i]` = smallest class whose size ≥ `base + i * step`, for i in 0..<count.
    private static func lookupTable(_ rows: [SizeClassRow], base: Int, step: Int, count: Int) -> [Int] {
        (0..<count).map { i in
            let size = base + i * step
            return rows.first { $0.size >= size }!.sizeClass
        }
    }

    private static func isPowerOfTwo(_ x: Int) -> Bool {
        x > 0 && x & (x - 1) == 0
    }

    /// The generated block of SizeClasses.swift, from the BEGIN marker line to the
    /// END marker line inclusive, without a trailing newline.
    public static func swiftSource() -> String {
        let rows = generate()
        let sizeToClass8 = lookupTable(rows, base: 0, step: smallSizeDiv,
                                       count: smallSizeMax / smallSizeDiv + 1)
        let sizeToClass128 = lookupTable(rows, base: smallSizeMax, step: largeSizeDiv,
                                         count: (maxSmallSize - smallSizeMax) / largeSizeDiv + 1)

        var out: [String] = [beginMarker]
        out.append("/// Go's size classes (runtime/sizeclasses.go), indexed by class. Class 0 means")
        out.append("/// \"no class\": a large object with a span of its own.")
        out.append("///")
        out.append("/// " + SizeClasses.tableHeader)
        out += SizeClasses.tableLines(rows).map { "/// " + $0 }
        out.append("@usableFromInline")
        out.append("enum SizeClassTable {")
        out.append("    @usableFromInline static let numSizeClasses = \(numSizeClasses)")
        out.append("    @usableFromInline static let maxSmallSize = \(maxSmallSize)")
        out.append("    @usableFromInline static let smallSizeDiv = \(smallSizeDiv)")
        out.append("    @usableFromInline static let smallSizeMax = \(smallSizeMax)")
        out.append("    @usableFromInline static let largeSizeDiv = \(largeSizeDiv)")
        out.append("    @usableFromInline static let pageShift = \(pageShift)")
        out.append("    @usableFromInline static let pageSize = \(pageSize)")
        out.append("")
        out.append("    /// Bytes per object.")
        out += array("classToSize", "UInt32", rows.map(\.size))
        out.append("")
        out.append("    /// Pages per span.")
        out += array("classToAllocNPages", "UInt8", rows.map(\.npages))
        out.append("")
        out.append("    /// `0xFFFFFFFF / size + 1`: `(offset * magic) >> 32 == offset / size` in a span.")
        out += array("classToDivMagic", "UInt32", rows.map { Int(divMagic(size: $0.size)) })
        out.append("")
        out.append("    /// Class for sizes 0…1024; index = ceil(size / 8).")
        out += array("sizeToClass8", "UInt8", sizeToClass8)
        out.append("")
        out.append("    /// Class for sizes 1024…32768; index = ceil((size - 1024) / 128).")
        out += array("sizeToClass128", "UInt8", sizeToClass128)
        out.append("}")
        out.append(endMarker)
        return out.joined(separator: "\n")
    }

    /// `@usableFromInline static let name: [type] = [...]`, values right-aligned,
    /// 16 per line, or 8 when 16 would make lines wider than 100 columns.
    private static func array(_ name: String, _ type: String, _ values: [Int]) -> [String] {
        let width = values.map { String($0).count }.max() ?? 1
        let perLine = 8 + 16 * (width + 2) <= 100 ? 16 : 8
        var lines = ["    @usableFromInline static let \(name): [\(type)] = ["]
        var start = 0
        while start < values.count {
            let chunk = values[start..<min(start + perLine, values.count)]
            lines.append("        " + chunk.map { pad(String($0), width) + "," }.joined(separator: " "))
            start += perLine
        }
        lines.append("    ]")
        return lines
    }
    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

}
