import Tricolor

// Symbolized heap dumps and inspections: the core library records return addresses
// only (it has no symbolizer); these pass this library's symbolizer in.

extension Heap {
    /// `writeHeapDump(to:)` with the sampled stacks' functions named (FRAME records:
    /// the frames at each return address, innermost first, one per line), so that
    /// `tricolor heapdump diff` can compare allocation sites across processes.
    /// Symbolizing runs after the world has restarted.
    /// - Throws: `HeapDumpError` naming the path when it cannot be opened or written.
    @discardableResult
    public func writeHeapDumpSymbolized(to path: String) throws -> HeapDumpSummary {
        let sym = Symbolizer.shared
        return try writeHeapDump(to: path) { pc in
            let f = sym.frames(for: pc)
            return f.isEmpty ? nil : f.map(\.function).joined(separator: "\n")
        }
    }

    /// `inspect(_:)` with the sampled allocation stack symbolized (`allocationFrames`:
    /// function, and file:line where known, innermost first).
    public func inspectSymbolized(_ address: UInt) -> AddressInfo {
        var info = inspect(address)
        if let stack = info.allocationStack {
            info.allocationFrames = symbolize(stack: stack).map { f in
                f.line > 0 ? "\(f.function) at \(f.file):\(f.line)" : f.function
            }
        }
        return info
    }
}
