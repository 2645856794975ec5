import CTricolor

// Threads, async code and mutators (issue #12 part 4).
//
// A `Mutator` is bound to the thread that attached it, and Swift's tasks move between
// threads at every `await`. So:
//
// - `attach()`/`detach(_:)` cannot be called from async code (`noasync`): a task that
//   attaches, awaits and resumes on another thread would use the mutator there.
// - `Mutator` and `Frame` are not `Sendable`, so one cannot be handed to another task
//   or thread (`Task { m.allocate(…) }` inside `withMutator` does not compile).
// - The supported pattern: **synchronous `withMutator` segments, `Handle`s across
//   `await`**. Each segment attaches, works, detaches, and never awaits; an object that
//   must outlive the segment is kept in a `Handle` (Sendable, a root until released),
//   and the next segment, on whatever thread the task resumed on, reads it back:
//
//   ```swift
//   let list = heap.withMutator { m in heap.makeHandle(m.allocate(Node)) }
//   for await line in lines {
//       heap.withMutator { m in
//           m.withFrame(slots: 1) { f in
//               f[0] = m.allocate(Node)
//               m.store(f[0], 0, list.value)
//               m.store(list, f[0])              // the handle now names the new head
//           }
//       }
//   }
//   ```
//
//   A segment costs an attach and a detach (a lock each); batch work inside one. A
//   thread that stays attached across many segments (its own loop, a worker pool)
//   should attach once and use `m.blocking { }` around its waits instead.

/// A `Mutator` belongs to the thread that attached it: it must not cross to another
/// thread or task. Use a `Handle` to carry objects across `await` (see `Heap.withMutator`).
@available(*, unavailable, message: "a Mutator belongs to the thread that attached it; carry objects across tasks in a Handle")
extension Mutator: Sendable {}

/// A `Frame` lives on its mutator's shadow stack and belongs to that mutator's thread.
@available(*, unavailable, message: "a Frame belongs to the thread of its mutator")
extension Frame: Sendable {}
