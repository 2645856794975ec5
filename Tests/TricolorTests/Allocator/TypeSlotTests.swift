import XCTest
import CTricolor
@testable @_spi(Testing) import Tricolor
import TricolorTestSupport

/// Type slots (`MCache.slotCount`): a small type with pointers gets a mutator cache slot
/// of its own, whose spans get the type's id in every free slot when they are cached, so
/// the inlined fast path stores no id per object. Spans move between a type's slot,
/// other types' slots and their class's slot as the sweep frees them; every object must
/// keep the type it was allocated with, or the marker would scan it with another
/// layout.
final class TypeSlotTests: XCTestCase {
    /// Registration order decides: small types with pointers (up to
    /// `Tuning.typeSlotMaxSize` bytes) get slots of their own, odd, from 137, while the
    /// process's 60 last; the rest, pointer-free types and larger ones use their span
    /// class's slot. A heap gives its slots back when it goes away.
    func testSlotsAreHandedOutInRegistrationOrderWhileTheyLast() throws {
        let free = MCache.typeSlots - tc_load_acquire(UnsafeRawPointer(Heap.typeSlotsInUse)).nonzeroBitCount
        XCTAssertGreaterThan(free, 0, "heaps of earlier tests still hold every type slot")
        let classSlot32 = Int(SpanClass(sizeClass: SizeClassTable.sizeToClass(32), noscan: false).raw)
        do {
            let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
            var own: [ObjectType] = []
            for i in 0..<free {
                own.append(try heap.register(TypeLayout(name: "slot.T\(i)", size: 32, pointerWords: [0])))
            }
            let slots = own.map(\.cacheSlot)
            XCTAssertEqual(Set(slots).count, free, "two types share a slot")
            XCTAssertTrue(slots.allSatisfy { $0 >= MCache.firstTypeSlot && $0 < MCache.slotCount && $0 & 1 == 1 }, "\(slots)")
            XCTAssertEqual(slots, slots.sorted(), "slots not in registration order")
            XCTAssertTrue(own.allSatisfy { !$0.storesTypeID && $0.hasPointers })
            let late = try heap.register(TypeLayout(name: "slot.Late", size: 32, pointerWords: [0]))
            XCTAssertEqual(late.cacheSlot, classSlot32)
            XCTAssertTrue(late.storesTypeID && late.hasPointers)
            // Another heap meanwhile: none left for it either.
            let other = try Heap(configuration: Configuration(gcPercent: nil).precise)
            XCTAssertEqual(try other.register(TypeLayout(name: "slot.Other", size: 32, pointerWords: [0])).cacheSlot, classSlot32)
        }
        // Both heaps are gone: their slots are free again.
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let bytes = try heap.register(TypeLayout(name: "slot.Bytes", size: 32, pointerWords: []))
        XCTAssertEqual(bytes.cacheSlot, Int(SpanClass(sizeClass: SizeClassTable.sizeToClass(32), noscan: true).raw))
        XCTAssertFalse(bytes.hasPointers)
        let big = try heap.register(TypeLayout(name: "slot.Big", size: Tuning.typeSlotMaxSize + 8, pointerWords: [0]))
        XCTAssertLessThan(big.cacheSlot, SpanClass.count)
        XCTAssertTrue(big.storesTypeID && big.hasPointers)
        let large = try heap.register(TypeLayout(name: "slot.Large", size: 64 << 10, pointerWords: [0]))
        XCTAssertTrue(large.hasPointers)
        let again = try heap.register(TypeLayout(name: "slot.Again", size: 16, pointerWords: [1]))
        XCTAssertGreaterThanOrEqual(again.cacheSlot, MCache.firstTypeSlot, "the slots of heaps that went away were not given back")
    }

    /// Type slots are numbered across the process, so a type used with a heap that did
    /// not register it finds its slot empty there: never a span of another size class,
    /// whose slots the caller would overrun. The slow path's owner check then traps
    /// (MisuseTests.testTypeOfAnotherHeapTrapsAtItsFirstAllocation).
    func testATypeOfAnotherHeapFindsItsSlotEmpty() throws {
        let a = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let b = try Heap(configuration: Configuration(gcPercent: nil).precise)
        let nodeOfA = try a.register(TypeLayout(name: "A.Node", size: 48, pointerWords: [0]))
        XCTAssertGreaterThanOrEqual(nodeOfA.cacheSlot, MCache.firstTypeSlot)
        var typesOfB: [ObjectType] = []
        for i in 0..<8 { typesOfB.append(try b.register(TypeLayout(name: "B.T\(i)", size: 16 * (i + 1), pointerWords: [0]))) }
        XCTAssertFalse(typesOfB.contains { $0.cacheSlot == nodeOfA.cacheSlot })
        b.withMutator { m in
            for t in typesOfB { for _ in 0..<100 { _ = m.allocate(t) } }
            XCTAssertEqual(m.state.pointee.mcache.pointee.alloc[nodeOfA.cacheSlot], b.emptySpan)
        }
    }

    /// A span used by a class slot, with an object of another type still in it, is taken
    /// by a type slot: the fill gives the type's id to its free slots only, the old
    /// object keeps its own, and the span is not marked as filled (`filledType`), so it
    /// is filled again when another type slot takes it. One mutator and no pacer: every
    /// step is determined.
    func testASpanKeepsItsObjectsTypesWhenAnotherSlotTakesIt() throws {
        let heap = try Heap(configuration: Configuration(gcPercent: nil).precise.withSelfChecks)
        let a = try heap.register(TypeLayout(name: "move.A", size: 32, pointerWords: [0]))
        let b = try heap.register(TypeLayout(name: "move.B", size: 32, pointerWords: [1]))
        guard a.cacheSlot >= SpanClass.count, b.cacheSlot >= SpanClass.count else {
            throw XCTSkip("heaps of earlier tests hold every type slot")
        }
        let perSpan = Self.objectsPerSpan(size: 32)
        let zType = try Self.typeInClassSlot(heap, name: "move.Z", size: 32, pointerWords: [0, 1])
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                heap.collect()
                // One span's worth of Z objects; the first stays reachable.
                f[0] = m.allocate(zType)
                m.storeWord(f[0], 2, 77)
                let span = m.state.pointee.mcache.pointee.spans[zType.cacheSlot]
                for _ in 1..<perSpan { _ = m.allocate(zType) }
                // The sweep leaves it with one object: the only swept span of the class.
                heap.collect()
                f[1] = m.allocate(a)
                XCTAssertEqual(m.state.pointee.mcache.pointee.spans[a.cacheSlot], span, "A's slot took another span")
                XCTAssertEqual(span.pointee.filledType, 0, "a span with another type's object marked as filled with A")
                heap.checkInvariants()
                // Its other slots go to A, by the fast path.
                var objects: [Ref] = []
                for _ in 2..<perSpan { objects.append(m.allocate(a)) }
                XCTAssertEqual(m.type(of: f[0]), zType)
                XCTAssertEqual(m.loadWord(f[0], 2), 77)
                XCTAssertEqual(m.type(of: f[1]), a)
                XCTAssertTrue(objects.allSatisfy { m.type(of: $0) == a })
                // Everything but the Z object dies; B's slot takes the span next.
                f[1] = .null
                objects = []
                heap.collect()
                let r = m.allocate(b)
                XCTAssertEqual(m.state.pointee.mcache.pointee.spans[b.cacheSlot], span, "B's slot took another span")
                XCTAssertEqual(m.type(of: r), b)
                XCTAssertEqual(m.type(of: f[0]), zType)
                for _ in 2..<perSpan { XCTAssertEqual(m.type(of: m.allocate(b)), b) }
                heap.checkInvariants()
            }
        }
    }

    /// The marker takes a span's type from `MSpan.filledType` when the span holds one
    /// type in every slot. A span filled with A's id in A's own slot, then taken by a
    /// class slot that allocates Z objects (pointer word 1, where A has a data word),
    /// must not be marked as A's: a chain linked through word 1 survives collections
    /// with freed memory clobbered. In a child process: a Z object scanned with A's
    /// layout ends it with gccheckmark's fatal error.
    func testMarkerScansObjectsOfASpanThatLeftATypeSlotWithTheirOwnTypes() {
        checkInChild { check in
            do { try Self.markAfterSlotChange(check) } catch { check.expect(false, "\(error)") }
        }
    }

    private static func markAfterSlotChange(_ check: ChildChecks) throws {
        var c = Configuration(gcPercent: nil, clobberFree: true, checkmark: true, markWorkers: 0)
        c.conservativeStackScan = false
        let heap = try Heap(configuration: c.withSelfChecks)
        let a = try heap.register(TypeLayout(name: "fill.A", size: 32, pointerWords: [0]))
        guard a.cacheSlot >= SpanClass.count else { check.expect(false, "a fresh heap has type slots"); return }
        let perSpan = Self.objectsPerSpan(size: 32)
        let z = try Self.typeInClassSlot(heap, name: "fill.Z", size: 32, pointerWords: [1])
        heap.withMutator { m in
            m.withFrame(slots: 2) { f in
                heap.collect()
                // A span of A objects, filled with A's id; the first stays reachable so the
                // span stays in the class, as the only swept one.
                f[0] = m.allocate(a)
                let span = m.state.pointee.mcache.pointee.spans[a.cacheSlot]
                check.expectEqual(span.pointee.filledType, UInt16(truncatingIfNeeded: a.id), "an empty span cached in A's slot is filled with A")
                for _ in 1..<perSpan { _ = m.allocate(a) }
                heap.collect()
                // Z's class slot takes it and links its objects through word 1.
                f[1] = m.allocate(z)   // word 2 (its number) is 0, word 1 null
                check.expect(m.state.pointee.mcache.pointee.spans[z.cacheSlot] == span, "Z's slot took another span")
                for i in 1..<(perSpan - 1) {
                    let o = m.allocate(z)
                    m.storeWord(o, 2, i)
                    m.store(o, 1, f[1])
                    f[1] = o
                }
                for _ in 0..<2 { heap.collect() }
                var o = f[1]
                var seen = 0
                var want = perSpan - 2
                while o != .null {
                    check.expectEqual(m.type(of: o), z, "object \(want) keeps type Z")
                    check.expectEqual(m.loadWord(o, 2), want, "object \(want) keeps its contents")
                    o = m.load(o, 1)
                    want -= 1
                    seen += 1
                }
                check.expectEqual(seen, perSpan - 1, "the chain through word 1 is whole")
            }
        }
    }

    /// Two types with slots of their own and one in its class's slot, all of one size
    /// class, allocated in turn into lists that live for a few collections and then die:
    /// spans pass between the three slots many times. Every object reachable at the end
    /// has its own type and contents, and the self-checks (each type slot's span holds
    /// the type's id in every free slot) pass at every pause. In unchecked mode the
    /// inlined fast path serves most allocations; in checked mode the slow path.
    func testObjectsKeepTheirTypesWhileSpansMoveBetweenSlots() throws {
        for checked in [false, true] {
            var configuration = Configuration(gcPercent: 100, checked: checked).precise.withSelfChecks
            configuration.memProfileRate = 4096   // sampling arms windows in every slot
            let heap = try Heap(configuration: configuration)
            let a = try heap.register(TypeLayout(name: "slot.A", size: 32, pointerWords: [0]))
            let b = try heap.register(TypeLayout(name: "slot.B", size: 32, pointerWords: [0, 2]))
            for i in 0..<60 { _ = try heap.register(TypeLayout(name: "slot.Fill\(i)", size: 8, pointerWords: [0])) }
            let z = try heap.register(TypeLayout(name: "slot.Z", size: 32, pointerWords: [0, 3]))
            XCTAssertGreaterThanOrEqual(a.cacheSlot, SpanClass.count)
            XCTAssertGreaterThanOrEqual(b.cacheSlot, SpanClass.count)
            XCTAssertLessThan(z.cacheSlot, SpanClass.count)
            let types = [a, b, z]
            let lists = 8, perList = checked ? 2_000 : 20_000
            var seq = 0
            heap.withMutator { m in
                let gc0 = heap.memStats().numGC
                m.withFrame(slots: lists) { f in
                    var round = 0
                    while heap.memStats().numGC < gc0 + 6 || round < lists {
                        // Replace the oldest list: the one it held becomes garbage.
                        let k = round % lists
                        f[k] = .null
                        for _ in 0..<perList {
                            let t = types[seq % 3]
                            let o = m.allocate(t)
                            m.storeWord(o, 1, seq)
                            m.store(o, 0, f[k])
                            f[k] = o
                            seq += 1
                        }
                        round += 1
                        // The self-checks with spans cached: every free slot of a span in
                        // a type slot holds the type's id.
                        if round % 4 == 0 { heap.checkInvariants() }
                        m.safepoint()
                    }
                    heap.collect()
                    heap.checkInvariants()
                    // Every object still reachable has its type and contents.
                    var checkedObjects = 0
                    for k in 0..<lists {
                        var o = f[k]
                        var prev = Int.max
                        while o != .null {
                            let s = m.loadWord(o, 1)
                            XCTAssertLessThan(s, prev, "list \(k) is out of order")
                            prev = s
                            let want = types[s % 3]
                            let got = m.type(of: o)
                            if got != want {
                                XCTFail("checked \(checked): object \(s) has type id \(got.map { Int($0.id) } ?? -1), allocated as \(want.id)")
                                return
                            }
                            o = m.load(o, 0)
                            checkedObjects += 1
                        }
                    }
                    XCTAssertEqual(checkedObjects, lists * perList)
                }
            }
        }
    }

    /// Objects of `size` bytes in one span of their class.
    static func objectsPerSpan(size: Int) -> Int {
        let sc = SizeClassTable.sizeToClass(size)
        return Int(SizeClassTable.classToAllocNPages[sc]) * SizeClassTable.pageSize / Int(SizeClassTable.classToSize[sc])
    }

    /// Register a type `name` of `size` bytes; while it gets a type slot of its own,
    /// register more like it (`name` and a number), which take the remaining type slots,
    /// and return the first that lands in its class's slot.
    static func typeInClassSlot(_ heap: Heap, name: String, size: Int, pointerWords: [Int]) throws -> ObjectType {
        var t = try heap.register(TypeLayout(name: name, size: size, pointerWords: pointerWords))
        var fillers = 0
        while t.cacheSlot >= SpanClass.count {
            fillers += 1
            t = try heap.register(TypeLayout(name: "\(name)\(fillers)", size: size, pointerWords: pointerWords))
        }
        return t
    }
}
