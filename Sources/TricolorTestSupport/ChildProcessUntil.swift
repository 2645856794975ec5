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
    forkChild(timeout: timeout, until: marker, body)
}
