@_spi(Testing) @testable import Tricolor
import CTricolor
import Glibc
import Synchronization
import TricolorWorkloads
import XCTest

// Locks and stop-the-world (issue #12 part 3; Runtime/HeapMutex.swift and
// Runtime/StopTheWorldWatchdog.swift). The hang of the issue: a mutator allocates (here:
// collects) while it holds a Synchronization.Mutex that another mutator waits for, so
// the stop waits for a thread parked in the futex. The watchdog must say so; HeapMutex
// and Mutator.withLock must not hang. Each scenario runs in a child process; the hang
// is ended by the parent as soon as the watchdog's message appears, and every wait is
// bounded by the child's alarm. Nothing is timed.

/// Shared by the two threads of a scenario.
private final class Scenario: @unchecked Sendable {
    let syncLock = Mutex<Int>(0)
    let heapLock = HeapMutex(0)
    let flags = UnsafeMutablePointer<UInt>.allocate(capacity: 2)   // [held, waiting]
    init() { flags.initialize(repeating: 0, count: 2) }
    var held: Bool { tc_load_acquire(flags) != 0 }
    var waiting: Bool { tc_load_acquire(flags + 1) != 0 }
    func setHeld() { tc_store_release(flags, 1) }
    func setWaiting() { tc_store_release(flags + 1, 1) }
}

/// The lock holder: takes the lock (by `take`), waits (at safepoints) until the other
/// thread is about to wait for it, then collects, which stops the world.
private func holder(_ heap: Heap, _ s: Scenario, _ m: Mutator, take: (() -> Void) -> Void) {
    take {
        s.setHeld()
        while !s.waiting { m.safepoint() }
        heap.collect()
    }
}

/// The waiter: answers safepoints until the lock is held, then waits for it (by `take`).
@inline(never)
private func waiterThatWaitsForTheLockInTheWatchdogTest(_ s: Scenario, _ m: Mutator, take: () -> Void) {
    while !s.held { m.safepoint() }
    s.setWaiting()
    take()
}

final class LockHangTests: WatchdogTestCase {
    private func configuration(watchdogMs: Int?) -> Configuration {
        var c = Configuration(gcPercent: nil)
        c.markWorkers = 0
        c.stopTheWorldWatchdogMilliseconds = watchdogMs
        return c
    }

    /// The hang reproduced with Synchronization.Mutex: the watchdog names the waiting
    /// mutator (thread name and id, time since its last safepoint) and prints its stack,
    /// then keeps waiting (the parent kills the child once the message is out).
    func testWatchdogReportsAMutatorWaitingForAUserLock() {
        let (r, saw) = runInChild(until: "still waiting") {
            let heap = try! Heap(configuration: self.configuration(watchdogMs: 100))
            let s = Scenario()
            runThreads(2) { t in
                heap.withMutator { m in
                    if t == 0 {
                        holder(heap, s, m) { body in s.syncLock.withLock { _ in body() } }
                    } else {
                        _ = tc_set_thread_name("lock-waiter")
                        waiterThatWaitsForTheLockInTheWatchdogTest(s, m) { s.syncLock.withLock { $0 += 1 } }
                    }
                }
            }
        }
        XCTAssertTrue(saw, r.stderr)
        print("the watchdog's report, as the child printed it:\n\(r.stderr)")
        XCTAssertTrue(r.stderr.contains("tricolor: stop-the-world watchdog: the world has not stopped after "), r.stderr)
        XCTAssertTrue(r.stderr.contains("waiting for 1 mutator:"), r.stderr)
        XCTAssertTrue(r.stderr.contains("[lock-waiter]: running, "), r.stderr)
        XCTAssertTrue(r.stderr.contains("since it last answered a safepoint request"), r.stderr)
        // The waiter's own stack, printed by the waiter from the watchdog's signal.
        XCTAssertTrue(r.stderr.contains("waiterThatWaitsForTheLockInTheWatchdogTest"), r.stderr)
    }

    /// The same program with HeapMutex completes: the waiter waits in a blocking region.
    func testHeapMutexDoesNotHoldUpTheWorld() {
        checkInChild { c in
            let heap = try! Heap(configuration: self.configuration(watchdogMs: nil))
            let s = Scenario()
            runThreads(2) { t in
                heap.withMutator { m in
                    if t == 0 {
                        holder(heap, s, m) { body in s.heapLock.withLock(m) { _ in body() } }
                    } else {
                        waiterThatWaitsForTheLockInTheWatchdogTest(s, m) { m.withLock(s.heapLock) { $0 += 1 } }
                    }
                }
            }
            c.expectEqual(s.heapLock.withLockUnattached { $0 }, 1)
            c.expectEqual(heap.memStats().numGC, 1)
        }
    }

    /// And Synchronization.Mutex through Mutator.withLock (polling in a blocking region).
    func testMutatorWithLockOnSynchronizationMutexDoesNotHoldUpTheWorld() {
        checkInChild { c in
            let heap = try! Heap(configuration: self.configuration(watchdogMs: nil))
            let s = Scenario()
            runThreads(2) { t in
                heap.withMutator { m in
                    if t == 0 {
                        holder(heap, s, m) { body in m.withLock(s.syncLock) { _ in body() } }
                    } else {
                        waiterThatWaitsForTheLockInTheWatchdogTest(s, m) { m.withLock(s.syncLock) { $0 += 1 } }
                    }
                }
            }
            c.expectEqual(s.syncLock.withLock { $0 }, 1)
        }
    }

    /// HeapMutex under contention from several mutators that allocate while holding it.
    func testHeapMutexCountsUnderContentionWithCollections() {
        let heap = try! Heap(configuration: Configuration())
        let node = try! heap.register(TypeLayout(name: "lock.Node", size: 16, pointerWords: [0]))
        let counter = HeapMutex(0)
        runThreads(3) { _ in
            heap.withMutator { m in
                for i in 0..<2_000 {
                    m.withLock(counter) { n in
                        n += 1
                        _ = m.allocate(node)
                        if i % 500 == 0 { heap.collect() }
                    }
                }
            }
        }
        XCTAssertEqual(counter.withLockUnattached { $0 }, 6_000)
    }
}
