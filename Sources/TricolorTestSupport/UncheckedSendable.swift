/// Hands a non-Sendable value (a Mutator, a Ref) to another thread on purpose, in tests
/// that check what the runtime does with such misuse.
public struct UncheckedSendable<T>: @unchecked Sendable {
    public let value: T
    public init(value: T) { self.value = value }
}
