import CTricolor
import Glibc

// The stack allocator (Go's stack.go, stackalloc/stackfree): memory for shadow stacks,
// Tricolor's goroutine stacks, taken from the page heap in spans of the manual state.
//
// - Small stacks (2, 4, 8 and 16 KiB: orders 0…3) are carved from 32 KiB pool spans;
//   the global pool keeps, per order, the spans that still have a free stack, each
//   span's free stacks linked through their first word (Go's stackpool, manualFreeList).
// - Each mutator's MCache keeps a per-order cache of free stacks (Go's stackcache). It
//   refills from the pool up to half of 32 KiB at a time and drains back to half when
//   it reaches 32 KiB, so the pool lock is taken once per batch. Caches are emptied at
//   the start of each cycle and at detach (Go's stackcache_clear).
// - Stacks of 32 KiB and more are spans of their own (Go's large stacks).
// - Freeing while the collector marks keeps the memory in the allocator: a pool span
//   whose stacks are all free stays in the pool, a large stack goes to the free large
//   stacks (Go's stackLarge). `freeStackSpans` returns both to the page heap after mark
//   termination, as Go does, so no span changes state under a marker's feet.
//
// Stack spans are never swept, never in an mcentral, never marked through
// (`MSpanState.manual`), and count in StackInuse, not HeapInuse (Go's memstats).
//
// Invariants: a pool span of order k is in `stackPool[k]` iff it has a free stack;
// its allocCount is the number of its stacks handed out; a cache's `size` is the bytes
// on its list; every stack handed out is a power of two of at least 2 KiB and lies in
// one manual span. Protection: the stack lock for the pool and the large lists; the
// owning mutator for its cache (or anyone with the world stopped).

enum StackAlloc {
    /// The smallest stack, and a new mutator's (Go's _StackMin / _FixedStack).
    static let minStack = 2048
    /// Small-stack orders: 2 KiB << order for order 0..<4 (Go's _NumStackOrders).
    static let orders = 4
    /// A mutator cache's capacity per order, and the size of a pool span (Go's
    /// _StackCacheSize).
    static let cacheSize = 32 * 1024
    /// Buckets of free large stacks, by log2 of their pages.
    static let largeBuckets = 48
    /// Go's maxstacksize on 64-bit: 1 GB (decimal).
    static let defaultMaxStack = 1_000_000_000
    /// The largest value `setMaxStack` accepts: 2^40 bytes (Go caps it at twice the
    /// default, maxstackceiling; ours is a sanity bound that keeps every size product
    /// inside 64 bits).
    static let maxStackCeiling = 1 << 40

    /// The order of a small stack of `n` bytes (a power of two below 32 KiB).
    static func order(_ n: Int) -> Int { (n / minStack).trailingZeroBitCount }
}

/// A per-order list of free stacks in a mutator's cache (Go's stackfreelist).
struct StackFreeList {
    var head: UInt = 0      // first free stack; its first word links the next
    var size: UInt = 0      // bytes on the list
}

extension Heap {
    // MARK: allocation

    /// A stack of `n` bytes (a power of two, at least 2 KiB), from `cache` when given
    /// (the calling mutator's own, or any with the world stopped), else from the pool.
    /// nil when the heap cannot grow.
    func stackAlloc(_ n: Int, cache: UnsafeMutablePointer<MCache>?) -> UnsafeMutablePointer<UInt>? {
        runtimeCheck(n >= StackAlloc.minStack && n & (n - 1) == 0, "stackAlloc: bad size \(n)")
        let x: UInt
        if n < StackAlloc.cacheSize {
            let order = StackAlloc.order(n)
            if let c = cache {
                let list = c.pointee.stackCache + order
                if list.pointee.head == 0 {
                    guard stackCacheRefill(list, order) else { return nil }
                }
                x = list.pointee.head
                list.pointee.head = UnsafePointer<UInt>(bitPattern: x)!.pointee
                list.pointee.size -= UInt(n)
            } else {
                guard let v = stackLock.withLock({ stackPoolAlloc(order) }) else { return nil }
                x = v
            }
        } else {
            let npages = n >> SizeClassTable.pageShift
            let bucket = npages.trailingZeroBitCount
            let reused: UnsafeMutablePointer<MSpan>? = stackLock.withLock {
                guard let s = stackLarge[bucket] else { return nil }
                stackLarge[bucket] = s.pointee.next
                s.pointee.next = nil
                return s
            }
            if let s = reused {
                x = s.pointee.startAddr
            } else {
                guard let s = allocManual(npages: npages) else { return nil }
                x = s.pointee.startAddr
            }
        }
        return UnsafeMutablePointer<UInt>(bitPattern: x)!
    }

    /// Free a stack of `n` bytes from `stackAlloc`.
    func stackFree(_ p: UnsafeMutablePointer<UInt>, _ n: Int, cache: UnsafeMutablePointer<MCache>?) {
        let x = UInt(bitPattern: p)
        if n < StackAlloc.cacheSize {
            let order = StackAlloc.order(n)
            if let c = cache {
                let list = c.pointee.stackCache + order
                if list.pointee.size >= UInt(StackAlloc.cacheSize) { stackCacheRelease(list, order) }
                p.pointee = list.pointee.head
                list.pointee.head = x
                list.pointee.size += UInt(n)
            } else {
                stackLock.withLock { stackPoolFree(x, order) }
            }
        } else {
            let s = stackSpan(x)
            if phase == .off {
                freeManual(s)
            } else {
                // A marker may still look at this span: keep it until the cycle ends.
                let bucket = Int(s.pointee.npages).trailingZeroBitCount
                stackLock.withLock {
                    s.pointee.next = stackLarge[bucket]
                    stackLarge[bucket] = s
                }
            }
        }
    }

    /// The manual span holding stack `x`; a stack address that is not one is fatal.
    private func stackSpan(_ x: UInt) -> UnsafeMutablePointer<MSpan> {
        guard let s = spanOf(x), s.pointee.state == MSpanState.manual.rawValue else {
            runtimeFatal("stackFree: \(Ref(address: x)) is not a stack")
        }
        return s
    }

    // MARK: the pool (stack lock held)

    /// A free stack of `order` from the pool, carving a new 32 KiB span when no pool
    /// span has one (Go's stackpoolalloc).
    ///
    /// The stack lock is dropped while the span is allocated: growing the heap may wait
    /// as a blocking region for another thread's growth, and a stopped world needs this
    /// lock (pause #1 empties the stack caches), so waiting with it held could deadlock
    /// (found by `testAttachDetachRacingWithCollect`). Go never blocks in allocManual.
    private func stackPoolAlloc(_ order: Int) -> UInt? {
        while stackPool[order] == nil {
            stackLock.unlock()
            let got = allocManual(npages: StackAlloc.cacheSize >> SizeClassTable.pageShift)
            stackLock.lock()
            guard let ns = got else { return nil }
            let size = UInt(StackAlloc.minStack << order)
            ns.pointee.elemSize = size
            ns.pointee.nelems = UInt(StackAlloc.cacheSize) / size
            ns.pointee.allocCount = 0
            var list: UInt = 0
            var i = Int(ns.pointee.nelems) - 1
            while i >= 0 {
                let x = ns.pointee.startAddr + UInt(i) * size
                UnsafeMutablePointer<UInt>(bitPattern: x)!.pointee = list
                list = x
                i -= 1
            }
            ns.pointee.manualFreeList = list
            ns.pointee.next = stackPool[order]
            stackPool[order] = ns
        }
        let span = stackPool[order]!
        let x = span.pointee.manualFreeList
        runtimeCheck(x != 0, "stackPoolAlloc: pool span with no free stack")
        span.pointee.manualFreeList = UnsafePointer<UInt>(bitPattern: x)!.pointee
        span.pointee.allocCount += 1
        if span.pointee.manualFreeList == 0 {
            // All its stacks are out: it leaves the pool (it is the list's head).
            stackPool[order] = span.pointee.next
            span.pointee.next = nil
        }
        return x
    }

    /// Give a stack back to its pool span (Go's stackpoolfree). A span left with no
    /// stack in use goes back to the page heap, unless the collector is marking.
    private func stackPoolFree(_ x: UInt, _ order: Int) {
        let s = stackSpan(x)
        if s.pointee.manualFreeList == 0 {
            // It had no free stack, so it was not in the pool: it is again.
            s.pointee.next = stackPool[order]
            stackPool[order] = s
        }
        UnsafeMutablePointer<UInt>(bitPattern: x)!.pointee = s.pointee.manualFreeList
        s.pointee.manualFreeList = x
        s.pointee.allocCount -= 1
        if s.pointee.allocCount == 0 && phase == .off {
            unlinkPoolSpan(s, order)
            freeManual(s)
        }
    }

    private func unlinkPoolSpan(_ s: UnsafeMutablePointer<MSpan>, _ order: Int) {
        var prev: UnsafeMutablePointer<MSpan>? = nil
        var p = stackPool[order]
        while let q = p, q != s { prev = q; p = q.pointee.next }
        runtimeCheck(p == s, "stack pool: span not in its pool list")
        if let prev { prev.pointee.next = s.pointee.next } else { stackPool[order] = s.pointee.next }
        s.pointee.next = nil
    }

    // MARK: mutator caches

    /// Fill a cache list to half its capacity from the pool (Go's stackcacherefill).
    private func stackCacheRefill(_ list: UnsafeMutablePointer<StackFreeList>, _ order: Int) -> Bool {
        let size = UInt(StackAlloc.minStack << order)
        return stackLock.withLock {
            while list.pointee.size < UInt(StackAlloc.cacheSize / 2) {
                guard let x = stackPoolAlloc(order) else { return list.pointee.head != 0 }
                UnsafeMutablePointer<UInt>(bitPattern: x)!.pointee = list.pointee.head
                list.pointee.head = x
                list.pointee.size += size
            }
            return true
        }
    }

    /// Drain a cache list to half its capacity (Go's stackcacherelease).
    private func stackCacheRelease(_ list: UnsafeMutablePointer<StackFreeList>, _ order: Int) {
        let size = UInt(StackAlloc.minStack << order)
        stackLock.withLock {
            while list.pointee.size > UInt(StackAlloc.cacheSize / 2) {
                let x = list.pointee.head
                list.pointee.head = UnsafePointer<UInt>(bitPattern: x)!.pointee
                list.pointee.size -= size
                stackPoolFree(x, order)
            }
        }
    }

    /// Empty a mutator's stack cache into the pool (Go's stackcache_clear): at the start
    /// of each cycle and at detach. Owner, or world stopped.
    func stackCacheClear(_ c: UnsafeMutablePointer<MCache>) {
        let lists = c.pointee.stackCache
        var any = false
        for o in 0..<StackAlloc.orders where lists[o].head != 0 { any = true }
        if !any { return }
        stackLock.withLock {
            for o in 0..<StackAlloc.orders {
                var x = lists[o].head
                while x != 0 {
                    let next = UnsafePointer<UInt>(bitPattern: x)!.pointee
                    stackPoolFree(x, o)
                    x = next
                }
                lists[o] = StackFreeList()
            }
        }
    }

    /// After mark termination (phase off): return pool spans with no stack in use and
    /// every free large stack to the page heap (Go's freeStackSpans).
    func freeStackSpans() {
        var toFree: [UnsafeMutablePointer<MSpan>] = []
        stackLock.withLock {
            for o in 0..<StackAlloc.orders {
                var p = stackPool[o]
                while let s = p {
                    p = s.pointee.next
                    if s.pointee.allocCount == 0 {
                        unlinkPoolSpan(s, o)
                        toFree.append(s)
                    }
                }
            }
            for b in 0..<StackAlloc.largeBuckets {
                var p = stackLarge[b]
                while let s = p { p = s.pointee.next; s.pointee.next = nil; toFree.append(s) }
                stackLarge[b] = nil
            }
        }
        for s in toFree { freeManual(s) }
    }
}
