@_spi(Testing) @testable import Tricolor
import Foundation
import XCTest

// Tests of the typed layer (Sources/Tricolor/Typed): layouts read from HeapObject
// structs, each field kind round-tripping, typed and raw views of one object agreeing,
// the write barrier firing through typed stores, typed arrays (count, element type),
// introspection (type(of:), count(of:), cast) and typed handles across threads.
// Invariant checked throughout: a typed access is the raw access at
// MemoryLayout.offset(of:) / 8.

/// One field of every kind the typed layer supports.
struct AllKinds: HeapObject {
    var ref: Ref
    var next: Obj<AllKinds>
    var items: ObjArray<Int>
    var int: Int
    var uint: UInt
    var int64: Int64
    var uint64: UInt64
    var double: Double
    var flag: Bool
    var int32: Int32
    var uint32: UInt32
    var int16: Int16
    var uint16: UInt16
    var int8: Int8
    var uint8: UInt8
    var float: Float
    var regs: InlineArray<3, Int>
    var kids: InlineArray<2, Obj<AllKinds>>
    var point: Point
}

/// A nested struct: two doubles and a pointer.
struct Point: HeapObject {
    var x: Double
    var y: Double
    var owner: Ref
}

/// binary-trees' node, as a typed layout.
struct TNode: HeapObject {
    var left: Obj<TNode>
    var right: Obj<TNode>
    var value: Int
}

/// A pointer-free layout.
struct Vec2: HeapObject {
    var x: Double
    var y: Double
}

/// The README's typed example's layout.
struct ReadmeNode: HeapObject {
    var left: Obj<ReadmeNode>
    var right: Obj<ReadmeNode>
    var value: Double
}

/// A layout with a field the heap cannot hold.
struct BadLayout: HeapObject {
    var ok: Int
    var maybe: Int?
}

final class TypedObjectTests: XCTestCase {
    private func byteOffset<T, V>(_ kp: KeyPath<T, V>) -> Int { MemoryLayout<T>.offset(of: kp)! }

    /// The pointer words a registered layout got: every pointer-kind field, nested and
    /// fixed-array ones included, and nothing else.
    func testLayoutPointerWordsAreDerivedFromFieldTypes() throws {
        let heap = try Heap()
        let t = try heap.register(AllKinds.self)
        XCTAssertEqual(t.size, (MemoryLayout<AllKinds>.size + 7) & ~7)
        var expected = [byteOffset(\AllKinds.ref), byteOffset(\AllKinds.next), byteOffset(\AllKinds.items),
                        byteOffset(\AllKinds.point) + byteOffset(\Point.owner)]
        expected += [0, 1].map { byteOffset(\AllKinds.kids) + $0 * 8 }
        let info = heap.types[Int(t.objectType.id)]
        let words = (0..<info.numPtrWords).map { Int(info.ptrWords![$0]) }
        XCTAssertEqual(words, expected.map { $0 / 8 }.sorted())
        XCTAssertTrue(t.objectType.hasPointers)
        XCTAssertFalse(try heap.register(Vec2.self).objectType.hasPointers)
    }

    func testRegistrationRefusesFieldsTheHeapCannotHold() throws {
        let heap = try Heap()
        XCTAssertThrowsError(try heap.register(BadLayout.self)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("BadLayout.maybe"), text)
            XCTAssertTrue(text.contains("Optional<Int>"), text)
        }
    }

    /// Every field kind written through the typed view reads back, across a collection.
    func testEachFieldKindRoundTrips() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let all = try heap.register(AllKinds.self)
        let ints = try heap.register(arrayOf: Int.self)
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let o = m.allocate(all)
                f[0, as: AllKinds.self] = o
                let a = m.allocate(all)
                m[o].next = a
                m[o].ref = a.ref
                let arr = m.allocateArray(ints, count: 5)
                m[o].items = arr
                m[arr, 4] = -77
                m[o].int = -12345678901
                m[o].uint = UInt.max - 3
                m[o].int64 = Int64.min + 9
                m[o].uint64 = 0xFEDC_BA98_7654_3210
                m[o].double = -3.25e300
                m[o].flag = true
                m[o].int32 = -2_000_000_000
                m[o].uint32 = 4_000_000_000
                m[o].int16 = -30000
                m[o].uint16 = 65000
                m[o].int8 = -100
                m[o].uint8 = 250
                m[o].float = 1.5
                m[o].regs[0] = 10; m[o].regs[1] = 20; m[o].regs[2] = 30
                let k0 = m.allocate(all)
                m[o].kids[0] = k0
                m[o].kids[1] = m.allocate(all)
                m[o].point.x = 1.25
                m[o].point.y = -8
                m[o].point.owner = m.allocate(all).ref
                m[a].int = 42

                heap.collect()
                heap.collect()
                let r = f[0, as: AllKinds.self]
                XCTAssertEqual(m[r].next, a)
                XCTAssertEqual(m[r].ref, a.ref)
                XCTAssertEqual(m[m[r].next].int, 42, "the object behind a pointer field survived")
                XCTAssertEqual(m[m[r].items, 4], -77)
                XCTAssertEqual(m[r].int, -12345678901)
                XCTAssertEqual(m[r].uint, UInt.max - 3)
                XCTAssertEqual(m[r].int64, Int64.min + 9)
                XCTAssertEqual(m[r].uint64, 0xFEDC_BA98_7654_3210)
                XCTAssertEqual(m[r].double, -3.25e300)
                XCTAssertEqual(m[r].flag, true)
                XCTAssertEqual(m[r].int32, -2_000_000_000)
                XCTAssertEqual(m[r].uint32, 4_000_000_000)
                XCTAssertEqual(m[r].int16, -30000)
                XCTAssertEqual(m[r].uint16, 65000)
                XCTAssertEqual(m[r].int8, -100)
                XCTAssertEqual(m[r].uint8, 250)
                XCTAssertEqual(m[r].float, 1.5)
                XCTAssertEqual([m[r].regs[0], m[r].regs[1], m[r].regs[2]], [10, 20, 30])
                XCTAssertEqual(m[r].regs.count, 3)
                XCTAssertEqual(m[r].kids[0], k0)
                XCTAssertFalse(m[r].kids[1].isNull)
                XCTAssertTrue(heap.debugIsAllocated(m[r].kids[1].ref), "a fixed-array pointer element is a root")
                XCTAssertTrue(heap.debugIsAllocated(m[r].point.owner), "a nested struct's pointer is traced")
                XCTAssertEqual(m[r].point.x, 1.25)
                XCTAssertEqual(m[r].point.y, -8)
                m[r].flag = false
                XCTAssertEqual(m[r].flag, false)
                XCTAssertEqual(m[r].int8, -100, "a one-byte store touches one byte")
            }
        }
        heap.checkInvariants()
    }

    /// The typed view is the raw view at MemoryLayout's offsets: writes through one are
    /// read through the other.
    func testTypedAndRawViewsAgree() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let node = try heap.register(TNode.self)
        let all = try heap.register(AllKinds.self)
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                let n = m.allocate(node)
                f[0] = n.ref
                let c = m.allocate(node)
                f[1] = c.ref
                // typed → raw
                m[n].left = c
                m[n].value = 99
                XCTAssertEqual(m.load(n.ref, 0), c.ref)
                XCTAssertEqual(m.loadWord(n.ref, 2), 99)
                // raw → typed
                m.store(n.ref, 1, c.ref)
                m.storeWord(c.ref, 2, -5)
                XCTAssertEqual(m[n].right, c)
                XCTAssertEqual(m[c].value, -5)
                XCTAssertEqual(Ref(n), n.ref)
                XCTAssertEqual(Obj<TNode>(unchecked: f[0]), n)

                let o = m.allocate(all)
                f[1] = o.ref
                m[o].double = 2.5
                m[o].uint64 = UInt64.max
                let dw = byteOffset(\AllKinds.double) / 8
                XCTAssertEqual(UInt64(UInt(bitPattern: m.loadWord(o.ref, dw))), 2.5.bitPattern)
                XCTAssertEqual(m.loadWord(o.ref, byteOffset(\AllKinds.uint64) / 8), -1)
                m.storeWord(o.ref, byteOffset(\AllKinds.regs) / 8 + 2, 7)
                XCTAssertEqual(m[o].regs[2], 7)
                m[o].flag = true
                XCTAssertEqual(o.ref.rawPointer.load(fromByteOffset: byteOffset(\AllKinds.flag), as: UInt8.self), 1)
            }
        }
    }

    /// Whether the write-barrier flag is on for this mutator.
    private func barrierOn(_ m: Mutator) -> Bool { m.state.flags & MutatorState.flagBarrier != 0 }

    /// While marking, a typed pointer store records the old and the new value in the
    /// mutator's barrier buffer (what `m.store` does), and keeps a new referent stored
    /// into a black object alive (the insertion half, as in ConcurrentGCTests).
    func testBarrierFiresThroughTypedStores() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil, markWorkers: 0))
        let node = try heap.register(TNode.self)
        let global = heap.makeGlobal()
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let a = m.allocate(node)
                m.store(global, a)
                let b = m.allocate(node)
                m[a].left = b
                f[0, as: TNode.self] = m.allocate(node)   // C, only in the frame
                let c = f[0, as: TNode.self]
                XCTAssertEqual(m.state.pointee.wbCount, 0, "no barrier outside marking")

                heap.debugStartCycle()                      // the stack is not scanned yet
                XCTAssertTrue(barrierOn(m))
                heap.debugMarkSome(1 << 20)                 // globals and A scanned: A black
                XCTAssertTrue(heap.debugIsMarked(a.ref))
                XCTAssertFalse(heap.debugIsMarked(c.ref))

                // (The store may take the inline buffer path, which records the null old
                // value too, or the slow path, which records non-null values only.)
                func buffered() -> [UInt] { (0..<m.state.pointee.wbCount).map { m.state.pointee.wbBuf[$0] } }
                let before = buffered()
                m[a].right = c                              // typed store into a black object
                XCTAssertEqual(buffered().filter { $0 == c.ref.address }.count, 1, "the new value is buffered")
                m[a].left = .null                           // deletion: B recorded as the old value
                XCTAssertEqual(buffered().filter { $0 == b.ref.address }.count, 1, "the old value is buffered")
                XCTAssertGreaterThan(buffered().count, before.count)
                let count = m.state.pointee.wbCount
                m[a].value = 5                              // scalar stores are not barriered
                XCTAssertEqual(m.state.pointee.wbCount, count)

                f[0] = .null
                m.safepoint()                               // the stack scan finds nothing
                heap.debugFinishCycle()
                heap.debugSweepSome(Int.max)
                XCTAssertTrue(heap.debugIsAllocated(c.ref), "C was freed although A.right points to it (typed store missed the barrier)")
                XCTAssertEqual(m[Obj<TNode>(unchecked: global.value)].right, c)
            }
        }
    }

    func testTypedArraysKnowTheirCountAndElementType() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let node = try heap.register(TNode.self)
        let vec = try heap.register(Vec2.self)
        let refs = try heap.register(arrayOf: Ref.self)
        heap.withMutator { m in
            m.withFrame(slots: 3) { f in
                let arr = m.allocateArray(node, count: 10)
                f[0] = arr.ref
                XCTAssertEqual(m.type(of: arr.ref), node.objectType)
                XCTAssertGreaterThanOrEqual(m.count(of: arr), 10)
                XCTAssertEqual(m.count(of: arr.ref), m.count(of: arr))
                XCTAssertTrue(m.isArray(arr.ref))
                XCTAssertEqual(m.size(of: arr.ref)! / m.count(of: arr), node.size)
                for i in 0..<10 { m[arr, i].value = i * i }
                for i in 0..<10 { m[arr, i].left = m.allocate(node) }
                heap.collect()
                XCTAssertEqual((0..<10).map { m[arr, $0].value }, (0..<10).map { $0 * $0 })
                XCTAssertTrue((0..<10).allSatisfy { heap.debugIsAllocated(m[arr, $0].left.ref) }, "array elements' pointers are traced")
                XCTAssertEqual(m.loadWord(arr.ref, 3 * 3 + 2), 9, "element 3's value is raw word 3*3+2")

                // A large array: its count is exact.
                let big = m.allocateArray(node, count: 5000)
                f[1] = big.ref
                XCTAssertEqual(m.count(of: big), 5000)
                XCTAssertEqual(m.type(of: big.ref), node.objectType)
                m[big, 4999].value = 1
                XCTAssertEqual(m.loadWord(big.ref, 4999 * 3 + 2), 1)

                // Pointer-free elements: the typed count still works, the type is not recorded.
                let pts = m.allocateArray(vec, count: 4)
                f[2] = pts.ref
                XCTAssertEqual(m.count(of: pts), 4)
                XCTAssertNil(m.type(of: pts.ref))
                m[pts, 3].y = 0.5
                XCTAssertEqual(m[pts, 3].y, 0.5)

                let slots = m.allocateArray(refs, count: 3)
                m[slots, 2] = f[0]
                XCTAssertEqual(m[slots, 2], arr.ref)
                XCTAssertEqual(m.count(of: slots), 3)
                XCTAssertEqual(m.type(of: slots.ref), refs.objectType)
            }
        }
    }

    func testTypeOfAndCast() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let node = try heap.register(TNode.self)
        let all = try heap.register(AllKinds.self)
        heap.withMutator { m in
            let n = m.allocate(node)
            let o = m.allocate(all)
            XCTAssertEqual(m.type(of: n.ref), node.objectType)
            XCTAssertEqual(m.type(of: o.ref), all.objectType)
            XCTAssertEqual(m.count(of: n.ref), 1)
            XCTAssertFalse(m.isArray(n.ref))
            XCTAssertEqual(m.cast(n.ref, to: node), n)
            XCTAssertNil(m.cast(n.ref, to: all))
            XCTAssertNil(m.cast(.null, to: node))
            XCTAssertNil(m.type(of: .null))
            XCTAssertNil(m.type(of: m.allocateBytes(32)), "bytes have no type")
            XCTAssertEqual(m.size(of: n.ref), 24)
        }
    }

    /// A typed handle made on one thread keeps its object alive and is read, typed, on
    /// another thread's mutator.
    func testTypedHandleCarriesAnObjectAcrossThreads() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let node = try heap.register(TNode.self)
        let h: TypedHandle<TNode> = heap.withMutator { m in
            let n = m.allocate(node)
            m[n].value = 1234
            m[n].left = m.allocate(node)
            return heap.makeHandle(n)
        }
        heap.collect()
        let result = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        defer { result.deallocate() }
        let box = UnsafeSendable(result)
        let done = DispatchSemaphore(value: 0)
        let t = Thread {
            heap.withMutator { m in
                let n = h.value
                box.value[0] = m[n].value
                box.value[1] = heap.debugIsAllocated(m[n].left.ref) ? 1 : 0
                let other = m.allocate(node)
                m[other].value = 77
                m.store(h, other)
            }
            done.signal()
        }
        t.start()
        done.wait()
        XCTAssertEqual(result[0], 1234)
        XCTAssertEqual(result[1], 1)
        heap.collect()
        heap.withMutator { m in XCTAssertEqual(m[h.value].value, 77) }
        XCTAssertEqual(heap.memStats().heapAlloc, 24, "only the handle's object is live")
    }

    /// Checked mode: an array index whose byte offset overflows (1 << 61 elements of 8
    /// bytes is 2^64, which wraps to 0) or is negative traps as out of range, for
    /// element values and for element views, loads and stores. Before, the wrapped
    /// offset landed on element 0 and passed the checked-mode word check.
    func testTypedArrayIndexWhoseOffsetOverflowsTrapsInCheckedMode() {
        func withArrays(_ body: (Mutator, ObjArray<Int>, ObjArray<TNode>) -> Void) {
            let heap = try! Heap(configuration: Configuration(checked: true))
            let ints = try! heap.register(arrayOf: Int.self)
            let nodes = try! heap.register(TNode.self)
            heap.withMutator { m in
                m.withFrame(slots: 2) { f in
                    let a = m.allocateArray(ints, count: 4)
                    f[0] = a.ref
                    let n = m.allocateArray(nodes, count: 4)
                    f[1] = n.ref
                    body(m, a, n)
                }
            }
        }
        let wraps = 1 << 61   // × 8 bytes (Int) and × 24 bytes (TNode) are multiples of 2^64
        expectFatal("index \(wraps) out of range") { withArrays { m, a, _ in _ = m[a, wraps] } }
        expectFatal("index \(wraps) out of range") { withArrays { m, a, _ in m[a, wraps] = 1 } }
        expectFatal("index \(wraps) out of range") { withArrays { m, _, n in _ = m[n, wraps].value } }
        expectFatal("index \(wraps) out of range") { withArrays { m, _, n in m[n, wraps].value = 1 } }
        expectFatal("index -1 out of range") { withArrays { m, a, _ in _ = m[a, -1] } }
        expectFatal("index \(Int.min) out of range") { withArrays { m, _, n in _ = m[n, Int.min].left } }
        // In range still works.
        checkInChild { c in withArrays { m, a, n in
            m[a, 3] = 7
            m[n, 3].value = 8
            c.expectEqual(m[a, 3], 7)
            c.expectEqual(m[n, 3].value, 8)
        } }
    }

    /// The public view initialisers take only offsets a layout can produce (non-negative
    /// multiples of the type's alignment) and a non-negative count: before, offset 3 read
    /// an Int field at byte 0 (word fields shift the offset right by 3) and count -1
    /// accepted every index.
    func testViewInitialisersRejectBadOffsetsAndCounts() throws {
        let heap = try Heap(configuration: .init(gcPercent: nil))
        let kinds = try heap.register(AllKinds.self)
        func withObject(_ body: (Mutator, Obj<AllKinds>) -> Void) {
            heap.withMutator { m in
                m.withFrame(slots: 1) { f in
                    let o = m.allocate(kinds)
                    f[0] = o.ref
                    body(m, o)
                }
            }
        }
        let pointAt = byteOffset(\AllKinds.point)
        let regsAt = byteOffset(\AllKinds.regs)
        // Valid offsets name the same fields as the typed accessors.
        withObject { m, o in
            m[o].point.y = 1.5
            m[o].regs[2] = 9
            XCTAssertEqual(ObjView<Point>(m, o.ref, offset: pointAt).y, 1.5)
            XCTAssertEqual(FixedFieldArray<Int>(m, o.ref, offset: regsAt, count: 3)[2], 9)
            XCTAssertEqual(FixedFieldArray<Int>(m, o.ref, offset: regsAt, count: 0).count, 0)
        }
        expectFatal("ObjView<Point>: offset \(pointAt + 3) is not a non-negative multiple of 8") {
            withObject { m, o in _ = ObjView<Point>(m, o.ref, offset: pointAt + 3).y }
        }
        expectFatal("ObjView<Point>: offset -8 is not a non-negative multiple of 8") {
            withObject { m, o in _ = ObjView<Point>(m, o.ref, offset: -8).y }
        }
        expectFatal("FixedFieldArray<Int>: offset \(regsAt + 4) is not a non-negative multiple of 8") {
            withObject { m, o in _ = FixedFieldArray<Int>(m, o.ref, offset: regsAt + 4, count: 3)[0] }
        }
        expectFatal("FixedFieldArray<Int>: count -1 is negative") {
            withObject { m, o in _ = FixedFieldArray<Int>(m, o.ref, offset: regsAt, count: -1)[5] }
        }
    }

    /// README "Typed objects": the example as written there.
    func testReadmeTypedExample() throws {
        let heap = try Heap()
        let node = try heap.register(ReadmeNode.self)
        XCTAssertEqual(node.size, 24)
        XCTAssertEqual(heap.types[Int(node.objectType.id)].numPtrWords, 2)
        heap.withMutator { m in
            m.withFrame(slots: 1) { f in
                let n = m.allocate(node)
                f[0, as: ReadmeNode.self] = n
                m[n].left = m.allocate(node)
                m[n].value = 2.5
                XCTAssertEqual(m[m[n].left].value, 0.0)
                XCTAssertEqual(m.load(n.ref, 0), m[n].left.ref)
                XCTAssertEqual(m.loadWord(n.ref, 2), Int(bitPattern: UInt(2.5.bitPattern)))
            }
        }
    }
}

/// A pointer handed to another thread by a test that joins it.
struct UnsafeSendable<P>: @unchecked Sendable {
    let value: P
    init(_ v: P) { value = v }
}
