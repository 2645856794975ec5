import CTricolor
import Glibc

/// Per-arena metadata (Go's heapArena): the span owning each of its 8192 pages.
struct HeapArena {
    static let logBytes: UInt = 26
    static let bytes = 64 << 20
    static let pagesPerArena = bytes / SizeClassTable.pageSize
    let spans: UnsafeMutablePointer<UnsafeMutablePointer<MSpan>?>
    /// Pages below this offset have been used before and may hold garbage (Go's zeroedBase).
    var zeroedBase: UInt = 0

    init?() {
        guard let p = SysMemory.allocMetadata(HeapArena.pagesPerArena * 8) else { return nil }
        spans = p.bindMemory(to: UnsafeMutablePointer<MSpan>?.self, capacity: HeapArena.pagesPerArena)
    }
    func destroy() { SysMemory.free(UnsafeMutableRawPointer(spans), HeapArena.pagesPerArena * 8) }
}
