// Size classes: Go's table of small-object sizes, and the lookups built on it.
//
// Every small allocation (1…32768 bytes) is rounded up to one of 67 sizes, its
// "size class". Each class has its own spans: runs of 8 KiB pages cut into equal
// slots. The table is not hand-written. Go computes it with
// src/runtime/mksizeclasses.go and checks the result into sizeclasses.go; we do
// the same: `SizeClassGenerator` (TricolorTestSupport) follows Go's rules, and the block between the
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

    /// A row with the given fields, as the generator computes them (`spanBytes` follows
    /// from `npages`).
    @_spi(Testing) public init(sizeClass: Int, size: Int, npages: Int, objects: Int, tailWaste: Int, maxWastePercent: Double) {
        self.sizeClass = sizeClass
        self.size = size
        self.npages = npages
        self.objects = objects
        self.tailWaste = tailWaste
        self.maxWastePercent = maxWastePercent
    }
}


/// The size-class table as rows, for reports (the CLI's `tricolor sizeclasses`) and for
/// the test that regenerates it by Go's rules (TricolorTestSupport's SizeClassGenerator).
public enum SizeClasses {
    /// All 68 classes of the table this runtime uses, indexed by class; row 0 is the
    /// dummy class.
    public static var rows: [SizeClassRow] {
        (0..<SizeClassTable.numSizeClasses).map { c in
            if c == 0 { return SizeClassRow(sizeClass: 0, size: 0, npages: 0, objects: 0, tailWaste: 0, maxWastePercent: 0) }
            let size = Int(SizeClassTable.classToSize[c])
            let npages = Int(SizeClassTable.classToAllocNPages[c])
            let spanBytes = npages << SizeClassTable.pageShift
            let objects = spanBytes / size
            let tailWaste = spanBytes - objects * size
            let worstLoss = (size - Int(SizeClassTable.classToSize[c - 1]) - 1) * objects + tailWaste
            return SizeClassRow(sizeClass: c, size: size, npages: npages, objects: objects, tailWaste: tailWaste,
                                maxWastePercent: 100 * (Double(worstLoss) / Double(spanBytes)))
        }
    }


    /// The table for the CLI: one line per class 1…67, columns
    /// `class bytes/obj bytes/span objects tail_waste max_waste`, right-aligned,
    /// max waste as a percentage with two decimals (`87.50%`). No header and no
    /// trailing newline.
    public static func tableText() -> String {
        tableLines(rows).joined(separator: "\n")
    }

    /// The column titles that go above `tableLines(_:)`.
    @_spi(Testing) public static let tableHeader = "class  bytes/obj  bytes/span  objects  tail waste  max waste"

    /// One formatted line per row after the dummy class 0, as `tableText()` joins them.
    @_spi(Testing) public static func tableLines(_ rows: [SizeClassRow]) -> [String] {
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

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
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
        runtimeCheck(size >= 1 && size <= maxSmallSize, "sizeToClass: size \(size) is not in 1...\(maxSmallSize)")
        if size <= smallSizeMax - smallSizeDiv {
            return Int(sizeToClass8[(size + smallSizeDiv - 1) / smallSizeDiv])
        }
        return Int(sizeToClass128[(size - smallSizeMax + largeSizeDiv - 1) / largeSizeDiv])
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
