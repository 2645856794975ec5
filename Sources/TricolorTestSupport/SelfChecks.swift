@_spi(Testing) import Tricolor

// The runtime's tiered self-checks, on together for stress tests.

extension Configuration {
    /// This configuration with both tiers of the runtime's self-checks on
    /// (`internalChecks`, `expensiveChecks`), as the model-based stress tests run.
    public var withSelfChecks: Configuration {
        var c = self
        c.internalChecks = true
        c.expensiveChecks = true
        return c
    }
}

extension Configuration {
    /// The same configuration with precise roots only (conservative stack scanning off).
    /// For tests that assert that an object dropped from every frame, global and handle
    /// is freed by the next cycle: with the native stack scanned, a stale copy of its
    /// address in a dead part of a frame could keep it (false retention, harmless, but
    /// not what those tests measure).
    public var precise: Configuration {
        var c = self
        c.conservativeStackScan = false
        return c
    }
}

extension Heap {
    /// A mutator's first stack takes pages from a fresh 4 MiB chunk (stacks come from
    /// the page heap, as in Go). Tests that count growth steps call this first: it
    /// faults in whatever growth is still pending, then fills every free run of pages
    /// with an object of exactly its size, kept by a global, so that the next
    /// allocation must grow the heap. Returns HeapSys afterwards.
    ///
    /// Only for heaps with no grower thread (GOGC off, `markWorkers: 0`,
    /// `backgroundHeapGrowth: false`, or before the first cycle): a grower would refill.
    @discardableResult
    public func fillGrownPages(_ m: Mutator) -> UInt64 {
        precondition(!debugGrowerRunning, "fillGrownPages: the heap's grower thread would refill the pages")
        debugFinishPendingGrowth()
        var guardCount = 0
        while case let run = debugLongestFreeRunBytes, run > 0, guardCount < 100_000 {
            // Runs of 1–4 pages fit the 8/16/24/32 KiB size classes exactly (1–4-page
            // spans); longer ones a large object.
            m.store(makeGlobal(), m.allocateBytes(run))
            guardCount += 1
        }
        return memStats().heapSys
    }
}
