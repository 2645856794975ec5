/// The address of a heap object. Trivially copyable: no reference counting, no
/// lifetime of its own. A `Ref` keeps nothing alive; roots do (frames, globals, handles).
/// The collector never moves objects, so a reachable object's `Ref` stays valid.
@frozen
public struct Ref: Hashable, Sendable, CustomStringConvertible {
    /// The object's address; 0 for `Ref.null`.
    public let address: UInt
    /// A `Ref` to the object at `address`. For runtimes that keep addresses elsewhere (tagged
    /// words, foreign tables): the address must be one the heap returned, or 0. Checked mode
    /// traps on a `Ref` that is not the start of a live object when it is used.
    @inlinable @inline(__always) public init(address: UInt) { self.address = address }
    /// The null reference: what a new object's pointer words, a new frame slot and a new
    /// global hold.
    public static let null = Ref(address: 0)
    /// Whether this is `Ref.null`.
    @inlinable public var isNull: Bool { address == 0 }
    /// The object's memory, for pointer-free data (bytes objects, scalar words).
    @inlinable public var rawPointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
    public var description: String { "0x" + String(address, radix: 16) }
}
