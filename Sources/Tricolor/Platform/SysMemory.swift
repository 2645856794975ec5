import CTricolor
import Glibc

// OS memory, named after the state changes Go uses (runtime/mem.go):
//
//   None ──reserve──► Reserved ──map──► Prepared ──used──► Ready
//                        ▲  ◄──fault───────┘ ▲                │
//                        │                   └──── unused ────┘ (madvise DONTNEED)
//                        └──────────── free (from any state) ──► None
//
// Reserved: address space only (PROT_NONE); touching it faults. Not charged against the
//           kernel's commit limit (only writable private mappings are).
// Prepared: readable and writable, but the runtime has not started using it; the kernel
//           commits pages only on first touch, and reads of untouched pages are zero.
// Ready:    in use by the heap; transparent huge pages are requested (first-touch faults
//           cost ~1.5 µs per 4 KiB page on this VM, ~3× less with 2 MiB pages).
//
// Go on 64-bit reserves arenas one by one at hint addresses; Tricolor reserves one
// contiguous range at heap creation and hands it out arena by arena, so page numbers
// are contiguous and the page allocator's summary tree is a plain array. The range is
// address space only; it costs no memory until arenas in it are mapped.
//
// What cannot be backed fails, it is not killed. Go's sysReserve maps PROT_NONE without
// MAP_NORESERVE and sysMap remaps the range it grows into READ|WRITE without
// MAP_NORESERVE, so each growth is charged against the kernel's commit limit: under the
// default heuristic (vm.overcommit_memory=0) one request larger than RAM + swap gets
// ENOMEM ("runtime: out of memory"); under overcommit_memory=2 the strict limit applies;
// under 1 nothing is refused, and nothing is touched either. Tricolor does the same with
// one difference: `map` is an mprotect of the reservation, not a MAP_FIXED mmap over it,
// because a failing MAP_FIXED mmap may already have unmapped the old range (a hole in
// the reservation that another mmap could take), while a failing mprotect changes
// nothing, and the heap must keep working after an out-of-memory from tryAllocate.
//
// Every call checks its errno and reports it to the caller, which counts only what the
// OS did (a failed DONTNEED is not "released"). The calls themselves, their counters
// and the fault-injection seam for tests are in SysMemory+Linux.swift.
enum SysMemory {
    /// Reserve `n` bytes of address space (None → Reserved). nil when the OS refuses.
    static func reserve(_ n: Int) -> UnsafeMutableRawPointer? {
        // No MAP_NORESERVE: a PROT_NONE mapping is not charged, and without the flag
        // `map`'s mprotect is (see the top of this file).
        guard let p = try? SysCall.mmap(nil, n, prot: PROT_NONE, flags: MAP_PRIVATE | MAP_ANONYMOUS, op: .reserve).get() else { return nil }
        // Left out of core files until `map` (gcore and the kernel would otherwise write
        // the whole reservation, 256 GiB by default, as zeros). Advice only.
        _ = Glibc.madvise(p, n, MADV_DONTDUMP)
        return p
    }

    /// Reserved → Prepared: the range becomes readable and writable, charged against
    /// the commit limit. ENOMEM: the kernel will not promise the memory (out of memory).
    /// Mapping a range that is already Prepared or Ready is allowed and changes nothing.
    /// - Precondition: `p` and `n` are OS-page aligned, inside a reservation.
    static func map(_ p: UnsafeMutableRawPointer, _ n: Int) -> Result<Void, Errno> {
        let r = SysCall.mprotect(p, n, prot: PROT_READ | PROT_WRITE, op: .map)
        // Heap memory belongs in a core file (see `reserve`). Advice only.
        if case .success = r { _ = Glibc.madvise(p, n, MADV_DODUMP) }
        return r
    }

    /// Prepared (or Ready) → Reserved: drops the pages and the commit charge (Go's
    /// sysFault, used to undo a `map` whose growth failed later). False when the OS
    /// refuses; the range is then still mapped, and reads as before.
    @discardableResult
    static func fault(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        let r = SysCall.mmap(p, n, prot: PROT_NONE, flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, op: .fault)
        if case .success(let q) = r, q == p {
            _ = Glibc.madvise(p, n, MADV_DONTDUMP)   // a fresh mapping: out of core files again
            return true
        }
        return false
    }

    /// Prepared → Ready: asks for transparent huge pages. Advice only: an error (EINVAL
    /// when THP is compiled out) changes nothing the heap relies on, so it is ignored here.
    static func used(_ p: UnsafeMutableRawPointer, _ n: Int) {
        _ = SysCall.madvise(p, n, MADV_HUGEPAGE, op: .hugePage)
    }

    /// What `populate` did.
    enum PopulateResult: Equatable {
        /// The range is faulted in.
        case populated
        /// Not done, and no harm: the kernel lacks MADV_POPULATE_WRITE (EINVAL before
        /// Linux 5.14) or gave up for another reason than memory; the pages fault in on
        /// first touch instead.
        case skipped(Errno)
        /// The kernel could not back the range (ENOMEM). Some pages may have been
        /// faulted in; the caller gives the range back.
        case outOfMemory
    }

    /// Fault a Ready range in for writing now (MADV_POPULATE_WRITE), so that the first
    /// writes to it do not fault. With transparent huge pages each first write to a
    /// 2 MiB region clears a whole huge page in the kernel, which takes milliseconds.
    /// Only for memory the heap is about to use in small pieces (small-object spans):
    /// never for a large object's own pages, which may never be touched.
    ///
    /// Older kernels have no MADV_POPULATE_WRITE; there is no fallback that touches
    /// pages by hand, because a touch that cannot be backed is an OOM kill, not an error.
    static func populate(_ p: UnsafeMutableRawPointer, _ n: Int) -> PopulateResult {
        switch SysCall.madvise(p, n, SysMemory.madvPopulateWrite, op: .populate) {
        case .success: return .populated
        case .failure(let e) where e.rawValue == ENOMEM: return .outOfMemory
        case .failure(let e): return .skipped(e)
        }
    }

    /// MADV_POPULATE_WRITE (Linux 5.14), spelled out for older C headers.
    static let madvPopulateWrite: Int32 = 23

    /// Ready → Prepared: give the physical pages back; contents read as zero afterwards.
    /// False when the OS refused: the pages are still resident and keep their contents,
    /// so the caller must not count them as released.
    /// - Precondition: `p` and `n` are OS-page aligned.
    static func unused(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        if case .success = SysCall.madvise(p, n, MADV_DONTNEED, op: .unused) { return true }
        return false
    }

    /// Any state → None. False when the OS refused (the range stays mapped: leaked).
    @discardableResult
    static func free(_ p: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        if case .success = SysCall.munmap(p, n, op: .free) { return true }
        return false
    }

    /// Off-heap runtime metadata straight from the OS (Go's sysAlloc for metadata),
    /// readable, writable and zeroed. nil when the OS refuses. MAP_NORESERVE: metadata
    /// tables are sized for the whole reservation and touched only as the heap grows.
    ///
    /// `populate` (FixAlloc's small chunks, all of which is used): fault every page in
    /// writable now (MAP_POPULATE). Otherwise a block whose first access is a read — a
    /// span's mark table, which markers and the sweeper read before they write — maps
    /// the shared zero page, and the first write then takes a copy-on-write fault with
    /// a TLB shootdown to the other CPUs. Measured: sweeping 101 spans on a refill took
    /// 0.7–2.3 ms in the growth benchmark, in `do_wp_page` → `flush_tlb_mm_range` IPIs.
    static func allocMetadata(_ n: Int, populate: Bool = false) -> UnsafeMutableRawPointer? {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : MAP_NORESERVE)
        return try? SysCall.mmap(nil, n, prot: PROT_READ | PROT_WRITE, flags: flags, op: .metadata).get()
    }
}

/// Fixed-size allocator for runtime metadata (Go's fixalloc): carves 16 KiB chunks
/// obtained from the OS into equal blocks and keeps a free list threaded through
/// freed blocks. Not thread-safe: callers hold the lock that owns it (the heap lock).
/// Blocks are zeroed when handed out. `destroy()` returns every chunk to the OS.
///
/// Invariants: sys == chunks × chunkBytes; inUse == blocks handed out and not freed × size.
@usableFromInline
struct FixAlloc {
    let size: Int
    var chunk: UnsafeMutableRawPointer? = nil
    var chunkLeft = 0
    var freeList: UnsafeMutableRawPointer? = nil
    var inUse = 0
    var sys = 0
    /// Every chunk taken from the OS, newest first, so that `destroy` can give them
    /// back. The records are plain C memory (malloc), not chunk space: a chunk of
    /// 16 KiB blocks has no room for a link.
    var chunks: UnsafeMutablePointer<ChunkRecord>? = nil
    static let chunkBytes = 16 << 10

    struct ChunkRecord {
        var base: UnsafeMutableRawPointer
        var next: UnsafeMutablePointer<ChunkRecord>?
    }

    init(size: Int) {
        runtimeCheck(size >= 8 && size <= FixAlloc.chunkBytes)
        self.size = (size + 15) & ~15
    }

    mutating func alloc() -> UnsafeMutableRawPointer? {
        if let p = freeList {
            inUse += size
            freeList = p.load(as: UnsafeMutableRawPointer?.self)
            p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            return p
        }
        if chunkLeft < size {
            guard let c = SysMemory.allocMetadata(FixAlloc.chunkBytes, populate: true) else { return nil }
            let record = UnsafeMutablePointer<ChunkRecord>.allocate(capacity: 1)
            record.initialize(to: ChunkRecord(base: c, next: chunks))
            chunks = record
            sys += FixAlloc.chunkBytes
            chunk = c
            chunkLeft = FixAlloc.chunkBytes
        }
        inUse += size
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

    /// Give every chunk back to the OS. Every block becomes invalid; the allocator is
    /// empty afterwards (and may be used again).
    mutating func destroy() {
        var r = chunks
        while let record = r {
            SysMemory.free(record.pointee.base, FixAlloc.chunkBytes)
            r = record.pointee.next
            record.deinitialize(count: 1)
            record.deallocate()
        }
        chunks = nil
        chunk = nil
        chunkLeft = 0
        freeList = nil
        inUse = 0
        sys = 0
    }
}

/// Variable-size metadata blocks (mark/alloc bitmaps, per-slot type arrays) in
/// power-of-two buckets from 16 B to 16 KiB, each bucket a FixAlloc.
/// Callers hold the heap lock. `destroy()` returns every chunk to the OS.
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

    var sys: Int { (0..<MetaAlloc.numBuckets).reduce(0) { $0 + buckets[$1].sys } }
    var inUse: Int { (0..<MetaAlloc.numBuckets).reduce(0) { $0 + buckets[$1].inUse } }

    /// Give every bucket's chunks back to the OS and free the bucket table. The
    /// allocator must not be used afterwards (Heap.deinit).
    func destroy() {
        for i in 0..<MetaAlloc.numBuckets { buckets[i].destroy() }
        buckets.deinitialize(count: MetaAlloc.numBuckets)
        buckets.deallocate()
    }
}
