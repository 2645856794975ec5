// Reference implementations: slow, obviously correct versions of the clever parts,
// which the tests compare the real ones against.

/// The obviously correct page allocator the tests compare against: a Bool per page and a
/// linear first-fit scan.
public struct ReferencePageAlloc {
    public init() {}
    public var used: [Bool] = []
    public mutating func grow(_ n: Int) { used += Array(repeating: false, count: n) }
    public mutating func alloc(_ n: Int) -> Int? {
        var run = 0
        for i in 0..<used.count {
            run = used[i] ? 0 : run + 1
            if run == n {
                let s = i - n + 1
                for j in s...i { used[j] = true }
                return s
            }
        }
        return nil
    }
    public mutating func free(_ p: Int, _ n: Int) { for j in p..<(p + n) { used[j] = false } }
}
