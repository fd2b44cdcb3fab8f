// swift-tools-version:6.1
import PackageDescription

// MARK: - Shared dependencies

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioEmbedded = Target.Dependency.product(name: "NIOEmbedded", package: "swift-nio")
let nioConcurrencyHelpers = Target.Dependency.product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let dequeModule = Target.Dependency.product(name: "DequeModule", package: "swift-collections")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let coreMetrics = Target.Dependency.product(name: "CoreMetrics", package: "swift-metrics")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")

let package = Package(
    name: "tulip",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "Tulip", targets: ["Tulip"]),
        .library(name: "TulipDaemon", targets: ["TulipDaemon"]),
        .library(name: "TulipPlugins", targets: ["TulipPlugins"]),
        .library(name: "TulipSystemd", targets: ["TulipSystemd"]),
        .library(name: "TulipTLS", targets: ["TulipTLS"]),
        .library(name: "TulipTestKit", targets: ["TulipTestKit"]),
        .executable(name: "tulipd", targets: ["tulipd"]),
        .executable(name: "tulipd-test", targets: ["tulipd-test"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // MARK: - Library

        .target(
            name: "Tulip",
            dependencies: ["TulipTLS", nioCore, nioPosix, nioConcurrencyHelpers, dequeModule]
        ),

        // MARK: - TLS

        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "COpenSSLShims",
            dependencies: ["COpenSSL"]
        ),
        .target(
            name: "TulipTLS",
            dependencies: ["COpenSSL", "COpenSSLShims", nioCore]
        ),

        // MARK: - systemd

        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "TulipSystemd",
            dependencies: ["CSystemd", logging]
        ),

        // MARK: - Daemon

        .target(
            name: "TulipDaemon",
            dependencies: [
                "Tulip", "TulipSystemd", "TulipTLS", nioCore, nioPosix, nioConcurrencyHelpers, logging, coreMetrics,
                prometheus,
            ]
        ),
        .target(
            name: "TulipPlugins",
            dependencies: ["Tulip", "TulipDaemon", "TulipTLS", nioCore, logging]
        ),
        .target(
            name: "TulipdCLI",
            dependencies: ["Tulip", "TulipDaemon", nioConcurrencyHelpers, argumentParser, logging]
        ),
        .executableTarget(
            name: "tulipd",
            dependencies: ["TulipdCLI", "TulipPlugins"]
        ),

        // MARK: - Test-only daemon (never shipped)

        .target(
            name: "TulipTestPlugins",
            dependencies: ["Tulip", "TulipDaemon", nioCore]
        ),
        .executableTarget(
            name: "tulipd-test",
            dependencies: ["TulipdCLI", "TulipPlugins", "TulipTestPlugins"]
        ),

        // MARK: - Test support

        .target(
            name: "TulipTestKit",
            dependencies: ["Tulip", nioCore, nioEmbedded]
        ),

        // MARK: - Tests

        .testTarget(
            name: "TulipTests",
            dependencies: ["Tulip", "TulipTLS", "TulipTestKit", nioCore, nioPosix, nioEmbedded, nioConcurrencyHelpers]
        ),
        .testTarget(
            name: "TulipTLSTests",
            dependencies: ["TulipTLS", nioCore, nioEmbedded]
        ),
        .testTarget(
            name: "TulipSystemdTests",
            dependencies: ["TulipSystemd", logging]
        ),
        .testTarget(
            name: "TulipDaemonTests",
            dependencies: ["TulipDaemon", "TulipPlugins", "Tulip", "TulipTestKit", nioCore, nioPosix, logging]
        ),
        .testTarget(
            name: "TulipPluginsTests",
            dependencies: ["TulipPlugins", "TulipDaemon", "TulipTestKit", "Tulip", nioCore, nioEmbedded, logging]
        ),
    ]
)

// MARK: - Standard settings

// C targets (the system libraries and the OpenSSL macro shims) take no Swift settings.
for target in package.targets where target.type != .system && target.name != "COpenSSLShims" {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    settings.append(.enableUpcomingFeature("MemberImportVisibility"))
    target.swiftSettings = settings
}
