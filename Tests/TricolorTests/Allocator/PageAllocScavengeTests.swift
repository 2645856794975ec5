import XCTest
@_spi(Testing) @testable import Tricolor

/// The page allocator's scavenged bits (PageAlloc.scavenge / allocReportingScavenged):
/// only releases the OS accepted are marked, and an allocation reports how many of its
/// pages were returned to the OS (they read as zero, so MHeap does not clear them).
final class PageAllocScavengeTests: XCTestCase {
    /// Free runs [0, 100), [200, 300) and [400, 1024) in two chunks.
    private func fragmented() -> PageAlloc {
        var pa = PageAlloc(pages: 4 * PageAlloc.chunkPages)!
        pa.grow(2 * PageAlloc.chunkPages)
        XCTAssertEqual(pa.alloc(100), 0)
        XCTAssertEqual(pa.alloc(100), 100)
        XCTAssertEqual(pa.alloc(100), 200)
        XCTAssertEqual(pa.alloc(100), 300)
        pa.free(0, 100)
        pa.free(200, 100)
        return pa
    }

    func testRefusedReleaseIsNotMarkedAndEndsThePass() {
        var pa = fragmented()
        defer { pa.destroy() }
        var calls: [(Int, Int)] = []
        // The OS takes the first run (the highest) and refuses the second.
        let done = pa.scavenge(10_000) { page, n in
            calls.append((page, n))
            return calls.count == 1
        }
        XCTAssertEqual(calls.count, 2, "the pass stops at the first refusal")
        XCTAssertEqual(calls[0].0, 400)
        XCTAssertEqual(calls[0].1, 2 * PageAlloc.chunkPages - 400)
        XCTAssertEqual(done, calls[0].1)
        XCTAssertEqual(pa.scavengedPages, calls[0].1, "only the accepted run is marked")
        pa.checkInvariants()

        // Everything refused: nothing more marked.
        XCTAssertEqual(pa.scavenge(10_000) { _, _ in false }, 0)
        XCTAssertEqual(pa.scavengedPages, calls[0].1)
        pa.checkInvariants()

        // Accepted: the rest is marked.
        XCTAssertEqual(pa.scavenge(10_000) { _, _ in true }, 200)
        XCTAssertEqual(pa.scavengedPages, 2 * PageAlloc.chunkPages - 400 + 200)
        pa.checkInvariants()
    }

    func testAllocationReportsScavengedPages() {
        var pa = fragmented()
        defer { pa.destroy() }
        // Release only the top run.
        _ = pa.scavenge(10_000) { page, _ in page == 400 }
        let top = 2 * PageAlloc.chunkPages - 400
        // A run in never-released pages.
        let a = pa.allocReportingScavenged(50)
        XCTAssertEqual(a?.page, 0)
        XCTAssertEqual(a?.scavenged, 0)
        // A run entirely in released pages (first fit skips the 50- and 100-page holes).
        let b = pa.allocReportingScavenged(300)
        XCTAssertEqual(b?.page, 400)
        XCTAssertEqual(b?.scavenged, 300)
        XCTAssertEqual(pa.scavengedPages, top - 300)
        pa.checkInvariants()
        // Sizes no run can hold, up to absurd ones, are nil (no arithmetic on them).
        XCTAssertNil(pa.allocReportingScavenged(pa.totalPages + 1))
        XCTAssertNil(pa.allocReportingScavenged(Int.max))
        XCTAssertNil(pa.allocReportingScavenged(0))
        pa.checkInvariants()
    }
}
