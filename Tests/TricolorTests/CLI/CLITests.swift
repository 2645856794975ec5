import Foundation
import Glibc
import XCTest

/// The `tricolor` executable, run as a child process with a tiny workload
/// (`run binary-trees 4`): how it treats output paths (symlinks, FIFOs, devices, missing
/// directories, full devices), its exit statuses, and its wording for invalid values.
///
/// Nothing here is timed. A watchdog only keeps a hung child from hanging the suite.
final class CLITests: CLITestCase {
    /// `tricolor run` exit statuses (see ExitStatus in Sources/tricolor/OutputFile.swift).
    let usage: Int32 = 64, cannotCreate: Int32 = 73, ioError: Int32 = 74, config: Int32 = 78

    func fileType(_ path: String, followingLinks: Bool = false) -> mode_t? {
        var st = stat()
        let rc = followingLinks ? stat(path, &st) : lstat(path, &st)
        return rc == 0 ? st.st_mode & S_IFMT : nil
    }

    func isGzip(_ path: String) -> Bool {
        guard let d = FileManager.default.contents(atPath: path), d.count > 2 else { return false }
        return d[d.startIndex] == 0x1f && d[d.startIndex + 1] == 0x8b
    }

    func assertRefusedBeforeTheWorkload(_ r: Result, status: Int32, naming target: String, reason: String,
                                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(target), "should name \(target): \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(reason), "should say '\(reason)': \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Usage:"), "no usage line for a file error: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.workloadRan, "the workload must not run: \(r.stdoutText)\(r.stderr)", file: file, line: line)
    }

    // MARK: output paths

    /// A symlink is written through, like `> link`: the target gets the profile and the
    /// link stays a link.
    func testProfilesAreWrittenThroughSymlinks() throws {
        for option in ["--heap-profile", "--mutex-profile"] {
            let target = path("target\(option).pb.gz"), link = path("link\(option).pb.gz")
            _ = FileManager.default.createFile(atPath: target, contents: Data("old".utf8))
            XCTAssertEqual(symlink(target, link), 0)
            let r = try run(["run", "binary-trees", "4", option, link])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(fileType(link), S_IFLNK, "\(option): the symlink must stay a symlink")
            XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), target)
            XCTAssertEqual(fileType(target), S_IFREG)
            XCTAssertTrue(isGzip(target), "\(option): the target should hold the gzipped profile")
        }
    }

    /// A dangling symlink creates its target, as a shell redirect does.
    func testDanglingSymlinkCreatesItsTarget() throws {
        let target = path("new.pb.gz"), link = path("dangling.pb.gz")
        XCTAssertEqual(symlink(target, link), 0)
        let r = try run(["run", "binary-trees", "4", "--heap-profile", link])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(fileType(link), S_IFLNK)
        XCTAssertTrue(isGzip(target))
    }

    /// A FIFO with no reader is refused at once (not blocked on, not replaced).
    func testFIFOIsRefusedWithoutHanging() throws {
        for option in ["--heap-profile", "--mutex-profile"] {
            let fifo = path("fifo\(option)")
            XCTAssertEqual(mkfifo(fifo, 0o644), 0)
            let r = try run(["run", "binary-trees", "4", option, fifo])
            assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: fifo, reason: "not a regular file")
            XCTAssertEqual(fileType(fifo), S_IFIFO, "the FIFO must still be a FIFO")
        }
    }

    /// A FIFO through a symlink, and a FIFO in --atomic-output mode, are refused too.
    func testFIFOBehindSymlinkAndInAtomicModeIsRefused() throws {
        let fifo = path("fifo"), link = path("fifo-link")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        XCTAssertEqual(symlink(fifo, link), 0)
        for extra in [[], ["--atomic-output"]] {
            let r = try run(["run", "binary-trees", "4", "--heap-profile", link] + extra)
            assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: link, reason: "not a regular file")
            XCTAssertEqual(fileType(fifo), S_IFIFO)
            XCTAssertEqual(fileType(link), S_IFLNK)
        }
    }

    /// A character device (/dev/full) is refused and left a character device, even as root.
    func testCharacterDeviceIsRefused() throws {
        guard fileType("/dev/full") == S_IFCHR else { throw XCTSkip("no /dev/full") }
        var before = stat()
        XCTAssertEqual(stat("/dev/full", &before), 0)
        for option in ["--heap-profile", "--mutex-profile"] {
            for extra in [[], ["--atomic-output"]] {
                let r = try run(["run", "binary-trees", "4", option, "/dev/full"] + extra)
                assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: "/dev/full", reason: "not a regular file")
                var after = stat()
                XCTAssertEqual(lstat("/dev/full", &after), 0)
                XCTAssertEqual(after.st_mode & S_IFMT, S_IFCHR, "/dev/full must still be a character device")
                XCTAssertEqual(after.st_rdev, before.st_rdev)
                if after.st_mode & S_IFMT != S_IFCHR && geteuid() == 0 {
                    // A regression replaced the machine's /dev/full (as root): put it back.
                    unlink("/dev/full")
                    XCTAssertEqual(mknod("/dev/full", S_IFCHR | (before.st_mode & 0o7777), before.st_rdev), 0, "could not restore /dev/full")
                    chmod("/dev/full", before.st_mode & 0o7777)
                }
            }
        }
    }

    func testDirectoryIsRefused() throws {
        let r = try run(["run", "binary-trees", "4", "--heap-profile", directory.path])
        assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: directory.path, reason: "directory")
    }

    /// A path in a missing directory fails before the workload, with the errno text and
    /// no usage line.
    func testUnwritablePathFailsBeforeTheWorkload() throws {
        let missing = "/nonexistent-dir-\(UUID().uuidString)/x.pb.gz"
        for option in ["--heap-profile", "--mutex-profile"] {
            for extra in [[], ["--atomic-output"]] {
                let r = try run(["run", "binary-trees", "4", option, missing] + extra)
                assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: missing, reason: String(cString: strerror(ENOENT)))
            }
        }
    }

    /// When one output cannot be opened, the other is left as it was: an existing file
    /// keeps its content, a file that did not exist is not left behind.
    func testOtherOutputsAreUntouchedWhenOneFails() throws {
        let existing = path("existing.pb.gz"), fresh = path("fresh.pb.gz")
        _ = FileManager.default.createFile(atPath: existing, contents: Data("keep".utf8))
        let missing = "/nonexistent-dir-\(UUID().uuidString)/m.pb.gz"
        for out in [existing, fresh] {
            let r = try run(["run", "binary-trees", "4", "--heap-profile", out, "--mutex-profile", missing])
            assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: missing, reason: String(cString: strerror(ENOENT)))
        }
        XCTAssertEqual(FileManager.default.contents(atPath: existing), Data("keep".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))
    }

    func testSameFileForBothProfilesIsRefused() throws {
        let r = try run(["run", "binary-trees", "4", "--heap-profile", path("p.pb.gz"), "--mutex-profile", "./p.pb.gz"])
        XCTAssertEqual(r.status, usage, r.stderr)
        XCTAssertTrue(r.stderr.contains("same file"), r.stderr)
        XCTAssertFalse(r.workloadRan)
    }

    /// '-' is standard output: the profile goes there, the text output to stderr.
    func testProfileOnStandardOutput() throws {
        let r = try run(["run", "binary-trees", "4", "--heap-profile", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Array(r.stdout.prefix(2)), [0x1f, 0x8b], "stdout should be the gzipped profile only")
        XCTAssertTrue(r.stderr.contains("# wall_s="), "text output goes to stderr: \(r.stderr)")
    }

    /// A failing write (ENOSPC on /dev/full as standard output) is reported with the
    /// errno text and its own status, not ignored.
    func testWriteFailureIsReported() throws {
        guard fileType("/dev/full") == S_IFCHR else { throw XCTSkip("no /dev/full") }
        let r = try run(["run", "binary-trees", "4", "--heap-profile", "-"], stdoutPath: "/dev/full")
        XCTAssertEqual(r.status, ioError, r.stderr)
        XCTAssertTrue(r.stderr.contains(String(cString: strerror(ENOSPC))), r.stderr)
        XCTAssertTrue(r.stderr.contains("--heap-profile"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Usage:"), r.stderr)
    }

    /// Plain text on a full standard output is reported too.
    func testStandardOutputWriteFailureIsReported() throws {
        guard fileType("/dev/full") == S_IFCHR else { throw XCTSkip("no /dev/full") }
        let r = try run(["run", "binary-trees", "4"], stdoutPath: "/dev/full")
        XCTAssertEqual(r.status, ioError, r.stderr)
        XCTAssertTrue(r.stderr.contains(String(cString: strerror(ENOSPC))), r.stderr)
        // More text than one stdio buffer: the automatic flushes fail before the last one.
        let long = try run(["run", "leak", "2000", "--no-progress", "--alloc-state", "--alloc-path"], stdoutPath: "/dev/full")
        XCTAssertEqual(long.status, ioError, long.stderr)
        XCTAssertTrue(long.stderr.contains("cannot write standard output"), long.stderr)
    }

    /// --atomic-output replaces the symlink's target (not the link) and leaves no
    /// temporary file; an existing file keeps its mode.
    func testAtomicOutputWritesThroughSymlinkAndLeavesNoTemporary() throws {
        let target = path("atomic-target.pb.gz"), link = path("atomic-link.pb.gz")
        _ = FileManager.default.createFile(atPath: target, contents: Data("old".utf8))
        XCTAssertEqual(chmod(target, 0o640), 0)
        XCTAssertEqual(symlink(target, link), 0)
        let r = try run(["run", "binary-trees", "4", "--atomic-output", "--heap-profile", link, "--mutex-profile", path("m.pb.gz")])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(fileType(link), S_IFLNK)
        XCTAssertTrue(isGzip(target))
        XCTAssertTrue(isGzip(path("m.pb.gz")))
        var st = stat()
        XCTAssertEqual(stat(target, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o640)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [])
    }

    /// --heap-dump is an output file like the profiles: a path that cannot be written
    /// (a missing directory, a FIFO with no reader, a directory) fails before the
    /// workload, with EX_CANTCREAT, and a FIFO is never blocked on.
    func testHeapDumpPathIsCheckedBeforeTheWorkload() throws {
        let missing = "/nonexistent-dir-\(UUID().uuidString)/x.tchd"
        let r = try run(["run", "binary-trees", "4", "--heap-dump", missing])
        assertRefusedBeforeTheWorkload(r, status: cannotCreate, naming: missing, reason: String(cString: strerror(ENOENT)))
        XCTAssertTrue(r.stderr.contains("--heap-dump"), r.stderr)
        let fifo = path("dump-fifo")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let f = try run(["run", "binary-trees", "4", "--heap-dump", fifo])
        assertRefusedBeforeTheWorkload(f, status: cannotCreate, naming: fifo, reason: "not a regular file")
        XCTAssertEqual(fileType(fifo), S_IFIFO)
        let d = try run(["run", "binary-trees", "4", "--heap-dump", directory.path])
        assertRefusedBeforeTheWorkload(d, status: cannotCreate, naming: directory.path, reason: "directory")
        // Another output that cannot be opened leaves an existing dump as it was.
        let existing = path("existing.tchd")
        _ = FileManager.default.createFile(atPath: existing, contents: Data("keep".utf8))
        let o = try run(["run", "binary-trees", "4", "--heap-dump", existing, "--mutex-profile", missing])
        assertRefusedBeforeTheWorkload(o, status: cannotCreate, naming: missing, reason: String(cString: strerror(ENOENT)))
        XCTAssertEqual(FileManager.default.contents(atPath: existing), Data("keep".utf8))
    }

    /// Runs `tricolor args` under /bin/sh with a file-size limit of `blocks` (ulimit -f)
    /// and SIGXFSZ ignored, so a write past the limit fails with EFBIG: a write failure
    /// that happens the same way every time.
    func runWithFileSizeLimit(_ blocks: Int, _ args: [String]) throws -> Result {
        try run(args, shellSetup: "ulimit -f \(blocks) && trap '' XFSZ")
    }

    /// A heap dump whose write fails (EFBIG past a file-size limit) leaves the existing
    /// file as it was and no temporary beside it, and says why with EX_IOERR; the same
    /// for `Heap.writeHeapDump(to:)` (through `bench heapdump --dump-path`).
    func testFailedHeapDumpLeavesTheExistingFile() throws {
        let existing = path("existing.tchd")
        for args in [["run", "leak", "20000", "--no-progress", "--heap-dump", existing],
                     ["bench", "heapdump", "--objects", "20000", "--runs", "1", "--dump-path", existing]] {
            _ = FileManager.default.createFile(atPath: existing, contents: Data("keep".utf8))
            // 64 blocks (32 or 64 KiB): the text output fits, a dump of 20000 objects does not.
            let r = try runWithFileSizeLimit(64, args)
            XCTAssertNotEqual(r.status, 0, "\(args): \(r.stderr)")
            if args[0] == "run" {
                XCTAssertEqual(r.status, ioError, r.stderr)
                XCTAssertTrue(r.stderr.contains("--heap-dump"), r.stderr)
                XCTAssertTrue(r.workloadRan, r.stdoutText)
            }
            XCTAssertTrue(r.stderr.contains(String(cString: strerror(EFBIG))), "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(existing), "\(args): \(r.stderr)")
            XCTAssertEqual(FileManager.default.contents(atPath: existing), Data("keep".utf8), "\(args)")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }
            XCTAssertEqual(leftovers, [], "\(args)")
        }
    }

    /// `Heap.writeHeapDump(to:)` (through `bench heapdump --dump-path`) refuses a FIFO
    /// with no reader instead of blocking on it.
    func testHeapDumpToAFIFOIsRefusedWithoutHanging() throws {
        let fifo = path("bench-fifo")
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let r = try run(["bench", "heapdump", "--objects", "1000", "--runs", "1", "--dump-path", fifo])
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains(fifo) && r.stderr.contains("not a regular file"), r.stderr)
        XCTAssertEqual(fileType(fifo), S_IFIFO)
    }

    /// Only one output may be standard output, and not beside --json.
    func testHeapDumpOnStandardOutputExcludesOtherStandardOutput() throws {
        for extra in [["--heap-profile", "-"], ["--mutex-profile", "-"], ["--json"]] {
            let r = try run(["run", "binary-trees", "4", "--heap-dump", "-"] + extra)
            XCTAssertEqual(r.status, usage, "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("standard output"), r.stderr)
            XCTAssertFalse(r.workloadRan)
        }
        let r = try run(["run", "binary-trees", "4", "--heap-dump", "-"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdoutText.hasPrefix("tricolor heapdump\n"), "stdout should be the dump only")
        XCTAssertTrue(r.stderr.contains("# wall_s=") && r.stderr.contains("# heap dump: -:"), r.stderr)
    }

    /// `sizeclasses` on a full standard output fails with EX_IOERR and says so.
    func testSizeClassesReportsAFullStandardOutput() throws {
        guard fileType("/dev/full") == S_IFCHR else { throw XCTSkip("no /dev/full") }
        let r = try run(["sizeclasses"], stdoutPath: "/dev/full")
        XCTAssertEqual(r.status, ioError, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot write standard output"), r.stderr)
    }

    // MARK: wording and statuses

    /// A negative value is reported as an invalid value, naming option and value, not as
    /// "Missing value for …".
    func testNegativeValuesAreReportedAsInvalid() throws {
        let cases: [[String]] = [
            ["run", "binary-trees", "4", "--threads", "-5"],
            ["run", "binary-trees", "4", "--memprofilerate", "-1"],
            ["run", "binary-trees", "4", "--mutexprofilefraction", "-1"],
            ["run", "liveheap", "--live-mib", "-1"],
            ["run", "liveheap", "--seconds", "-1"],
            ["bench", "alloc", "--runs", "-1"],
            ["bench", "alloc", "--objects", "-1"],
            ["bench", "alloc", "--memprofilerate", "-1"],
        ]
        for args in cases {
            let r = try run(args)
            let option = args[args.count - 2], value = args[args.count - 1]
            XCTAssertEqual(r.status, usage, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("invalid"), "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("'\(value)'"), "\(args): should name the value: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(option), "\(args): should name the option: \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Missing value"), "\(args): \(r.stderr)")
            XCTAssertFalse(r.workloadRan)
        }
        let r = try run(["run", "binary-trees", "4", "--threads", "-5"])
        XCTAssertTrue(r.stderr.contains("must be between 1 and 256"), r.stderr)
    }

    /// Out-of-range and non-numeric values, and the size argument, say what is allowed.
    func testRangeMessages() throws {
        let cases: [([String], String)] = [
            (["run", "binary-trees", "4", "--threads", "257"], "must be between 1 and 256"),
            (["run", "binary-trees", "4", "--threads", "99999999999999999999"], "must be between 1 and 256"),
            (["run", "binary-trees", "4", "--threads", "abc"], "expected an integer"),
            (["run", "liveheap", "--seconds", "nan"], "expected a number"),
            (["run", "liveheap", "--seconds", "0"], "more than 0"),
            (["run", "binary-trees", "-5"], "must be between 0 and 30"),
            (["run", "binary-trees", "31"], "must be between 0 and 30"),
            (["run", "leak", "0"], "must be between 1 and 100000000"),
            (["run", "binary-trees", "x"], "expected an integer"),
        ]
        for (args, message) in cases {
            let r = try run(args)
            XCTAssertEqual(r.status, usage, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): expected '\(message)': \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("'\(args.last!)'"), "\(args): should name the value: \(r.stderr)")
            XCTAssertFalse(r.workloadRan)
        }
    }

    /// A malformed environment variable stops the run with EX_CONFIG, naming it, no usage.
    func testEnvironmentErrors() throws {
        for (k, v) in [("GOGC", "abc"), ("GOMEMLIMIT", "99999999TiB"), ("GOMAXPROCS", "0"), ("GODEBUG", "gctrace=x")] {
            let r = try run(["run", "binary-trees", "4"], env: [k: v])
            XCTAssertEqual(r.status, config, "\(k)=\(v): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(k) && r.stderr.contains(v), "\(k)=\(v): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Usage:"), r.stderr)
            XCTAssertFalse(r.workloadRan)
        }
        // Empty means unset, as in Go.
        let r = try run(["run", "binary-trees", "4"], env: ["GOGC": "", "GOMEMLIMIT": "", "GOMAXPROCS": ""])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.workloadRan)
    }
}
