import CTricolor

// Call stacks for the profilers and hooks: captured cheaply where they happen (a
// frame-pointer walk in C, no allocation, no locks) and symbolized later, once per
// unique PC, by TricolorProfiling when a profile is written.
//
// Conventions:
//   - A captured stack is an array of return addresses, innermost first.
//   - A PC handed to a symbolizer is a return address minus 1, so that it lies inside
//     the call instruction and symbolizes to the call site.

/// Stores the calling thread's call stack in `buf` as return addresses, innermost
/// first, and returns how many it stored (at most `max`). Walks frame pointers: about
/// 35-40 ns for 15 frames (release, 2-core VM), no allocation, no locks, never faults
/// (see `tc_callers`). The first call on a thread also looks up the thread's stack
/// bounds (pthread_getattr_np, which reads /proc/self/maps on the main thread).
///
/// `skip` counts frames starting at the function that calls `captureStack`
/// (`captureStack` is transparent, so it has no frame of its own in debug or release):
/// with `skip: 0`, `buf[0]` is the return address of the call to `captureStack`
/// itself, i.e. a PC inside the calling function; `buf[1]` is the return address into
/// that function's caller, and so on. `skip: n` drops the first `n` of those.
///
/// A frame that the optimizer inlined or turned into a tail call has no frame record
/// and so no entry of its own: count frames as they are in the build being profiled.
/// Code built without frame pointers (some C libraries) ends the walk early or skips
/// its callers.
@usableFromInline @_transparent
func captureStack(skip: Int, into buf: UnsafeMutablePointer<UInt>, max: Int) -> Int {
    tc_callers(skip, buf, max)
}
