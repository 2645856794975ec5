@_spi(Testing) @testable import Tricolor
import TricolorTestSupport
import CTricolor
import Glibc
import XCTest

// When the closures of finalizers and cleanups are released, and with which locks held
// (Runtime/Finalizers.swift). A review found that a closure that had run stayed in the
// finalizer queue until a later enqueue trimmed it, on a sweeping thread holding the
// specials and queue locks, and that `setFinalizer(_, nil)` released the removed closure
// inside the specials lock: a deinit of something the closure captured that stops a
// cleanup then waits for a lock its own thread holds. Each test failed before the fix.

/// Stops `cleanup` when it is released (what a resource wrapper captured by a finalizer
/// might do in its deinit).
private final class StopsACleanupWhenReleased: @unchecked Sendable {
    let cleanup: Cleanup
    let released: LifeFlag
    init(_ cleanup: Cleanup, _ released: LifeFlag) { self.cleanup = cleanup; self.released = released }
    deinit {
        cleanup.stop()
        released.set(1)
    }
}

final class LifecycleReleaseTests: WatchdogTestCase {
    private static let layout = TypeLayout(name: "rel.Node", size: 16, pointerWords: [0])

    /// A cleanup's closure, and what it captured, are released once the cleanup has run,
    /// on the finalizer thread with no lock held: here the captured object's deinit
    /// stops another cleanup, which takes the specials lock.
    func testACleanupsClosureIsReleasedAfterItRunsWithNoLockHeld() {
        checkInChild(timeout: 60) { c in
            let heap = try! Heap(configuration: Configuration().precise)
            let node = try! heap.register(Self.layout)
            let released = LifeFlag(), ran = LifeFlag()
            let g = heap.makeGlobal()
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)            // dies: its cleanup runs
                    f[1] = m.allocate(node)            // lives: its cleanup is stopped
                    m.store(g, f[1])
                    let other = m.addCleanup(f[1]) { _, _ in }
                    let captured = StopsACleanupWhenReleased(other, released)
                    _ = m.addCleanup(f[0]) { _, _ in
                        withExtendedLifetime(captured) {}
                        ran.set(1)
                    }
                    f[0] = .null
                }
                heap.collect()
            }
            heap.waitForFinalizers()
            c.expect(ran.value == 1, "the cleanup did not run")
            // Events, not time: the release follows the run on the finalizer thread.
            var spins = 0
            while released.value == 0 && spins < 10_000_000 { tc_yield(); spins += 1 }
            c.expect(released.value == 1, "the cleanup's closure was still held after it ran")
        }
    }

    /// Removing a finalizer releases its closure after the specials lock is let go: the
    /// captured object's deinit may stop a cleanup (checked mode ranks the locks, so the
    /// old order trapped there instead of waiting forever).
    func testRemovingAFinalizerReleasesItsClosureOutsideTheSpecialsLock() {
        checkInChild(timeout: 60) { c in
            let heap = try! Heap(configuration: Configuration(checked: true).precise)
            let node = try! heap.register(Self.layout)
            let released = LifeFlag()
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocate(node)
                    f[1] = m.allocate(node)
                    let other = m.addCleanup(f[1]) { _, _ in }
                    do {
                        let captured = StopsACleanupWhenReleased(other, released)
                        m.setFinalizer(f[0]) { _, _ in withExtendedLifetime(captured) {} }
                    }
                    m.setFinalizer(f[0], nil)
                }
            }
            c.expect(released.value == 1, "the removed finalizer's closure was not released")
        }
    }

    /// `addCleanup` with the object itself as its argument traps in every mode, as Go
    /// 1.24's AddCleanup panics: the argument is a root, so the cleanup could never run.
    /// (Before, only checked mode looked.)
    func testCleanupWhoseArgumentIsTheObjectTrapsInUncheckedMode() {
        expectFatal("addCleanup: the argument") {
            let heap = try! Heap(configuration: Configuration().precise)
            let node = try! heap.register(Self.layout)
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocate(node)
                    _ = m.addCleanup(f[0], argument: f[0]) { _, _ in }
                }
            }
        }
    }
}
