import Tricolor

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
    /// the page heap, as in Go). Tests that count growth steps call this first: it fills
    /// the rest of that chunk with one large object, kept by a global, so that the next
    /// allocation must grow the heap. Returns HeapSys afterwards.
    @discardableResult
    public func fillGrownPages(_ m: Mutator) -> UInt64 {
        let idle = memStats().heapIdle
        if idle > 0 { m.store(makeGlobal(), m.allocateBytes(Int(idle))) }
        return memStats().heapSys
    }
}
