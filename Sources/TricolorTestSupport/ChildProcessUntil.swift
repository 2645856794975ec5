import Glibc

// A child process that is expected to hang (a stop-the-world that never completes, by
// design): the parent reads its stderr until a marker appears, then kills it. Nothing
// is timed: the child is killed as soon as the marker is seen, and the alarm in the
// child only bounds a test that went wrong.

/// Run `body` in a forked child, capturing its stderr and stdout, until `marker` appears
/// in that output; then kill the child (SIGKILL) and return what it wrote, with
/// `sawMarker` true. If the child ends first, or its alarm (`timeout` seconds) ends it,
/// `sawMarker` is false. The child must not use XCTest assertions.
public func runInChild(until marker: String, timeout: UInt32 = 120, _ body: () -> Void) -> (result: ChildResult, sawMarker: Bool) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return (ChildResult(exitStatus: nil, signal: nil, stderr: "pipe failed: \(errno)"), false) }
    fflush(nil)
    let pid = fork()
    if pid == 0 {
        close(fds[0])
        dup2(fds[1], 1)
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
    let needle = Array(marker.utf8)
    var saw = false
    while !saw {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n > 0 {
            output.append(contentsOf: buffer[0..<n])
            saw = contains(output, needle)
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
        if Array(hay[i..<(i + needle.count)]) == needle { return true }
    }
    return false
}
