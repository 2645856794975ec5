import XCTest
@_spi(Testing) @testable import Tricolor
import TricolorTestSupport

/// Scanning an object finds exactly its pointer words, on both sides of the size where
/// `scanObject` switches from the type's pointer bitmap (types of at most 64 words) to
/// its list of pointer words (larger types, arrays).
final class ScanObjectTests: XCTestCase {
    /// For each size, a holder with pointer words at its first, a middle and its last
    /// word, each holding a leaf; a data word between them holds a fourth leaf's
    /// address, which must not keep it. After collections with freed memory clobbered,
    /// every leaf held by a pointer word keeps its checksum, and the heap holds exactly
    /// the holders and those leaves. In a child process: a missed pointer word ends it
    /// with gccheckmark's fatal error.
    func testPointerWordsAreTracedAndDataWordsAreNot() {
        checkInChild { check in
            do { try Self.traceHolders(check) } catch { check.expect(false, "\(error)") }
        }
    }

    private static func traceHolders(_ check: ChildChecks) throws {
        var c = Configuration(gcPercent: nil, clobberFree: true, checkmark: true, markWorkers: 0)
        c.conservativeStackScan = false   // exact object counts: no stale stack words
        let heap = try Heap(configuration: c)
        let leaf = try heap.register(TypeLayout(name: "scan.Leaf", size: 16, pointerWords: [0]))
        // 2 and 64 words: the bitmap; 65, 100 and 4096 words (32 KiB, the largest small
        // object): the list.
        let sizes = [2, 3, 63, 64, 65, 100, 4096]
        var holders: [(ObjectType, [Int], Int)] = []
        for words in sizes {
            let ptrs = words == 2 ? [0, 1] : [0, words / 2, words - 1]
            let data = words >= 4 ? words / 2 - 1 : -1   // a data word between two pointer words
            let t = try heap.register(TypeLayout(name: "scan.Holder\(words)", size: words * 8, pointerWords: ptrs))
            // Which path scans it: the bitmap up to 64 words, the list above.
            let bits = heap.types[Int(t.id)].smallPtrBits
            check.expectEqual(bits != 0, words <= 64, "holder of \(words) words: pointer bitmap \(String(bits, radix: 16))")
            holders.append((t, ptrs, data))
        }
        var expectedLive = 0
        heap.withMutator { m in
            m.withFrame(slots: sizes.count) { f in
                for (i, (t, ptrs, data)) in holders.enumerated() {
                    let h = m.allocate(t)
                    f[i] = h
                    for (k, w) in ptrs.enumerated() {
                        let l = m.allocate(leaf)
                        m.storeWord(l, 1, 1000 * i + k)
                        m.store(h, w, l)
                    }
                    if data >= 0 {
                        let unheld = m.allocate(leaf)
                        m.storeWord(unheld, 1, -1)
                        m.storeWord(h, data, Int(bitPattern: unheld.address))
                    }
                    expectedLive += 1 + ptrs.count
                }
                for _ in 0..<2 { heap.collect() }
                check.expectEqual(heap.memStats().heapObjects, UInt64(expectedLive),
                               "the holders and the leaves of their pointer words, nothing held by a data word")
                for (i, (_, ptrs, _)) in holders.enumerated() {
                    for (k, w) in ptrs.enumerated() {
                        let l = m.load(f[i], w)
                        check.expectEqual(m.loadWord(l, 1), 1000 * i + k, "holder of \(sizes[i]) words, pointer word \(w)")
                    }
                }
            }
        }
    }
}
