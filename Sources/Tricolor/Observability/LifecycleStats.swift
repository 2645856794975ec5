import CTricolor

// Counters of the object-lifecycle machinery (Runtime/Specials.swift, Finalizers.swift,
// Weak.swift, Pool.swift, SwiftBox.swift). Go's MemStats has none of these; Go exposes
// some through runtime/metrics (/gc/finalizers/queued, /gc/cleanups/executed, …).
// They are read under each component's own lock, so one snapshot is consistent per
// component, not across components. They appear in `tricolor run --memstats`/`--json`
// as the `Lifecycle` object; gctrace does not show them (its format is Go's).

/// Counts of finalizers, cleanups, weak handles, boxes and pool traffic
/// (`Heap.lifecycleStats()`).
public struct LifecycleStats: Sendable, Codable, Equatable {
    /// Finalizers queued so far (their objects were found unreachable).
    public var finalizersQueued = 0
    /// Finalizers that have returned.
    public var finalizersRun = 0
    /// Cleanups queued so far (their objects were found dead).
    public var cleanupsQueued = 0
    /// Cleanups that have returned.
    public var cleanupsRun = 0
    /// Swift objects of dead boxes queued for release, and released.
    public var boxReleasesQueued = 0
    /// Swift objects of dead boxes released by the finalizer thread.
    public var boxReleasesRun = 0
    /// Weak handles of objects not yet found unreachable.
    public var weakHandlesLive = 0
    /// Lifecycle records (finalizers, weak handles, cleanups, boxes; not the heap
    /// profile's sample records, which share their table).
    public var specialRecords = 0
    /// `Pool.get` calls answered from a pool (all pools of the heap, past and present).
    public var poolHits = 0
    /// `Pool.get` calls that found the pool empty.
    public var poolMisses = 0
}

extension Heap {
    /// The lifecycle counters now (see `LifecycleStats`).
    public func lifecycleStats() -> LifecycleStats {
        var st = LifecycleStats()
        let q = finalizerQueue
        q.lock.withLock {
            st.finalizersQueued = q.finalizersQueued; st.finalizersRun = q.finalizersRun
            st.cleanupsQueued = q.cleanupsQueued; st.cleanupsRun = q.cleanupsRun
            st.boxReleasesQueued = q.releasesQueued; st.boxReleasesRun = q.releasesRun
        }
        specials.lock.withLock {
            st.weakHandlesLive = specials.weakHandles
            st.specialRecords = specials.count - specials.profileRecords
        }
        (st.poolHits, st.poolMisses) = poolTotals
        return st
    }
}
