import CTricolor
import Glibc

// OS memory, named after the state changes Go uses (runtime/mem.go):
//
//   None ──reserve──► Reserved ──map──► Prepared ──used──► Ready
//                        ▲                 │ unused (madvise DONTNEED)
//                        └──── free ───────┘
//
// Reserved: address space only (PROT_NONE, MAP_NORESERVE); touching it faults.
// Prepared: readable and writable, but the runtime has not started using it; on Linux
//           the kernel commits pages only on first touch.
// Ready:    in use by the heap; transparent huge pages are requested (first-touch faults
//           cost ~1.5 µs per 4 KiB page on this VM, ~3× less with 2 MiB pages).
//
// Go on 64-bit reserves arenas one by one at hint addresses; Tricolor reserves one
// contiguous range at heap creation and hands it out arena by arena, so page numbers
// are contiguous and the page allocator's summary tree is a plain array. The range is
// address space only; it costs no memory until arenas in it are mapped.
enum SysMemory {
    /// Reserve `n` bytes of address space. nil when the OS refuses.
    static func reserve(_ n: Int) -> UnsafeMutableRawPointer? {
        tc_mmap_reserve(n)
    }

    /// Reserved → Prepared. False when the OS refuses (out of memory).
    static func map(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        tc_mmap_commit(p, n) == 0
    }

    /// Prepared → Ready.
    static func used(_ p: UnsafeMutableRawPointer, _ n: Int) {
        _ = tc_madvise_hugepage(p, n)
    }

    /// Fault a Ready range in for writing now (MADV_POPULATE_WRITE), so that the first
    /// writes to it do not fault. With transparent huge pages each first write to a
    /// 2 MiB region clears a whole huge page in the kernel, which takes milliseconds.
    static func populate(_ p: UnsafeMutableRawPointer, _ n: Int) {
        tc_populate_write(p, n)
    }

    /// Ready → Prepared: give the physical pages back; contents read as zero afterwards.
    static func unused(_ p: UnsafeMutableRawPointer, _ n: Int) {
        _ = tc_madvise_dontneed(p, n)
    }

    /// Any state → None.
    static func free(_ p: UnsafeMutableRawPointer, _ n: Int) {
        _ = tc_munmap(p, n)
    }

    /// Off-heap runtime metadata straight from the OS (Go's sysAlloc for metadata),
    /// readable, writable and zeroed. nil when the OS refuses.
    static func allocMetadata(_ n: Int) -> UnsafeMutableRawPointer? {
        tc_mmap_anon(n)
    }
}

/// Fixed-size allocator for runtime metadata (Go's fixalloc): carves 16 KiB chunks
/// obtained from the OS into equal blocks and keeps a free list threaded through
/// freed blocks. Not thread-safe: callers hold the lock that owns it (the heap lock).
/// Blocks are zeroed when handed out. `destroy` gives every chunk back (the heap's
/// deinit); Go never frees its fixallocs, but a Tricolor process may create and drop
/// many heaps.
@usableFromInline
struct FixAlloc {
    let size: Int
    var chunk: UnsafeMutableRawPointer? = nil
    var chunkLeft = 0
    var freeList: UnsafeMutableRawPointer? = nil
    var inUse = 0
    var sys = 0
    /// Every chunk taken from the OS (`chunkCount` of `chunkCapacity` entries), for
    /// `destroy`. Outside the chunks, because a 16 KiB block fills a whole chunk.
    var chunks: UnsafeMutablePointer<UnsafeMutableRawPointer>? = nil
    var chunkCount = 0
    var chunkCapacity = 0
    static let chunkBytes = 16 << 10

    init(size: Int) {
        precondition(size >= 8 && size <= FixAlloc.chunkBytes)
        self.size = (size + 15) & ~15
    }

    mutating func alloc() -> UnsafeMutableRawPointer? {
        inUse += size
        if let p = freeList {
            freeList = p.load(as: UnsafeMutableRawPointer?.self)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            return p
        }
        if chunkLeft < size {
            guard let c = SysMemory.allocMetadata(FixAlloc.chunkBytes) else { inUse -= size; return nil }
            recordChunk(c)
            sys += FixAlloc.chunkBytes
            chunk = c
            chunkLeft = FixAlloc.chunkBytes
        }
        let p = chunk!
        chunk = p + size
        chunkLeft -= size
        return p  // fresh OS memory is zero
    }

    mutating func free(_ p: UnsafeMutableRawPointer) {
        inUse -= size
        p.storeBytes(of: freeList, as: UnsafeMutableRawPointer?.self)
        freeList = p
    }

    private mutating func recordChunk(_ c: UnsafeMutableRawPointer) {
        if chunkCount == chunkCapacity {
            let cap = max(16, chunkCapacity * 2)
            let n = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: cap)
            if let old = chunks {
                n.moveInitialize(from: old, count: chunkCount)
                old.deallocate()
            }
            chunks = n
            chunkCapacity = cap
        }
        (chunks! + chunkCount).initialize(to: c)
        chunkCount += 1
    }

    /// Give every chunk back to the OS. Every block is gone with them.
    mutating func destroy() {
        if let cs = chunks {
            for i in 0..<chunkCount { SysMemory.free(cs[i], FixAlloc.chunkBytes) }
            cs.deallocate()
        }
        chunks = nil
        chunkCount = 0
        chunkCapacity = 0
        chunk = nil
        chunkLeft = 0
        freeList = nil
        inUse = 0
        sys = 0
    }
}

/// Variable-size metadata blocks (mark/alloc bitmaps, per-slot type arrays) in
/// power-of-two buckets from 16 B to 16 KiB, each bucket a FixAlloc.
/// Callers hold the heap lock.
struct MetaAlloc {
    static let numBuckets = 11   // 16 B ... 16 KiB
    let buckets: UnsafeMutablePointer<FixAlloc>

    init() {
        buckets = .allocate(capacity: MetaAlloc.numBuckets)
        for i in 0..<MetaAlloc.numBuckets { (buckets + i).initialize(to: FixAlloc(size: 16 << i)) }
    }

    static func bucket(_ n: Int) -> Int {
        let n = max(n, 16)
        return (Int.bitWidth - (n - 1).leadingZeroBitCount) - 4
    }

    func alloc(_ n: Int) -> UnsafeMutableRawPointer? { buckets[MetaAlloc.bucket(n)].alloc() }
    func free(_ p: UnsafeMutableRawPointer, _ n: Int) { buckets[MetaAlloc.bucket(n)].free(p) }

    /// Give every bucket's chunks back to the OS, and the bucket table.
    func destroy() {
        for i in 0..<MetaAlloc.numBuckets { buckets[i].destroy() }
        buckets.deinitialize(count: MetaAlloc.numBuckets)
        buckets.deallocate()
    }

    var sys: Int { (0..<MetaAlloc.numBuckets).reduce(0) { $0 + buckets[$1].sys } }
    var inUse: Int { (0..<MetaAlloc.numBuckets).reduce(0) { $0 + buckets[$1].inUse } }
}
