// swift-tools-version:6.0
import PackageDescription

// No unsafe compiler flags anywhere: SwiftPM refuses them in a package that is depended on by
// version, and Tricolor must be usable as `.package(url: …, from: "…")`.
let package = Package(
    name: "Tricolor",
    products: [
        // The runtime: allocator, collector, pacer, statistics, hooks, heap profile records.
        .library(name: "Tricolor", targets: ["Tricolor"]),
        // pprof files (`heap.heapProfile()`, `Heap.mutexProfileData()`), the symbolizer
        // and DWARF line tables. Apart so that the runtime does not link zlib.
        .library(name: "TricolorProfiling", targets: ["TricolorProfiling"]),
        // Reading heap dumps (`Heap.writeHeapDump`): dominator tree, retained sizes,
        // retention paths, diffs. Apart so that the runtime does not carry the analyzer.
        .library(name: "TricolorHeapDump", targets: ["TricolorHeapDump"]),
        .executable(name: "tricolor", targets: ["tricolor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `swift package generate-documentation --target Tricolor` (the DocC catalog in
        // Sources/Tricolor/Tricolor.docc). A plugin only: nothing of it is linked.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // C shims: atomics on raw memory, thread-local current mutator, stack bounds,
        // thread names. Everything Swift cannot express cheaply.
        .target(name: "CTricolor"),
        // zlib, for gzipping pprof profiles. The modulemap links "z" itself, so the build
        // does not depend on pkg-config finding zlib.pc.
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(name: "Tricolor", dependencies: ["CTricolor"]),
        .target(name: "TricolorProfiling", dependencies: ["Tricolor", "TricolorHeapDump", "CTricolor", "CZlib"]),
        // Test support (@_spi(Testing)): running code in a child process, watchdogs,
        // seeded random numbers, reference implementations. Not a product.
        .target(name: "TricolorTestSupport", dependencies: ["Tricolor"]),
        .target(name: "TricolorHeapDump"),
        .target(name: "TricolorWorkloads", dependencies: ["Tricolor"]),
        // The example: a small Scheme written with the typed layer (and the same
        // interpreter on ARC classes, for comparison), as a library for its tests and
        // the `scheme` executable (REPL, files, --arc, --stats).
        .target(name: "TricolorScheme", dependencies: ["Tricolor"]),
        .executableTarget(name: "scheme", dependencies: ["Tricolor", "TricolorScheme"]),
        .executableTarget(
            name: "tricolor",
            dependencies: [
                "Tricolor", "TricolorProfiling", "TricolorWorkloads", "TricolorHeapDump",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "TricolorTests",
            dependencies: ["Tricolor", "TricolorProfiling", "TricolorTestSupport", "TricolorWorkloads", "TricolorHeapDump", "CTricolor", "CZlib"]
        ),
        .testTarget(name: "SchemeTests", dependencies: ["TricolorScheme", "Tricolor"]),
    ]
)
