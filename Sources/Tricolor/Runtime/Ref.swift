/// The address of a heap object. Trivially copyable: no reference counting, no
/// lifetime of its own. A `Ref` keeps nothing alive; roots do (frames, globals, handles).
/// The collector never moves objects, so a reachable object's `Ref` stays valid.
@frozen
public struct Ref: Hashable, Sendable, CustomStringConvertible {
    public let address: UInt
    @inlinable @inline(__always) public init(address: UInt) { self.address = address }
    public static let null = Ref(address: 0)
    @inlinable public var isNull: Bool { address == 0 }
    /// The object's memory, for pointer-free data (bytes objects, scalar words).
    @inlinable public var rawPointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
    public var description: String { "0x" + String(address, radix: 16) }
}
