import CTricolor
import Glibc
import Synchronization

// Locks that cannot stop the world forever (issue #12 part 3).
//
// A mutator that waits for a lock is not at a safepoint. If the lock's holder allocates
// and that allocation has to stop the world (or finish a cycle), the stop waits for the
// waiter, and the waiter waits for the holder: the process hangs, silently. Go avoids
// this because goroutines block in the scheduler; a thread attached to a Tricolor heap
// must say so instead: it waits inside a blocking region (Go's entersyscall), where a
// stop-the-world does not wait for it.
//
// - `HeapMutex<Value>`: a mutex whose `withLock(m) { }` tries the lock, and if it is
//   taken waits for it inside `m.blocking { }`. The body runs attached (not blocking),
//   so it may allocate and store.
// - `Mutator.withLock(_:_:)` does the same for a `Synchronization.Mutex`, which has no
//   separate lock()/unlock(): it polls `withLockIfAvailable`, backing off inside a
//   blocking region between attempts.
// - Any other wait (I/O, a condition variable, another library's lock, a join) goes
//   inside `m.blocking { }`: see `Mutator.blocking`.
//
// Invariants: a thread never waits for a HeapMutex while `.running`; the body of
// `withLock` runs with the lock held and the mutator running.

/// A mutual-exclusion lock protecting a `Value`, for threads attached to a heap: a
/// thread that must wait for it waits in a blocking region, so a stop-the-world (a
/// collection) never waits for a thread that waits for this lock.
///
/// ```swift
/// let table = HeapMutex([String: Handle]())
/// heap.withMutator { m in
///     table.withLock(m) { t in t["x"] = heap.makeHandle(m.allocate(Node)) }
/// }
/// ```
///
/// Use it instead of `Synchronization.Mutex`, `NSLock` or `pthread_mutex_t` for any
/// lock whose holder may allocate while another mutator waits for it. Not reentrant.
public final class HeapMutex<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// A new unlocked mutex holding `value`.
    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Run `body` with the lock held, on the mutator `m` of the calling thread. If the
    /// lock is taken, the thread waits for it inside `m.blocking { }` (a stop-the-world
    /// does not wait for it meanwhile); `body` itself runs attached and may allocate.
    public func withLock<R, E: Error>(_ m: Mutator, _ body: (inout Value) throws(E) -> R) throws(E) -> R {
        if pthread_mutex_trylock(mutex) != 0 {
            m.blocking { _ = pthread_mutex_lock(mutex) }
        }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }

    /// Run `body` with the lock held, on a thread that is not attached to any heap (or
    /// whose waits never matter to one): a plain blocking lock.
    public func withLockUnattached<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}

extension Mutator {
    /// Run `body` with `lock` held, on this mutator's thread. Same as
    /// `lock.withLock(self, body)`.
    public func withLock<V, R, E: Error>(_ lock: HeapMutex<V>, _ body: (inout V) throws(E) -> R) throws(E) -> R {
        try lock.withLock(self, body)
    }

    /// Run `body` with a `Synchronization.Mutex` held, waiting for it without holding up
    /// collections: `withLockIfAvailable` is tried, and between attempts the thread
    /// backs off (yield, then sleeps growing to 1 ms) inside a blocking region. Fair
    /// enough for locks held briefly; prefer `HeapMutex`, which sleeps in the kernel.
    public func withLock<V: ~Copyable, R>(_ lock: borrowing Mutex<V>, _ body: (inout sending V) throws -> sending R) rethrows -> R {
        var backoffNs: UInt64 = 0
        while true {
            // `withLockIfAvailable` returns nil both when the lock is taken and when the
            // body returns nil: wrap the result so the two differ.
            if let r = try lock.withLockIfAvailable({ (v: inout sending V) throws -> sending R? in try body(&v) }) as R?? {
                if let r { return r }
            }
            blocking {
                if backoffNs == 0 { tc_yield() } else { tc_sleep_ns(backoffNs) }
            }
            backoffNs = backoffNs == 0 ? 1_000 : min(backoffNs * 2, 1_000_000)
        }
    }
}
