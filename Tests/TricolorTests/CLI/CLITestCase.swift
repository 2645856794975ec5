import Foundation
import Glibc
import XCTest

/// What every test of the `tricolor` executable needs: a fresh working directory, the
/// executable built next to the test bundle, and `run`, which runs it as a child process
/// with the GC variables cleared, its output in files, under a watchdog.
class CLITestCase: XCTestCase {
    struct Result {
        var status: Int32?         // nil: killed by a signal
        var stdout: [UInt8]
        var stderr: String
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        /// The workload ran: its summary line was printed (on stdout or, with '-', stderr).
        var workloadRan: Bool { stdoutText.contains("# wall_s=") || stderr.contains("# wall_s=") }
    }

    /// The `tricolor` built next to this test bundle (TRICOLOR_CLI overrides).
    var executable: URL {
        get throws {
            if let p = ProcessInfo.processInfo.environment["TRICOLOR_CLI"] { return URL(fileURLWithPath: p) }
            let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            // …/debug/TricolorPackageTests.xctest, or a bundle directory on other layouts.
            for dir in [me.deletingLastPathComponent(), me.deletingLastPathComponent().deletingLastPathComponent()] {
                let candidate = dir.appendingPathComponent("tricolor")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            }
            // A failure, not a skip: `swift test` builds every target, so this is a real problem.
            throw MissingExecutable(description: "no tricolor executable next to \(me.path); build it (swift build) or set TRICOLOR_CLI")
        }
    }

    struct MissingExecutable: Error, CustomStringConvertible { let description: String }

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tricolor-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if let directory { try? FileManager.default.removeItem(at: directory) }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Runs `tricolor args` in `directory` with the GC variables cleared (then `env` set),
    /// stdout into a file (or `stdoutPath`), stderr into a file (or `stderrPath`, then
    /// `Result.stderr` is empty). With `shellSetup`, under /bin/sh after those commands
    /// (`ulimit`, `trap`), which then exec it.
    func run(_ args: [String], env: [String: String] = [:], stdoutPath: String? = nil, stderrPath: String? = nil,
             shellSetup: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> Result {
        let p = Process()
        if let shellSetup {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "\(shellSetup) && exec \"$0\" \"$@\"", try executable.path] + args
        } else {
            p.executableURL = try executable
            p.arguments = args
        }
        p.currentDirectoryURL = directory
        var environment = ProcessInfo.processInfo.environment
        for k in ["GOGC", "GOMEMLIMIT", "GOMAXPROCS", "GODEBUG"] { environment[k] = nil }
        environment.merge(env) { $1 }
        p.environment = environment
        let outPath = path("child.stdout"), errPath = path("child.stderr")
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        guard let out = FileHandle(forWritingAtPath: stdoutPath ?? outPath),
              let err = FileHandle(forWritingAtPath: stderrPath ?? errPath) else {
            XCTFail("cannot open the child's output files", file: file, line: line)
            return Result(status: nil, stdout: [], stderr: "")
        }
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // Watchdog for a hang (e.g. blocking on a FIFO): generous, never a measurement.
        let pid = p.processIdentifier
        let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 600, execute: watchdog)
        p.waitUntilExit()
        watchdog.cancel()
        try out.close()
        try err.close()
        let stdout = stdoutPath == nil ? (FileManager.default.contents(atPath: outPath).map { [UInt8]($0) } ?? []) : []
        let stderr = String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self)
        let status: Int32? = p.terminationReason == .exit ? p.terminationStatus : nil
        if status == nil {
            XCTFail("tricolor \(args.joined(separator: " ")) was killed by signal \(p.terminationStatus) (hung?):\n\(stderr)", file: file, line: line)
        }
        return Result(status: status, stdout: stdout, stderr: stderr)
    }
}
