// Size classes: Go's table of small-object sizes, and the lookups built on it.
//
// Every small allocation (1…32768 bytes) is rounded up to one of 67 sizes, its
// "size class". Each class has its own spans: runs of 8 KiB pages cut into equal
// slots. The table is not hand-written. Go computes it with
// src/runtime/mksizeclasses.go and checks the result into sizeclasses.go; we do
// the same: `SizeClassGenerator` follows Go's rules, and the block between the
// BEGIN/END markers below is its output, pasted verbatim. A test regenerates the
// block and fails if the file no longer matches.

/// One size class as the generator sees it. Row 0 is Go's dummy class 0
/// ("large object, no class"): all fields are zero.
public struct SizeClassRow: Equatable, Sendable {
    /// Index into the tables (0…67).
    public let sizeClass: Int
    /// Bytes per object.
    public let size: Int
    /// Pages (8 KiB each) per span.
    public let npages: Int
    /// Bytes per span.
    public var spanBytes: Int { npages * 8192 }
    /// Objects per span.
    public let objects: Int
    /// Bytes left over at the end of a span: spanBytes − objects × size.
    public let tailWaste: Int
    /// Worst case share of a span that is lost, in percent: every object is the
    /// smallest request that still lands in this class (previous size + 1), and
    /// the tail is lost too.
    public let maxWastePercent: Double
}

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

    // MARK: Rendering

    /// The table for the CLI: one line per class 1…67, columns
    /// `class bytes/obj bytes/span objects tail_waste max_waste`, right-aligned,
    /// max waste as a percentage with two decimals (`87.50%`). No header and no
    /// trailing newline.
    public static func tableText() -> String {
        tableLines(generate()).joined(separator: "\n")
    }

    private static let tableHeader = "class  bytes/obj  bytes/span  objects  tail waste  max waste"

    private static func tableLines(_ rows: [SizeClassRow]) -> [String] {
        var prevSize = 0
        return rows.dropFirst().map { r in
            defer { prevSize = r.size }
            let worstLoss = (r.size - prevSize - 1) * r.objects + r.tailWaste
            return [
                pad(String(r.sizeClass), 5), pad(String(r.size), 9), pad(String(r.spanBytes), 10),
                pad(String(r.objects), 7), pad(String(r.tailWaste), 10),
                pad(percent(worstLoss, of: r.spanBytes), 9),
            ].joined(separator: "  ")
        }
    }

    /// `part / whole` as a percentage with two decimals, rounded to nearest (ties
    /// to even), computed exactly in integers so the text does not depend on
    /// floating-point formatting. Matches Go's `%6.2f` of the same ratio.
    private static func percent(_ part: Int, of whole: Int) -> String {
        let scaled = part * 10_000
        var hundredths = scaled / whole
        let twiceRemainder = 2 * (scaled % whole)
        if twiceRemainder > whole || (twiceRemainder == whole && hundredths % 2 == 1) {
            hundredths += 1
        }
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)%"
    }

    private static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
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
        out.append("/// " + tableHeader)
        out += tableLines(rows).map { "/// " + $0 }
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
}

// BEGIN GENERATED SIZE CLASSES (do not edit; regenerate with SizeClassGenerator.swiftSource())
/// Go's size classes (runtime/sizeclasses.go), indexed by class. Class 0 means
/// "no class": a large object with a span of its own.
///
/// class  bytes/obj  bytes/span  objects  tail waste  max waste
///     1          8        8192     1024           0     87.50%
///     2         16        8192      512           0     43.75%
///     3         24        8192      341           8     29.24%
///     4         32        8192      256           0     21.88%
///     5         48        8192      170          32     31.52%
///     6         64        8192      128           0     23.44%
///     7         80        8192      102          32     19.07%
///     8         96        8192       85          32     15.95%
///     9        112        8192       73          16     13.56%
///    10        128        8192       64           0     11.72%
///    11        144        8192       56         128     11.82%
///    12        160        8192       51          32      9.73%
///    13        176        8192       46          96      9.59%
///    14        192        8192       42         128      9.25%
///    15        208        8192       39          80      8.12%
///    16        224        8192       36         128      8.15%
///    17        240        8192       34          32      6.62%
///    18        256        8192       32           0      5.86%
///    19        288        8192       28         128     12.16%
///    20        320        8192       25         192     11.80%
///    21        352        8192       23          96      9.88%
///    22        384        8192       21         128      9.51%
///    23        416        8192       19         288     10.71%
///    24        448        8192       18         128      8.37%
///    25        480        8192       17          32      6.82%
///    26        512        8192       16           0      6.05%
///    27        576        8192       14         128     12.33%
///    28        640        8192       12         512     15.48%
///    29        704        8192       11         448     13.93%
///    30        768        8192       10         512     13.94%
///    31        896        8192        9         128     15.52%
///    32       1024        8192        8           0     12.40%
///    33       1152        8192        7         128     12.41%
///    34       1280        8192        6         512     15.55%
///    35       1408       16384       11         896     14.00%
///    36       1536        8192        5         512     14.00%
///    37       1792       16384        9         256     15.57%
///    38       2048        8192        4           0     12.45%
///    39       2304       16384        7         256     12.46%
///    40       2688        8192        3         128     15.59%
///    41       3072       24576        8           0     12.47%
///    42       3200       16384        5         384      6.22%
///    43       3456       24576        7         384      8.83%
///    44       4096        8192        2           0     15.60%
///    45       4864       24576        5         256     16.65%
///    46       5376       16384        3         256     10.92%
///    47       6144       24576        4           0     12.48%
///    48       6528       32768        5         128      6.23%
///    49       6784       40960        6         256      4.36%
///    50       6912       49152        7         768      3.37%
///    51       8192        8192        1           0     15.61%
///    52       9472       57344        6         512     14.28%
///    53       9728       49152        5         512      3.64%
///    54      10240       40960        4           0      4.99%
///    55      10880       32768        3         128      6.24%
///    56      12288       24576        2           0     11.45%
///    57      13568       40960        3         256      9.99%
///    58      14336       57344        4           0      5.35%
///    59      16384       16384        1           0     12.49%
///    60      18432       73728        4           0     11.11%
///    61      19072       57344        3         128      3.57%
///    62      20480       40960        2           0      6.87%
///    63      21760       65536        3         256      6.25%
///    64      24576       24576        1           0     11.45%
///    65      27264       81920        3         128     10.00%
///    66      28672       57344        2           0      4.91%
///    67      32768       32768        1           0     12.50%
@usableFromInline
enum SizeClassTable {
    @usableFromInline static let numSizeClasses = 68
    @usableFromInline static let maxSmallSize = 32768
    @usableFromInline static let smallSizeDiv = 8
    @usableFromInline static let smallSizeMax = 1024
    @usableFromInline static let largeSizeDiv = 128
    @usableFromInline static let pageShift = 13
    @usableFromInline static let pageSize = 8192

    /// Bytes per object.
    @usableFromInline static let classToSize: [UInt32] = [
            0,     8,    16,    24,    32,    48,    64,    80,
           96,   112,   128,   144,   160,   176,   192,   208,
          224,   240,   256,   288,   320,   352,   384,   416,
          448,   480,   512,   576,   640,   704,   768,   896,
         1024,  1152,  1280,  1408,  1536,  1792,  2048,  2304,
         2688,  3072,  3200,  3456,  4096,  4864,  5376,  6144,
         6528,  6784,  6912,  8192,  9472,  9728, 10240, 10880,
        12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760,
        24576, 27264, 28672, 32768,
    ]

    /// Pages per span.
    @usableFromInline static let classToAllocNPages: [UInt8] = [
         0,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
         1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
         1,  1,  1,  2,  1,  2,  1,  2,  1,  3,  2,  3,  1,  3,  2,  3,
         4,  5,  6,  1,  7,  6,  5,  4,  3,  5,  7,  2,  9,  7,  5,  8,
         3, 10,  7,  4,
    ]

    /// `0xFFFFFFFF / size + 1`: `(offset * magic) >> 32 == offset / size` in a span.
    @usableFromInline static let classToDivMagic: [UInt32] = [
                0, 536870912, 268435456, 178956971, 134217728,  89478486,  67108864,  53687092,
         44739243,  38347923,  33554432,  29826162,  26843546,  24403224,  22369622,  20648882,
         19173962,  17895698,  16777216,  14913081,  13421773,  12201612,  11184811,  10324441,
          9586981,   8947849,   8388608,   7456541,   6710887,   6100806,   5592406,   4793491,
          4194304,   3728271,   3355444,   3050403,   2796203,   2396746,   2097152,   1864136,
          1597831,   1398102,   1342178,   1242757,   1048576,    883012,    798916,    699051,
           657931,    633103,    621379,    524288,    453439,    441506,    419431,    394759,
           349526,    316552,    299594,    262144,    233017,    225198,    209716,    197380,
           174763,    157533,    149797,    131072,
    ]

    /// Class for sizes 0…1024; index = ceil(size / 8).
    @usableFromInline static let sizeToClass8: [UInt8] = [
         0,  1,  2,  3,  4,  5,  5,  6,  6,  7,  7,  8,  8,  9,  9, 10,
        10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18,
        18, 19, 19, 19, 19, 20, 20, 20, 20, 21, 21, 21, 21, 22, 22, 22,
        22, 23, 23, 23, 23, 24, 24, 24, 24, 25, 25, 25, 25, 26, 26, 26,
        26, 27, 27, 27, 27, 27, 27, 27, 27, 28, 28, 28, 28, 28, 28, 28,
        28, 29, 29, 29, 29, 29, 29, 29, 29, 30, 30, 30, 30, 30, 30, 30,
        30, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
        31, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32,
        32,
    ]

    /// Class for sizes 1024…32768; index = ceil((size - 1024) / 128).
    @usableFromInline static let sizeToClass128: [UInt8] = [
        32, 33, 34, 35, 36, 37, 37, 38, 38, 39, 39, 40, 40, 40, 41, 41,
        41, 42, 43, 43, 44, 44, 44, 44, 44, 45, 45, 45, 45, 45, 45, 46,
        46, 46, 46, 47, 47, 47, 47, 47, 47, 48, 48, 48, 49, 49, 50, 51,
        51, 51, 51, 51, 51, 51, 51, 51, 51, 52, 52, 52, 52, 52, 52, 52,
        52, 52, 52, 53, 53, 54, 54, 54, 54, 55, 55, 55, 55, 55, 56, 56,
        56, 56, 56, 56, 56, 56, 56, 56, 56, 57, 57, 57, 57, 57, 57, 57,
        57, 57, 57, 58, 58, 58, 58, 58, 58, 59, 59, 59, 59, 59, 59, 59,
        59, 59, 59, 59, 59, 59, 59, 59, 59, 60, 60, 60, 60, 60, 60, 60,
        60, 60, 60, 60, 60, 60, 60, 60, 60, 61, 61, 61, 61, 61, 62, 62,
        62, 62, 62, 62, 62, 62, 62, 62, 62, 63, 63, 63, 63, 63, 63, 63,
        63, 63, 63, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64,
        64, 64, 64, 64, 64, 64, 64, 64, 64, 65, 65, 65, 65, 65, 65, 65,
        65, 65, 65, 65, 65, 65, 65, 65, 65, 65, 65, 65, 65, 65, 66, 66,
        66, 66, 66, 66, 66, 66, 66, 66, 66, 67, 67, 67, 67, 67, 67, 67,
        67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67, 67,
        67, 67, 67, 67, 67, 67, 67, 67, 67,
    ]
}
// END GENERATED SIZE CLASSES

// MARK: Lookups

extension SizeClassTable {
    /// Size class for a small allocation, in O(1), as Go's mallocgc does it.
    /// Sizes up to 1016 use the 8-byte-granular table, the rest the 128-byte one.
    ///
    /// Go writes the second index as `divRoundUp(size - 1024, 128)` on unsigned
    /// integers: for 1017…1023 the subtraction wraps and the rounding wraps back
    /// to 0. Here the arithmetic is signed, so `size - 1024 + 127` is 120…126 for
    /// those sizes and the index is 0 (class 32, 1024 bytes) without any wrapping.
    @inlinable
    static func sizeToClass(_ size: Int) -> Int {
        precondition(size >= 1 && size <= maxSmallSize, "sizeToClass: size \(size) is not in 1...\(maxSmallSize)")
        if size <= smallSizeMax - smallSizeDiv {
            return Int(sizeToClass8[(size + smallSizeDiv - 1) / smallSizeDiv])
        }
        return Int(sizeToClass128[(size - smallSizeMax + largeSizeDiv - 1) / largeSizeDiv])
    }

    /// The slow, obviously correct answer: the smallest class whose size ≥ `size`.
    /// For tests and assertions.
    static func referenceSizeToClass(_ size: Int) -> Int {
        precondition(size >= 1 && size <= maxSmallSize, "referenceSizeToClass: size \(size) is not in 1...\(maxSmallSize)")
        for sizeClass in 1..<numSizeClasses where Int(classToSize[sizeClass]) >= size {
            return sizeClass
        }
        preconditionFailure("unreachable: the last class is maxSmallSize")
    }

    /// The reciprocal for `objectIndex(offset:divMagic:)`; 0 for class 0.
    static func divMagic(sizeClass: Int) -> UInt32 {
        classToDivMagic[sizeClass]
    }

    /// Index of the object at byte `offset` in a span: `offset / size` as a
    /// multiply and shift (`divMagic` from `divMagic(sizeClass:)`). Exact for every
    /// offset 0…spanBytes; the generator checks that. Offsets are below 2^20 and
    /// magics below 2^32, so the product cannot overflow.
    @inlinable
    static func objectIndex(offset: UInt, divMagic: UInt32) -> UInt {
        (offset &* UInt(divMagic)) >> 32
    }
}
