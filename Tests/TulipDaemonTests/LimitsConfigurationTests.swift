import Testing

@testable import TulipDaemon

/// The `limits` object: top-level defaults, merged into each stream listener key by key, and
/// strict validation with key paths.
struct LimitsConfigurationTests {
    private static func parse(_ text: String) throws -> DaemonConfiguration {
        try DaemonConfigurationTests.parse(text)
    }

    private static func schemaErrors(_ text: String) throws -> [ConfigurationError] {
        try DaemonConfigurationTests.schemaErrors(text)
    }

    @Test
    func listenerKeysOverrideTheTopLevelDefaultsKeyByKey() throws {
        let configuration = try Self.parse(
            """
            { "limits": { "max_connections": 100, "max_connections_per_source": 10, "idle_timeout_seconds": 30 },
              "listeners": [
                { "name": "a", "protocol": "echo", "tcp": { "port": 1 } },
                { "name": "b", "protocol": "echo", "tcp": { "port": 2 },
                  "limits": { "max_connections": 50, "idle_timeout_seconds": 0.5 } },
                { "name": "c", "protocol": "echo", "unix": { "path": "/tmp/c.sock" },
                  "limits": { "max_connections_per_source": 1, "idle_timeout_seconds": null } },
                { "name": "d", "protocol": "echo", "udp": { "port": 3 } }
              ] }
            """
        )
        #expect(
            configuration.limits
                == LimitsConfiguration(maxConnections: 100, maxConnectionsPerSource: 10, idleTimeout: .seconds(30))
        )
        let limits = configuration.listeners.map(\.limits)
        #expect(limits[0] == configuration.limits)
        #expect(
            limits[1]
                == LimitsConfiguration(maxConnections: 50, maxConnectionsPerSource: 10, idleTimeout: .seconds(0.5))
        )
        #expect(
            limits[2] == LimitsConfiguration(maxConnections: 100, maxConnectionsPerSource: 1, idleTimeout: .seconds(30))
        )
        // A datagram listener has no connections: the defaults do not apply to it.
        #expect(limits[3].isUnlimited)
    }

    @Test
    func noLimitsAnywhereMeansUnlimited() throws {
        let configuration = try Self.parse(
            #"{ "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 } } ] }"#
        )
        #expect(configuration.limits.isUnlimited)
        #expect(configuration.listeners[0].limits.isUnlimited)
    }

    @Test
    func listenersWithDifferentLimitsAreNotEqual() throws {
        let base = ListenerConfiguration(
            name: "a",
            protocolName: "echo",
            endpoint: .unix(UnixEndpoint(path: "/tmp/a.sock"))
        )
        var limited = base
        limited.limits.maxConnections = 5
        #expect(base != limited)
        #expect(base == base)
    }

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        let document: String
        let code: ConfigurationError.Code
        let keyPath: String
        let message: String
        var testDescription: String { self.keyPath }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            document:
                #"{ "limits": { "max_connections": 0 }, "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 } } ] }"#,
            code: .invalidValue,
            keyPath: "limits.max_connections",
            message: "0 is out of range 1...2147483647"
        ),
        ErrorCase(
            document:
                #"{ "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 }, "limits": { "max_connections_per_source": 2.5 } } ] }"#,
            code: .typeMismatch,
            keyPath: "listeners[0].limits.max_connections_per_source",
            message: "expected integer, got number 2.5"
        ),
        ErrorCase(
            document:
                #"{ "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 }, "limits": { "idle_timeout_seconds": 0 } } ] }"#,
            code: .invalidValue,
            keyPath: "listeners[0].limits.idle_timeout_seconds",
            message: "0 is out of range; expected seconds greater than 0 and up to 86400 (a day)"
        ),
        ErrorCase(
            document:
                #"{ "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 }, "limits": { "max_conections": 5 } } ] }"#,
            code: .unknownKey,
            keyPath: "listeners[0].limits.max_conections",
            message: "unknown key 'max_conections'"
        ),
        ErrorCase(
            document: #"{ "limits": 5, "listeners": [ { "name": "a", "protocol": "echo", "tcp": { "port": 1 } } ] }"#,
            code: .typeMismatch,
            keyPath: "limits",
            message: "expected object, got number 5"
        ),
        ErrorCase(
            document:
                #"{ "listeners": [ { "name": "a", "protocol": "echo", "udp": { "port": 1 }, "limits": { "max_connections": 5 } } ] }"#,
            code: .invalidValue,
            keyPath: "listeners[0].limits",
            message: "limits are only supported on tcp and unix listeners, not udp"
        ),
        ErrorCase(
            document:
                #"{ "listeners": [ { "name": "a", "protocol": "echo", "pipe": { "read": "/r" }, "limits": {} } ] }"#,
            code: .invalidValue,
            keyPath: "listeners[0].limits",
            message: "limits are only supported on tcp and unix listeners, not pipe"
        ),
    ]

    @Test(arguments: Self.errorCases)
    func reportsLimitErrorsWithTheirKeyPath(_ errorCase: ErrorCase) throws {
        let reported = try Self.schemaErrors(errorCase.document).map { ($0.code, $0.keyPath, $0.message) }
        #expect(reported.count == 1)
        #expect(reported.first.map { $0 == (errorCase.code, errorCase.keyPath, errorCase.message) } == true)
    }
}
