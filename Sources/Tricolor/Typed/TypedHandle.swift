// Typed handles: a `Handle` that remembers its object's type, for carrying a typed
// object across threads (and across `await`s, between `withMutator` segments).
//
// A `TypedHandle<T>` is a struct around the untyped `Handle` class: copies share one
// root slot, which is released when the last copy goes away (the `Handle`'s deinit).
// Reading it is the handle's acquire load; writing goes through `Mutator.store(_:_:)`,
// which barriers the root slot like any pointer store.

/// A persistent root holding a typed object, usable from any thread: the object stays
/// alive until every copy of the handle is gone. Read ``value`` on a thread with an
/// attached mutator (the object may move between threads; the handle is `Sendable`).
@frozen
public struct TypedHandle<T>: Sendable {
    /// The untyped handle (the root slot).
    public let handle: Handle

    /// Wrap an untyped handle whose object is a `T` (not checked).
    @inlinable
    public init(unchecked handle: Handle) { self.handle = handle }

    /// The object the handle keeps alive (null if it was set to null).
    @inlinable
    public var value: Obj<T> { Obj(unchecked: handle.value) }
}

extension Heap {
    /// A handle keeping the typed `object` alive until the handle (all its copies) goes away.
    public func makeHandle<T>(_ object: Obj<T>) -> TypedHandle<T> {
        TypedHandle(unchecked: makeHandle(object.ref))
    }
}

extension Mutator {
    /// Point a typed handle at another object of its type (barriered like a heap store).
    public func store<T>(_ handle: TypedHandle<T>, _ value: Obj<T>) {
        store(handle.handle, value.ref)
    }
}
