// swift-tools-version:6.0
import CompilerPluginSupport
import PackageDescription

// The `@HeapObject` macro, apart from the root package so that Tricolor itself never
// depends on swift-syntax (whose release build costs CI minutes; BENCHMARKS.md, "Typed
// objects"). It depends on the root package by path.
//
//   swift build -c release --package-path Macros
//   swift test -c release --package-path Macros
let package = Package(
    name: "TricolorMacros",
    products: [
        // `@HeapObject struct Cons { var car: Ref; var cdr: Ref }`: the conformance to
        // Tricolor's `HeapObject`, with the field types checked at compile time.
        .library(name: "TricolorMacros", targets: ["TricolorMacros"]),
    ],
    dependencies: [
        .package(name: "Tricolor", path: ".."),
        .package(url: "https://github.com/swiftlang/swift-syntax", from: "600.0.1"),
    ],
    targets: [
        .macro(
            name: "TricolorMacrosPlugin",
            dependencies: [
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax"),
                .product(name: "SwiftDiagnostics", package: "swift-syntax"),
            ]
        ),
        .target(name: "TricolorMacros", dependencies: ["TricolorMacrosPlugin", .product(name: "Tricolor", package: "Tricolor")]),
        .testTarget(
            name: "TricolorMacrosTests",
            dependencies: [
                "TricolorMacros", "TricolorMacrosPlugin",
                .product(name: "Tricolor", package: "Tricolor"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacroExpansion", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacrosTestSupport", package: "swift-syntax"),
            ]
        ),
    ]
)
