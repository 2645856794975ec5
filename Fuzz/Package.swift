// swift-tools-version:6.0
// The fuzzer and the soak test of Tricolor's public API, in a package of their own so
// that the root package's build and tests are untouched. Two executables, built apart:
//
//   swift build -c release --sanitize=fuzzer --sanitize=address --product TricolorFuzz --scratch-path .build-fuzz
//   swift build -c release --product TricolorSoak --scratch-path .build-soak
//
// TricolorFuzz has no main (SwiftPM parses it as library files): with -sanitize=fuzzer swiftc links libFuzzer's, which calls
// LLVMFuzzerTestOneInput. Use run.sh / ci.sh here and ../Scripts/soak.sh.
import PackageDescription

let package = Package(
    name: "TricolorFuzz",
    dependencies: [.package(name: "Tricolor", path: "..")],
    targets: [
        .executableTarget(
            name: "TricolorFuzz",
            dependencies: [
                .product(name: "Tricolor", package: "Tricolor"),
                .product(name: "TricolorProfiling", package: "Tricolor"),
            ]
            // No main.swift and no @main: the file with @_cdecl("LLVMFuzzerTestOneInput")
            // is a library file, and libFuzzer (-sanitize=fuzzer) provides main.
        ),
        .executableTarget(
            name: "TricolorSoak",
            dependencies: [.product(name: "Tricolor", package: "Tricolor")]
        ),
    ]
)
