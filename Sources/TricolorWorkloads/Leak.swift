import Tricolor

/// A server-shaped program with a memory leak, for practising with heap profiles.
///
/// Each request renders a response (a few short-lived buffers: garbage) and, by mistake,
/// memoizes it in a response cache keyed by request id. Request ids never repeat, so the
/// cache never hits and never evicts: every request leaves an entry and a copy of its
/// response behind. The live heap grows linearly with the number of requests.
///
/// In a heap profile, `inuse_space` points at `LeakyCache.remember` (the leak), while
/// `alloc_space` is dominated by `LeakyServer.renderResponse` (garbage, not a leak).
public enum Leak {
    /// Run `requests` requests; the summary line follows.
    public static func run(heap: Heap, requests: Int, output: (String) -> Void) throws {
        let types = try LeakyServer.Types(heap: heap)
        let cache = heap.makeGlobal()
        var served = 0
        var checksum = 0
        heap.withMutator { m in
            m.store(cache, LeakyCache.make(m, types, buckets: 4096))
            for id in 0..<requests {
                checksum &+= LeakyServer.handle(m, types, cache: cache, requestID: id)
                served += 1
            }
            let entries = LeakyCache.count(m, types, cache.value)
            output("served \(served) requests; response cache holds \(entries) entries (checksum \(checksum & 0xffff))")
        }
    }
}

/// The request handler.
public enum LeakyServer {
    public struct Types: Sendable {
        /// Cache table: a pointer array of bucket heads.
        let table: ObjectType
        /// Cache entry: [next, value] pointers, then key and length words.
        let entry: ObjectType
        let header: ObjectType

        public init(heap: Heap) throws {
            table = try heap.register(TypeLayout(name: "leak.Table", size: 8, pointerWords: [0]))
            entry = try heap.register(TypeLayout(name: "leak.CacheEntry", size: 32, pointerWords: [0, 1]))
            header = try heap.register(TypeLayout(name: "leak.Header", size: 48, pointerWords: [0]))
        }
    }

    @inline(never)
    static func handle(_ m: Mutator, _ t: Types, cache: Global, requestID: Int) -> Int {
        m.withFrame(slots: 1) { f in
            f[0] = renderResponse(m, t, requestID: requestID)
            let len = f[0].rawPointer.load(as: Int.self)
            // "Cache" the response for a request that will never come again.
            LeakyCache.remember(m, t, cache.value, key: requestID, response: f[0], length: len)
            return len
        }
    }

    /// Build a response: headers and scratch buffers (garbage once the request is done).
    @inline(never)
    static func renderResponse(_ m: Mutator, _ t: Types, requestID: Int) -> Ref {
        m.withFrame(slots: 2) { f in
            for k in 0..<8 {
                let h = m.allocate(t.header)
                m.storeWord(h, 1, requestID &+ k)
                if k > 0 { m.store(h, 0, f[0]) }
                f[0] = h
            }
            let scratch = 2048 + (requestID % 7) * 512
            f[1] = m.allocateBytes(scratch)
            let body = m.allocateBytes(256 + (requestID % 5) * 64)
            body.rawPointer.storeBytes(of: 256 + (requestID % 5) * 64, as: Int.self)
            return body
        }
    }
}

/// A hash map from request id to response with no eviction: the leak.
public enum LeakyCache {
    static func make(_ m: Mutator, _ t: LeakyServer.Types, buckets: Int) -> Ref {
        m.allocateArray(t.table, count: buckets)
    }

    @inline(never)
    static func remember(_ m: Mutator, _ t: LeakyServer.Types, _ table: Ref, key: Int, response: Ref, length: Int) {
        m.withFrame(slots: 2) { f in
            f[0] = table
            // Keep a private copy of the response.
            let copy = m.allocateBytes(length)
            UnsafeMutableRawPointer(copy.rawPointer).copyMemory(from: response.rawPointer, byteCount: length)
            f[1] = copy
            let e = m.allocate(t.entry)
            m.store(e, 1, f[1])
            m.storeWord(e, 2, key)
            m.storeWord(e, 3, length)
            let b = key % 4096
            m.store(e, 0, m.load(f[0], b))
            m.store(f[0], b, e)
        }
    }

    static func count(_ m: Mutator, _ t: LeakyServer.Types, _ table: Ref) -> Int {
        var n = 0
        for b in 0..<4096 {
            var e = m.load(table, b)
            while !e.isNull { n += 1; e = m.load(e, 0) }
        }
        return n
    }
}
