// The DocC catalog's Swift examples are the code the tests run: every line of every
// ```swift block in Sources/Tricolor/Tricolor.docc appears in DocExamplesTests.swift or
// in HeapTests.swift (the README example), so an article cannot drift from code that
// compiles and passes. Follows no Go file.
//
// Exempt: blocks that are not runnable on purpose (a Package.swift fragment, the
// rooting bug RootsAndSafepoints.md shows), named by a line they contain.

import Foundation
import XCTest

final class DocCatalogTests: XCTestCase {
    /// The package's root, from this file's path (Tests/TricolorTests/Docs/…).
    var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    static let exemptBlocks = ["// Package.swift", "// a may already be freed"]

    /// The ```swift blocks of a Markdown file, each as its lines.
    func swiftBlocks(_ text: String) -> [[String]] {
        var blocks: [[String]] = []
        var current: [String]? = nil
        for line in text.components(separatedBy: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if current == nil, t == "```swift" { current = [] }
            else if current != nil, t == "```" { blocks.append(current!); current = nil }
            else if current != nil { current!.append(line) }
        }
        return blocks
    }

    func testEverySwiftExampleIsRunByATest() throws {
        let catalog = root.appendingPathComponent("Sources/Tricolor/Tricolor.docc")
        let tests = try ["Tests/TricolorTests/Docs/DocExamplesTests.swift", "Tests/TricolorTests/Runtime/HeapTests.swift"]
            .map { try String(contentsOf: root.appendingPathComponent($0), encoding: .utf8) }
            .joined(separator: "\n")
            .components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .joined(separator: "\n")
        let articles = try FileManager.default.contentsOfDirectory(atPath: catalog.path).filter { $0.hasSuffix(".md") }
        XCTAssertGreaterThanOrEqual(articles.count, 6, "the landing page and five articles")
        var checked = 0
        for name in articles.sorted() {
            let text = try String(contentsOf: catalog.appendingPathComponent(name), encoding: .utf8)
            for block in swiftBlocks(text) where !block.contains(where: { l in Self.exemptBlocks.contains { l.contains($0) } }) {
                for line in block {
                    let t = line.trimmingCharacters(in: .whitespaces)
                    if t.isEmpty || t.allSatisfy({ "{}()[]".contains($0) }) { continue }
                    checked += 1
                    XCTAssertTrue(tests.contains(t), "\(name): no test runs this line: \(t)")
                }
            }
        }
        XCTAssertGreaterThan(checked, 50)
    }
}
