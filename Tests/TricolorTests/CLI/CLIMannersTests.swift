// `tricolor`'s manners as a command-line tool: `--version`, `--json` (one JSON object on
// stdout, the workload's text on stderr), the progress line (only when stderr is a
// terminal), and the exit statuses in `--help`. Follows no Go file.
//
// Each test runs the built executable through CLITests' `run` helper. Nothing is timed:
// the progress tests use `--progress-after 0`, which draws the first line before the
// workload starts.

import Foundation
import Glibc
import XCTest
@_spi(Testing) @testable import Tricolor

extension CLITests {
    /// `--version` prints the one version string, `Heap.version`, and exits 0.
    func testVersion() throws {
        let r = try run(["--version"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines), Heap.version)
        XCTAssertFalse(Heap.version.isEmpty)
    }

    /// The object on stdout with `--json`, parsed, or a failure naming what was there.
    func jsonObject(_ r: Result, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let any = try JSONSerialization.jsonObject(with: Data(r.stdout))
        guard let object = any as? [String: Any] else {
            XCTFail("stdout is not one JSON object: \(r.stdoutText)", file: file, line: line)
            return [:]
        }
        return object
    }

    /// `--json`: stdout is exactly one JSON object (so `| jq .` works) holding the
    /// version, the workload, the summary's pairs as numbers, MemStats and GCStats with
    /// Go's field names; all the workload's text is on stderr.
    func testJSONReportIsTheOnlyStandardOutput() throws {
        let r = try run(["run", "binary-trees", "4", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try jsonObject(r)
        XCTAssertEqual(o["version"] as? String, Heap.version)
        XCTAssertEqual(o["workload"] as? String, "binary-trees")
        XCTAssertEqual(o["n"] as? Int, 4)
        XCTAssertEqual(o["threads"] as? Int, 1)
        let summary = try XCTUnwrap(o["summary"] as? [String: Any], r.stdoutText)
        XCTAssertNotNil(summary["wall_s"] as? Double)
        XCTAssertNotNil(summary["numgc"] as? Int)
        let mem = try XCTUnwrap(o["MemStats"] as? [String: Any])
        XCTAssertGreaterThan(try XCTUnwrap(mem["TotalAlloc"] as? Int), 0)
        XCTAssertNotNil(mem["HeapAlloc"] as? Int)
        XCTAssertNotNil((o["GCStats"] as? [String: Any])?["NumGC"] as? Int)
        XCTAssertNil(o["AllocPath"], "AllocPath only with --alloc-path")
        // The text went to stderr, the summary line included.
        XCTAssertTrue(r.stderr.contains("stretch tree of depth 7"), r.stderr)
        XCTAssertTrue(r.stderr.contains("# wall_s="), r.stderr)
        XCTAssertFalse(r.stdoutText.contains("stretch tree"), r.stdoutText)
    }

    /// With `--alloc-path`, the counts join the object and the table goes to stderr;
    /// `--memstats` is the same report as `--json`.
    func testJSONReportWithAllocPathAndMemstatsAlias() throws {
        let r = try run(["run", "gcbench", "--json", "--alloc-path"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try jsonObject(r)
        let path = try XCTUnwrap(o["AllocPath"] as? [String: Any], r.stdoutText)
        XCTAssertEqual(path["Enabled"] as? Bool, true)
        XCTAssertFalse(try XCTUnwrap(path["Levels"] as? [Any]).isEmpty)
        XCTAssertTrue(r.stderr.contains("allocation path: mcache -> mcentral -> mheap -> OS"), r.stderr)

        let m = try run(["run", "binary-trees", "4", "--memstats"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertNotNil(try jsonObject(m)["MemStats"] as? [String: Any])
        XCTAssertTrue(m.stderr.contains("# wall_s="), m.stderr)
    }

    /// `--json` and a profile on '-' would both write stdout: refused as a usage error.
    func testJSONAndProfileOnStandardOutputAreRefused() throws {
        let r = try run(["run", "binary-trees", "4", "--json", "--heap-profile", "-"])
        XCTAssertEqual(r.status, usage, r.stderr)
        XCTAssertTrue(r.stderr.contains("--json and --heap-profile - cannot both write to standard output"), r.stderr)
        XCTAssertFalse(r.workloadRan)
    }

    /// A pseudo-terminal: the master's fd and the slave's path. Opened as posix_openpt,
    /// unlockpt and ptsname do (Glibc's module does not export those): /dev/ptmx, then
    /// TIOCSPTLCK and TIOCGPTN, whose values are the generic Linux ioctl numbers (x86_64
    /// and arm64 alike; the macros that build them are not imported).
    func openTerminal() throws -> (master: Int32, slavePath: String) {
        let TIOCSPTLCK: UInt = 0x4004_5431, TIOCGPTN: UInt = 0x8004_5430
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        guard master >= 0 else { throw XCTSkip("no pseudo-terminal: /dev/ptmx: \(String(cString: strerror(errno)))") }
        var unlock: Int32 = 0
        var number: UInt32 = 0
        guard ioctl(master, TIOCSPTLCK, &unlock) == 0, ioctl(master, TIOCGPTN, &number) == 0 else {
            close(master)
            throw XCTSkip("no pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        return (master, "/dev/pts/\(number)")
    }

    /// Everything written to the terminal so far (the child has exited).
    func drain(_ master: Int32) -> String {
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
        var bytes: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buf, buf.count)
            if n <= 0 { break }           // EAGAIN: nothing more; EIO: no slave open
            bytes += buf[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// On a terminal, the progress line is drawn on stderr and erased (`ESC[K`) before
    /// the text that follows it; stdout (a file here) gets none of it.
    func testProgressLineOnATerminal() throws {
        let (master, slave) = try openTerminal()
        defer { close(master) }
        let r = try run(["run", "binary-trees", "6", "--progress-after", "0"], stderrPath: slave)
        XCTAssertEqual(r.status, 0)
        let screen = drain(master)
        XCTAssertTrue(screen.contains("\rtricolor: run binary-trees: 0 s, "), screen.debugDescription)
        XCTAssertTrue(screen.contains("\r\u{1B}[K"), "the line is erased: \(screen.debugDescription)")
        XCTAssertFalse(r.stdoutText.contains("tricolor: run"), r.stdoutText)
        XCTAssertTrue(r.stdoutText.contains("# wall_s="), r.stdoutText)
    }

    /// `--no-progress` keeps the terminal free of it; so does a stderr that is not a
    /// terminal (a file), whatever `--progress-after` says.
    func testNoProgressLineWhenOffOrNotATerminal() throws {
        let (master, slave) = try openTerminal()
        defer { close(master) }
        let quiet = try run(["run", "binary-trees", "6", "--progress-after", "0", "--no-progress"], stderrPath: slave)
        XCTAssertEqual(quiet.status, 0)
        XCTAssertFalse(drain(master).contains("tricolor: run"))

        let file = try run(["run", "binary-trees", "6", "--progress-after", "0"])
        XCTAssertEqual(file.status, 0, file.stderr)
        XCTAssertFalse(file.stderr.contains("tricolor: run"), file.stderr.debugDescription)
        XCTAssertFalse(file.stderr.contains("\r"), file.stderr.debugDescription)
    }

    /// `--help` of the command and of `run` list the exit statuses, as the README does.
    func testHelpListsExitStatuses() throws {
        for args in [["--help"], ["run", "--help"]] {
            let r = try run(args)
            XCTAssertEqual(r.status, 0, r.stderr)
            let text = r.stdoutText.replacingOccurrences(of: "\n", with: " ").split(separator: " ").joined(separator: " ")
            for status in ["0 success", "1 any other failure", "2 a runtime fatal error", "64 invalid command line",
                           "73 an output file cannot be opened", "74 writing an output file", "78 invalid GOGC"] {
                XCTAssertTrue(text.contains(status), "\(args): no '\(status)' in \(text)")
            }
        }
    }
}
