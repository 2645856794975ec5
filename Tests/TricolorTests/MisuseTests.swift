import Glibc
import XCTest
@testable import Tricolor
import TricolorWorkloads

/// What a forked child did: its exit status (nil if a signal killed it) and its stderr.
struct ChildResult {
    var exitStatus: Int32?
    var signal: Int32?
    var stderr: String
}

/// Run `body` in a forked child with its stderr (and stdout) captured. The child exits with status 0
/// when `body` returns; a watchdog alarm ends it after `timeout` seconds so a hang cannot
/// hang the suite. `body` must not use XCTest assertions (they would be recorded in the
/// child); see `checkInChild`.
func runInChild(timeout: UInt32 = 60, _ body: () -> Void) -> ChildResult {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return ChildResult(exitStatus: nil, signal: nil, stderr: "pipe failed: \(errno)") }
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
        return ChildResult(exitStatus: nil, signal: nil, stderr: "fork failed: \(errno)")
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n > 0 {
            output.append(contentsOf: buffer[0..<n])
        } else if n < 0 && errno == EINTR {
            continue
        } else {
            break
        }
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let sig = status & 0x7f
    return ChildResult(exitStatus: sig == 0 ? (status >> 8) & 0xff : nil,
                       signal: sig == 0 ? nil : sig,
                       stderr: String(decoding: output, as: UTF8.self))
}

/// Expectations checked in a child process, reported to the parent through stderr.
final class ChildChecks {
    var failures: [String] = []
    func expect(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { failures.append(message()) }
    }
    func expectEqual<T: Equatable>(_ a: T, _ b: T, _ message: @autoclosure () -> String = "") {
        if a != b { failures.append("\(a) != \(b) \(message())") }
    }
}

/// Run `body` in a forked child and fail if any of its expectations failed or if it
/// crashed, hung (`timeout`) or died of a fatal error. For tests whose failure mode
/// is a crash in the runtime: it then fails this test only, not the whole run.
func checkInChild(timeout: UInt32 = 60, file: StaticString = #filePath, line: UInt = #line, _ body: (ChildChecks) -> Void) {
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
func expectFatal(_ substring: String, file: StaticString = #filePath, line: UInt = #line, _ body: () -> Void) {
    let r = runInChild(body)
    let how = r.signal.map { "killed by signal \($0)" } ?? "exited with status \(r.exitStatus ?? -1)"
    XCTAssertEqual(r.exitStatus, 2, "expected exit status 2 (runtimeFatal); the child \(how). stderr: \(r.stderr)",
                   file: file, line: line)
    XCTAssertTrue(r.stderr.contains("fatal error: "), "no 'fatal error: ' on stderr: \(r.stderr)", file: file, line: line)
    XCTAssertTrue(r.stderr.contains(substring), "stderr does not mention \"\(substring)\": \(r.stderr)", file: file, line: line)
}

/// Ends the test process if a test runs longer than `seconds`: a hang in the runtime
/// (a stop-the-world that never completes, say) then fails the run with a message
/// instead of hanging it. The last "Test Case … started" line names the culprit.
func armWatchdog(_ seconds: UInt32 = 120) {
    signal(SIGALRM) { _ in
        fflush(nil)   // keep XCTest's buffered lines (not async-signal-safe; the process is ending anyway)
        let msg: StaticString = "\nwatchdog: a test ran for too long (hang?); see the last 'Test Case ... started' line\n"
        _ = write(2, msg.utf8Start, msg.utf8CodeUnitCount)
        _exit(14)
    }
    alarm(seconds)
}

func disarmWatchdog() { alarm(0) }

/// Hands a non-Sendable value (a Mutator, a Ref) to another thread on purpose.
struct UncheckedSendable<T>: @unchecked Sendable {
    let value: T
}

/// A test case whose every test runs under the watchdog (a hang fails the run with a
/// message instead of stalling CI).
class WatchdogTestCase: XCTestCase {
    override func setUp() {
        super.setUp()
        armWatchdog()
    }

    override func tearDown() {
        disarmWatchdog()
        super.tearDown()
    }
}

final class MisuseTests: WatchdogTestCase {

    /// A checked heap and a 4-word type: pointer words 0 and 1, data words 2 and 3.
    private func checkedHeap(_ body: (Heap, ObjectType, Mutator) -> Void) {
        let heap = try! Heap(configuration: Configuration(checked: true))
        let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
        heap.withMutator { m in body(heap, node, m) }
    }

    func testExpectFatalHelperSeesStatusAndMessage() {
        // The helper itself: a plain exit is not a fatal error, runtimeFatal is.
        let ok = runInChild {}
        XCTAssertEqual(ok.exitStatus, 0)
        XCTAssertEqual(ok.stderr, "")
        expectFatal("the message") { runtimeFatal("the message") }
    }

    // MARK: bad pointers

    func testInteriorPointerStoreTraps() {
        expectFatal("points inside an object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocate(node)
                    m.store(f[0], 0, Ref(address: f[1].address + 8))
                }
            }
        }
    }

    func testInteriorPointerInFrameSlotTraps() {
        expectFatal("points inside an object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = Ref(address: f[0].address + 16)
                }
            }
        }
    }

    /// A stale Ref to an object freed by a collection, whose span lives on because a
    /// neighbour survives: storing it is a use after free.
    func testStoringAFreedObjectTraps() {
        expectFatal("use after free") {
            checkedHeap { heap, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(node)    // same span, never rooted
                    heap.collect()
                    m.store(f[0], 0, dead)
                }
            }
        }
    }

    func testUsingAFreedObjectTraps() {
        expectFatal("use after free") {
            checkedHeap { heap, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(node)
                    heap.collect()
                    _ = m.loadWord(dead, 2)
                }
            }
        }
    }

    /// When the freed object's whole span went back to the page heap, the address is no
    /// longer a heap object at all.
    func testStoringAnObjectWhoseSpanWasFreedTraps() {
        expectFatal("invalid pointer") {
            checkedHeap { heap, node, m in
                let big = try! heap.register(TypeLayout(name: "misuse.Big", size: 2048, pointerWords: [0]))
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    let dead = m.allocate(big)     // alone in its span
                    heap.collect()
                    m.store(f[0], 0, dead)
                }
            }
        }
    }

    func testForeignPointerTraps() {
        expectFatal("not a live heap object") {
            checkedHeap { _, node, m in
                let foreign = UnsafeMutablePointer<UInt>.allocate(capacity: 4)
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    m.store(f[0], 0, Ref(address: UInt(bitPattern: foreign)))
                }
            }
        }
    }

    /// A foreign pointer written behind the runtime's back is found by the collector.
    func testCollectorTrapsOnBadPointerInCheckedMode() {
        expectFatal("bad pointer") {
            checkedHeap { heap, node, m in
                let foreign = UnsafeMutablePointer<UInt>.allocate(capacity: 4)
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    f[0].rawPointer.storeBytes(of: UInt(bitPattern: foreign), as: UInt.self)
                    heap.collect()
                }
            }
        }
    }

    // MARK: wrong kind of word

    func testPointerStoreIntoNonPointerWordTraps() {
        expectFatal("non-pointer word") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocate(node)
                    m.store(f[0], 2, f[1])
                }
            }
        }
    }

    func testPointerStoreIntoPointerFreeObjectTraps() {
        expectFatal("holds no pointers") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocateBytes(64)
                    f[1] = m.allocate(node)
                    m.store(f[0], 0, f[1])
                }
            }
        }
    }

    func testIntegerStoreIntoPointerWordTraps() {
        expectFatal("pointer word") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    m.storeWord(f[0], 1, 42)
                }
            }
        }
    }

    func testWordOutsideObjectTraps() {
        expectFatal("outside object") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    _ = m.loadWord(f[0], 4)
                }
            }
        }
    }

    // MARK: mutator misuse

    func testUseAfterDetachTraps() {
        expectFatal("after detach") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            var saved: Mutator? = nil
            heap.withMutator { m in
                _ = m.allocate(node)
                saved = m
            }
            _ = saved!.allocate(node)
        }
        expectFatal("after detach") {
            let heap = try! Heap(configuration: Configuration(checked: true))
            var saved: Mutator? = nil
            heap.withMutator { m in saved = m }
            saved!.withFrame(slots: 1) { _ in }
        }
    }

    func testUseFromAnotherThreadTraps() {
        expectFatal("another thread") {
            checkedHeap { _, node, m in
                let obj = m.allocate(node)
                let box = UncheckedSendable(value: (m, obj))
                runThreads(1) { _ in
                    let (m, obj) = box.value
                    _ = m.loadWord(obj, 2)
                }
            }
        }
        expectFatal("another thread") {
            checkedHeap { _, _, m in
                let box = UncheckedSendable(value: m)
                runThreads(1) { _ in
                    box.value.withFrame(slots: 1) { _ in }
                }
            }
        }
    }

    /// DESIGN §3.7: "allocation off an attached thread traps with a message in checked
    /// mode". Allocation that hits the inlined fast path (a span of the class is already
    /// cached) must be checked too.
    func testAllocationFromAnotherThreadTraps() {
        expectFatal("another thread") {
            checkedHeap { _, node, m in
                _ = m.allocate(node)               // the owner caches a span of this class
                let box = UncheckedSendable(value: m)
                runThreads(1) { _ in
                    _ = box.value.allocate(node)   // from a thread that is not the owner
                }
            }
        }
    }

    func testFramesPoppedOutOfOrderTrap() {
        expectFatal("out of order") {
            checkedHeap { _, _, m in
                let f1 = m.pushFrame(slots: 1)
                _ = m.pushFrame(slots: 2)
                m.popFrame(f1)
            }
        }
    }

    func testFrameSlotOutOfRangeTraps() {
        expectFatal("out of range") {
            checkedHeap { _, node, m in
                m.withFrame(slots: 2) { f in f[2] = m.allocate(node) }
            }
        }
        expectFatal("out of range") {
            checkedHeap { _, _, m in
                m.withFrame(slots: 2) { f in _ = f[-1] }
            }
        }
    }

    func testAttachingTheSameThreadTwiceTraps() {
        expectFatal("already attached") {
            let heap = try! Heap()
            _ = heap.attach()
            _ = heap.attach()
        }
        expectFatal("already attached") {
            let a = try! Heap()
            let b = try! Heap()
            a.withMutator { _ in b.withMutator { _ in } }
        }
    }

    func testNegativeSizesTrap() {
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            heap.withMutator { m in _ = m.allocateBytes(-1) }
        }
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            heap.withMutator { m in _ = m.allocateArray(node, count: -3) }
        }
        expectFatal("allocation size out of range") {
            let heap = try! Heap()
            let node = try! heap.register(TypeLayout(name: "misuse.Node", size: 32, pointerWords: [0, 1]))
            heap.withMutator { m in _ = m.allocateArray(node, count: Int.max / 2) }
        }
    }

    // MARK: out of memory

    /// Go's fatal "out of memory" when the heap cannot grow: large objects, small
    /// objects (span refill fails), checked or not.
    func testOutOfMemoryIsFatal() {
        for checked in [false, true] {
            expectFatal("out of memory") {
                let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: checked, reservedAddressSpace: 64 << 20))
                heap.withMutator { m in
                    for _ in 0..<100 { _ = m.allocateBytes(4 << 20) }
                }
            }
            expectFatal("out of memory") {
                let heap = try! Heap(configuration: Configuration(gcPercent: nil, checked: checked, reservedAddressSpace: 64 << 20))
                let node = try! heap.register(TypeLayout(name: "misuse.Page", size: 1024, pointerWords: [0]))
                heap.withMutator { m in
                    for _ in 0..<200_000 { _ = m.allocate(node) }
                }
            }
        }
        // Live data cannot be collected: out of memory even with the collector on.
        expectFatal("out of memory") {
            let heap = try! Heap(configuration: Configuration(gcPercent: 100, reservedAddressSpace: 64 << 20))
            heap.withMutator { m in
                m.withFrame(slots: 100) { f in
                    for i in 0..<100 { f[i] = m.allocateBytes(1 << 20) }
                }
            }
        }
    }
}
