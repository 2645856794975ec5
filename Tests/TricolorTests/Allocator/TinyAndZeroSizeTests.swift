@_spi(Testing) @testable import Tricolor
import TricolorTestSupport
import Glibc
import XCTest

// The bounds of the objects whose slot is not their own: pointer-free allocations under
// 16 bytes, which the tiny allocator packs into shared 16-byte blocks (Allocator/
// MallocTiny.swift), and zero-size allocations, which all share one base
// (`Heap.zeroBase`). A review found that an 8-byte array in a tiny block reported a
// count of 2, so a documented use (`m[a, 1]`) overwrote the next object, and that
// checked mode let a store into a zero-size object change the shared base. Traps run in
// child processes.

final class TinyAndZeroSizeTests: WatchdogTestCase {
    private static let int64 = TypeLayout(name: "tiny.Int64", size: 8, pointerWords: [])

    /// Arrays never share a tiny block: an 8-byte array of one element has a slot of its
    /// own, reports a count of 1, and writing its element leaves its neighbour alone.
    /// Raw bytes under 16 still share blocks outside checked mode (Go's tiny allocator).
    func testArraysGetASlotOfTheirOwnAndReportTheirCount() {
        let heap = try! Heap(configuration: Configuration())
        let ints = try! heap.register(arrayOf: Int.self)
        heap.withMutator { m in
            m.withFrame(slots: 4) { f in
                let a = m.allocateArray(ints, count: 1)
                f[0] = a.ref
                f[1] = m.allocateArray(ints, count: 1).ref
                XCTAssertEqual(m.count(of: a), 1)
                XCTAssertEqual(m.size(of: f[0]), 8)
                XCTAssertNotEqual(f[0], f[1])
                m.storeWord(f[0], 0, -1)
                XCTAssertEqual(m.loadWord(f[1], 0), 0, "the second array's element changed")
                XCTAssertEqual(m.loadWord(f[0], 0), -1)
                // Two 8-byte byte allocations share one 16-byte block.
                f[2] = m.allocateBytes(8)
                f[3] = m.allocateBytes(8)
                XCTAssertEqual(m.size(of: f[2]), 16)
                XCTAssertEqual(f[3].address &- f[2].address, 8)
            }
        }
    }

    /// In checked mode a byte allocation under 16 bytes gets a slot of its own, so a
    /// word past its end traps instead of reaching into a neighbour in the same block.
    func testCheckedModeTrapsAWordPastASmallByteAllocation() {
        expectFatal("word 1 is outside object") {
            let heap = try! Heap(configuration: Configuration(checked: true).precise)
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    f[0] = m.allocateBytes(8)
                    f[1] = m.allocateBytes(8)
                    m.storeWord(f[0], 0, 7)        // inside: fine
                    m.storeWord(f[0], 1, 7)        // the next 8 bytes: traps
                }
            }
        }
    }

    /// A zero-size allocation has no words: in checked mode any access traps, since every
    /// zero-size allocation shares the one base a store would change.
    func testCheckedModeTrapsAnAccessToAZeroSizeObject() {
        expectFatal("which has no words (a zero-size allocation)") {
            let heap = try! Heap(configuration: Configuration(checked: true).precise)
            let t = try! heap.register(Self.int64)
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    f[0] = m.allocateArray(t, count: 0)
                    m.storeWord(f[0], 0, 5)
                }
            }
        }
        expectFatal("which has no words (a zero-size allocation)") {
            let heap = try! Heap(configuration: Configuration(checked: true).precise)
            heap.withMutator { m in _ = m.loadWord(m.allocateBytes(0), 0) }
        }
    }

    /// Zero-size allocations share one base and report nothing to hold.
    func testZeroSizeAllocationsShareTheBaseAndHoldNothing() {
        let heap = try! Heap(configuration: Configuration())
        let t = try! heap.register(Self.int64)
        heap.withMutator { m in
            let a = m.allocateArray(t, count: 0)
            let b = m.allocateBytes(0)
            XCTAssertEqual(a, b)
            XCTAssertEqual(a.address, heap.zeroBase)
            XCTAssertEqual(m.count(of: a) ?? 0, 0)
        }
    }
}
