import Glibc
import XCTest

// Running a piece of a test in a forked child process: for behaviour whose failure mode
// is a crash, a trap or a hang (runtime fatal errors, misuse traps in checked mode), so
// that it fails one test instead of the whole run, and so that a test can assert the
// exact fatal message.

/// What a forked child did: its exit status (nil if a signal killed it) and its stderr.
public struct ChildResult {
    public var exitStatus: Int32?
    public var signal: Int32?
    public var stderr: String
}

/// Run `body` in a forked child with its stderr (and stdout) captured. The child exits with status 0
/// when `body` returns; a watchdog alarm ends it after `timeout` seconds so a hang cannot
/// hang the suite. `body` must not use XCTest assertions (they would be recorded in the
/// child); see `checkInChild`.
public func runInChild(timeout: UInt32 = 60, _ body: () -> Void) -> ChildResult {
    forkChild(timeout: timeout, until: nil, body).result
}

/// The fork, the capture and the wait behind `runInChild` and `runInChild(until:)`:
/// with a `marker`, the parent stops reading once the marker appears and kills the child
/// (SIGKILL); `sawMarker` says whether it appeared.
func forkChild(timeout: UInt32, until marker: String?, _ body: () -> Void) -> (result: ChildResult, sawMarker: Bool) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return (ChildResult(exitStatus: nil, signal: nil, stderr: "pipe failed: \(errno)"), false) }
    fflush(nil)   // nothing buffered is written twice (the child leaves with _exit anyway)
    let pid = fork()
    if pid == 0 {
        close(fds[0])
        dup2(fds[1], 1)   // a crash report may go to stdout: keep it out of the test log
        dup2(fds[1], 2)
        close(fds[1])
        alarm(timeout)
        body()
        _exit(0)
    }
    close(fds[1])
    guard pid > 0 else {
        close(fds[0])
        return (ChildResult(exitStatus: nil, signal: nil, stderr: "fork failed: \(errno)"), false)
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    let needle = marker.map { Array($0.utf8) }
    var saw = false
    while !saw {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n > 0 {
            output.append(contentsOf: buffer[0..<n])
            if let needle { saw = contains(output, needle) }
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            break
        }
    }
    if saw { kill(pid, SIGKILL) }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let sig = status & 0x7f
    return (ChildResult(exitStatus: sig == 0 ? (status >> 8) & 0xff : nil,
                        signal: sig == 0 ? nil : sig,
                        stderr: String(decoding: output, as: UTF8.self)), saw)
}

private func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
    if needle.isEmpty { return true }
    if hay.count < needle.count { return false }
    for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
        if hay[i..<(i + needle.count)].elementsEqual(needle) { return true }
    }
    return false
}

/// Expectations checked in a child process, reported to the parent through stderr.
public final class ChildChecks {
    public init() {}
    public var failures: [String] = []
    public func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { failures.append(message()) }
    }
    public func expectEqual<T: Equatable>(_ a: T, _ b: T, _ message: @autoclosure () -> String = "") {
        if a != b { failures.append("\(a) != \(b) \(message())") }
    }
}

/// Run `body` in a forked child and fail if any of its expectations failed or if it
/// crashed, hung (`timeout`) or died of a fatal error. For tests whose failure mode
/// is a crash in the runtime: it then fails this test only, not the whole run.
public func checkInChild(timeout: UInt32 = 60, file: StaticString = #filePath, line: UInt = #line, _ body: (ChildChecks) -> Void) {
    let r = runInChild(timeout: timeout) {
        let checks = ChildChecks()
        body(checks)
        if !checks.failures.isEmpty {
            let text = checks.failures.map { "expectation failed: " + $0 }.joined(separator: "\n") + "\n"
            text.withCString { _ = write(2, $0, strlen($0)) }
            _exit(1)
        }
    }
    let how = r.signal.map { "was killed by signal \($0)" } ?? "exited with status \(r.exitStatus ?? -1)"
    XCTAssertEqual(r.exitStatus, 0, "the child \(how):\n\(r.stderr)", file: file, line: line)
}

/// Assert that `body`, run in a forked child, dies of `runtimeFatal`: exit status 2 and
/// `fatal error: …<substring>…` on stderr.
public func expectFatal(_ substring: String, file: StaticString = #filePath, line: UInt = #line, _ body: () -> Void) {
    let r = runInChild(body)
    let how = r.signal.map { "killed by signal \($0)" } ?? "exited with status \(r.exitStatus ?? -1)"
    XCTAssertEqual(r.exitStatus, 2, "expected exit status 2 (runtimeFatal); the child \(how). stderr: \(r.stderr)",
                   file: file, line: line)
    XCTAssertTrue(r.stderr.contains("fatal error: "), "no 'fatal error: ' on stderr: \(r.stderr)", file: file, line: line)
    XCTAssertTrue(r.stderr.contains(substring), "stderr does not mention \"\(substring)\": \(r.stderr)", file: file, line: line)
}
