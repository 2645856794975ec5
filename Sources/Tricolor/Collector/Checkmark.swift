import CTricolor
import Glibc

// gccheckmark (Go's GODEBUG=gccheckmark=1, mcheckmark.go): after the concurrent mark,
// mark again from the roots with the world stopped, into a separate set, and compare:
// any object reachable from the roots that the concurrent mark left white is a
// collector bug, and fatal. Slow (a second full mark per cycle); for verification.
//
// Conservative roots: a native stack word found now may be a stale value that was not on
// the stack when the concurrent mark scanned it, so an unmarked object it points to is
// not an error. A marked one is traversed: everything reachable from it must be marked.

extension Heap {
    // MARK: verification

    /// gccheckmark: mark again from the roots with the world stopped, into a separate set,
    /// and compare with the mark bits: any reachable object left unmarked is fatal.
    func verifyMarks() {
        var seen = Set<UInt>()
        var stack: [UInt] = []
        func visit(_ p: UInt) {
            if p == 0 || p == zeroBase { return }
            guard let s = spanOf(p) else { return }
            let base = s.pointee.startAddr + s.objectIndex(p) * s.pointee.elemSize
            if seen.insert(base).inserted { stack.append(base) }
        }
        forEachMutator { m in for i in 0..<m.pointee.stackTop { visit(m.pointee.stack[i]) } }
        if conservativeStacks {
            forEachMutator { m in
                let own = tc_get_current_mutator() == UnsafeMutableRawPointer(m)
                if own {
                    withRegistersSpilled { sp in forEachMarkedConservativeRoot(m, from: sp, visit) }
                } else {
                    forEachMarkedConservativeRoot(m, from: m.pointee.nativeSP, visit)
                }
            }
        }
        globalsLock.withLock { globalSlots.forEach(visit); handleSlots.forEach(visit) }
        // Finalizers' objects are scanned, not marked; cleanups' arguments, weak
        // handles, queued jobs and pooled objects are roots (Runtime/Specials.swift).
        var through: [UInt] = []
        _ = forEachSpecialRoot(grey: visit, through: { through.append($0) })
        _ = forEachPooled(visit)
        func children(_ obj: UInt, _ s: UnsafeMutablePointer<MSpan>) {
            if s.pointee.spanClass.noscan { return }
            let large = s.pointee.isLarge
            let tid = large ? Int(UInt16(truncatingIfNeeded: s.pointee.largeType) & ~arrayTypeBit) : Int(s.pointee.typeIDs![Int(s.objectIndex(obj))] & ~arrayTypeBit)
            let t = types[tid]
            let bytes = large ? s.pointee.limit - s.pointee.startAddr : s.pointee.elemSize
            for e in 0..<Int(bytes / t.size) {
                for k in 0..<t.numPtrWords {
                    visit(UnsafePointer<UInt>(bitPattern: obj + UInt(e) * t.size)![Int(t.ptrWords![k])])
                }
            }
        }
        for obj in through { children(obj, spanOf(obj)!) }
        while let obj = stack.popLast() {
            let s = spanOf(obj)!
            if !s.isMarked(s.objectIndex(obj)) {
                runtimeFatal("gccheckmark: reachable object \(Ref(address: obj)) (span class \(s.pointee.spanClass.raw), type \(s.pointee.typeIDs.map { typeName($0[Int(s.objectIndex(obj))] & ~arrayTypeBit) } ?? "large/noscan")) was not marked by the concurrent mark")
            }
            children(obj, s)
        }
    }

    /// Call `body` with the base of each marked object a word of `st`'s native stack
    /// points into (world stopped).
    private func forEachMarkedConservativeRoot(_ st: UnsafeMutablePointer<MutatorState>, from sp: UInt, _ body: (UInt) -> Void) {
        _ = forEachNativeStackWord(st, from: sp) { p in
            if let (s, idx) = objectSlot(p), s.isMarked(idx) { body(s.pointee.startAddr + idx * s.pointee.elemSize) }
        }
    }
}
