import CTricolor
import Glibc

extension Mutator {
    // MARK: allocation

    /// Allocate one zeroed object of type `t`. Traps with "out of memory" when the heap
    /// cannot grow (Go's behaviour); see `tryAllocate`.
    @inlinable @inline(__always)
    public func allocate(_ t: ObjectType) -> Ref {
        if _fastPath(t.isSmall) {
            // Go's nextFreeFast, inline: take the lowest free slot of the cache window.
            let s = cache[Int(t.spanClass.raw)]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                let i = c.trailingZeroBitCount
                if !t.spanClass.noscan { s.pointee.windowTypeIDs.unsafelyUnwrapped[i] = t.id }
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: i) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(t))
    }

    /// The typed slow path takes the packed type word only, so that the caller's loop
    /// keeps one register for the type (see `ObjectType.bits`).
    @usableFromInline @inline(never)
    func allocateSlow(_ t: ObjectType) -> UInt {
        allocateSlow(size: t.size, typeID: t.id, noscan: t.spanClass.noscan, canFail: false)
    }

    /// Like `allocate`, but nil instead of a fatal error when memory cannot be had.
    @inlinable
    public func tryAllocate(_ t: ObjectType) -> Ref? {
        let p = allocateSlow(size: t.size, typeID: t.id, noscan: t.spanClass.noscan, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `count` consecutive zeroed objects of type `t` as one object.
    public func allocateArray(_ t: ObjectType, count: Int) -> Ref {
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { runtimeFatal("allocation size out of range: \(count) elements of \(t.size) bytes") }
        return Ref(address: allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: t.spanClass.noscan, canFail: false))
    }

    public func tryAllocateArray(_ t: ObjectType, count: Int) -> Ref? {
        let (size, overflow) = t.size.multipliedReportingOverflow(by: count)
        if count < 0 || overflow { return nil }
        let p = allocateSlow(size: size, typeID: t.id | arrayTypeBit, noscan: t.spanClass.noscan, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

    /// Allocate `size` zeroed bytes that hold no pointers (Go's mallocgc with a nil type).
    /// Sizes under 16 bytes share 16-byte blocks (the tiny allocator).
    @inlinable @inline(__always)
    public func allocateBytes(_ size: Int) -> Ref {
        if _fastPath(size >= 16 && size <= 1016) {
            // Up to 256 bytes Go's classes step by 8 to 32, then by 16: arithmetic that
            // folds away when the size is a constant; the table above that.
            let sc = size <= 256 ? Mutator.classUpTo256(size) : Int(state.pointee.heap.sizeToClass8[(size &+ 7) &>> 3])
            let s = cache[sc &<< 1 | 1]
            let c = s.pointee.allocCache
            if _fastPath(c != 0) {
                s.pointee.allocCache = c & (c &- 1)
                return Ref(address: s.pointee.windowBase &+ UInt(truncatingIfNeeded: c.trailingZeroBitCount) &* s.pointee.elemSize)
            }
        }
        return Ref(address: allocateSlow(size: size, typeID: 0, noscan: true, canFail: false))
    }

    /// Go's size class for 16 ≤ size ≤ 256 (classes 2–18: 16, 24, 32, 48, 64, … 256).
    @inlinable @inline(__always)
    static func classUpTo256(_ size: Int) -> Int {
        size <= 32 ? (size &+ 7) &>> 3 : ((size &+ 15) &>> 4) &+ 2
    }

    public func tryAllocateBytes(_ size: Int) -> Ref? {
        let p = allocateSlow(size: size, typeID: 0, noscan: true, canFail: true)
        return p == 0 ? nil : Ref(address: p)
    }

}
