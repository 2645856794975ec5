import CTricolor
import Glibc

// HeapArena: per-arena metadata (Go's heapArena, mheap.go). The heap reserves its whole
// address range at creation and maps it 64 MiB arena by arena as it grows; each mapped
// arena has a table from page to the span that owns it, so that any address maps to its
// span in O(1) (`Heap.spanOf`, Go's spanOf).
//
// Invariants: `spans[i]` is the in-use span containing page i of the arena, or nil.

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
