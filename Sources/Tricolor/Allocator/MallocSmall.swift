import CTricolor
import Glibc

// Small objects (Go's mallocgc small path; mallocgcSmallNoscan / mallocgcSmallScan since
// Go 1.22): round the size up to its size class, take the next free slot of the cached
// span of that class (refilling the cache when it is full), and record the slot's type
// for the collector. The inlined fast path in Malloc.swift is the first half of this;
// it falls here when its cache window is empty.

extension Mutator {
    /// A small object of `size` bytes (16…32 KiB, or 1…32 KiB with pointers), from cache
    /// slot `slot` (a type's own, see `ObjectType.cacheSlot`) or its span class's.
    func allocateSmall(_ size: Int, typeID: UInt16, noscan: Bool, canFail: Bool, slot: Int? = nil) -> UInt {
        let st = state
        unowned(unsafe) let heap = st.pointee.heap
        let spc = SpanClass(sizeClass: SizeClassTable.sizeToClass(size), noscan: noscan)
        guard let (s, idx, sampled) = st.pointee.mcache.nextFree(slot: slot ?? Int(spc.raw), spc, for: st, canFail: canFail,
                                                                 size: size, sample: true) else { return 0 }
        let p = s.pointee.startAddr + idx * s.pointee.elemSize
        if !noscan { s.pointee.typeIDs.unsafelyUnwrapped[Int(idx)] = typeID }
        if heap.configuration.clobberFree {
            UnsafeMutableRawPointer(bitPattern: p)!.initializeMemory(as: UInt8.self, repeating: 0, count: Int(s.pointee.elemSize))
        }
        if sampled { heap.profileAlloc(p, size: Int(s.pointee.elemSize), span: s) }
        return p
    }
}
