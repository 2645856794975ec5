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
