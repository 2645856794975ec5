// The mirror: a Swift-side copy of every object reachable from a root (frame slots,
// globals, handles) with the contents it must have, and the checks that compare the real
// heap against it. See Fuzzer.swift for the overview.
//
// Rules the driver keeps so that it is a model of correct use (checked mode traps on any
// misuse, so a trap is a finding):
//  - Only objects reachable from a root are in the mirror; a `Ref` lives in a Swift local
//    only between an allocation and the store that roots it, with no full safepoint
//    (allocation, safepoint(), blocking, collect, settings, hooks) in between.
//  - Pointers go into pointer words with store(_:_:_:); scalars into the other words with
//    storeWord; bytes objects get raw bytes past their last whole word.
//  - Frames are popped in order and forgotten at detach; hooks never touch the heap.
// An object leaves the mirror (and the free hook's live map) before the API call that
// makes it unreachable; it enters after the allocation that creates it.

import Glibc
import Tricolor

/// A registered layout, as the mirror sees it.
struct TypeSpec {
    let name: String
    let size: Int
    let pointerWords: [Int]
    /// Words per element (the size rounded up to 8, over 8).
    let wordsPerElement: Int
    let isPointer: [Bool]
    let scalarWords: [Int]

    init(_ name: String, _ size: Int, _ pointerWords: [Int]) {
        self.name = name
        self.size = size
        self.pointerWords = pointerWords
        wordsPerElement = (size + 7) / 8
        var isPointer = [Bool](repeating: false, count: wordsPerElement)
        for w in pointerWords { isPointer[w] = true }
        self.isPointer = isPointer
        scalarWords = (0..<wordsPerElement).filter { !isPointer[$0] }
    }

    /// Sizes and pointer maps chosen to reach every allocation path: noscan and scan small
    /// classes, a size that rounds up, an 8-byte noscan type (the tiny allocator serves it
    /// on the slow path), size 0 (the shared zero-size object), the largest small class,
    /// a large object, and a type with no scalar word at all.
    static let all: [TypeSpec] = [
        TypeSpec("Leaf", 16, []),
        TypeSpec("Pair", 24, [1, 2]),
        TypeSpec("Node", 48, [1, 2, 4]),
        TypeSpec("AllPointers", 16, [0, 1]),
        TypeSpec("Odd", 20, [2]),
        TypeSpec("Word", 8, []),
        TypeSpec("Empty", 0, []),
        TypeSpec("Wide", 512, [1, 17, 63]),
        TypeSpec("Edge", 32768, [0, 4095]),
        TypeSpec("Big", 40000, [1, 2, 4999]),
    ]
    static let pair = 1
}

/// One object the mirror holds reachable.
final class Obj {
    let id: Int
    let ref: Ref
    let serial: Int
    /// Index into TypeSpec.all, or -1 for a bytes object.
    let spec: Int
    /// Elements for typed objects (1 for `allocate`), bytes for bytes objects.
    let count: Int
    /// Whole 8-byte words the mirror checks.
    let words: Int
    /// Pointer word → id of the object it points to (absent: null).
    var pointers: [Int: Int] = [:]
    /// Scalar word → value (absent: zero).
    var scalars: [Int: Int] = [:]
    /// Bytes objects: the bytes after the last whole word, as written.
    var tail: [UInt8] = []

    init(id: Int, ref: Ref, serial: Int, spec: Int, count: Int) {
        self.id = id
        self.ref = ref
        self.serial = serial
        self.spec = spec
        self.count = count
        words = spec >= 0 ? count * TypeSpec.all[spec].wordsPerElement : count / 8
    }

    var byteSize: Int { spec >= 0 ? count * TypeSpec.all[spec].wordsPerElement * 8 : count }

    func isPointerWord(_ w: Int) -> Bool {
        guard spec >= 0 else { return false }
        let t = TypeSpec.all[spec]
        return t.isPointer[w % t.wordsPerElement]
    }

    var hasPointerWords: Bool { spec >= 0 && count > 0 && !TypeSpec.all[spec].pointerWords.isEmpty }

    /// A pointer word chosen by two input bytes, or nil if there is none.
    func pointerWord(_ a: Int, _ b: Int) -> Int? {
        guard hasPointerWords else { return nil }
        let t = TypeSpec.all[spec]
        return (a % count) * t.wordsPerElement + t.pointerWords[b % t.pointerWords.count]
    }

    /// A scalar word chosen by two input bytes, or nil if there is none.
    func scalarWord(_ a: Int, _ b: Int) -> Int? {
        if spec < 0 { return words > 0 ? (a << 8 | b) % words : nil }
        let t = TypeSpec.all[spec]
        guard count > 0, !t.scalarWords.isEmpty else { return nil }
        return (a % count) * t.wordsPerElement + t.scalarWords[b % t.scalarWords.count]
    }

    var description: String {
        let kind = spec < 0 ? "bytes(\(count))" : TypeSpec.all[spec].name + (count == 1 ? "" : "[\(count)]")
        return "#\(id) \(kind) at \(ref) serial \(serial)"
    }
}

/// The fuzz input, read a byte at a time; zeros once it runs out.
struct Input {
    let base: UnsafePointer<UInt8>?
    let count: Int
    var offset = 0

    init(_ base: UnsafePointer<UInt8>?, _ count: Int) {
        self.base = base
        self.count = count
    }

    var atEnd: Bool { offset >= count }

    mutating func byte() -> Int {
        guard offset < count, let base else { return 0 }
        defer { offset += 1 }
        return Int(base[offset])
    }
}

extension Driver {
    // MARK: mirror bookkeeping

    func ref(_ id: Int) -> Ref { id == 0 ? .null : objects[id]!.ref }

    func object(_ sel: Int) -> Obj? { live.isEmpty ? nil : objects[live[sel % live.count]] }

    /// A value to store: null for a selector ≡ 0 (mod 8) or when nothing is live, else a live object id.
    func value(_ sel: Int) -> Int {
        guard !live.isEmpty, sel % 8 != 0 else { return 0 }
        return live[(sel / 8) % live.count]
    }

    /// Enter a new object in the mirror (after its allocation, before it is rooted).
    func enter(_ o: Obj) {
        if o.byteSize > 0 {
            // The allocator must not hand out memory that a reachable object occupies.
            let probe = min(o.byteSize, 16)
            for off in 0..<probe {
                if let other = byAddress[o.ref.address + UInt(off)] {
                    fail("allocation returned \(o.ref) for \(o.description), overlapping reachable object \(objects[other]!.description)")
                }
            }
            byAddress[o.ref.address] = o.id
            hookState.live.withLock { $0[o.ref.address] = o.serial }
        }
        objects[o.id] = o
        liveBytes += o.byteSize
        let i = live.firstIndex { $0 > o.id } ?? live.endIndex
        live.insert(o.id, at: i)
    }

    /// Every root's object id (frames, globals, handles).
    var rootIDs: [Int] {
        frameValues.flatMap { $0 } + globalValues + handleValues
    }

    /// Drop from the mirror every object no longer reachable from a root. Called after the
    /// mirror changed and before the API call that makes the change real.
    func prune() {
        var marked = Set<Int>()
        var stack = rootIDs.filter { $0 != 0 }
        while let id = stack.popLast() {
            guard marked.insert(id).inserted else { continue }
            for (_, t) in objects[id]!.pointers where !marked.contains(t) { stack.append(t) }
        }
        if marked.count == objects.count { return }
        var gone: [UInt] = []
        for (id, o) in objects where !marked.contains(id) {
            objects[id] = nil
            liveBytes -= o.byteSize
            if o.byteSize > 0 { byAddress[o.ref.address] = nil; gone.append(o.ref.address) }
        }
        hookState.live.withLock { live in for a in gone { live[a] = nil } }
        live = marked.sorted()
    }

    /// Forget every object (the end of an input, once every root is about to be cleared).
    func forgetAll() {
        objects.removeAll(keepingCapacity: true)
        byAddress.removeAll(keepingCapacity: true)
        live.removeAll(keepingCapacity: true)
        liveBytes = 0
        hookState.live.withLock { $0.removeAll(keepingCapacity: true) }
    }

    // MARK: verification

    func readPointer(_ r: Ref, _ w: Int) -> UInt {
        stats.operations += 1
        if let m { return m.load(r, w).address }
        return r.rawPointer.load(fromByteOffset: w * 8, as: UInt.self)
    }

    func readWord(_ r: Ref, _ w: Int) -> Int {
        stats.operations += 1
        if let m { return m.loadWord(r, w) }
        return r.rawPointer.load(fromByteOffset: w * 8, as: Int.self)
    }

    /// Compare every root and every reachable object with the mirror; any difference is a
    /// finding (a lost, moved, overwritten or misattributed object).
    func verify(_ when: String) {
        stats.verifications += 1
        func expect(_ real: UInt, _ id: Int, _ what: @autoclosure () -> String) {
            let want = ref(id).address
            if real != want {
                let owner = byAddress[UInt(real)].map { objects[$0]!.description } ?? "no reachable object"
                fail("\(when): \(what()) holds 0x\(String(real, radix: 16)) (\(owner)), expected \(id == 0 ? "null" : objects[id]!.description)")
            }
        }
        if m != nil {
            for (fi, f) in frames.enumerated() {
                for s in 0..<f.count { expect(f[s].address, frameValues[fi][s], "frame \(fi) slot \(s)") }
                stats.operations += f.count
            }
        } else if !frames.isEmpty {
            fail("internal: frames while detached")
        }
        for (i, g) in globals.enumerated() where !selfTestPending.contains(where: { $0.0 == i }) {
            expect(g.value.address, globalValues[i], "global \(i)")
        }
        for (i, h) in handles.enumerated() { expect(h.value.address, handleValues[i], "handle \(i)") }
        stats.operations += globals.count + handles.count
        for id in live { verifyObject(objects[id]!, when) }
    }

    func verifyObject(_ o: Obj, _ when: String) {
        stats.objectsVerified += 1
        if o.words > 0 {
            var check: [Int]
            if o.words <= 64 {
                check = Array(0..<o.words)
            } else {
                // Large objects: every written word plus a spread of others (must be zero).
                check = Array(o.pointers.keys) + Array(o.scalars.keys) + [0, o.words - 1]
                var x = UInt64(truncatingIfNeeded: o.serial) | 1
                for _ in 0..<16 {
                    x = x &* 6364136223846793005 &+ 1442695040888963407
                    check.append(Int((x >> 33) % UInt64(o.words)))
                }
            }
            for w in check {
                if o.isPointerWord(w) {
                    let want = o.pointers[w] ?? 0
                    let real = readPointer(o.ref, w)
                    if real != ref(want).address {
                        let owner = byAddress[real].map { objects[$0]!.description } ?? "no reachable object"
                        fail("\(when): pointer word \(w) of \(o.description) holds 0x\(String(real, radix: 16)) (\(owner)), expected \(want == 0 ? "null" : objects[want]!.description)")
                    }
                } else {
                    let want = o.scalars[w] ?? 0
                    let real = readWord(o.ref, w)
                    if real != want {
                        fail("\(when): scalar word \(w) of \(o.description) holds \(real), expected \(want) (lost or overwritten object?)")
                    }
                }
            }
        }
        if !o.tail.isEmpty {
            let base = o.ref.rawPointer + o.words * 8
            for (i, b) in o.tail.enumerated() where base.load(fromByteOffset: i, as: UInt8.self) != b {
                fail("\(when): byte \(o.words * 8 + i) of \(o.description) is \(base.load(fromByteOffset: i, as: UInt8.self)), expected \(b) (lost or overwritten object?)")
            }
        }
    }
}
