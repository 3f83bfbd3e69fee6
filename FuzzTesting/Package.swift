// swift-tools-version:6.1
import PackageDescription

// The libFuzzer driver for calltap's fuzz targets (FuzzTesting/Sources/FuzzTargets, which the main package
// builds and its FuzzReplayTests replay). Built only by Scripts/fuzz, with `-sanitize=fuzzer,address` in
// its own scratch directory.
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
            .product(name: "FuzzTargets", package: "calltap"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
