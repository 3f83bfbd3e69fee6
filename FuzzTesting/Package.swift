// swift-tools-version:6.1
import PackageDescription

// libFuzzer targets for every calltap parser that takes outside bytes. Built only by Scripts/fuzz, with
// `-sanitize=fuzzer,address` in its own scratch directory; see FuzzTesting/README.md.
let package = Package(
    name: "calltap-fuzzing",
    dependencies: [
        .package(name: "calltap", path: ".."),
    ],
    targets: [
        // Declares libFuzzer's driver entry weakly, so the package also links without the sanitizer.
        .target(name: "CFuzzDriver"),
        .executableTarget(name: "calltap-fuzz", dependencies: [
            "CFuzzDriver",
            .product(name: "CalltapParsers", package: "calltap"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
