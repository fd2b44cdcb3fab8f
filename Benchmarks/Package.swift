// swift-tools-version:6.1
import PackageDescription

// Tulip's benchmark package. It is kept apart from the root package (STYLE.md §6) so that the
// daemon's own `swift build` and CI never compile it.
//
// The echo harness (`EchoLoad`, `RawEchoServer`, driven by `scripts/bench-echo.sh`) depends on
// SwiftNIO only, not on `../`: it measures the *built `tulipd` binary* over real sockets, so it
// builds even while the root package does not. ordo-one/benchmark targets (STYLE.md §6) go under
// `Benchmarks/<Target>` next to these when they are added.

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "tulip-benchmarks",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "EchoLoad", targets: ["EchoLoad"]),
        .executable(name: "RawEchoServer", targets: ["RawEchoServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // Load client: N ping-pong connections, prints one JSON line.
        .executableTarget(
            name: "EchoLoad",
            dependencies: [nioCore, nioPosix, nioConcurrencyHelpers, argumentParser]
        ),
        // The yardstick: a minimal raw SwiftNIO echo server on one event loop thread.
        .executableTarget(
            name: "RawEchoServer",
            dependencies: [nioCore, nioPosix, argumentParser]
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
