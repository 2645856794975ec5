import Foundation
import XCTest
@_spi(Testing) @testable import Tricolor

final class SizeClassTests: XCTestCase {
    /// Go's table (runtime/sizeclasses.go, Go 1.19; digest §2.1): (bytes/obj, pages/span,
    /// objects/span) for classes 1…67.
    static let goTable: [(size: Int, npages: Int, objects: Int)] = [
        (8, 1, 1024), (16, 1, 512), (24, 1, 341), (32, 1, 256), (48, 1, 170), (64, 1, 128),
        (80, 1, 102), (96, 1, 85), (112, 1, 73), (128, 1, 64), (144, 1, 56), (160, 1, 51),
        (176, 1, 46), (192, 1, 42), (208, 1, 39), (224, 1, 36), (240, 1, 34), (256, 1, 32),
        (288, 1, 28), (320, 1, 25), (352, 1, 23), (384, 1, 21), (416, 1, 19), (448, 1, 18),
        (480, 1, 17), (512, 1, 16), (576, 1, 14), (640, 1, 12), (704, 1, 11), (768, 1, 10),
        (896, 1, 9), (1024, 1, 8), (1152, 1, 7), (1280, 1, 6), (1408, 2, 11), (1536, 1, 5),
        (1792, 2, 9), (2048, 1, 4), (2304, 2, 7), (2688, 1, 3), (3072, 3, 8), (3200, 2, 5),
        (3456, 3, 7), (4096, 1, 2), (4864, 3, 5), (5376, 2, 3), (6144, 3, 4), (6528, 4, 5),
        (6784, 5, 6), (6912, 6, 7), (8192, 1, 1), (9472, 7, 6), (9728, 6, 5), (10240, 5, 4),
        (10880, 4, 3), (12288, 3, 2), (13568, 5, 3), (14336, 7, 4), (16384, 2, 1), (18432, 9, 4),
        (19072, 7, 3), (20480, 5, 2), (21760, 8, 3), (24576, 3, 1), (27264, 10, 3), (28672, 7, 2),
        (32768, 4, 1),
    ]

    /// The "max waste" column of the same table.
    static let goMaxWaste: [String] = [
        "87.50%", "43.75%", "29.24%", "21.88%", "31.52%", "23.44%", "19.07%", "15.95%",
        "13.56%", "11.72%", "11.82%", "9.73%", "9.59%", "9.25%", "8.12%", "8.15%",
        "6.62%", "5.86%", "12.16%", "11.80%", "9.88%", "9.51%", "10.71%", "8.37%",
        "6.82%", "6.05%", "12.33%", "15.48%", "13.93%", "13.94%", "15.52%", "12.40%",
        "12.41%", "15.55%", "14.00%", "14.00%", "15.57%", "12.45%", "12.46%", "15.59%",
        "12.47%", "6.22%", "8.83%", "15.60%", "16.65%", "10.92%", "12.48%", "6.23%",
        "4.36%", "3.37%", "15.61%", "14.28%", "3.64%", "4.99%", "6.24%", "11.45%",
        "9.99%", "5.35%", "12.49%", "11.11%", "3.57%", "6.87%", "6.25%", "11.45%",
        "10.00%", "4.91%", "12.50%",
    ]

    // The rows the runtime reports from its compiled table are the generator's rows.
    func testRuntimeRowsAreTheGeneratorsRows() {
        XCTAssertEqual(SizeClasses.rows, SizeClassGenerator.generate())
    }

    // (a) The generator reproduces Go's table, and the compiled arrays match the generator.
    func testGeneratorMatchesGoTable() {
        let rows = SizeClassGenerator.generate()
        XCTAssertEqual(rows.count, 68)
        XCTAssertEqual(Self.goTable.count, 67)
        XCTAssertEqual(rows[0], SizeClassRow(sizeClass: 0, size: 0, npages: 0, objects: 0,
                                             tailWaste: 0, maxWastePercent: 0))
        for (i, expected) in Self.goTable.enumerated() {
            let row = rows[i + 1]
            XCTAssertEqual(row.sizeClass, i + 1)
            XCTAssertEqual(row.size, expected.size, "class \(i + 1) size")
            XCTAssertEqual(row.npages, expected.npages, "class \(i + 1) npages")
            XCTAssertEqual(row.objects, expected.objects, "class \(i + 1) objects")
            XCTAssertEqual(row.spanBytes, expected.npages * 8192)
            XCTAssertEqual(row.tailWaste, row.spanBytes - row.objects * row.size)
        }
        for c in 0..<68 {
            XCTAssertEqual(Int(SizeClassTable.classToSize[c]), rows[c].size)
            XCTAssertEqual(Int(SizeClassTable.classToAllocNPages[c]), rows[c].npages)
        }
        XCTAssertEqual(SizeClassTable.numSizeClasses, 68)
        XCTAssertEqual(SizeClassTable.sizeToClass8.count, 129)
        XCTAssertEqual(SizeClassTable.sizeToClass128.count, 249)
    }

    // (b) The block in SizeClasses.swift is exactly what the generator prints today.
    func testGeneratedBlockIsUpToDate() throws {
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // Allocator
            .deletingLastPathComponent()  // TricolorTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
        let path = root.appendingPathComponent("Sources/Tricolor/Allocator/SizeClasses.swift").path
        let text = try String(contentsOfFile: path, encoding: .utf8)

        // The markers also occur in string literals; the block's markers start a line.
        let begin = "\n// BEGIN GENERATED SIZE CLASSES (do not edit; regenerate with SizeClassGenerator.swiftSource())"
        let end = "\n// END GENERATED SIZE CLASSES"
        let beginRange = try XCTUnwrap(text.range(of: begin), "no BEGIN marker in \(path)")
        let endRange = try XCTUnwrap(text.range(of: end, range: beginRange.upperBound..<text.endIndex),
                                     "no END marker in \(path)")
        let block = String(text[text.index(after: beginRange.lowerBound)..<endRange.upperBound])

        let generated = SizeClassGenerator.swiftSource()
        if block != generated {
            XCTFail("""
                The generated block in \(path) is stale. Replace it with \
                SizeClassGenerator.swiftSource():
                \(generated)
                """)
        }
    }

    // (c) The O(1) lookup agrees with the linear search for every small size.
    func testFastLookupMatchesReference() {
        for size in 1...32768 {
            let fast = SizeClassTable.sizeToClass(size)
            let reference = referenceSizeToClass(size)
            if fast != reference {
                XCTFail("sizeToClass(\(size)) = \(fast), reference says \(reference)")
                return
            }
        }
        // Where the two tables meet (Go's unsigned wrap-around case).
        for size in 1009...1016 { XCTAssertEqual(SizeClassTable.sizeToClass(size), 32) }
        for size in 1017...1024 { XCTAssertEqual(SizeClassTable.sizeToClass(size), 32) }
        XCTAssertEqual(SizeClassTable.sizeToClass(1025), 33)
        XCTAssertEqual(SizeClassTable.sizeToClass(1), 1)
        XCTAssertEqual(SizeClassTable.sizeToClass(32768), 67)
        // The arithmetic lookup the inlined pointer-free fast path uses up to 256 bytes.
        for size in 16...256 {
            XCTAssertEqual(Mutator.classUpTo256(size), referenceSizeToClass(size), "size \(size)")
        }
    }

    // (d) Multiply-and-shift gives exactly offset / size in every span.
    func testDivMagicIsExact() {
        XCTAssertEqual(SizeClassTable.divMagic(sizeClass: 0), 0)
        XCTAssertEqual(SizeClassTable.objectIndex(offset: 12345, divMagic: 0), 0)
        for c in 1..<SizeClassTable.numSizeClasses {
            let size = UInt(SizeClassTable.classToSize[c])
            let spanBytes = UInt(SizeClassTable.classToAllocNPages[c]) * 8192
            let magic = SizeClassTable.divMagic(sizeClass: c)
            XCTAssertEqual(magic, UInt32(0xFFFF_FFFF / size + 1))
            for offset in 0...spanBytes {
                let index = SizeClassTable.objectIndex(offset: offset, divMagic: magic)
                if index != offset / size {
                    XCTFail("class \(c): objectIndex(\(offset)) = \(index), want \(offset / size)")
                    return
                }
            }
        }
    }

    // (e) The CLI table.
    func testTableText() {
        let lines = SizeClasses.tableText().split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.count, 67)
        let fields = lines.map { $0.split(separator: " ").map(String.init) }
        XCTAssertEqual(fields.first, ["1", "8", "8192", "1024", "0", "87.50%"])
        XCTAssertEqual(fields.last, ["67", "32768", "32768", "1", "0", "12.50%"])
        for (i, row) in fields.enumerated() {
            let go = Self.goTable[i]
            let expected = [i + 1, go.size, go.npages * 8192, go.objects, go.npages * 8192 - go.objects * go.size]
                .map(String.init) + [Self.goMaxWaste[i]]
            XCTAssertEqual(row, expected, "line \(i + 1)")
        }
        // The numeric column is unrounded: class 67 loses at most 4095 of 32768 bytes
        // (12.4969…%), printed as 12.50%.
        let rows = SizeClassGenerator.generate()
        XCTAssertEqual(rows[1].maxWastePercent, 87.5)
        XCTAssertEqual(rows[67].maxWastePercent, 100 * (4095.0 / 32768.0))
    }
}
