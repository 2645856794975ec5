import Glibc
import XCTest

// A watchdog for tests: a hang in the runtime (a stop-the-world that never completes)
// ends the run with a message naming the test instead of stalling CI. It never decides
// a test's outcome by time: it only bounds a run that has already failed to finish.

/// Ends the test process if a test runs longer than `seconds`: a hang in the runtime
/// (a stop-the-world that never completes, say) then fails the run with a message
/// instead of hanging it. The last "Test Case … started" line names the culprit.
public func armWatchdog(_ seconds: UInt32 = 120) {
    signal(SIGALRM) { _ in
        fflush(nil)   // keep XCTest's buffered lines (not async-signal-safe; the process is ending anyway)
        let msg: StaticString = "\nwatchdog: a test ran for too long (hang?); see the last 'Test Case ... started' line\n"
        _ = write(2, msg.utf8Start, msg.utf8CodeUnitCount)
        _exit(14)
    }
    alarm(seconds)
}

public func disarmWatchdog() { alarm(0) }


/// A test case whose every test runs under the watchdog (a hang fails the run with a
/// message instead of stalling CI).
open class WatchdogTestCase: XCTestCase {
    override open func setUp() {
        super.setUp()
        armWatchdog()
    }

    override open func tearDown() {
        disarmWatchdog()
        super.tearDown()
    }
}
