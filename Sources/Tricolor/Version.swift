// The package's version, in one place: `tricolor --version` prints it, `tricolor run
// --json` records it. Bump it with each release tag.

extension Heap {
    /// The version of the Tricolor package this binary was built from, as a semantic
    /// version string (`"0.1.0"`).
    ///
    /// Go's `runtime.Version()` plays the same part: a program can log the runtime it was
    /// built against. `tricolor --version` prints this value.
    public static let version = "0.1.0"
}
