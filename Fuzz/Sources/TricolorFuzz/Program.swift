// How an input becomes a program: each operation is one byte (the opcode, modulo the
// number of operations) followed by the argument bytes it reads; the input ends the
// program. Every operation is a correct use of the public API, carried out on the real
// heap and on the mirror (Model.swift). After every collect() and at the end of every
// input the whole reachable heap is compared with the mirror; then every root is cleared,
// the settings and hooks the input changed are put back, and the thread detaches, so
// inputs do not depend on each other (garbage they leave is the collector's to free).

import Glibc
import Tricolor
import TricolorProfiling

final class Driver {
    let heap: Heap
    let types: [ObjectType]
    /// The global root pool: globals live as long as the heap, so every input shares these.
    let globals: [Global]
    let baseGCPercent: Int?
    let baseMemoryLimit: Int
    let checked: Bool

    // Per input (reset at the end of each).
    var m: Mutator? = nil
    var frames: [Frame] = []
    var frameValues: [[Int]] = []
    var globalValues: [Int]
    var handles: [Handle] = []
    var handleValues: [Int] = []
    var objects: [Int: Obj] = [:]
    var byAddress: [UInt: Int] = [:]
    /// Ids of the objects in the mirror, ascending (what selectors index).
    var live: [Int] = []
    var liveBytes = 0
    var nextID = 1
    var nextSerial = 0x7C00_0000
    var allocHookOn = false
    var freeHookOn = false
    var settingsChanged = false
    /// Bytes allocated by this input; bounds memory when an input turns the collector off.
    var inputBytes = 0
    /// TRICOLOR_FUZZ_SELFTEST: globals to point at their (by then collected) objects.
    var selfTestPending: [(Int, Int)] = []

    static let maxFrames = 16
    static let maxHandles = 8
    static let maxLiveBytes = 64 << 20
    static let maxInputBytes = 256 << 20
    static let maxObjects = 4096

    init() {
        var c: Configuration
        do { c = try Configuration.fromEnvironment() } catch { fatalError("tricolor-fuzz: \(error)") }
        // A small GOGC (unless the environment sets one) so that automatic cycles start,
        // and run concurrently with the program, within one input.
        if getenv("GOGC") == nil { c.gcPercent = 10 }
        // Sample often so the heap profile's fast-path cut and specials are exercised.
        let godebug = getenv("GODEBUG").map { String(cString: $0) } ?? ""
        if !godebug.contains("memprofilerate") { c.memProfileRate = 4096 }
        c.reservedAddressSpace = 8 << 30
        let h: Heap
        do { h = try Heap(configuration: c) } catch { fatalError("tricolor-fuzz: cannot create the heap: \(error)") }
        heap = h
        do {
            types = try TypeSpec.all.map { try h.register(TypeLayout(name: $0.name, size: $0.size, pointerWords: $0.pointerWords)) }
        } catch { fatalError("tricolor-fuzz: cannot register types: \(error)") }
        globals = (0..<8).map { _ in h.makeGlobal() }
        globalValues = Array(repeating: 0, count: globals.count)
        baseGCPercent = c.gcPercent
        baseMemoryLimit = c.memoryLimit ?? Int.max
        checked = c.checked
        atexit { printStats() }
        let line = "tricolor-fuzz: heap GOGC=\(c.gcPercent.map(String.init) ?? "off") memoryLimit=\(c.memoryLimit.map(String.init) ?? "off") checked=\(c.checked) checkmark=\(c.checkmark) clobberfree=\(c.clobberFree) memprofilerate=\(c.memProfileRate); flags huge=\(Flags.huge) checkedMemoryLimit=\(Flags.checkedMemoryLimit)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
    }

    // MARK: running an input

    func run(_ input: inout Input) {
        stats.inputs += 1
        inputBytes = 0
        trace("input of \(input.count) bytes")
        while !input.atEnd {
            step(&input)
        }
        finishInput()
    }

    /// The mutator, attaching first if the thread is detached.
    @discardableResult
    func mutator() -> Mutator {
        if let m { return m }
        trace("attach")
        let a = heap.attach()
        stats.operations += 1
        stats.attaches += 1
        m = a
        return a
    }

    func finishInput() {
        let m = mutator()
        verify("end of input")
        // Clear the mirror first: after this no object of this input is expected to survive.
        forgetAll()
        selfTestPending.removeAll()
        while let f = frames.popLast() { m.popFrame(f); stats.operations += 1 }
        frameValues.removeAll()
        for (i, g) in globals.enumerated() where globalValues[i] != 0 {
            m.store(g, .null)
            globalValues[i] = 0
            stats.operations += 1
        }
        stats.operations += handles.count
        handles.removeAll()
        handleValues.removeAll()
        if allocHookOn || freeHookOn {
            heap.setAllocationHook(nil)
            heap.setFreeHook(nil)
            allocHookOn = false
            freeHookOn = false
            stats.operations += 2
        }
        if settingsChanged {
            heap.setGCPercent(baseGCPercent)
            heap.setMemoryLimit(baseMemoryLimit)
            settingsChanged = false
            stats.operations += 2
        }
        heap.detach(m)
        self.m = nil
        stats.operations += 1
    }

    static let opCount = 26

    func step(_ input: inout Input) {
        let op = input.byte() % Driver.opCount
        switch op {
        case 0, 1, 2: allocateTyped(&input)
        case 3: allocateArray(&input)
        case 4: allocateBytes(&input)
        case 5, 6: storePointer(&input)
        case 7: loadPointer(&input)
        case 8: storeScalar(&input)
        case 9: loadScalar(&input)
        case 10: pushFrame(&input)
        case 11: popFrame()
        case 12: setFrameSlot(&input)
        case 13: setGlobal(&input)
        case 14: makeHandle(&input)
        case 15: changeHandle(&input)
        case 16: collect()
        case 17: setGCPercent(&input)
        case 18: setMemoryLimit(&input)
        case 19: detach()
        case 20: toggleHooks(&input)
        case 21: observe(&input)
        case 22: churn(&input)
        case 23: safepoint(&input)
        case 24: copyFieldToRoot(&input)
        default: verify("verify operation")
        }
    }

    // MARK: allocation

    static let byteSizes = [0, 1, 2, 3, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 100, 255, 256, 257,
                            512, 1016, 1017, 1024, 2000, 4096, 8192, 16384, 32768, 32769, 40000, 65536,
                            100_000, 262_144, 1 << 20]
    static let arrayCounts = [0, 1, 2, 3, 7, 16, 100, 1000]

    func canAllocate(_ bytes: Int) -> Bool {
        liveBytes + bytes <= Driver.maxLiveBytes && inputBytes + bytes <= Driver.maxInputBytes
            && objects.count < Driver.maxObjects
    }

    func allocateTyped(_ input: inout Input) {
        let t = input.byte() % types.count
        let dest = input.byte(), d1 = input.byte(), d2 = input.byte()
        let spec = TypeSpec.all[t]
        guard canAllocate(spec.wordsPerElement * 8) else { return }
        let m = mutator()
        trace("allocate \(spec.name) -> dest \(dest)")
        let r = checkedAllocation(size: spec.wordsPerElement * 8) { m.allocate(types[t]) }
        finishAllocation(r, spec: t, count: 1, dest: dest, d1, d2)
    }

    func allocateArray(_ input: inout Input) {
        let t = input.byte() % types.count
        let c = input.byte()
        let dest = input.byte(), d1 = input.byte(), d2 = input.byte()
        let spec = TypeSpec.all[t]
        var count = Driver.arrayCounts[c % Driver.arrayCounts.count] + (c >> 3) % 3
        // At most 1 MiB.
        if spec.wordsPerElement > 0 { count = min(count, (1 << 20) / (spec.wordsPerElement * 8)) }
        let bytes = count * spec.wordsPerElement * 8
        guard canAllocate(bytes) else { return }
        let m = mutator()
        trace("allocateArray \(spec.name) x \(count) -> dest \(dest)")
        let r = checkedAllocation(size: bytes) { m.allocateArray(types[t], count: count) }
        finishAllocation(r, spec: t, count: count, dest: dest, d1, d2)
    }

    func allocateBytes(_ input: inout Input) {
        let s = input.byte()
        let dest = input.byte(), d1 = input.byte(), d2 = input.byte()
        if Flags.huge && s >= 0xF0 { return hugeAllocation(s - 0xF0) }
        let size = Driver.byteSizes[s % Driver.byteSizes.count] + (s / Driver.byteSizes.count) % 3
        guard canAllocate(size) else { return }
        let m = mutator()
        trace("allocateBytes \(size) -> dest \(dest)")
        let viaTry = s & 0x80 != 0
        let r = checkedAllocation(size: size) {
            if viaTry {
                guard let r = m.tryAllocateBytes(size) else { fail("tryAllocateBytes(\(size)) returned nil") }
                return r
            }
            return m.allocateBytes(size)
        }
        finishAllocation(r, spec: -1, count: size, dest: dest, d1, d2)
    }

    /// Sizes no heap can serve must give nil (Flags.huge).
    func hugeAllocation(_ s: Int) {
        let m = mutator()
        stats.operations += 1
        // Every size is beyond the heap's 8 GiB reservation, or negative.
        let sizes = [(8 << 30) + 1, 1 << 40, Int.max / 2, Int.max - 7, Int.max, -1, -(1 << 40), Int.min]
        let size = sizes[(s >> 1) % sizes.count]
        if s & 1 == 0 {
            trace("huge allocation: tryAllocateBytes(\(size))")
            if let r = m.tryAllocateBytes(size) { fail("tryAllocateBytes(\(size)) returned \(r), expected nil") }
        } else {
            // 24-byte elements: a count whose size is just past `size`, or a negative count.
            let count = size < 0 ? size : size / 24 + 1
            trace("huge allocation: tryAllocateArray(Pair, count: \(count))")
            if let r = m.tryAllocateArray(types[TypeSpec.pair], count: count) {
                fail("tryAllocateArray(Pair, count: \(count)) returned \(r), expected nil")
            }
        }
    }

    /// Run an allocation and, with the allocation hook installed, check the event it produced.
    func checkedAllocation(size: Int, _ body: () -> Ref) -> Ref {
        hookState.lastAllocAddress.store(0, ordering: .relaxed)
        let r = body()
        stats.operations += 1
        stats.allocations += 1
        inputBytes += size
        if r.isNull { fail("allocation of \(size) bytes returned null") }
        if allocHookOn && size > 0 {
            let a = hookState.lastAllocAddress.load(ordering: .relaxed)
            let s = hookState.lastAllocSize.load(ordering: .relaxed)
            if a != r.address || s != size {
                fail("allocation hook saw 0x\(String(a, radix: 16)) of \(s) bytes; the allocation returned \(r) of \(size) bytes")
            }
        }
        return r
    }

    /// Stamp a new object, enter it in the mirror and root it at the chosen destination.
    func finishAllocation(_ r: Ref, spec: Int, count: Int, dest: Int, _ d1: Int, _ d2: Int) {
        let m = mutator()
        let serial = nextSerial
        nextSerial += 1
        let o = Obj(id: nextID, ref: r, serial: serial, spec: spec, count: count)
        nextID += 1
        if spec >= 0 {
            let t = TypeSpec.all[spec]
            if count > 0, let first = t.scalarWords.first {
                m.storeWord(r, first, serial)
                o.scalars[first] = serial
                stats.operations += 1
                if count > 1 {
                    let w = (count - 1) * t.wordsPerElement + first
                    m.storeWord(r, w, ~serial)
                    o.scalars[w] = ~serial
                    stats.operations += 1
                }
            }
        } else {
            if o.words > 0 {
                m.storeWord(r, 0, serial)
                o.scalars[0] = serial
                stats.operations += 1
            }
            if o.words > 1 {
                m.storeWord(r, o.words - 1, ~serial)
                o.scalars[o.words - 1] = ~serial
                stats.operations += 1
            }
            let tailCount = count - o.words * 8
            for i in 0..<tailCount {
                let b = UInt8(truncatingIfNeeded: (serial >> (8 * i)) ^ 0xA5)
                (r.rawPointer + o.words * 8 + i).storeBytes(of: b, as: UInt8.self)
                o.tail.append(b)
            }
        }
        enter(o)
        root(o.id, dest: dest, d1, d2)
    }

    /// Store object `id` into a root or a reachable object's pointer word, chosen by `dest`.
    func root(_ id: Int, dest: Int, _ d1: Int, _ d2: Int) {
        let m = mutator()
        for attempt in 0..<4 {
            switch (dest + attempt) % 4 {
            case 0:
                guard !frames.isEmpty else { continue }
                let fi = frames.count - 1 - d1 % frames.count
                let s = d2 % frames[fi].count
                frameValues[fi][s] = id
                prune()
                frames[fi][s] = ref(id)
                trace("  rooted in frame \(fi) slot \(s)")
            case 1:
                let g = d1 % globals.count
                globalValues[g] = id
                prune()
                if Flags.selfTest {
                    // Self-test: root it only after the next collect() (a dangling global).
                    m.store(globals[g], .null)
                    selfTestPending.append((g, id))
                } else {
                    m.store(globals[g], ref(id))
                }
                trace("  rooted in global \(g)")
            case 2:
                if handles.count < Driver.maxHandles {
                    handles.append(heap.makeHandle(ref(id)))
                    handleValues.append(id)
                } else {
                    let h = d1 % handles.count
                    handleValues[h] = id
                    prune()
                    m.store(handles[h], ref(id))
                }
                trace("  rooted in a handle")
            default:
                // A pointer word of a reachable object other than the new one.
                let candidates = live.filter { $0 != id && objects[$0]!.hasPointerWords }
                guard !candidates.isEmpty else { continue }
                let holder = objects[candidates[d1 % candidates.count]]!
                let w = holder.pointerWord(d2, d1 >> 4)!
                holder.pointers[w] = id
                prune()
                m.store(holder.ref, w, ref(id))
                trace("  stored in word \(w) of \(holder.description)")
            }
            stats.operations += 1
            return
        }
        fail("internal: no destination for a new object")
    }

    // MARK: pointers and scalars

    func storePointer(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), c = input.byte(), v = input.byte()
        let holders = live.filter { objects[$0]!.hasPointerWords }
        guard !holders.isEmpty else { return }
        let holder = objects[holders[a % holders.count]]!
        let w = holder.pointerWord(b, c)!
        let id = value(v)
        let m = mutator()
        trace("store word \(w) of \(holder.description) := \(id == 0 ? "null" : objects[id]!.description)")
        if id == 0 { holder.pointers[w] = nil } else { holder.pointers[w] = id }
        prune()
        m.store(holder.ref, w, ref(id))
        stats.operations += 1
    }

    func loadPointer(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), c = input.byte()
        let holders = live.filter { objects[$0]!.hasPointerWords }
        guard !holders.isEmpty else { return }
        let holder = objects[holders[a % holders.count]]!
        let w = holder.pointerWord(b, c)!
        let m = mutator()
        let got = m.load(holder.ref, w)
        stats.operations += 1
        let want = holder.pointers[w] ?? 0
        trace("load word \(w) of \(holder.description)")
        if got != ref(want) {
            fail("load of word \(w) of \(holder.description) gave \(got), expected \(want == 0 ? "null" : objects[want]!.description)")
        }
    }

    func storeScalar(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), c = input.byte(), v = input.byte()
        guard let o = object(a), let w = o.scalarWord(b, c) else { return }
        let m = mutator()
        let value = Int(truncatingIfNeeded: UInt64(v) &* 0x9E37_79B9_7F4A_7C15) ^ o.serial
        trace("storeWord word \(w) of \(o.description) := \(value)")
        m.storeWord(o.ref, w, value)
        stats.operations += 1
        if value == 0 { o.scalars[w] = nil } else { o.scalars[w] = value }
    }

    func loadScalar(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), c = input.byte()
        guard let o = object(a), let w = o.scalarWord(b, c) else { return }
        let m = mutator()
        let got = m.loadWord(o.ref, w)
        stats.operations += 1
        trace("loadWord word \(w) of \(o.description)")
        if got != o.scalars[w] ?? 0 {
            fail("loadWord of word \(w) of \(o.description) gave \(got), expected \(o.scalars[w] ?? 0)")
        }
    }

    // MARK: roots

    func pushFrame(_ input: inout Input) {
        let n = 1 + input.byte() % 8
        guard frames.count < Driver.maxFrames else { return }
        let m = mutator()
        trace("pushFrame \(n)")
        frames.append(m.pushFrame(slots: n))
        frameValues.append(Array(repeating: 0, count: n))
        stats.operations += 1
    }

    func popFrame() {
        guard let m, let f = frames.last else { return }
        trace("popFrame")
        frames.removeLast()
        frameValues.removeLast()
        prune()
        m.popFrame(f)
        stats.operations += 1
    }

    func setFrameSlot(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), v = input.byte()
        guard m != nil, !frames.isEmpty else { return }
        let fi = a % frames.count
        let s = b % frames[fi].count
        let id = value(v)
        trace("frame \(fi) slot \(s) := \(id == 0 ? "null" : objects[id]!.description)")
        frameValues[fi][s] = id
        prune()
        frames[fi][s] = ref(id)
        stats.operations += 1
        if frames[fi][s] != ref(id) { fail("frame \(fi) slot \(s) reads back \(frames[fi][s]) after storing \(ref(id))") }
    }

    func setGlobal(_ input: inout Input) {
        let a = input.byte(), v = input.byte()
        let g = a % globals.count
        let id = value(v)
        let m = mutator()
        trace("global \(g) := \(id == 0 ? "null" : objects[id]!.description)")
        globalValues[g] = id
        prune()
        m.store(globals[g], ref(id))
        stats.operations += 1
    }

    /// makeHandle works from any thread, attached or not.
    func makeHandle(_ input: inout Input) {
        let v = input.byte()
        guard handles.count < Driver.maxHandles else { return }
        let id = value(v)
        trace("makeHandle \(id == 0 ? "null" : objects[id]!.description)\(m == nil ? " (detached)" : "")")
        handles.append(heap.makeHandle(ref(id)))
        handleValues.append(id)
        stats.operations += 1
    }

    func changeHandle(_ input: inout Input) {
        let a = input.byte(), v = input.byte()
        guard !handles.isEmpty else { return }
        let h = a % handles.count
        if v & 1 == 0 {
            trace("release handle \(h)")
            handleValues.remove(at: h)
            prune()
            handles.remove(at: h)   // the last reference: released here
        } else {
            let id = value(v >> 1)
            let m = mutator()
            trace("handle \(h) := \(id == 0 ? "null" : objects[id]!.description)")
            handleValues[h] = id
            prune()
            m.store(handles[h], ref(id))
        }
        stats.operations += 1
    }

    func copyFieldToRoot(_ input: inout Input) {
        let a = input.byte(), b = input.byte(), c = input.byte(), d = input.byte()
        let holders = live.filter { objects[$0]!.hasPointerWords }
        guard !holders.isEmpty else { return }
        let holder = objects[holders[a % holders.count]]!
        let w = holder.pointerWord(b, c)!
        let m = mutator()
        let loaded = m.load(holder.ref, w)
        stats.operations += 1
        let id = holder.pointers[w] ?? 0
        if loaded != ref(id) { fail("load of word \(w) of \(holder.description) gave \(loaded), expected \(ref(id))") }
        trace("copy word \(w) of \(holder.description) to a root (\(d % 3))")
        switch d % 3 {
        case 0 where !frames.isEmpty:
            let fi = (d >> 2) % frames.count
            let s = (d >> 4) % frames[fi].count
            frameValues[fi][s] = id
            prune()
            frames[fi][s] = loaded
        case 1 where handles.count < Driver.maxHandles:
            handles.append(heap.makeHandle(loaded))
            handleValues.append(id)
        default:
            let g = (d >> 2) % globals.count
            globalValues[g] = id
            prune()
            m.store(globals[g], loaded)
        }
        stats.operations += 1
    }

    func detach() {
        guard let m else { return }
        trace("detach (\(frames.count) frames disappear)")
        // Frames stop being roots: forget them first.
        frames.removeAll()
        frameValues.removeAll()
        prune()
        heap.detach(m)
        self.m = nil
        stats.operations += 1
    }

    // MARK: the collector and its settings

    func collect() {
        trace("collect\(m == nil ? " (detached)" : "")")
        heap.collect()
        stats.operations += 1
        stats.collections += 1
        if !selfTestPending.isEmpty {
            let m = mutator()
            for (g, id) in selfTestPending where globalValues[g] == id { m.store(globals[g], ref(id)) }
            selfTestPending.removeAll()
        }
        verify("after collect()")
    }

    func setGCPercent(_ input: inout Input) {
        let values: [Int?] = [nil, 0, 1, 5, 10, 25, 100, 300]
        let v = values[input.byte() % values.count]
        trace("setGCPercent \(v.map(String.init) ?? "off")")
        heap.setGCPercent(v)
        settingsChanged = true
        stats.operations += 1
    }

    func setMemoryLimit(_ input: inout Input) {
        let values = [Int.max, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 1 << 30, -1]
        let v = values[input.byte() % values.count]
        // Flags.checkedMemoryLimit: once a lock rank violation in checked mode.
        if checked && !Flags.checkedMemoryLimit { return }
        trace("setMemoryLimit \(v)")
        let old = heap.setMemoryLimit(v)
        if v < 0 && old != heap.setMemoryLimit(-1) { fail("setMemoryLimit(-1) changed the limit") }
        settingsChanged = true
        stats.operations += 1
    }

    func toggleHooks(_ input: inout Input) {
        let b = input.byte()
        trace("hooks \(b % 6)")
        switch b % 6 {
        case 0, 1:
            heap.setAllocationHook(captureStacks: b % 6 == 1) { hookState.onAlloc($0) }
            allocHookOn = true
        case 2:
            heap.setAllocationHook(nil)
            allocHookOn = false
        case 3:
            heap.setFreeHook { hookState.onFree($0) }
            freeHookOn = true
        case 4:
            heap.setFreeHook(nil)
            freeHookOn = false
        default:
            heap.setAllocationHook(nil)
            heap.setFreeHook(nil)
            allocHookOn = false
            freeHookOn = false
            stats.operations += 1
        }
        stats.operations += 1
    }

    func observe(_ input: inout Input) {
        let b = input.byte()
        trace("observe \(b % 4)")
        switch b % 4 {
        case 0:
            let p = heap.heapProfile()
            if p.count < 2 || p[0] != 0x1F || p[1] != 0x8B { fail("heapProfile() is not gzip data (\(p.count) bytes)") }
        case 1:
            let s = heap.memStats()
            if s.heapAlloc > s.heapSys { fail("memStats: heapAlloc \(s.heapAlloc) > heapSys \(s.heapSys)") }
        case 2:
            _ = heap.gcStats()
        default:
            _ = heap.memProfile()
        }
        stats.operations += 1
    }

    // MARK: garbage and safepoints

    /// A burst of garbage: a chain of Pairs held only by a scratch frame slot (checked by
    /// walking it), some pointing at reachable objects, then dropped. This is what drives
    /// automatic cycles, and the mirror's objects are stored to while those cycles mark.
    func churn(_ input: inout Input) {
        let b = input.byte(), c = input.byte()
        let n = 1 + b * 8
        guard inputBytes + n * 24 <= Driver.maxInputBytes else { return }
        let m = mutator()
        trace("churn \(n)")
        let pair = types[TypeSpec.pair]
        let f = m.pushFrame(slots: 1)
        for i in 0..<n {
            let p = m.allocate(pair)
            m.storeWord(p, 0, i)
            m.store(p, 1, f[0])
            if c & 1 != 0, i % 16 == 0, let o = object(i + c) { m.store(p, 2, o.ref) }
            f[0] = p
            if c & 2 != 0, i % 64 == 0 { _ = m.allocateBytes(1 + (i + c) % 40) }
        }
        stats.operations += n * 4
        stats.allocations += n
        inputBytes += n * 24
        var p = f[0]
        var i = n - 1
        while !p.isNull {
            let got = m.loadWord(p, 0)
            if got != i { fail("churn chain: node \(n - 1 - i) from the head holds \(got), expected \(i)") }
            p = m.load(p, 1)
            i -= 1
            stats.operations += 2
        }
        if i != -1 { fail("churn chain ended after \(n - 1 - i) nodes, expected \(n)") }
        m.popFrame(f)
        stats.operations += 1
    }

    func safepoint(_ input: inout Input) {
        let b = input.byte()
        let m = mutator()
        if b & 1 == 0 {
            trace("safepoint")
            m.safepoint()
        } else {
            trace("blocking")
            m.blocking { for _ in 0..<(b * 4) { sched_yield() } }
        }
        stats.operations += 1
    }
}
