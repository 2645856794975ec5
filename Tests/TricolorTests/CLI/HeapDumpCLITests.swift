import Foundation
import Glibc
import XCTest

/// `tricolor run … --alloc-state --heap-dump FILE` and `tricolor heapdump top|why|diff|classes`,
/// run as child processes on a small leak workload: the subcommands' text, JSON and
/// Graphviz outputs, and their errors for bad input (a missing file, a file that is not
/// a dump, a bad address). Nothing is timed.
final class HeapDumpCLITests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tricolor-heapdump-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    var executable: URL {
        get throws {
            if let p = ProcessInfo.processInfo.environment["TRICOLOR_CLI"] { return URL(fileURLWithPath: p) }
            let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            for dir in [me.deletingLastPathComponent(), me.deletingLastPathComponent().deletingLastPathComponent()] {
                let candidate = dir.appendingPathComponent("tricolor")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            }
            throw CLITests.MissingExecutable(description: "no tricolor executable next to \(me.path)")
        }
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = try executable
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for k in ["GOGC", "GOMEMLIMIT", "GODEBUG", "GOMAXPROCS"] { env[k] = nil }
        p.environment = env
        let outFile = path("stdout-\(UUID().uuidString)"), errFile = path("stderr-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: outFile, contents: nil)
        FileManager.default.createFile(atPath: errFile, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outFile))
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errFile))
        try p.run()
        p.waitUntilExit()
        return (p.terminationStatus, try String(contentsOfFile: outFile, encoding: .utf8), try String(contentsOfFile: errFile, encoding: .utf8))
    }

    func testRunWritesStateAndDumpAndTheAnalyzerReadsIt() throws {
        let a = path("a.tchd"), b = path("b.tchd")
        let r1 = try run(["run", "leak", "2000", "--alloc-state", "--heap-dump", a, "--no-progress"])
        XCTAssertEqual(r1.status, 0, r1.err)
        XCTAssertTrue(r1.out.contains("allocator state: sweepgen"), r1.out)
        XCTAssertTrue(r1.out.contains("spanclass class"), r1.out)
        XCTAssertTrue(r1.out.contains("# heap dump: \(a):"), r1.out)
        let r2 = try run(["run", "leak", "5000", "--heap-dump", b, "--no-progress", "--json", "--alloc-state"])
        XCTAssertEqual(r2.status, 0, r2.err)
        let json = try JSONSerialization.jsonObject(with: Data(r2.out.utf8)) as? [String: Any]
        XCTAssertNotNil((json?["AllocState"] as? [String: Any])?["SpanClasses"], r2.out)

        let top = try run(["heapdump", "top", b, "--limit", "3"])
        XCTAssertEqual(top.status, 0, top.err)
        XCTAssertTrue(top.out.contains("[]leak.Table"), top.out)
        let topJSON = try run(["heapdump", "top", b, "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(topJSON.out.utf8)) as? [[String: Any]]
        XCTAssertEqual(rows?.first?["type"] as? String, "[]leak.Table")

        let why = try run(["heapdump", "why", b, "--type", "leak.CacheEntry"])
        XCTAssertEqual(why.status, 0, why.err)
        XCTAssertTrue(why.out.contains("global #0"), why.out)
        let dot = try run(["heapdump", "why", b, "--type", "leak.CacheEntry", "--dot"])
        XCTAssertTrue(dot.out.hasPrefix("digraph retention {"), dot.out)
        let diff = try run(["heapdump", "diff", a, b])
        XCTAssertEqual(diff.status, 0, diff.err)
        XCTAssertTrue(diff.out.contains("leak.CacheEntry                                  +3000"), diff.out)
        let classes = try run(["heapdump", "classes", b])
        XCTAssertTrue(classes.out.contains("frag"), classes.out)
    }

    func testAnalyzerErrorsNameTheBadInput() throws {
        let missing = try run(["heapdump", "top", path("nope.tchd")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.err.contains("nope.tchd"), missing.err)
        let notADump = path("text.tchd")
        try "hello".write(toFile: notADump, atomically: true, encoding: .utf8)
        let bad = try run(["heapdump", "top", notADump])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.err.contains("not a Tricolor heap dump"), bad.err)
        let addr = try run(["heapdump", "why", notADump, "zz9"])
        XCTAssertNotEqual(addr.status, 0)
        XCTAssertTrue(addr.err.contains("invalid ADDRESS 'zz9'"), addr.err)
        let sort = try run(["heapdump", "top", notADump, "--sort", "size"])
        XCTAssertTrue(sort.err.contains("invalid --sort 'size'"), sort.err)
    }
}
