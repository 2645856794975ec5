// Frame names: which frames of a captured stack are the runtime's and which the
// program's. Shared by the heap dump's allocation sites and the profiles' stack trimming
// (TricolorProfiling), so both name the same frame as an allocation's site.

/// The name without Swift's decorations ("closure #1 in ", "specialized ", …).
package func undecoratedFrameName(_ name: Substring) -> Substring {
    var n = name
    for prefix in ["specialized ", "merged "] where n.hasPrefix(prefix) {
        n = n.dropFirst(prefix.count)
    }
    // "generic specialization <…> of X", "function signature specialization <…> of X"
    if n.hasPrefix("generic specialization <") || n.hasPrefix("function signature specialization <"),
       let r = n.firstRange(of: "> of ") {
        n = n[r.upperBound...]
    }
    if let r = n.firstRange(of: " in "), n.hasPrefix("closure") || n.hasPrefix("implicit closure") || n.hasPrefix("partial apply") {
        n = n[r.upperBound...]
    }
    return n
}

/// The standard library's generic helpers and thunks, which the runtime calls and which
/// an unoptimized build does not inline: between the runtime's frames and the program's.
package func isStdlibHelperFrame(_ n: Substring) -> Bool {
    n.hasPrefix("Swift.") || n.hasPrefix("reabstraction thunk") || n.hasPrefix("thunk for")
}

/// A frame of the runtime itself (Go trims leading runtime.* frames from heap samples),
/// or a standard-library helper or thunk under it.
package func isRuntimeFrameName(_ name: String) -> Bool {
    let n = undecoratedFrameName(Substring(name))
    return n.hasPrefix("Tricolor.") || isStdlibHelperFrame(n)
}
