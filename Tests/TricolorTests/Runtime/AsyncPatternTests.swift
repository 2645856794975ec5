@_spi(Testing) @testable import Tricolor
import XCTest

// The supported pattern for async code (issue #12 part 4; Runtime/Async.swift):
// synchronous `withMutator` segments, `Handle`s carrying objects across `await`. Tasks
// of a task group build linked lists across many awaits and collections; each list is
// intact at the end. Run under ThreadSanitizer in CI (.ci/run's filter).

final class AsyncPatternTests: WatchdogTestCase {
    func testWithMutatorSegmentsAndHandlesAcrossAwait() async throws {
        let heap = try Heap(configuration: Configuration())
        // word 0: next (pointer), word 1: value
        let node = try heap.register(TypeLayout(name: "async.Node", size: 16, pointerWords: [0]))
        let tasks = 4, perTask = 150
        let heads: [Handle] = (0..<tasks).map { _ in heap.makeHandle(.null) }
        await withTaskGroup(of: Void.self) { group in
            for (t, head) in heads.enumerated() {
                group.addTask {
                    for i in 0..<perTask {
                        // One synchronous segment: attach, push a node, detach. No await inside.
                        heap.withMutator { m in
                            m.withFrame(slots: 1) { f in
                                f[0] = m.allocate(node)
                                m.storeWord(f[0], 1, t * 1_000_000 + i)
                                m.store(f[0], 0, head.value)
                                m.store(head, f[0])
                            }
                            if i % 40 == 0 { heap.collect() }
                        }
                        // The task may resume on another thread: only the Handle crosses.
                        await Task.yield()
                    }
                }
            }
        }
        heap.collect()
        heap.withMutator { m in
            for (t, head) in heads.enumerated() {
                var n = 0
                var p = head.value
                while !p.isNull {
                    XCTAssertEqual(m.loadWord(p, 1), t * 1_000_000 + (perTask - 1 - n))
                    n += 1
                    p = m.load(p, 0)
                }
                XCTAssertEqual(n, perTask)
            }
        }
    }
}
