// swift-tools-version:6.1
import PackageDescription

// Data flows one way: Source → Decode → Reassembly → Analysers → Pipeline → Attribution → Storage/sinks → Server;
// Core holds what they all share.

// The per-packet modules skip run-time exclusivity checks in release builds: they cost 13% of `calltap read`
// (swift_beginAccess on every class property access in the packet loop). Debug builds, and so every test run,
// keep the checks, which is where an overlapping access would show.
let packetPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "calltap",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "calltap", targets: ["calltap"]),
        // The fuzz targets, for the libFuzzer driver in FuzzTesting/.
        .library(name: "FuzzTargets", targets: ["FuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        // The connect-time ownership program (bpf/connect.bpf.c, embedded by Scripts/make-bpf) and its
        // libbpf loader.
        .target(
            name: "CConnectBPF",
            exclude: ["bpf"],
            linkerSettings: [.linkedLibrary("bpf")]
        ),
        // zlib and Brotli, for LLM API bodies sent compressed.
        .systemLibrary(
            name: "CDecompress",
            providers: [.apt(["zlib1g-dev", "libbrotli-dev"])]
        ),
        // What every stage shares: capture time (saturating arithmetic), direction, addresses.
        .systemLibrary(
            name: "CZstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .target(name: "Core", swiftSettings: packetPath),
        // Link/IP/TCP/UDP decoding without copies, duplicate filtering. No libpcap.
        .target(name: "Decode", dependencies: ["Core"], swiftSettings: packetPath),
        // Packets in: libpcap files and live capture, rotating pcap writing, pcapng secrets blocks. The only
        // module that imports CPcap.
        .target(name: "Source", dependencies: ["Core", "Decode", "CPcap"], swiftSettings: packetPath),
        // Flow table, per-direction TCP streams, out-of-order queue, gaps, eviction.
        .target(name: "Reassembly", dependencies: ["Core", "Decode"], swiftSettings: packetPath),
        // Pure incremental parsers over bytes: HTTP/1, HTTP/2, TLS, QUIC Initial packets, DNS. No I/O, no clock.
        .target(name: "Analysers", dependencies: [
            "Core",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
        ], swiftSettings: packetPath),
        // The call record (the JSONL contract) shared by the pipeline, storage and CLI.
        .target(name: "CallModel", swiftSettings: packetPath),
        // Protocol detection, analyser wiring, and turning analyser events into calls.
        .target(name: "Pipeline", dependencies: [
            "Core", "Decode", "Source", "Reassembly", "Analysers", "CallModel", "CDecompress",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "X509", package: "swift-certificates"),
        ], swiftSettings: packetPath),
        // Connection → process → agent session: socket tables, /proc, the session registry. The only module that reads procfs.
        .target(name: "Attribution", dependencies: ["Core", "CallModel", "CConnectBPF"]),
        // SQLite through GRDB: schema, migrations, batched writer, queries.
        .target(name: "Storage", dependencies: [
            "CallModel",
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        // Calls as OTLP spans and metrics: OpenTelemetry's protobuf messages (a small encoder of our own),
        // the exporter's configuration. No I/O.
        .target(name: "Transcripts", dependencies: [
            "CallModel", "Attribution", "CZstd",
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        .target(name: "ClawMetry", dependencies: ["CallModel", "Core", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "OTLP", dependencies: ["CallModel"]),
        // Posting them to a Collector over OTLP/HTTP (AsyncHTTPClient), with retries; batch export for `read`.
        .target(name: "OTLPHTTP", dependencies: [
            "OTLP", "CallModel",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // The HTTP API, /metrics and the dashboard, reading the store.
        .target(
            name: "Server",
            dependencies: [
                "CallModel", "Storage", "Core", "ClawMetry",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            resources: [
                .embedInCode("Assets/index.html"),
                .embedInCode("Assets/openapi.json"),
            ]
        ),
        // The capturing daemon as services: capture (one OS thread per target), attribution, writer and
        // sinks, followers, retention and the API under one ServiceGroup with ordered graceful shutdown.
        .target(name: "Daemon", dependencies: [
            "Core", "Decode", "Source", "Analysers", "Pipeline", "CallModel", "Storage", "Attribution", "Transcripts", "OTLP", "OTLPHTTP",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "calltap", dependencies: [
            "Core", "Decode", "Source", "Analysers", "Pipeline", "CallModel", "Storage", "Server", "Attribution", "Transcripts", "Daemon", "OTLP", "OTLPHTTP", "ClawMetry",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "TOMLKit", package: "TOMLKit"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "CoreTests", dependencies: ["Core"]),
        .testTarget(name: "CallModelTests", dependencies: ["CallModel"]),
        .testTarget(name: "DecodeTests", dependencies: ["Core", "Decode", "Source"]),
        .testTarget(name: "ReassemblyTests", dependencies: ["Reassembly", "Core", "Decode"]),
        .testTarget(name: "AnalysersTests", dependencies: [
            "Analysers", "Core",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
        ]),
        .testTarget(name: "PipelineTests", dependencies: [
            "Pipeline", "Core", "Decode", "Source", "CallModel", "Analysers", "Reassembly",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        .testTarget(name: "ServerTests", dependencies: [
            "Server", "Storage", "CallModel", "Pipeline", "ClawMetry",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ]),
        .testTarget(name: "AttributionTests", dependencies: ["Attribution", "Core"]),
        .testTarget(name: "TranscriptsTests", dependencies: [
            "Transcripts", "CallModel", "CZstd", .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        .testTarget(name: "OTLPTests", dependencies: ["OTLP", "OTLPHTTP", "CallModel"]),
        .testTarget(name: "DaemonTests", dependencies: [
            "Daemon", "Storage", "CallModel", "Pipeline",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // One fuzz target per parser that takes outside bytes (driven by libFuzzer from FuzzTesting/).
        .target(name: "FuzzTargets",
                dependencies: ["Core", "Decode", "Source", "Reassembly", "Analysers", "CallModel", "Pipeline", "Attribution", "Transcripts", "OTLP"],
                path: "FuzzTesting/Sources/FuzzTargets"),
        // Replays every seed and every input that once failed through the fuzz targets.
        .testTarget(name: "FuzzReplayTests", dependencies: ["FuzzTargets"]),
        // Test support: counts heap allocations, to prove the in-order packet path makes none.
        .target(name: "AllocationCounter", path: "Tests/Support/AllocationCounter"),
        .testTarget(name: "HotPathTests", dependencies: ["AllocationCounter", "Core", "Decode", "Source", "Pipeline", "CallModel", "Reassembly"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "CallModel", .product(name: "GRDB", package: "GRDB.swift")],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
