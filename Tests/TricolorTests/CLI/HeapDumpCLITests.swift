import Foundation
import Glibc
import XCTest

/// `tricolor run … --alloc-state --heap-dump FILE` and `tricolor heapdump top|why|diff|classes`,
/// run as child processes on a small leak workload: the subcommands' text, JSON and
/// Graphviz outputs, and their errors for bad input (a missing file, a file that is not
/// a dump, a bad address). Nothing is timed.
final class HeapDumpCLITests: CLITestCase {
    func testRunWritesStateAndDumpAndTheAnalyzerReadsIt() throws {
        let a = path("a.tchd"), b = path("b.tchd")
        let r1 = try run(["run", "leak", "2000", "--alloc-state", "--heap-dump", a, "--no-progress"])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        XCTAssertTrue(r1.stdoutText.contains("allocator state: sweepgen"), r1.stdoutText)
        XCTAssertTrue(r1.stdoutText.contains("spanclass class"), r1.stdoutText)
        XCTAssertTrue(r1.stdoutText.contains("# heap dump: \(a):"), r1.stdoutText)
        let r2 = try run(["run", "leak", "5000", "--heap-dump", b, "--no-progress", "--json", "--alloc-state"])
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r2.stdoutText.utf8)) as? [String: Any]
        XCTAssertNotNil((json?["AllocState"] as? [String: Any])?["SpanClasses"], r2.stdoutText)

        let top = try run(["heapdump", "top", b, "--limit", "3"])
        XCTAssertEqual(top.status, 0, top.stderr)
        XCTAssertTrue(top.stdoutText.contains("[]leak.Table"), top.stdoutText)
        let topJSON = try run(["heapdump", "top", b, "--json"])
        let rows = try JSONSerialization.jsonObject(with: Data(topJSON.stdoutText.utf8)) as? [[String: Any]]
        XCTAssertEqual(rows?.first?["type"] as? String, "[]leak.Table")

        let why = try run(["heapdump", "why", b, "--type", "leak.CacheEntry"])
        XCTAssertEqual(why.status, 0, why.stderr)
        XCTAssertTrue(why.stdoutText.contains("global #0"), why.stdoutText)
        let dot = try run(["heapdump", "why", b, "--type", "leak.CacheEntry", "--dot"])
        XCTAssertTrue(dot.stdoutText.hasPrefix("digraph retention {"), dot.stdoutText)
        let diff = try run(["heapdump", "diff", a, b])
        XCTAssertEqual(diff.status, 0, diff.stderr)
        XCTAssertTrue(diff.stdoutText.contains("leak.CacheEntry                                  +3000"), diff.stdoutText)
        let classes = try run(["heapdump", "classes", b])
        XCTAssertTrue(classes.stdoutText.contains("frag"), classes.stdoutText)
    }

    /// Every analyzer subcommand on a full standard output (/dev/full) fails with EX_IOERR
    /// (74) and says so on stderr, instead of exiting 0 with its output lost.
    func testAnalyzerReportsAFullStandardOutput() throws {
        var st = stat()
        guard stat("/dev/full", &st) == 0, st.st_mode & S_IFMT == S_IFCHR else { throw XCTSkip("no /dev/full") }
        let dump = path("d.tchd")
        let w = try run(["run", "leak", "2000", "--heap-dump", dump, "--no-progress"])
        XCTAssertEqual(w.status, 0, w.stderr)
        for args in [["heapdump", "top", dump], ["heapdump", "top", dump, "--json"],
                     ["heapdump", "why", dump, "--type", "leak.CacheEntry"], ["heapdump", "diff", dump, dump],
                     ["heapdump", "classes", dump]] {
            let r = try run(args, stdoutPath: "/dev/full")
            XCTAssertEqual(r.status, 74, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("cannot write standard output"), "\(args): \(r.stderr)")
        }
    }

    func testAnalyzerErrorsNameTheBadInput() throws {
        let missing = try run(["heapdump", "top", path("nope.tchd")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("nope.tchd"), missing.stderr)
        let notADump = path("text.tchd")
        try "hello".write(toFile: notADump, atomically: true, encoding: .utf8)
        let bad = try run(["heapdump", "top", notADump])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("not a Tricolor heap dump"), bad.stderr)
        let addr = try run(["heapdump", "why", notADump, "zz9"])
        XCTAssertNotEqual(addr.status, 0)
        XCTAssertTrue(addr.stderr.contains("invalid ADDRESS 'zz9'"), addr.stderr)
        let sort = try run(["heapdump", "top", notADump, "--sort", "size"])
        XCTAssertTrue(sort.stderr.contains("invalid --sort 'size'"), sort.stderr)
    }
}
