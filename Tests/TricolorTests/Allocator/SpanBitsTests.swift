import XCTest
@_spi(Testing) @testable import Tricolor

/// MSpan's allocation bits (allocCache, nextFreeFast, nextFreeIndex, isAllocated) and
/// objectIndex, on spans simulated in memory this test allocates: no heap involved.
final class SpanBitsTests: XCTestCase {
    /// A fake span: metadata in our own memory, a nonzero start address (never
    /// dereferenced: the allocation routines only compute addresses).
    final class FakeSpan {
        let s: UnsafeMutablePointer<MSpan>
        let bits: UnsafeMutablePointer<UInt64>
        let words: Int
        static let base: UInt = 0x7000_0000_0000

        init(nelems: Int, elemSize: Int = 16) {
            words = max(1, (nelems + 63) / 64)
            bits = .allocate(capacity: words)
            bits.initialize(repeating: 0, count: words)
            s = .allocate(capacity: 1)
            s.initialize(to: .empty)
            s.pointee.nelems = UInt(nelems)
            s.pointee.elemSize = UInt(elemSize)
            s.pointee.startAddr = FakeSpan.base
            s.pointee.npages = UInt((nelems * elemSize + 8191) / 8192)
            s.pointee.limit = FakeSpan.base + UInt(nelems * elemSize)
            s.pointee.allocBits = bits
            s.pointee.bitmapWords = UInt16(words)
            s.pointee.spanClass = SpanClass(sizeClass: 2, noscan: true)
        }
        deinit {
            s.deinitialize(count: 1)
            s.deallocate()
            bits.deallocate()
        }
        func bit(_ i: Int) -> Bool { (bits[i / 64] >> UInt64(i % 64)) & 1 != 0 }
        func setBit(_ i: Int) { bits[i / 64] |= 1 << UInt64(i % 64) }
    }

    /// Free slots at or after `from`, from the bitmap, in order.
    private func referenceFreeSlots(_ f: FakeSpan, from: Int) -> [Int] {
        (from..<Int(f.s.pointee.nelems)).filter { !f.bit($0) }
    }

    /// Start allocating at the 64-slot window `from` (0 after a sweep), then take every
    /// free slot with a random mix of nextFreeFast and nextFreeIndex (the allocator's
    /// way: the fast path first, nextFreeIndex when the window is used up) and compare
    /// with the reference list. Slots below the window count as allocated.
    private func drain(_ f: FakeSpan, from: Int, rng: inout SplitMix64, fastShare: Int,
                       _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let s = f.s
        let nelems = Int(s.pointee.nelems)
        precondition(from % 64 == 0)
        if from == 0 { s.primeAllocCache() } else { s.loadWindow(UInt(from)) }
        s.checkInvariants()
        let expected = referenceFreeSlots(f, from: from)
        let allocatedAtStart = nelems - expected.count
        XCTAssertEqual(Int(s.countAllocated()), allocatedAtStart, "\(what): countAllocated at start", file: file, line: line)
        var k = 0
        while true {
            let next: Int? = k < expected.count ? expected[k] : nil
            let window = Int(s.pointee.freeIndex)
            var got: Int? = nil
            if rng.int(100) < fastShare {
                let i = s.nextFreeFast()
                if i != UInt.max {
                    got = Int(i)
                } else if let e = next, e >= window && e < window + 64 {
                    XCTFail("\(what): nextFreeFast reports the window at \(window) used up, but slot \(e) in it is free", file: file, line: line)
                    return false
                }
            }
            if got == nil {
                let i = Int(s.nextFreeIndex())
                if i == nelems {
                    XCTAssertNil(next, "\(what): nextFreeIndex reports full but slot \(next ?? -1) is free", file: file, line: line)
                    XCTAssertGreaterThanOrEqual(Int(s.pointee.freeIndex), nelems, "\(what): window base when full", file: file, line: line)
                    break
                }
                got = i
            }
            guard let g = got, g == next else {
                XCTFail("\(what): took slot \(String(describing: got)), expected \(String(describing: next)) (window \(window))", file: file, line: line)
                return false
            }
            k += 1
            XCTAssertTrue(s.isAllocated(UInt(g)), "\(what): slot \(g) not allocated after being taken", file: file, line: line)
            if k % 7 == 0 {
                XCTAssertEqual(Int(s.countAllocated()), allocatedAtStart + k, "\(what): countAllocated after \(k) slots", file: file, line: line)
                s.checkInvariants()
            }
        }
        XCTAssertEqual(k, expected.count, "\(what): slots taken", file: file, line: line)
        // Once full, both report full, and keep doing so.
        XCTAssertEqual(s.nextFreeFast(), UInt.max, "\(what): nextFreeFast on a full span", file: file, line: line)
        XCTAssertEqual(Int(s.nextFreeIndex()), nelems, file: file, line: line)
        XCTAssertEqual(Int(s.nextFreeIndex()), nelems, file: file, line: line)
        XCTAssertEqual(Int(s.countAllocated()), nelems, "\(what): countAllocated when full", file: file, line: line)
        for i in 0..<nelems where !s.isAllocated(UInt(i)) {
            XCTFail("\(what): slot \(i) not allocated after draining", file: file, line: line)
            return false
        }
        return true
    }

    func testEmptyBitmapsGiveEverySlotInOrder() {
        var rng = SplitMix64(seed: 1)
        for nelems in [1, 2, 63, 64, 65, 127, 128, 129, 170, 341, 512, 1024] {
            for share in [0, 50, 100] {
                let f = FakeSpan(nelems: nelems)
                XCTAssertTrue(drain(f, from: 0, rng: &rng, fastShare: share, "empty nelems \(nelems) fast \(share)%"))
            }
        }
    }

    func testFullBitmapIsFullImmediately() {
        for nelems in [1, 64, 65, 1024] {
            let f = FakeSpan(nelems: nelems)
            for w in 0..<f.words { f.bits[w] = ~0 }
            f.s.primeAllocCache()
            XCTAssertEqual(f.s.nextFreeFast(), UInt.max)
            XCTAssertEqual(Int(f.s.nextFreeIndex()), nelems)
            XCTAssertEqual(Int(f.s.countAllocated()), nelems)
        }
    }

    func testRandomBitmapsAgainstReference() {
        var rng = SplitMix64(seed: 0xB175)
        let sizes = [1, 3, 8, 31, 63, 64, 65, 100, 127, 128, 129, 191, 192, 193, 255, 256, 341, 511, 512, 1000, 1024]
        for round in 0..<600 {
            let nelems = rng.int(3) == 0 ? 1 + rng.int(1024) : sizes[rng.int(sizes.count)]
            let f = FakeSpan(nelems: nelems)
            // Densities from nearly empty to nearly full, plus whole words used/free.
            let density = rng.int(5)
            for w in 0..<f.words {
                var x: UInt64
                switch density {
                case 0: x = rng.next() & rng.next() & rng.next()
                case 1: x = rng.next()
                case 2: x = rng.next() | rng.next() | rng.next()
                case 3: x = rng.int(2) == 0 ? 0 : ~0
                default: x = ~(UInt64(1) << UInt64(rng.int(64)))   // one free slot per word
                }
                f.bits[w] = x
            }
            // Bits past nelems: sometimes set, sometimes clear; they must never be handed out.
            if nelems % 64 != 0 {
                let tail = ~UInt64(0) << UInt64(nelems % 64)
                if rng.int(2) == 0 { f.bits[f.words - 1] |= tail } else { f.bits[f.words - 1] &= ~tail }
            }
            // From slot 0 (a freshly swept span) or from a later window.
            let from = rng.int(3) == 0 ? 64 * rng.int(f.words) : 0
            let share = [0, 30, 70, 100][rng.int(4)]
            if !drain(f, from: from, rng: &rng, fastShare: share, "round \(round) nelems \(nelems) from \(from) fast \(share)%") { return }
        }
    }

    /// Slot i is allocated iff it lies below the window, or its bit is set.
    func testIsAllocatedFollowsTheWindowRule() {
        var rng = SplitMix64(seed: 5)
        for _ in 0..<200 {
            let nelems = 1 + rng.int(1024)
            let f = FakeSpan(nelems: nelems)
            for w in 0..<f.words { f.bits[w] = rng.next() }
            let base = 64 * rng.int(f.words)
            f.s.loadWindow(UInt(base))
            var count = 0
            for i in 0..<nelems {
                let want = i < base || f.bit(i)
                if want { count += 1 }
                XCTAssertEqual(f.s.isAllocated(UInt(i)), want, "slot \(i) window \(base)")
            }
            XCTAssertEqual(Int(f.s.countAllocated()), count)
            XCTAssertFalse(f.s.isAllocated(UInt(nelems)), "past the last slot")
        }
    }

    /// The last free slot of a window, then the next window: nextFreeFast stops at the
    /// window's end, nextFreeIndex moves on.
    func testWindowAdvance() {
        let f = FakeSpan(nelems: 128)
        f.bits[0] = ~(UInt64(1) << 63)    // only slot 63 free in window 0
        f.bits[1] = ~UInt64(3)            // slots 64 and 65 free
        f.s.primeAllocCache()
        XCTAssertEqual(f.s.nextFreeFast(), 63)
        XCTAssertEqual(f.s.nextFreeFast(), UInt.max, "window 0 used up")
        XCTAssertEqual(f.s.nextFreeIndex(), 64)
        XCTAssertEqual(f.s.pointee.freeIndex, 64, "window 1 is current")
        XCTAssertEqual(f.s.nextFreeFast(), 65)
        XCTAssertEqual(f.s.nextFreeFast(), UInt.max)
        XCTAssertEqual(f.s.nextFreeIndex(), 128)
        XCTAssertEqual(f.s.nextFreeIndex(), 128)
    }

    // MARK: objectIndex

    /// objectIndex (multiply by the class's magic reciprocal, shift by 32) equals
    /// offset / size for every byte offset of a span of every class.
    func testObjectIndexMatchesDivisionForEveryClassAndOffset() {
        let s = UnsafeMutablePointer<MSpan>.allocate(capacity: 1)
        s.initialize(to: .empty)
        defer { s.deinitialize(count: 1); s.deallocate() }
        let base: UInt = 0x7100_0000_0000
        for c in 1..<SizeClassTable.numSizeClasses {
            let size = UInt(SizeClassTable.classToSize[c])
            let spanBytes = UInt(SizeClassTable.classToAllocNPages[c]) * 8192
            s.pointee.startAddr = base
            s.pointee.elemSize = size
            s.pointee.divMul = SizeClassTable.classToDivMagic[c]
            s.pointee.nelems = spanBytes / size
            var bad = 0
            var off: UInt = 0
            while off < spanBytes {
                if s.objectIndex(base + off) != off / size { bad += 1 }
                off += 1
            }
            XCTAssertEqual(bad, 0, "class \(c) (size \(size)): offsets where objectIndex != offset / size")
            // The first and last byte of every slot.
            for i in 0..<s.pointee.nelems {
                XCTAssertEqual(s.objectIndex(base + i * size), i)
                XCTAssertEqual(s.objectIndex(base + i * size + size - 1), i)
            }
        }
    }

    /// A large object's span has divMul 0: every address in it is object 0.
    func testObjectIndexOfLargeSpanIsZero() {
        let s = UnsafeMutablePointer<MSpan>.allocate(capacity: 1)
        s.initialize(to: .empty)
        defer { s.deinitialize(count: 1); s.deallocate() }
        let base: UInt = 0x7200_0000_0000
        s.pointee.startAddr = base
        s.pointee.npages = 100
        s.pointee.elemSize = 100 * 8192
        s.pointee.nelems = 1
        s.pointee.divMul = 0
        for off: UInt in [0, 1, 8, 8191, 8192, 100 * 8192 - 1] {
            XCTAssertEqual(s.objectIndex(base + off), 0)
        }
    }

    /// The magic numbers in the table are Go's formula, ⌈2^32 / size⌉.
    func testDivMagicTable() {
        for c in 1..<SizeClassTable.numSizeClasses {
            let size = UInt64(SizeClassTable.classToSize[c])
            XCTAssertEqual(UInt64(SizeClassTable.classToDivMagic[c]), UInt64(UInt32.max) / size + 1, "class \(c)")
        }
    }

    /// The mark table (a byte per slot): `setMarked`/`isMarked`, packing into bits
    /// (`markWord`), allocate-black's run stores (`setMarkBytes`), and the sweep's
    /// `packMarks`, which leaves the packed bits in gcmarkBits and the table clear — for
    /// random mark patterns on spans of 1 to 1024 slots.
    func testMarkTablePacksIntoBitsAndClears() {
        var rng = SplitMix64(seed: 0x3A4B)
        for nelems in [1, 2, 63, 64, 65, 170, 512, 1000, 1024] {
            let f = FakeSpan(nelems: nelems)
            let words = f.words
            let table = UnsafeMutablePointer<UInt8>.allocate(capacity: words * 64)
            table.initialize(repeating: 0, count: words * 64)
            let packed = UnsafeMutablePointer<UInt64>.allocate(capacity: words)
            packed.initialize(repeating: 0, count: words)
            defer { table.deallocate(); packed.deallocate() }
            f.s.pointee.gcmarkBytes = table
            f.s.pointee.gcmarkBits = packed
            for round in 0..<20 {
                var want = [UInt64](repeating: 0, count: words)
                let density = [0, 1, 10, 50, 90, 100][round % 6]
                for i in 0..<nelems where rng.chance(density) {
                    f.s.setMarked(UInt(i))
                    want[i / 64] |= 1 << UInt64(i % 64)
                }
                // Allocate-black marks free slots in runs and unmarks them again: a
                // random mask of other slots set and then cleared leaves the marks as
                // they were.
                for w in 0..<words {
                    let extra = rng.next() & ~want[w] & f.s.validMask(UInt(w) * 64)
                    f.s.setMarkBytes(word: w, slots: extra, to: 1)
                    XCTAssertEqual(f.s.markWord(w), want[w] | extra, "\(nelems) slots, word \(w): runs set")
                    f.s.setMarkBytes(word: w, slots: extra, to: 0)
                }
                for i in 0..<nelems {
                    XCTAssertEqual(f.s.isMarked(UInt(i)), (want[i / 64] >> UInt64(i % 64)) & 1 != 0, "\(nelems) slots, slot \(i)")
                }
                for w in 0..<words { XCTAssertEqual(f.s.markWord(w), want[w], "\(nelems) slots, word \(w)") }
                f.s.packMarks()
                for w in 0..<words { XCTAssertEqual(packed[w], want[w], "\(nelems) slots, packed word \(w)") }
                XCTAssertFalse((0..<words * 64).contains { table[$0] != 0 }, "\(nelems) slots: table not clear after packMarks")
                XCTAssertFalse((0..<nelems).contains { f.s.isMarked(UInt($0)) })
            }
            f.s.pointee.gcmarkBytes = nil
            f.s.pointee.gcmarkBits = nil
        }
    }

    /// MSpan's cache-line groups (see the struct): the fast path's fields in line 0, the
    /// fields greyObject reads in line 1, the size a multiple of a line.
    func testSpanFieldsSitInTheirCacheLines() {
        func line(_ k: PartialKeyPath<MSpan>) -> Int { MemoryLayout<MSpan>.offset(of: k)! / 64 }
        XCTAssertEqual(MemoryLayout<MSpan>.stride % 64, 0)
        for k: PartialKeyPath<MSpan> in [\.allocCache, \.windowBase, \.elemSize, \.windowTypeIDs, \.freeIndex, \.heldCache] {
            XCTAssertEqual(line(k), 0, "\(k)")
        }
        for k: PartialKeyPath<MSpan> in [\.startAddr, \.limit, \.typeIDs, \.gcmarkBytes, \.divMul, \.spanClass, \.state, \.filledType] {
            XCTAssertEqual(line(k), 1, "\(k)")
        }
        // Written while the span is in use by others than its owner: not in the markers' line.
        for k: PartialKeyPath<MSpan> in [\.next, \.sweepgen, \.hasSpecials, \.keptEmpty, \.allocCountBeforeCache, \.blackened] {
            XCTAssertEqual(line(k), 2, "\(k)")
        }
    }
}
