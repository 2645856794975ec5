import CTricolor
import Glibc

// Allocation and free hooks, for auditing (the successor of Go's GODEBUG=allocfreetrace).
//
// Installing a hook stops the world and switches every mutator's cache to "slow" mode:
// the array the inlined fast path reads is emptied, so every allocation goes through the
// outlined slow path, which calls the hook. Nothing is tested on the fast path, installed
// or not: the cost when no hook is installed is zero instructions. The free hook is
// called by whichever thread sweeps the span (a mutator or the background sweeper).
//
// Hooks run inside the runtime: they must not use the heap (no allocation, no mutator
// calls) and should be quick. Copy what you need and return.

/// One allocation, as the allocation hook sees it.
public struct AllocationEvent: Sendable {
    /// Address of the new object.
    public var address: UInt
    /// Bytes asked for (for arrays, count × element size).
    public var size: Int
    /// Bytes the object occupies: its size class's slot size, or whole pages when large.
    public var slotSize: Int
    /// Size class (0 for large objects).
    public var sizeClass: Int
    /// Registered type name; "<bytes>" for pointer-free byte allocations.
    public var typeName: String
    /// True for an allocation packed into a shared 16-byte tiny block.
    public var tiny: Bool
    /// Return addresses, innermost first, when the hook was installed with
    /// `captureStacks: true` (symbolize with `Heap.symbolize`); otherwise empty.
    public var stack: [UInt]
}

/// One freed object, as the free hook sees it (called while sweeping).
public struct FreeEvent: Sendable {
    /// Address of the object that was freed; the slot may be handed out again at once.
    public var address: UInt
    /// Bytes the object occupied (slot size, or whole pages when large).
    public var slotSize: Int
    /// Size class (0 for large objects).
    public var sizeClass: Int
    /// Registered type name; "<bytes>" for pointer-free memory (including tiny blocks).
    public var typeName: String
}

final class HookBox: @unchecked Sendable {
    let onAlloc: (@Sendable (AllocationEvent) -> Void)?
    let captureStacks: Bool
    let onFree: (@Sendable (FreeEvent) -> Void)?
    init(onAlloc: (@Sendable (AllocationEvent) -> Void)?, captureStacks: Bool, onFree: (@Sendable (FreeEvent) -> Void)?) {
        self.onAlloc = onAlloc
        self.captureStacks = captureStacks
        self.onFree = onFree
    }
}

extension Heap {
    /// Install (or with nil remove) the allocation hook. With `captureStacks` each event
    /// carries the allocating call stack. Stops the world briefly.
    public func setAllocationHook(captureStacks: Bool = false, _ hook: (@Sendable (AllocationEvent) -> Void)?) {
        updateHooks { old in HookBox(onAlloc: hook, captureStacks: captureStacks, onFree: old?.onFree) }
    }

    /// Install (or with nil remove) the free hook, called for each object the sweeper frees.
    public func setFreeHook(_ hook: (@Sendable (FreeEvent) -> Void)?) {
        updateHooks { old in HookBox(onAlloc: old?.onAlloc, captureStacks: old?.captureStacks ?? false, onFree: hook) }
    }

    private func updateHooks(_ make: (HookBox?) -> HookBox) {
        withWorldStopped {
            var box: HookBox? = make(hooksLock.withLock { hooks })
            if box?.onAlloc == nil && box?.onFree == nil { box = nil }
            hooksLock.withLock { hooks = box }
            flags.hooksInstalled.store(box == nil ? 0 : 1, .releasing)
            allocHookInstalled = box?.onAlloc != nil
            forEachMutator { setCacheMode($0) }
        }
    }

    /// The hooks, if any are installed (one atomic load when none are).
    @inline(__always)
    func currentHooks() -> HookBox? {
        if flags.hooksInstalled.load(.acquiring) == 0 { return nil }
        return hooksLock.withLock { hooks }
    }

    /// Whether the inlined fast path may serve this mutator, and the arrays to match:
    /// checked mode, clobberfree, an allocation hook and allocation-path statistics all
    /// need every allocation in the slow path. Called at attach and with the world stopped.
    func setCacheMode(_ st: UnsafeMutablePointer<MutatorState>) {
        let slow = debugSlowPath || allocHookInstalled || configuration.allocPathStats
        let c = st.pointee.mcache
        c.pointee.slowAlloc = slow
        for i in 0..<MCache.slotCount {
            c.pointee.alloc[i] = slow ? emptySpan : c.pointee.spans[i]
        }
    }
}

/// Marks the calling thread while it runs a user hook, so that a hook that uses the heap
/// (allocates, or calls `collect()`, which would wait for the sweep the hook is part of)
/// traps with a message instead of deadlocking. A pthread key: nil outside hooks.
enum HookGuard {
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        let rc = pthread_key_create(&k, nil)
        runtimeCheck(rc == 0, "pthread_key_create failed: \(rc)")
        return k
    }()

    static var inHook: Bool { pthread_getspecific(key) != nil }

    static func run(_ body: () -> Void) {
        let rc = pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
        runtimeCheck(rc == 0, "pthread_setspecific failed: \(rc)")
        defer { _ = pthread_setspecific(key, nil) }
        body()
    }

    @inline(never)
    static func misuse(_ what: String) -> Never {
        runtimeFatal("\(what) inside an allocation or free hook: hooks run inside the runtime and must not use the heap")
    }
}
