import CTricolor
import Glibc

// The tiny allocator (Go's mallocgc tiny path; mallocgcTiny since Go 1.24).
//
// Pointer-free objects under 16 bytes are packed into one 16-byte block per mcache,
// aligned to their size's natural alignment. The block is an ordinary object of the
// tiny span class, so it is freed only when nothing points into any part of it; a
// long-lived tiny object can keep its block's neighbours alive (Go's trade-off too).
//
// Invariants: `tinyOffset` ≤ 16; `tiny` is 0 or the base of a 16-byte slot of a span
// cached in this mcache (or one released, whose block is then dropped by releaseAll).

extension Mutator {
    /// Go's tiny allocator: pointer-free objects under 16 bytes are packed into 16-byte
    /// blocks; a block is freed when nothing points into it any more.
    func allocateTiny(_ size: Int, canFail: Bool) -> UInt {
        let st = state
        let c = st.pointee.mcache
        unowned(unsafe) let heap = st.pointee.heap
        var off = c.pointee.tinyOffset
        if size & 7 == 0 { off = (off + 7) & ~7 }
        else if size & 3 == 0 { off = (off + 3) & ~3 }
        else if size & 1 == 0 { off = (off + 1) & ~1 }
        let p: UInt
        if off + UInt(size) <= 16 && c.pointee.tiny != 0 {
            c.pointee.tinyOffset = off + UInt(size)
            c.pointee.tinyAllocs += 1
            raisePathLevel(st, .tiny)
            p = c.pointee.tiny + off
        } else {
            guard let (s, idx, _) = c.nextFree(slot: Int(SpanClass.tiny.raw), .tiny, for: st, canFail: canFail, size: size, sample: false) else { return 0 }
            p = s.pointee.startAddr + idx * s.pointee.elemSize
            if heap.configuration.clobberFree {
                UnsafeMutableRawPointer(bitPattern: p)!.initializeMemory(as: UInt8.self, repeating: 0, count: 16)
            }
            // Keep whichever block has more room left.
            if UInt(size) < c.pointee.tinyOffset || c.pointee.tiny == 0 {
                c.pointee.tiny = p
                c.pointee.tinyOffset = UInt(size)
            }
        }
        if c.pointee.profRate != 0, let s = heap.spanOf(p) { sampleBytes(size, p, s) }
        return p
    }
}
