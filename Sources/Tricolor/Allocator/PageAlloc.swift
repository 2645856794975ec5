// The page allocator: which 8 KiB pages of the heap's reserved range are free.
//
// Design (after Go's pageAlloc, simplified to one contiguous range):
// - a bitmap with one bit per page, 1 = in use (Go's pallocBits);
// - the pages are grouped in chunks of 512 pages (4 MiB, Go's pallocChunkPages), and
//   every chunk has a summary (start, max, end): free pages at its start, the longest
//   free run anywhere in it, free pages at its end (Go's pallocSum);
// - the chunk summaries are the leaves of a binary summary tree; an inner node's summary
//   is merged from its two children, so the root knows the longest free run in the heap.
//   Go uses a 5-level radix tree with 8-way nodes over the whole address space; a binary
//   tree over our single reservation is the same idea with less code.
//
// find(n) walks from the root to the lowest-addressed run of n free pages in
// O(log chunks) plus one 512-bit scan, whatever the size of the heap; alloc and free
// update the bitmap and the summaries of the chunks they touch and their ancestors.
//
// Pages beyond the grown part of the heap have all-zero summaries ("no free pages"),
// which is what fresh zeroed memory from the OS reads as.
//
// Invariants (checkInvariants):
// - every leaf summary equals the summary computed from its chunk's bitmap (grown chunks);
// - every inner summary equals the merge of its children;
// - ungrown chunks have summary (0, 0, 0);
// - scavenged ⊆ free pages, and scavengedPages == popcount(scavenged): a page is marked
//   only after the OS accepted its release.
//
// Not thread-safe: the heap lock protects it.

@usableFromInline
struct PallocSum: Equatable, Sendable {
    var start: UInt32
    var max: UInt32
    var end: UInt32
    static let zero = PallocSum(start: 0, max: 0, end: 0)
}

struct PageAlloc {
    static let chunkPages = 512
    static let wordsPerChunk = chunkPages / 64

    let totalPages: Int          // pages covered by the reservation
    let numChunks: Int           // a power of two
    let bitmap: UnsafeMutablePointer<UInt64>
    let tree: UnsafeMutablePointer<PallocSum>   // 1-based heap layout: node i has children 2i, 2i+1
    var grownPages = 0           // pages [0, grownPages) have been added by grow
    /// `Configuration.internalChecks`: check the summaries of what each alloc and free
    /// changed (`checkRange`).
    var internalChecks = false
    var freePages = 0
    let metadataBytes: Int
    /// One bit per page, 1 = free and returned to the OS (Go's scavenged bitmap).
    let scavenged: UnsafeMutablePointer<UInt64>
    var scavengedPages = 0

    /// - Parameter pages: number of pages in the reserved range.
    init?(pages: Int) {
        var chunks = 1
        while chunks * PageAlloc.chunkPages < pages { chunks <<= 1 }
        numChunks = chunks
        totalPages = pages
        let bitmapBytes = chunks * PageAlloc.chunkPages / 8
        let treeBytes = 2 * chunks * MemoryLayout<PallocSum>.stride
        guard let b = SysMemory.allocMetadata(bitmapBytes) else { return nil }
        guard let t = SysMemory.allocMetadata(treeBytes) else {
            SysMemory.free(b, bitmapBytes)
            return nil
        }
        guard let sc = SysMemory.allocMetadata(bitmapBytes) else {
            SysMemory.free(b, bitmapBytes)
            SysMemory.free(t, treeBytes)
            return nil
        }
        scavenged = sc.bindMemory(to: UInt64.self, capacity: bitmapBytes / 8)
        bitmap = b.bindMemory(to: UInt64.self, capacity: bitmapBytes / 8)
        tree = t.bindMemory(to: PallocSum.self, capacity: 2 * chunks)
        metadataBytes = bitmapBytes + treeBytes
    }

    func destroy() {
        SysMemory.free(UnsafeMutableRawPointer(scavenged), numChunks * PageAlloc.chunkPages / 8)
        SysMemory.free(UnsafeMutableRawPointer(bitmap), numChunks * PageAlloc.chunkPages / 8)
        SysMemory.free(UnsafeMutableRawPointer(tree), 2 * numChunks * MemoryLayout<PallocSum>.stride)
    }

    var longestFreeRun: Int { Int(tree[1].max) }

    /// Metadata bytes actually in use: the bitmap and summary tree are reserved for the
    /// whole address range but only touched for the grown part (rounded to OS pages).
    var metadataInUse: Int {
        let total = numChunks * PageAlloc.chunkPages
        let frac = Double(grownPages) / Double(max(1, total))
        let bytes = Double(metadataBytes) * frac
        return (Int(bytes) + 4095) & ~4095
    }

    // MARK: growth

    /// Add pages [grownPages, grownPages + n) as free. n is a multiple of chunkPages.
    mutating func grow(_ n: Int) {
        runtimeCheck(n % PageAlloc.chunkPages == 0 && grownPages + n <= numChunks * PageAlloc.chunkPages)
        let first = grownPages
        grownPages += n
        freePages += n
        // The bitmap is already zero (free) for never-used pages.
        update(firstPage: first, count: n)
    }

    // MARK: queries

    /// The lowest page index starting a run of `n` free pages, or nil.
    func find(_ n: Int) -> Int? {
        runtimeCheck(n > 0)
        if Int(tree[1].max) < n { return nil }
        var node = 1
        var base = 0
        var span = numChunks * PageAlloc.chunkPages
        while node < numChunks {
            let l = tree[2 * node], r = tree[2 * node + 1]
            let half = span / 2
            if Int(l.max) >= n {
                node = 2 * node
            } else if Int(l.end) + Int(r.start) >= n {
                return base + half - Int(l.end)
            } else {
                node = 2 * node + 1
                base += half
            }
            span = half
        }
        // A leaf: the run lies inside this chunk.
        return PageAlloc.findRun(bitmap + (base / 64), words: PageAlloc.wordsPerChunk, n).map { base + $0 }
    }

    /// First run of `n` zero bits in `words` 64-bit words; bit i of word w is page w*64+i.
    static func findRun(_ bits: UnsafeMutablePointer<UInt64>, words: Int, _ n: Int) -> Int? {
        var runStart = 0
        var runLen = 0
        for w in 0..<words {
            var x = bits[w]
            if x == 0 {
                if runLen == 0 { runStart = w * 64 }
                runLen += 64
                if runLen >= n { return runStart }
                continue
            }
            if x == ~0 { runLen = 0; continue }
            var bit = 0
            while bit < 64 {
                // free bits: count trailing zeros of x from `bit`
                let free = (x >> UInt64(bit)).trailingZeroBitCount
                let freeHere = min(free, 64 - bit)
                if freeHere > 0 {
                    if runLen == 0 { runStart = w * 64 + bit }
                    runLen += freeHere
                    if runLen >= n { return runStart }
                    bit += freeHere
                }
                if bit >= 64 { break }
                // used bits
                let used = (~x >> UInt64(bit)).trailingZeroBitCount
                bit += min(used, 64 - bit)
                runLen = 0
            }
            x = 0
        }
        return nil
    }

    // MARK: allocation

    /// Allocate `n` pages; returns the first page index, or nil when no run is long enough.
    mutating func alloc(_ n: Int) -> Int? {
        allocReportingScavenged(n)?.page
    }

    /// Allocate `n` pages; returns the first page index and how many of the pages had
    /// been returned to the OS (they read as zero), or nil when no run is long enough.
    mutating func allocReportingScavenged(_ n: Int) -> (page: Int, scavenged: Int)? {
        guard n > 0, n <= totalPages, let p = find(n) else { return nil }
        let scavenged = unscavenge(p, n)
        setRange(p, n, used: true)
        freePages -= n
        update(firstPage: p, count: n)
        if internalChecks { checkRange(p, n) }
        return (p, scavenged)
    }

    mutating func free(_ page: Int, _ n: Int) {
        runtimeCheck(page >= 0 && page + n <= grownPages)
        setRange(page, n, used: false)
        freePages += n
        update(firstPage: page, count: n)
        if internalChecks { checkRange(page, n) }
    }

    /// Pages being allocated are in use again: clear their scavenged bits. Returns how
    /// many were set.
    private mutating func unscavenge(_ first: Int, _ n: Int) -> Int {
        if scavengedPages == 0 { return 0 }
        var cleared = 0
        var i = first
        let end = first + n
        while i < end {
            let w = i / 64, b = i % 64
            let k = Swift.min(64 - b, end - i)
            let mask: UInt64 = k == 64 ? ~0 : ((1 << UInt64(k)) - 1) << UInt64(b)
            let hit = scavenged[w] & mask
            if hit != 0 {
                scavenged[w] &= ~mask
                cleared += hit.nonzeroBitCount
            }
            i += k
        }
        scavengedPages -= cleared
        return cleared
    }

    /// Mark pages [first, first + n) in use without an owner: the reserved part of
    /// growth in progress (Allocator/HeapGrowth.swift). They must be free and not
    /// returned to the OS.
    mutating func reserve(_ first: Int, _ n: Int) {
        runtimeCheck(first >= 0 && first + n <= grownPages, "page alloc: reserving pages outside the grown heap")
        var i = first
        while i < first + n {
            runtimeCheck((scavenged[i / 64] >> UInt64(i % 64)) & 1 == 0, "page alloc: reserving page \(i), which is marked returned to the OS")
            i += 1
        }
        setRange(first, n, used: true)
        freePages -= n
        update(firstPage: first, count: n)
        if internalChecks { checkRange(first, n) }
    }

    /// Free pages whose memory the OS has just taken back (MADV_DONTNEED accepted):
    /// free and marked released, so that they count in HeapReleased and read as zero.
    mutating func freeReleased(_ first: Int, _ n: Int) {
        free(first, n)
        var i = first
        while i < first + n {
            let w = i / 64, b = UInt64(i % 64)
            if (scavenged[w] >> b) & 1 == 0 {
                scavenged[w] |= 1 << b
                scavengedPages += 1
            }
            i += 1
        }
    }

    /// The lowest run of free pages that were returned to the OS, at most `maxPages`
    /// long: taken out of the free pages (in use, no owner) and no longer marked
    /// released, for the grower to fault in again (Allocator/HeapGrowth.swift). nil
    /// when no page is released.
    mutating func takeReleasedRun(maxPages: Int) -> (first: Int, count: Int)? {
        guard scavengedPages > 0 else { return nil }
        var w = 0
        let words = (grownPages + 63) / 64
        while w < words && scavenged[w] == 0 { w += 1 }
        guard w < words else { return nil }
        let first = w * 64 + scavenged[w].trailingZeroBitCount
        var end = first
        while end < grownPages && end - first < maxPages && (scavenged[end / 64] >> UInt64(end % 64)) & 1 != 0 { end += 1 }
        let n = end - first
        _ = unscavenge(first, n)
        setRange(first, n, used: true)
        freePages -= n
        update(firstPage: first, count: n)
        if internalChecks { checkRange(first, n) }
        return (first, n)
    }

    /// Pages per transparent huge page (2 MiB).
    static let hugePagePages = 256

    /// Return up to `pages` free, not yet scavenged pages to the OS, highest addresses
    /// first (Go's scavenger prefers high addresses too, and allocation takes the lowest
    /// free run, so the two meet as rarely as possible). `release(page, count)` does the
    /// madvise and says whether the OS accepted it; only accepted runs are marked
    /// scavenged, and the first refusal ends the pass (the next would most likely be
    /// refused too). Returns the pages released.
    ///
    /// `wholeHugePages`: release only whole 2 MiB-aligned blocks that are entirely free,
    /// so that no huge page that still backs live spans is split into 4 KiB pages (which
    /// costs TLB reach and a 4 KiB fault per page at reuse). The background scavenger
    /// makes such a pass first and falls back to any free run only when the goal is not
    /// met by whole huge pages (Go 1.21's scavenger likewise avoids breaking up dense
    /// huge pages).
    mutating func scavenge(_ pages: Int, wholeHugePages: Bool = false, release: (Int, Int) -> Bool) -> Int {
        if wholeHugePages { return scavengeHugePages(pages, release: release) }
        var done = 0
        var i = grownPages - 1
        while i >= 0 && done < pages {
            let w = i / 64, b = UInt64(i % 64)
            // A word with no free, unreleased page: skip it whole.
            if (~bitmap[w] & ~scavenged[w]) == 0 {
                i = w * 64 - 1
                continue
            }
            if (bitmap[w] >> b) & 1 == 0 && (scavenged[w] >> b) & 1 == 0 {
                // extend the run downwards
                var lo = i
                while lo > 0 && done + (i - lo + 1) < pages {
                    let j = lo - 1
                    if (bitmap[j / 64] >> UInt64(j % 64)) & 1 != 0 || (scavenged[j / 64] >> UInt64(j % 64)) & 1 != 0 { break }
                    lo = j
                }
                guard release(lo, i - lo + 1) else { break }
                for k in lo...i { scavenged[k / 64] |= 1 << UInt64(k % 64) }
                done += i - lo + 1
                scavengedPages += i - lo + 1
                i = lo - 1
            } else {
                i -= 1
            }
        }
        return done
    }

    private mutating func scavengeHugePages(_ pages: Int, release: (Int, Int) -> Bool) -> Int {
        let hp = PageAlloc.hugePagePages, words = hp / 64
        var done = 0
        var block = grownPages / hp - 1
        while block >= 0 && done < pages {
            let w0 = block * words
            var free = true, anyUnreleased = false
            for w in w0..<(w0 + words) {
                if bitmap[w] != 0 { free = false; break }
                if scavenged[w] != ~0 { anyUnreleased = true }
            }
            if free && anyUnreleased {
                // Release the block's unreleased runs (usually the whole block at once).
                var i = w0 * 64
                let end = i + hp
                while i < end {
                    if (scavenged[i / 64] >> UInt64(i % 64)) & 1 != 0 { i += 1; continue }
                    var j = i
                    while j < end && (scavenged[j / 64] >> UInt64(j % 64)) & 1 == 0 { j += 1 }
                    guard release(i, j - i) else { return done }
                    for k in i..<j { scavenged[k / 64] |= 1 << UInt64(k % 64) }
                    scavengedPages += j - i
                    done += j - i
                    i = j
                }
            }
            block -= 1
        }
        return done
    }

    func isUsed(_ page: Int) -> Bool { bitmap[page / 64] >> UInt64(page % 64) & 1 != 0 }

    private func setRange(_ first: Int, _ n: Int, used: Bool) {
        var i = first
        let end = first + n
        while i < end {
            let w = i / 64, b = i % 64
            let k = min(64 - b, end - i)
            let mask: UInt64 = k == 64 ? ~0 : ((1 << UInt64(k)) - 1) << UInt64(b)
            if used {
                runtimeCheck(bitmap[w] & mask == 0, "tricolor: page allocator: allocating a used page")
                bitmap[w] |= mask
            } else {
                runtimeCheck(bitmap[w] & mask == mask, "tricolor: page allocator: freeing a free page")
                bitmap[w] &= ~mask
            }
            i += k
        }
    }

    // MARK: summaries

    static func summarize(_ bits: UnsafeMutablePointer<UInt64>) -> PallocSum {
        var start = -1, maxRun = 0, run = 0
        for w in 0..<wordsPerChunk {
            let x = bits[w]
            if x == 0 { run += 64; continue }
            // free bits below the lowest used bit extend the current run
            let tz = x.trailingZeroBitCount
            run += tz
            if start < 0 { start = run }
            maxRun = Swift.max(maxRun, run)
            // the longest free run strictly between used bits of this word
            var y = x >> UInt64(tz)
            while y != 0 {
                y >>= UInt64((~y).trailingZeroBitCount)   // skip used bits
                if y == 0 { break }
                let z = y.trailingZeroBitCount            // free bits followed by a used bit
                maxRun = Swift.max(maxRun, z)
                y >>= UInt64(z)
            }
            run = x.leadingZeroBitCount
        }
        if start < 0 { start = run }
        maxRun = Swift.max(maxRun, run)
        return PallocSum(start: UInt32(start), max: UInt32(maxRun), end: UInt32(run))
    }

    /// Bit-by-bit version of `summarize`, for tests.
    static func referenceSummarize(_ bits: UnsafeMutablePointer<UInt64>) -> PallocSum {
        var start = 0, maxRun = 0, run = 0
        var inStart = true
        for i in 0..<chunkPages {
            if bits[i / 64] >> UInt64(i % 64) & 1 == 0 {
                run += 1
                if inStart { start += 1 }
            } else {
                inStart = false
                maxRun = Swift.max(maxRun, run)
                run = 0
            }
        }
        maxRun = Swift.max(maxRun, run)
        return PallocSum(start: UInt32(start), max: UInt32(maxRun), end: UInt32(run))
    }

    static func merge(_ l: PallocSum, _ r: PallocSum, half: Int) -> PallocSum {
        let h = UInt32(half)
        let start = l.start == h ? h + r.start : l.start
        let end = r.end == h ? h + l.end : r.end
        let m = Swift.max(l.max, r.max, l.end + r.start)
        return PallocSum(start: start, max: m, end: end)
    }

    private mutating func update(firstPage: Int, count: Int) {
        let c0 = firstPage / PageAlloc.chunkPages
        let c1 = (firstPage + count - 1) / PageAlloc.chunkPages
        for c in c0...c1 {
            tree[numChunks + c] = PageAlloc.summarize(bitmap + c * PageAlloc.wordsPerChunk)
        }
        // Recompute ancestors level by level.
        var lo = (numChunks + c0) / 2, hi = (numChunks + c1) / 2
        var half = PageAlloc.chunkPages
        while lo >= 1 {
            for node in lo...hi {
                tree[node] = PageAlloc.merge(tree[2 * node], tree[2 * node + 1], half: half)
            }
            if lo == 1 { break }
            lo /= 2; hi /= 2; half *= 2
        }
    }

    /// The cheap check after one alloc or free of pages [first, first + n): the touched
    /// chunks' leaf summaries against their bitmaps, and every node on the path from
    /// each to the root. O(chunks touched × log chunks).
    func checkRange(_ first: Int, _ n: Int) {
        let c0 = first / PageAlloc.chunkPages, c1 = (first + n - 1) / PageAlloc.chunkPages
        for c in c0...c1 {
            runtimeCheck(tree[numChunks + c] == PageAlloc.summarize(bitmap + c * PageAlloc.wordsPerChunk),
                         "page alloc: leaf \(c) summary stale after changing pages \(first)..<\(first + n)")
            var node = (numChunks + c) / 2
            var half = PageAlloc.chunkPages
            while node >= 1 {
                runtimeCheck(tree[node] == PageAlloc.merge(tree[2 * node], tree[2 * node + 1], half: half),
                             "page alloc: node \(node) stale after changing pages \(first)..<\(first + n)")
                node /= 2; half *= 2
            }
        }
    }

    func checkInvariants() {
        // Scavenged pages are free pages, counted in scavengedPages.
        var scav = 0
        for w in 0..<(numChunks * PageAlloc.wordsPerChunk) {
            runtimeCheck(scavenged[w] & bitmap[w] == 0, "page alloc: a page in use is marked returned to the OS (word \(w))")
            scav += scavenged[w].nonzeroBitCount
        }
        runtimeCheck(scav == scavengedPages, "page alloc: \(scav) pages marked scavenged, scavengedPages says \(scavengedPages)")
        for c in 0..<numChunks {
            let s = tree[numChunks + c]
            if c * PageAlloc.chunkPages < grownPages {
                runtimeCheck(s == PageAlloc.summarize(bitmap + c * PageAlloc.wordsPerChunk), "page alloc: leaf \(c) summary stale")
            } else {
                runtimeCheck(s == .zero, "page alloc: ungrown chunk \(c) has free pages")
            }
        }
        var half = PageAlloc.chunkPages
        var levelStart = numChunks / 2
        while levelStart >= 1 {
            for node in levelStart..<(2 * levelStart) {
                runtimeCheck(tree[node] == PageAlloc.merge(tree[2 * node], tree[2 * node + 1], half: half), "page alloc: node \(node) stale")
            }
            levelStart /= 2; half *= 2
        }
    }
}
