import XCTest
@_spi(Testing) @testable import Tricolor

/// The page allocator (PageAlloc: bitmap + binary summary tree) against the obviously
/// correct `ReferencePageAlloc` (a Bool per page, linear first fit), and its summary
/// and run-finding helpers against bit-by-bit versions.
final class PageAllocTests: XCTestCase {
    static let chunk = PageAlloc.chunkPages
    static let words = PageAlloc.wordsPerChunk

    // MARK: fast vs reference

    /// Random allocations (1…1500 pages) and frees on both allocators, growing the heap
    /// chunk by chunk part way through. Both are lowest-address first fit, so every
    /// returned page index (or nil) must be identical.
    func testRandomAllocFreeMatchesReference() {
        for seed: UInt64 in [1, 2, 3] {
            runRandomOps(seed: seed, reservedChunks: 16, initialChunks: 3, ops: 3000)
        }
    }

    /// Small requests only: lots of fragmentation inside chunks, runs straddling word
    /// and chunk boundaries.
    func testSmallRequestsMatchReference() {
        runRandomOps(seed: 42, reservedChunks: 4, initialChunks: 4, ops: 4000, maxPages: 40)
    }

    /// A reservation that is not a power of two of chunks (the tree is padded).
    func testOddChunkCountMatchesReference() {
        runRandomOps(seed: 7, reservedChunks: 5, initialChunks: 1, ops: 2000)
    }

    /// A single chunk: the root of the tree is the only leaf.
    func testSingleChunkMatchesReference() {
        runRandomOps(seed: 9, reservedChunks: 1, initialChunks: 1, ops: 2000, maxPages: 600)
    }

    private func runRandomOps(seed: UInt64, reservedChunks: Int, initialChunks: Int, ops: Int,
                              maxPages: Int = 1500, file: StaticString = #filePath, line: UInt = #line) {
        var rng = SplitMix64(seed: seed)
        guard var fast = PageAlloc(pages: reservedChunks * Self.chunk) else {
            return XCTFail("PageAlloc(pages:) returned nil", file: file, line: line)
        }
        defer { fast.destroy() }
        var ref = ReferencePageAlloc()
        fast.grow(initialChunks * Self.chunk)
        ref.grow(initialChunks * Self.chunk)
        fast.checkInvariants()
        var grownChunks = initialChunks
        var live: [(page: Int, n: Int)] = []
        var failures = 0, successes = 0, nils = 0
        for op in 0..<ops {
            // Grow by 1…2 chunks now and then, while the reservation lasts.
            if rng.int(200) == 0 && grownChunks < reservedChunks {
                let k = min(reservedChunks - grownChunks, 1 + rng.int(2))
                fast.grow(k * Self.chunk)
                ref.grow(k * Self.chunk)
                grownChunks += k
                XCTAssertEqual(fast.grownPages, grownChunks * Self.chunk, file: file, line: line)
            }
            if live.isEmpty || rng.int(100) < 55 {
                // Mostly small requests, sometimes multi-chunk ones.
                let n: Int
                switch rng.int(10) {
                case 0..<6: n = 1 + rng.int(min(maxPages, 16))
                case 6..<9: n = 1 + rng.int(min(maxPages, 200))
                default: n = 1 + rng.int(maxPages)
                }
                let a = fast.alloc(n)
                let b = ref.alloc(n)
                XCTAssertEqual(a, b, "seed \(seed) op \(op): alloc(\(n))", file: file, line: line)
                if a != b { failures += 1; if failures > 5 { return } }
                if let p = b { live.append((p, n)); successes += 1 } else { nils += 1 }
            } else {
                let i = rng.int(live.count)
                let (p, n) = live.remove(at: i)
                fast.free(p, n)
                ref.free(p, n)
            }
            if op % 97 == 0 {
                fast.checkInvariants()
                assertSameState(fast, ref, "seed \(seed) op \(op)", file: file, line: line)
            }
        }
        fast.checkInvariants()
        assertSameState(fast, ref, "seed \(seed) end", file: file, line: line)
        // The run exercised both outcomes.
        XCTAssertGreaterThan(successes, ops / 4, "seed \(seed): successful allocations", file: file, line: line)
        XCTAssertGreaterThan(nils, 0, "seed \(seed): the heap never filled up", file: file, line: line)
        // Free everything: the heap is one free run again.
        for (p, n) in live { fast.free(p, n); ref.free(p, n) }
        fast.checkInvariants()
        XCTAssertEqual(fast.freePages, fast.grownPages, file: file, line: line)
        XCTAssertEqual(fast.longestFreeRun, fast.grownPages, file: file, line: line)
        XCTAssertEqual(fast.alloc(fast.grownPages), 0, file: file, line: line)
        XCTAssertNil(fast.alloc(1), file: file, line: line)
    }

    private func assertSameState(_ fast: PageAlloc, _ ref: ReferencePageAlloc, _ what: String,
                                 file: StaticString, line: UInt) {
        XCTAssertEqual(fast.grownPages, ref.used.count, what, file: file, line: line)
        var free = 0, run = 0, longest = 0
        var mismatches = 0
        for p in 0..<ref.used.count {
            if fast.isUsed(p) != ref.used[p] {
                mismatches += 1
            }
            if ref.used[p] { run = 0 } else { free += 1; run += 1; longest = max(longest, run) }
        }
        XCTAssertEqual(mismatches, 0, "\(what): pages whose used bit differs from the reference", file: file, line: line)
        XCTAssertEqual(fast.freePages, free, "\(what): freePages", file: file, line: line)
        XCTAssertEqual(fast.longestFreeRun, longest, "\(what): longest free run", file: file, line: line)
    }

    func testGrowExtendsAFreeRunAcrossTheOldEnd() {
        guard var pa = PageAlloc(pages: 8 * Self.chunk) else { return XCTFail("no PageAlloc") }
        defer { pa.destroy() }
        XCTAssertNil(pa.alloc(1), "nothing is free before grow")
        pa.grow(Self.chunk)
        XCTAssertEqual(pa.alloc(500), 0)
        XCTAssertNil(pa.alloc(100), "only 12 pages left in the first chunk")
        pa.grow(Self.chunk)
        // The 12 free pages at the end of chunk 0 join the new chunk.
        XCTAssertEqual(pa.alloc(100), 500)
        XCTAssertEqual(pa.alloc(424), 600)
        XCTAssertNil(pa.alloc(1))
        pa.free(500, 100)
        XCTAssertEqual(pa.alloc(50), 500, "first fit reuses the lowest hole")
        pa.checkInvariants()
    }

    func testExhaustionAndFullFree() {
        guard var pa = PageAlloc(pages: 4 * Self.chunk) else { return XCTFail("no PageAlloc") }
        defer { pa.destroy() }
        pa.grow(4 * Self.chunk)
        XCTAssertNil(pa.alloc(4 * Self.chunk + 1))
        XCTAssertEqual(pa.alloc(4 * Self.chunk), 0)
        XCTAssertEqual(pa.freePages, 0)
        XCTAssertEqual(pa.longestFreeRun, 0)
        XCTAssertNil(pa.alloc(1))
        pa.free(0, 4 * Self.chunk)
        XCTAssertEqual(pa.freePages, 4 * Self.chunk)
        // Single pages come out in address order.
        for i in 0..<(2 * Self.chunk) { XCTAssertEqual(pa.alloc(1), i) }
        pa.checkInvariants()
    }

    // MARK: summarize

    func testSummarizeEdgeBitmaps() {
        withBitmap { bits in
            func check(_ expected: PallocSum?, _ what: String, line: UInt = #line) {
                let fast = PageAlloc.summarize(bits)
                let ref = PageAlloc.referenceSummarize(bits)
                XCTAssertEqual(fast, ref, what, line: line)
                if let expected { XCTAssertEqual(ref, expected, "reference: " + what, line: line) }
            }
            let c = UInt32(Self.chunk)
            set(bits, all: 0)
            check(PallocSum(start: c, max: c, end: c), "all free")
            set(bits, all: ~0)
            check(PallocSum(start: 0, max: 0, end: 0), "all used")
            // One used page at every position.
            for p in 0..<Self.chunk {
                set(bits, all: 0)
                bits[p / 64] |= 1 << UInt64(p % 64)
                let before = UInt32(p), after = c - 1 - UInt32(p)
                check(PallocSum(start: before, max: max(before, after), end: after), "only page \(p) used")
            }
            // One free page at every position.
            for p in 0..<Self.chunk {
                set(bits, all: ~0)
                bits[p / 64] &= ~(1 << UInt64(p % 64))
                check(PallocSum(start: p == 0 ? 1 : 0, max: 1, end: p == Self.chunk - 1 ? 1 : 0), "only page \(p) free")
            }
            // Two used pages at every pair of positions (sampled): the middle run.
            var rng = SplitMix64(seed: 11)
            for _ in 0..<2000 {
                let a = rng.int(Self.chunk), b = rng.int(Self.chunk)
                let (lo, hi) = (min(a, b), max(a, b))
                set(bits, all: 0)
                bits[lo / 64] |= 1 << UInt64(lo % 64)
                bits[hi / 64] |= 1 << UInt64(hi % 64)
                let start = UInt32(lo), end = c - 1 - UInt32(hi)
                let mid = UInt32(lo == hi ? 0 : hi - lo - 1)
                check(PallocSum(start: start, max: max(start, end, mid), end: end), "pages \(lo) and \(hi) used")
            }
            // Patterns that line up with word boundaries.
            for w in 0..<Self.words {
                set(bits, all: 0)
                bits[w] = ~0
                check(nil, "word \(w) used")
                set(bits, all: ~0)
                bits[w] = 0
                check(PallocSum(start: w == 0 ? 64 : 0, max: 64, end: w == Self.words - 1 ? 64 : 0), "word \(w) free")
                set(bits, all: 0)
                bits[w] = 1 << 63
                check(nil, "top bit of word \(w) used")
                set(bits, all: 0)
                bits[w] = 1
                check(nil, "bottom bit of word \(w) used")
            }
            // Alternating and striped patterns.
            for pattern: UInt64 in [0x5555_5555_5555_5555, 0xAAAA_AAAA_AAAA_AAAA, 0x0F0F_0F0F_0F0F_0F0F,
                                    0xFFFF_0000_FFFF_0000, 0x8000_0000_0000_0001, 0x7FFF_FFFF_FFFF_FFFE,
                                    0x0000_0000_FFFF_FFFF, 0xFFFF_FFFF_0000_0000] {
                set(bits, all: pattern)
                check(nil, "pattern \(String(pattern, radix: 16))")
            }
            // A free run crossing every word boundary, used elsewhere.
            for boundary in 1..<Self.words {
                set(bits, all: ~0)
                let from = boundary * 64 - 5, to = boundary * 64 + 70
                for p in from..<min(to, Self.chunk) { bits[p / 64] &= ~(1 << UInt64(p % 64)) }
                check(PallocSum(start: 0, max: UInt32(min(to, Self.chunk) - from), end: to >= Self.chunk ? UInt32(Self.chunk - from) : 0),
                      "free run \(from)..<\(to)")
            }
        }
    }

    func testSummarizeRandomBitmaps() {
        var rng = SplitMix64(seed: 2024)
        withBitmap { bits in
            for i in 0..<20_000 {
                switch i % 4 {
                case 0:
                    // Uniform random bits.
                    for w in 0..<Self.words { bits[w] = rng.next() }
                case 1:
                    // Sparse used pages: long free runs.
                    for w in 0..<Self.words { bits[w] = rng.next() & rng.next() & rng.next() & rng.next() }
                case 2:
                    // Sparse free pages.
                    for w in 0..<Self.words { bits[w] = rng.next() | rng.next() | rng.next() | rng.next() }
                default:
                    // Runs of random length, alternating used and free.
                    set(bits, all: 0)
                    var p = 0
                    var used = rng.int(2) == 0
                    while p < Self.chunk {
                        let n = 1 + rng.int(rng.int(2) == 0 ? 8 : 200)
                        if used { for q in p..<min(p + n, Self.chunk) { bits[q / 64] |= 1 << UInt64(q % 64) } }
                        p += n
                        used.toggle()
                    }
                }
                let fast = PageAlloc.summarize(bits)
                let ref = PageAlloc.referenceSummarize(bits)
                if fast != ref {
                    XCTFail("bitmap \(i): summarize \(fast) != reference \(ref); words \((0..<Self.words).map { String(bits[$0], radix: 16) })")
                    return
                }
            }
        }
    }

    func testMerge() {
        let h = UInt32(Self.chunk)
        // Both halves fully free: the parent is fully free.
        XCTAssertEqual(PageAlloc.merge(PallocSum(start: h, max: h, end: h), PallocSum(start: h, max: h, end: h), half: Self.chunk),
                       PallocSum(start: 2 * h, max: 2 * h, end: 2 * h))
        // The run across the middle wins.
        XCTAssertEqual(PageAlloc.merge(PallocSum(start: 1, max: 10, end: 100), PallocSum(start: 50, max: 60, end: 3), half: Self.chunk),
                       PallocSum(start: 1, max: 150, end: 3))
        // A free left half extends into the right's start; a free right half extends the left's end.
        XCTAssertEqual(PageAlloc.merge(PallocSum(start: h, max: h, end: h), PallocSum(start: 7, max: 20, end: 0), half: Self.chunk),
                       PallocSum(start: h + 7, max: h + 7, end: 0))
        XCTAssertEqual(PageAlloc.merge(PallocSum(start: 0, max: 20, end: 9), PallocSum(start: h, max: h, end: h), half: Self.chunk),
                       PallocSum(start: 0, max: h + 9, end: h + 9))
        XCTAssertEqual(PageAlloc.merge(.zero, .zero, half: Self.chunk), .zero)
    }

    // MARK: findRun

    func testFindRunEdgeCases() {
        withBitmap { bits in
            let n = Self.words
            set(bits, all: 0)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 1), 0)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 64), 0)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, Self.chunk), 0)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, Self.chunk + 1))
            XCTAssertEqual(PageAlloc.findRun(bits, words: 1, 64), 0)
            XCTAssertNil(PageAlloc.findRun(bits, words: 1, 65))

            set(bits, all: ~0)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 1))

            // Only the last page is free.
            bits[n - 1] = ~(1 << 63)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 1), Self.chunk - 1)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 2))

            // Only the first page is free.
            set(bits, all: ~0)
            bits[0] = ~1
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 1), 0)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 2))

            // A run of 10 crossing the boundary between words 0 and 1: pages 60..<70.
            set(bits, all: ~0)
            for p in 60..<70 { bits[p / 64] &= ~(1 << UInt64(p % 64)) }
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 10), 60)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 4), 60)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 11))

            // First fit, not best fit: a run of 3 at 5, a run of 100 later.
            set(bits, all: ~0)
            for p in 5..<8 { bits[p / 64] &= ~(1 << UInt64(p % 64)) }
            for p in 200..<300 { bits[p / 64] &= ~(1 << UInt64(p % 64)) }
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 3), 5)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 4), 200)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 100), 200)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 101))

            // A run spanning three whole words plus partial words on both sides.
            set(bits, all: ~0)
            for p in 100..<(100 + 250) { bits[p / 64] &= ~(1 << UInt64(p % 64)) }
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 250), 100)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 251))

            // A run interrupted right after a word boundary restarts.
            set(bits, all: 0)
            bits[1] = 1           // page 64 used
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 64), 0)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 65), 65)
            bits[0] = 1 << 63     // page 63 used too
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 64), 65)
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 63), 0)

            // Free bits in the top of a word continue into the next word.
            set(bits, all: ~0)
            bits[2] = 0x0000_00FF_FFFF_FFFF      // top 24 bits of word 2 free
            bits[3] = 0xFFFF_FFFF_FFFF_FF00      // bottom 8 bits of word 3 free
            XCTAssertEqual(PageAlloc.findRun(bits, words: n, 32), 2 * 64 + 40)
            XCTAssertNil(PageAlloc.findRun(bits, words: n, 33))
        }
    }

    func testFindRunRandomAgainstBruteForce() {
        var rng = SplitMix64(seed: 99)
        withBitmap { bits in
            for i in 0..<5000 {
                let density = rng.int(4)
                for w in 0..<Self.words {
                    var x = rng.next()
                    for _ in 0..<density { x &= rng.next() }   // fewer used bits at higher density
                    bits[w] = rng.int(10) == 0 ? 0 : x
                }
                let words = 1 + rng.int(Self.words)
                let n = 1 + rng.int(rng.int(3) == 0 ? words * 64 + 2 : 24)
                let got = PageAlloc.findRun(bits, words: words, n)
                let want = bruteForceFindRun(bits, words: words, n)
                if got != want {
                    XCTFail("case \(i): findRun(words: \(words), \(n)) = \(String(describing: got)), want \(String(describing: want))")
                    return
                }
            }
        }
    }

    // MARK: helpers

    private func bruteForceFindRun(_ bits: UnsafeMutablePointer<UInt64>, words: Int, _ n: Int) -> Int? {
        var run = 0
        for p in 0..<(words * 64) {
            if (bits[p / 64] >> UInt64(p % 64)) & 1 == 0 {
                run += 1
                if run == n { return p - n + 1 }
            } else {
                run = 0
            }
        }
        return nil
    }

    private func withBitmap(_ body: (UnsafeMutablePointer<UInt64>) -> Void) {
        let bits = UnsafeMutablePointer<UInt64>.allocate(capacity: Self.words)
        bits.initialize(repeating: 0, count: Self.words)
        defer { bits.deallocate() }
        body(bits)
    }

    private func set(_ bits: UnsafeMutablePointer<UInt64>, all value: UInt64) {
        for w in 0..<Self.words { bits[w] = value }
    }
}
