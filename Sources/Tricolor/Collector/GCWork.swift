import CTricolor
import Glibc

// Grey work (Go's gcWork and workbuf lists, mgcwork.go).
//
// Every marker — a background worker, a mutator doing an assist, a stack scan or a
// write-barrier flush, the thread finishing a cycle — greys objects into its own
// `GCWork`, a growable local stack. Work moves between markers through one global
// list (`WorkList`): a marker whose local stack grows large publishes half of it, and a
// marker that runs dry takes a batch. Go's global lists are lock-free stacks of 2 KiB
// buffers; ours is one array under a lock, touched once per batch of up to 256 entries.
//
// Entries pack an object's base address (low 48 bits) with its 16-bit slot type.

struct GCWork {
    var base: UnsafeMutablePointer<UInt>
    var count = 0
    var capacity: Int
    /// Bytes of objects this marker marked (Go's gcw.bytesMarked).
    var bytesMarked: UInt = 0
    /// Bytes this marker scanned (Go's heapScanWork).
    var scanWork: UInt = 0

    static let batch = 256

    init(capacity: Int = 1024) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    func destroy() { base.deallocate() }

    @inline(__always) mutating func push(_ p: UInt) {
        if _slowPath(count == capacity) { grow() }
        base[count] = p
        count &+= 1
    }

    @inline(__always) mutating func pop() -> UInt? {
        if count == 0 { return nil }
        count &-= 1
        return base[count]
    }

    var isEmpty: Bool { count == 0 }

    mutating func grow() {
        let n = UnsafeMutablePointer<UInt>.allocate(capacity: capacity * 2)
        n.moveInitialize(from: base, count: count)
        base.deallocate()
        base = n
        capacity *= 2
    }
}

/// The global list of grey objects shared by all markers.
final class WorkList: @unchecked Sendable {
    let lock = RuntimeLock(rank: .work)
    var base: UnsafeMutablePointer<UInt>
    var count = 0          // lock
    var capacity = 4096    // lock
    /// Entries ever published; a termination check compares it before and after.
    var published: UInt = 0  // lock
    /// Mirrors `count` for lock-free peeks (relaxed).
    let approxCount = UnsafeMutablePointer<UInt>.allocate(capacity: 1)

    init() {
        base = .allocate(capacity: capacity)
        approxCount.initialize(to: 0)
    }

    deinit {
        base.deallocate()
        approxCount.deallocate()
        lock.destroy()
    }

    var isEmptyApprox: Bool { tc_load_relaxed(approxCount) == 0 }

    /// Room for `n` more entries. Lock held.
    private func reserveLocked(_ n: Int) {
        if count + n <= capacity { return }
        var c = capacity
        while c < count + n { c *= 2 }
        let nb = UnsafeMutablePointer<UInt>.allocate(capacity: c)
        nb.moveInitialize(from: base, count: count)
        base.deallocate()
        base = nb
        capacity = c
    }

    /// Move `n` entries from the top of `w` here.
    func put(from w: inout GCWork, _ n: Int) {
        if n == 0 { return }
        lock.lock()
        reserveLocked(n)
        (base + count).moveInitialize(from: w.base + (w.count - n), count: n)
        w.count -= n
        count += n
        published &+= UInt(n)
        tc_store_relaxed(approxCount, UInt(count))
        lock.unlock()
    }

    /// Move the `n` oldest entries of `w` (the bottom of its stack) here, for another
    /// marker to take (Go's gcWork.balance). A marker scanning a tree depth-first keeps
    /// only a few dozen entries, each the root of a pending subtree, and the oldest ones
    /// are the biggest subtrees: handing those out keeps a second marker busy longest.
    func putOldest(from w: inout GCWork, _ n: Int) {
        if n == 0 { return }
        lock.lock()
        reserveLocked(n)
        (base + count).moveInitialize(from: w.base, count: n)
        count += n
        published &+= UInt(n)
        tc_store_relaxed(approxCount, UInt(count))
        lock.unlock()
        memmove(w.base, w.base + n, (w.count - n) * MemoryLayout<UInt>.stride)
        w.count -= n
    }

    /// Publish everything `w` holds.
    func putAll(from w: inout GCWork) { put(from: &w, w.count) }

    /// Move up to `GCWork.batch` entries into `w`. False when the list is empty.
    func get(into w: inout GCWork) -> Bool {
        if isEmptyApprox { return false }
        lock.lock()
        let n = min(count, GCWork.batch)
        if n == 0 { lock.unlock(); return false }
        while w.count + n > w.capacity { w.grow() }
        (w.base + w.count).moveInitialize(from: base + (count - n), count: n)
        w.count += n
        count -= n
        tc_store_relaxed(approxCount, UInt(count))
        lock.unlock()
        return true
    }

    func reset() {
        lock.withLock { count = 0; tc_store_relaxed(approxCount, 0) }
    }

    var publishedCount: UInt { lock.withLock { published } }
}
