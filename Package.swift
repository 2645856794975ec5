// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Tricolor",
    products: [
        .library(name: "Tricolor", targets: ["Tricolor"]),
        .executable(name: "tricolor", targets: ["tricolor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shims: atomics on raw memory, thread-local current mutator, stack bounds,
        // thread names. Everything Swift cannot express cheaply.
        .target(name: "CTricolor"),
        // zlib, for gzipping pprof profiles (Pprof.swift). The modulemap links "z" itself, so
        // the build does not depend on pkg-config finding zlib.pc.
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "Tricolor",
            dependencies: ["CTricolor", "CZlib"],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .target(name: "TricolorWorkloads", dependencies: ["Tricolor"]),
        .executableTarget(
            name: "tricolor",
            dependencies: [
                "Tricolor", "TricolorWorkloads",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TricolorTests", dependencies: ["Tricolor", "TricolorWorkloads", "CTricolor", "CZlib"]),
    ]
)
