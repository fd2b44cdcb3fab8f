// swift-tools-version:6.1
import PackageDescription

// Tulip's benchmark package. It is kept apart from the root package (STYLE.md §6) so that the
// daemon's own `swift build` and CI never compile it.
//
// Two kinds of target live here:
//
// - The echo harness (`EchoLoad`, `RawEchoServer`, driven by `scripts/bench-echo.sh`; `UDPEchoLoad`,
//   `RawUDPEchoServer`, driven by `scripts/bench-udp.sh`) depends on SwiftNIO only: it measures the
//   *built `tulipd` binary* over real sockets.
// - ordo-one/benchmark targets (`Benchmarks/<Target>`, run with `swift package benchmark`)
//   measure Tulip's modules in process; CI gates them on `mallocCountTotal` only, against
//   `Thresholds/<swift-version>/` (`scripts/check-allocations.sh`).

// MARK: - Shared dependencies

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let benchmark = Target.Dependency.product(name: "Benchmark", package: "benchmark")
let benchmarkPlugin = Target.PluginUsage.plugin(name: "BenchmarkPlugin", package: "benchmark")

// The root package, `.package(path: "../")`. SwiftPM names a path dependency after its folder
// (lowercased), not after the `name:` in its manifest, and a clone may live in any folder: work
// the identity out from where this manifest is instead of hard-coding "tulip" or "main".
let rootPackage = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "tulip").lowercased()
let tulip = Target.Dependency.product(name: "Tulip", package: rootPackage)
let tulipTestKit = Target.Dependency.product(name: "TulipTestKit", package: rootPackage)
let tulipPlugins = Target.Dependency.product(name: "TulipPlugins", package: rootPackage)
let tulipTLS = Target.Dependency.product(name: "TulipTLS", package: rootPackage)

let package = Package(
    name: "tulip-benchmarks",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "EchoLoad", targets: ["EchoLoad"]),
        .executable(name: "RawEchoServer", targets: ["RawEchoServer"]),
        .executable(name: "UDPEchoLoad", targets: ["UDPEchoLoad"]),
        .executable(name: "RawUDPEchoServer", targets: ["RawUDPEchoServer"]),
    ],
    dependencies: [
        .package(path: "../"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        // The trait list replaces the package's defaults: the malloc interposer (mallocCount*
        // metrics) without the Swift 6.3 ARC runtime interposer, whose package is not available here.
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // MARK: - Echo harness (real sockets)

        // What the load clients and raw servers share: another process's CPU time from /proc, sleeping to a
        // deadline, HOST:PORT parsing, unbuffered output, the hard stop and the server CPU window.
        .target(
            name: "BenchSupport",
            dependencies: [nioCore, nioConcurrencyHelpers]
        ),
        // Load client: N ping-pong connections, prints one JSON line.
        .executableTarget(
            name: "EchoLoad",
            dependencies: ["BenchSupport", nioCore, nioPosix, nioConcurrencyHelpers, argumentParser]
        ),
        // The yardstick: a minimal raw SwiftNIO echo server on one event loop thread.
        .executableTarget(
            name: "RawEchoServer",
            dependencies: ["BenchSupport", nioCore, nioPosix, argumentParser]
        ),
        // UDP load client: N connected datagram sockets, ping-pong with a loss timeout, one JSON line.
        .executableTarget(
            name: "UDPEchoLoad",
            dependencies: ["BenchSupport", nioCore, nioPosix, nioConcurrencyHelpers, argumentParser]
        ),
        // The UDP yardstick: a minimal raw SwiftNIO datagram echo server on one event loop thread.
        .executableTarget(
            name: "RawUDPEchoServer",
            dependencies: ["BenchSupport", nioCore, nioPosix, argumentParser]
        ),

        // MARK: - ordo-one/benchmark targets (allocation counts)

        // ProtocolChannelHandler + ChannelTransport echo on an EmbeddedChannel, next to a raw NIO
        // echo handler on the same channel type.
        .executableTarget(
            name: "TulipBenchmarks",
            dependencies: [
                benchmark,
                tulip,
                tulipTestKit,
                tulipPlugins,
                tulipTLS,
                nioCore,
                nioEmbedded,
            ],
            path: "Benchmarks/TulipBenchmarks",
            plugins: [benchmarkPlugin]
        ),
    ]
)

// MARK: - Standard settings (as the root package)

for target in package.targets {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
