import XCTest
@_spi(Testing) @testable import Tricolor
import TricolorWorkloads

// Lock ranks in checked mode: a memory limit no longer trips the checker, and the check
// is scoped to the locks of the checked heap.

final class LockRankTests: WatchdogTestCase {
    /// A checked heap with a memory limit, allocating through several cycles: before the
    /// fix, `refreshMemoryLimitTrigger` took the heap lock under the stats lock and the
    /// rank checker killed the process. In a child: a violation is fatal.
    func testCheckedHeapWithAMemoryLimitRunsCycles() {
        checkInChild { c in
            let heap = try! Heap(configuration: Configuration(gcPercent: 100, checked: true, memoryLimit: 32 << 20))
            c.expect(heap.lockRankingEnabled, "checked heap: locks ranked")
            let node = try! heap.register(TypeLayout(name: "rank.Node", size: 48, pointerWords: [0]))
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    for i in 0..<400_000 {
                        let n = m.allocate(node)
                        if i % 64 == 0 { m.store(n, 0, f[0]); f[0] = n }   // a little live data
                        if i % 1000 == 0 { _ = m.allocateBytes(4096) }
                    }
                }
                // At least three cycles, whenever the OS runs the background worker:
                // garbage while none runs (the heap goal starts one), safepoints while one
                // marks. The deadline only bounds a hang.
                let deadline = monotonicSeconds() + 30
                while heap.marking.numGC.load(.relaxed) < 3 && monotonicSeconds() < deadline {
                    if heap.phase == .off { _ = m.allocateBytes(4096) } else { m.safepoint(); sched_yield() }
                }
            }
            heap.collect()
            let s = heap.memStats()
            c.expect(s.numGC >= 4, "only \(s.numGC) cycles")
            heap.checkHeapInvariants()
            // The setters take the same path.
            c.expectEqual(heap.setMemoryLimit(16 << 20), 32 << 20)
            c.expectEqual(heap.setGCPercent(50), 100)
        }
    }

    /// Ranking is per heap: the locks of an unchecked heap created next to (and after) a
    /// checked one are not ranked, and taking them out of order is not a violation; the
    /// same order on the checked heap's locks is fatal.
    func testRankingIsScopedToTheCheckedHeap() {
        checkInChild { c in
            let checked = try! Heap(configuration: Configuration(checked: true))
            let plain = try! Heap(configuration: Configuration())
            c.expect(checked.lockRankingEnabled, "checked heap ranked")
            c.expect(!plain.lockRankingEnabled, "unchecked heap not ranked")
            c.expect(!plain.statsLock.isRanked && !plain.centrals[1].lock.isRanked && !plain.work.lock.isRanked,
                     "an unchecked heap's locks are not ranked")
            c.expect(checked.statsLock.isRanked && checked.centrals[1].lock.isRanked && checked.limiterLock.isRanked,
                     "a checked heap's locks are all ranked")
            // Out of order on the unchecked heap: fine, and nothing recorded.
            plain.statsLock.withLock { plain.heapLock.withLock {} }
            c.expectEqual(LockRanking.heldMask, 0)
            // In order on the checked heap: fine; the held set is empty afterwards.
            checked.heapLock.withLock { checked.statsLock.withLock {} }
            c.expectEqual(LockRanking.heldMask, 0)
            // Both heaps keep working.
            for h in [checked, plain] {
                h.withMutator { m in for _ in 0..<10_000 { _ = m.allocateBytes(64) } }
                h.collect()
            }
        }
        expectFatal("lock rank violation: acquiring mheap (rank 7) while holding stats (rank 9)") {
            let checked = try! Heap(configuration: Configuration(checked: true))
            checked.statsLock.withLock { checked.heapLock.withLock {} }
        }
    }
}
