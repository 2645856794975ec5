// TEMPORARY until the symbolizer lands.
func captureStack(skip: Int, into buf: UnsafeMutablePointer<UInt>, max: Int) -> Int { 0 }
final class Symbolizer: @unchecked Sendable {
    nonisolated(unsafe) static let shared = Symbolizer()
    func frames(for pc: UInt) -> [ProfileFrame] { [] }
    var mappings: [ProfileMapping] { [] }
}
