import Logging
import Testing

@testable import TulipDaemon

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#endif

struct DaemonConfigurationTests {
    // The example from ARCHITECTURE.md §5, verbatim.
    static let architectureExample = """
        {
          "log": { "level": "info", "format": "auto" },
          "shutdown": { "grace_seconds": 10 },
          "listeners": [
            { "name": "echo", "protocol": "echo",
              "tcp": { "host": "127.0.0.1", "port": 7007, "backlog": 100, "reuse_port": false } },
            { "name": "echo-unix", "protocol": "echo",
              "unix": { "path": "/run/tulipd/echo.sock", "mode": "0660" } },
            { "name": "echo-udp", "protocol": "echo",
              "udp": { "host": "127.0.0.1", "port": 7007 } },
            { "name": "echo-dgram", "protocol": "echo",
              "unix_datagram": { "path": "/run/tulipd/echo.dgram" } },
            { "name": "fifo", "protocol": "echo",
              "pipe": { "read": "/run/tulipd/in.fifo", "write": "/run/tulipd/out.fifo" } },
            { "name": "echo-tls", "protocol": "echo",
              "tcp": { "port": 7443 },
              "tls": { "certificate_chain": "/etc/tulipd/cert.pem",
                       "private_key": "/etc/tulipd/key.pem",
                       "handshake_timeout_seconds": 60 } },
            { "name": "daytime", "protocol": "daytime", "tcp": { "port": 7013 },
              "options": { "format": "rfc3339" } }
          ]
        }
        """

    static func parse(_ text: String) throws -> DaemonConfiguration {
        try DaemonConfiguration.parse(Array(text.utf8), file: "tulipd.json")
    }

    static func schemaErrors(_ text: String) throws -> [ConfigurationError] {
        try #require(throws: ConfigurationErrors.self) { try Self.parse(text) }.errors
    }

    // MARK: - The example

    @Test
    func parsesTheArchitectureExampleWithEveryListenerKind() throws {
        let configuration = try Self.parse(Self.architectureExample)
        let options = try JSONParser().parse(#"{"format": "rfc3339"}"#.utf8).value
        let expected = DaemonConfiguration(
            log: LogConfiguration(level: .info, format: .auto),
            shutdown: ShutdownConfiguration(gracePeriod: .seconds(10)),
            listeners: [
                ListenerConfiguration(
                    name: "echo",
                    protocolName: "echo",
                    endpoint: .tcp(TCPEndpoint(hosts: ["127.0.0.1"], port: 7007))
                ),
                ListenerConfiguration(
                    name: "echo-unix",
                    protocolName: "echo",
                    endpoint: .unix(UnixEndpoint(path: "/run/tulipd/echo.sock", mode: 0o660))
                ),
                ListenerConfiguration(
                    name: "echo-udp",
                    protocolName: "echo",
                    endpoint: .udp(UDPEndpoint(hosts: ["127.0.0.1"], port: 7007))
                ),
                ListenerConfiguration(
                    name: "echo-dgram",
                    protocolName: "echo",
                    endpoint: .unixDatagram(UnixDatagramEndpoint(path: "/run/tulipd/echo.dgram"))
                ),
                ListenerConfiguration(
                    name: "fifo",
                    protocolName: "echo",
                    endpoint: .pipe(PipeEndpoint(readPath: "/run/tulipd/in.fifo", writePath: "/run/tulipd/out.fifo"))
                ),
                ListenerConfiguration(
                    name: "echo-tls",
                    protocolName: "echo",
                    endpoint: .tcp(TCPEndpoint(port: 7443)),
                    tls: TLSFileConfiguration(
                        certificateChainFile: "/etc/tulipd/cert.pem",
                        privateKeyFile: "/etc/tulipd/key.pem",
                        handshakeTimeout: .seconds(60)
                    )
                ),
                ListenerConfiguration(
                    name: "daytime",
                    protocolName: "daytime",
                    endpoint: .tcp(TCPEndpoint(port: 7013)),
                    options: options
                ),
            ]
        )
        #expect(configuration == expected)
        #expect(configuration.listeners.map(\.kind) == [.tcp, .unix, .udp, .unixDatagram, .pipe, .tcp, .tcp])
        #expect(configuration.listeners.map(\.keyPath) == (0..<7).map { "listeners[\($0)]" })

        let tlsListener = try #require(configuration.listener(named: "echo-tls"))
        #expect(tlsListener.locations.listener == JSONValue.Location(line: 15, column: 5))
        #expect(tlsListener.locations.protocolName == JSONValue.Location(line: 15, column: 39))
        #expect(tlsListener.locations.tls == JSONValue.Location(line: 17, column: 14))
        let daytime = try #require(configuration.listener(named: "daytime"))
        #expect(daytime.locations.options == JSONValue.Location(line: 21, column: 18))
        #expect(configuration.listener(named: "nope") == nil)
    }

    @Test
    func decodesListenerOptionsWithKeyPathsIntoTheFile() throws {
        struct DaytimeOptions: Decodable { var format: String }
        struct StrictOptions: Decodable { var fmt: String? }
        let configuration = try Self.parse(Self.architectureExample)
        let daytime = try #require(configuration.listener(named: "daytime"))
        #expect(try daytime.decodeOptions(as: DaytimeOptions.self).format == "rfc3339")
        let error = try #require(throws: ConfigurationError.self) { try daytime.decodeOptions(as: StrictOptions.self) }
        #expect(error.code == .unknownKey)
        #expect(error.description == "21:20: listeners[6].options.format: unknown key 'format'")
    }

    // MARK: - Defaults

    @Test
    func fillsInEveryDefault() throws {
        let configuration = try Self.parse(
            """
            {"listeners": [
              {"name": "t", "protocol": "p", "tcp": {"port": 1},
               "tls": {"certificate_chain": "c.pem", "private_key": "k.pem"}},
              {"name": "u", "protocol": "p", "unix": {"path": "/u"}},
              {"name": "d", "protocol": "p", "udp": {"port": 2}},
              {"name": "g", "protocol": "p", "unix_datagram": {"path": "/g"}},
              {"name": "f", "protocol": "p", "pipe": {"write": "/f"}}
            ]}
            """
        )
        #expect(configuration.log.level == .info)
        #expect(configuration.log.format == .auto)
        #expect(configuration.shutdown.gracePeriod == .seconds(10))

        guard case .tcp(let tcp) = configuration.listeners[0].endpoint else {
            Issue.record("expected a tcp endpoint")
            return
        }
        #expect(tcp.hosts == [])
        #expect(tcp.port == 1)
        #expect(tcp.backlog == 100)
        #expect(tcp.reuseAddress == true)
        #expect(tcp.reusePort == false)
        #expect(tcp.keepAlive == false)

        let tls = try #require(configuration.listeners[0].tls)
        #expect(tls.handshakeTimeout == .seconds(60))
        #expect(tls.alpnProtocols == [])
        #expect(tls.clientCAFile == nil)
        #expect(tls.minimumVersion == .tls12)
        #expect(configuration.listeners[0].options == nil)

        #expect(configuration.listeners[1].endpoint == .unix(UnixEndpoint(path: "/u", mode: nil, backlog: 100)))
        #expect(
            configuration.listeners[2].endpoint
                == .udp(UDPEndpoint(hosts: [], port: 2, reusePort: false, allowBroadcast: false))
        )
        #expect(configuration.listeners[3].endpoint == .unixDatagram(UnixDatagramEndpoint(path: "/g", mode: nil)))
        #expect(configuration.listeners[4].endpoint == .pipe(PipeEndpoint(readPath: nil, writePath: "/f", mode: 0o600)))
    }

    @Test
    func readsEverySettingWhenGiven() throws {
        let configuration = try Self.parse(
            """
            {
              "log": {"level": "critical", "format": "journald"},
              "shutdown": {"grace_seconds": 2.5},
              "listeners": [
                {"name": "A.b_c-9", "protocol": "p",
                 "tcp": {"host": ["::1", "127.0.0.1"], "port": 0, "backlog": 65535, "reuse_address": false,
                         "reuse_port": true, "keep_alive": true},
                 "tls": {"certificate_chain": "c", "private_key": "k", "handshake_timeout_seconds": 0.5,
                         "alpn": ["h2", "http/1.1"], "client_ca": "ca.pem", "min_version": "1.3"}},
                {"name": "u", "protocol": "p", "unix": {"path": "/u", "mode": "640", "backlog": 1}},
                {"name": "d", "protocol": "p", "udp": {"host": "", "port": 65535, "reuse_port": true,
                                                       "allow_broadcast": true}},
                {"name": "g", "protocol": "p", "unix_datagram": {"path": "/g", "mode": "0777"}},
                {"name": "f", "protocol": "p", "pipe": {"read": "/r", "write": "/w", "mode": "0000"}}
              ]
            }
            """
        )
        #expect(configuration.log == LogConfiguration(level: .critical, format: .journald))
        #expect(configuration.shutdown.gracePeriod == .milliseconds(2500))
        let expectedTCP = TCPEndpoint(
            hosts: ["::1", "127.0.0.1"],
            port: 0,
            backlog: 65535,
            reuseAddress: false,
            reusePort: true,
            keepAlive: true
        )
        #expect(configuration.listeners[0].endpoint == .tcp(expectedTCP))
        let expectedTLS = TLSFileConfiguration(
            certificateChainFile: "c",
            privateKeyFile: "k",
            handshakeTimeout: .milliseconds(500),
            alpnProtocols: ["h2", "http/1.1"],
            clientCAFile: "ca.pem",
            minimumVersion: .tls13
        )
        #expect(configuration.listeners[0].tls == expectedTLS)
        #expect(configuration.listeners[1].endpoint == .unix(UnixEndpoint(path: "/u", mode: 0o640, backlog: 1)))
        let expectedUDP = UDPEndpoint(hosts: [], port: 65535, reusePort: true, allowBroadcast: true)
        #expect(configuration.listeners[2].endpoint == .udp(expectedUDP))
        #expect(configuration.listeners[3].endpoint == .unixDatagram(UnixDatagramEndpoint(path: "/g", mode: 0o777)))
        #expect(configuration.listeners[4].endpoint == .pipe(PipeEndpoint(readPath: "/r", writePath: "/w", mode: 0)))
    }

    @Test
    func treatsNullOptionalKeysAsAbsent() throws {
        let withNulls = try Self.parse(
            #"""
            {"log": null, "shutdown": {"grace_seconds": null}, "listeners": [{"name": "a", "protocol": "p",
             "tcp": {"host": null, "port": 1, "backlog": null}, "udp": null, "tls": null, "options": null}]}
            """#
        )
        let minimal = try Self.parse(#"{"listeners": [{"name": "a", "protocol": "p", "tcp": {"port": 1}}]}"#)
        #expect(withNulls == minimal)
        #expect(withNulls.listeners[0].options == nil)
    }

    // MARK: - Schema errors

    struct ErrorCase: Sendable, CustomTestStringConvertible {
        static let listenerPrefix = #"{"listeners": [{"name": "a", "protocol": "echo", "#
        static let minimalListeners = #""listeners": [{"name": "a", "protocol": "echo", "tcp": {"port": 1}}]"#

        var document: String
        var code: ConfigurationError.Code
        var keyPath: String
        var column: Int
        var message: String

        init(_ document: String, _ code: ConfigurationError.Code, _ keyPath: String, column: Int, _ message: String) {
            self.document = document
            self.code = code
            self.keyPath = keyPath
            self.column = column
            self.message = message
        }

        /// A document with one listener named `a` for protocol `echo` and the given further members.
        init(
            listener members: String,
            _ code: ConfigurationError.Code,
            _ keyPath: String,
            column: Int,
            _ message: String
        ) {
            self.init(Self.listenerPrefix + members + "}]}", code, keyPath, column: column, message)
        }

        /// A document with the given top-level members and one valid listener after them.
        init(top members: String, _ code: ConfigurationError.Code, _ keyPath: String, column: Int, _ message: String) {
            self.init("{" + members + ", " + Self.minimalListeners + "}", code, keyPath, column: column, message)
        }

        var testDescription: String { "\(self.keyPath): \(self.message)" }
    }

    static let errorCases: [ErrorCase] = [
        ErrorCase(
            #"{"listeners": [{"name": "a", "protocol": "echo", "tcp": {"port": 1}}], "extra": 1}"#,
            .unknownKey,
            "extra",
            column: 72,
            #"unknown key 'extra'"#
        ),
        ErrorCase(
            top: #""log": {"lvl": "info"}"#,
            .unknownKey,
            "log.lvl",
            column: 10,
            #"unknown key 'lvl'"#
        ),
        ErrorCase(
            top: #""log": {"level": "verbose"}"#,
            .invalidValue,
            "log.level",
            column: 19,
            #"unknown log level 'verbose'; expected one of trace, debug, info, notice, warning, error, critical"#
        ),
        ErrorCase(
            top: #""log": {"level": 3}"#,
            .typeMismatch,
            "log.level",
            column: 19,
            #"expected string, got number 3"#
        ),
        ErrorCase(
            top: #""log": {"format": "xml"}"#,
            .invalidValue,
            "log.format",
            column: 20,
            #"unknown log format 'xml'; expected one of auto, journald, text, json"#
        ),
        ErrorCase(
            top: #""log": "info""#,
            .typeMismatch,
            "log",
            column: 9,
            #"expected object, got string "info""#
        ),
        ErrorCase(
            top: #""shutdown": {"grace_seconds": -1}"#,
            .invalidValue,
            "shutdown.grace_seconds",
            column: 32,
            #"-1 is out of range; expected seconds from 0 up to 86400 (a day)"#
        ),
        ErrorCase(
            top: #""shutdown": {"grace_seconds": "10"}"#,
            .typeMismatch,
            "shutdown.grace_seconds",
            column: 32,
            #"expected number of seconds, got string "10""#
        ),
        ErrorCase(
            top: #""shutdown": {"grace": 1}"#,
            .unknownKey,
            "shutdown.grace",
            column: 15,
            #"unknown key 'grace'"#
        ),
        ErrorCase(
            #"{}"#,
            .missingKey,
            "listeners",
            column: 1,
            #"missing required key 'listeners'"#
        ),
        ErrorCase(
            #"[]"#,
            .typeMismatch,
            "",
            column: 1,
            #"expected object, got array"#
        ),
        ErrorCase(
            #"{"listeners": []}"#,
            .invalidValue,
            "listeners",
            column: 15,
            #"at least one listener is required"#
        ),
        ErrorCase(
            #"{"listeners": {}}"#,
            .typeMismatch,
            "listeners",
            column: 15,
            #"expected array, got object"#
        ),
        ErrorCase(
            #"{"listeners": null}"#,
            .typeMismatch,
            "listeners",
            column: 15,
            #"expected array, got null"#
        ),
        ErrorCase(
            #"{"listeners": [1]}"#,
            .typeMismatch,
            "listeners[0]",
            column: 16,
            #"expected object, got number 1"#
        ),
        ErrorCase(
            #"{"listeners": [{"protocol": "echo", "tcp": {"port": 1}}]}"#,
            .missingKey,
            "listeners[0].name",
            column: 16,
            #"missing required key 'name'"#
        ),
        ErrorCase(
            #"{"listeners": [{"name": "my echo", "protocol": "echo", "tcp": {"port": 1}}]}"#,
            .invalidValue,
            "listeners[0].name",
            column: 25,
            #"'my echo' may contain only letters, digits, '.', '_' and '-'"#
        ),
        ErrorCase(
            "{\"listeners\": [{\"name\": \"" + String(repeating: "x", count: 65)
                + #"", "protocol": "echo", "tcp": {"port": 1}}]}"#,
            .invalidValue,
            "listeners[0].name",
            column: 25,
            #"must be 1 to 64 characters long"#
        ),
        ErrorCase(
            #"{"listeners": [{"name": "", "protocol": "echo", "tcp": {"port": 1}}]}"#,
            .invalidValue,
            "listeners[0].name",
            column: 25,
            #"must be 1 to 64 characters long"#
        ),
        ErrorCase(
            #"{"listeners": [{"name": "a", "protocol": "", "tcp": {"port": 1}}]}"#,
            .invalidValue,
            "listeners[0].protocol",
            column: 42,
            #"must not be empty"#
        ),
        ErrorCase(
            #"{"listeners": [{"name": "a", "tcp": {"port": 1}}]}"#,
            .missingKey,
            "listeners[0].protocol",
            column: 16,
            #"missing required key 'protocol'"#
        ),
        ErrorCase(
            #"{"listeners": [{"name": "a", "protocol": "echo"}]}"#,
            .missingKey,
            "listeners[0]",
            column: 16,
            #"expected one of the keys tcp, unix, udp, unix_datagram, pipe; found none"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "unix": {"path": "/s"}"#,
            .invalidValue,
            "listeners[0]",
            column: 16,
            #"expected only one of the keys tcp, unix, udp, unix_datagram, pipe; found tcp, unix"#
        ),
        ErrorCase(
            listener: #""tcp": {"host": "h"}"#,
            .missingKey,
            "listeners[0].tcp.port",
            column: 57,
            #"missing required key 'port'"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 70000}"#,
            .invalidValue,
            "listeners[0].tcp.port",
            column: 66,
            #"70000 is out of range 0...65535"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": -1}"#,
            .invalidValue,
            "listeners[0].tcp.port",
            column: 66,
            #"-1 is out of range 0...65535"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": "80"}"#,
            .typeMismatch,
            "listeners[0].tcp.port",
            column: 66,
            #"expected integer, got string "80""#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 80.5}"#,
            .typeMismatch,
            "listeners[0].tcp.port",
            column: 66,
            #"expected integer, got number 80.5"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": null}"#,
            .typeMismatch,
            "listeners[0].tcp.port",
            column: 66,
            #"expected integer, got null"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "backlog": 0}"#,
            .invalidValue,
            "listeners[0].tcp.backlog",
            column: 80,
            #"0 is out of range 1...65535"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "reuse_port": "yes"}"#,
            .typeMismatch,
            "listeners[0].tcp.reuse_port",
            column: 83,
            #"expected boolean, got string "yes""#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "prot": 2}"#,
            .unknownKey,
            "listeners[0].tcp.prot",
            column: 69,
            #"unknown key 'prot'"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "host": 5}"#,
            .typeMismatch,
            "listeners[0].tcp.host",
            column: 77,
            #"expected string, array of strings or null, got number 5"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "host": []}"#,
            .invalidValue,
            "listeners[0].tcp.host",
            column: 77,
            #"must list at least one host; leave 'host' out to listen on every interface"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "host": ["a", ""]}"#,
            .invalidValue,
            "listeners[0].tcp.host[1]",
            column: 83,
            #"must not be empty"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "host": ["a", 1]}"#,
            .typeMismatch,
            "listeners[0].tcp.host[1]",
            column: 83,
            #"expected string, got number 1"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1, "host": ["::1", "::1"]}"#,
            .invalidValue,
            "listeners[0].tcp.host[1]",
            column: 85,
            #"duplicate host '::1'"#
        ),
        ErrorCase(
            listener: #""tcp": 7007"#,
            .typeMismatch,
            "listeners[0].tcp",
            column: 57,
            #"expected object, got number 7007"#
        ),
        ErrorCase(
            listener: #""unix": {"mode": "0660"}"#,
            .missingKey,
            "listeners[0].unix.path",
            column: 58,
            #"missing required key 'path'"#
        ),
        ErrorCase(
            listener: #""unix": {"path": ""}"#,
            .invalidValue,
            "listeners[0].unix.path",
            column: 67,
            #"must not be empty"#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/a\u0000b"}"#,
            .invalidValue,
            "listeners[0].unix.path",
            column: 67,
            #"must not contain NUL characters"#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/"# + String(repeating: "p", count: 107) + #""}"#,
            .invalidValue,
            "listeners[0].unix.path",
            column: 67,
            #"is 108 bytes long; a unix socket path may be at most 107 bytes"#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/s", "mode": "0888"}"#,
            .invalidValue,
            "listeners[0].unix.mode",
            column: 81,
            #"'0888' is not a file mode; expected 3 or 4 octal digits such as "0660""#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/s", "mode": "66"}"#,
            .invalidValue,
            "listeners[0].unix.mode",
            column: 81,
            #"'66' is not a file mode; expected 3 or 4 octal digits such as "0660""#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/s", "mode": "1777"}"#,
            .invalidValue,
            "listeners[0].unix.mode",
            column: 81,
            #"'1777' sets setuid, setgid or sticky bits; expected at most 0777"#
        ),
        ErrorCase(
            listener: #""unix": {"path": "/s", "mode": 432}"#,
            .typeMismatch,
            "listeners[0].unix.mode",
            column: 81,
            #"expected octal string such as "0660", got number 432"#
        ),
        ErrorCase(
            listener: #""udp": {"port": 1, "backlog": 5}"#,
            .unknownKey,
            "listeners[0].udp.backlog",
            column: 69,
            #"unknown key 'backlog'"#
        ),
        ErrorCase(
            listener: #""udp": {"port": 1, "allow_broadcast": 1}"#,
            .typeMismatch,
            "listeners[0].udp.allow_broadcast",
            column: 88,
            #"expected boolean, got number 1"#
        ),
        ErrorCase(
            listener: #""unix_datagram": {"path": "/d", "backlog": 5}"#,
            .unknownKey,
            "listeners[0].unix_datagram.backlog",
            column: 82,
            #"unknown key 'backlog'"#
        ),
        ErrorCase(
            listener: #""pipe": {"mode": "0600"}"#,
            .missingKey,
            "listeners[0].pipe",
            column: 58,
            #"expected 'read', 'write' or both"#
        ),
        ErrorCase(
            listener: #""pipe": {"read": ""}"#,
            .invalidValue,
            "listeners[0].pipe.read",
            column: 67,
            #"must not be empty"#
        ),
        ErrorCase(
            listener: #""udp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k"}"#,
            .invalidValue,
            "listeners[0].tls",
            column: 77,
            #"tls is only supported on tcp and unix listeners, not udp"#
        ),
        ErrorCase(
            listener: #""pipe": {"read": "/r"}, "tls": {}"#,
            .invalidValue,
            "listeners[0].tls",
            column: 81,
            #"tls is only supported on tcp and unix listeners, not pipe"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c"}"#,
            .missingKey,
            "listeners[0].tls.private_key",
            column: 77,
            #"missing required key 'private_key'"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": true"#,
            .typeMismatch,
            "listeners[0].tls",
            column: 77,
            #"expected object, got boolean true"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "#
                + #""handshake_timeout_seconds": 0}"#,
            .invalidValue,
            "listeners[0].tls.handshake_timeout_seconds",
            column: 153,
            #"0 is out of range; expected seconds greater than 0 and up to 86400 (a day)"#
        ),
        ErrorCase(
            listener:
                #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "min_version": "1.1"}"#,
            .invalidValue,
            "listeners[0].tls.min_version",
            column: 139,
            #"unsupported TLS version '1.1'; expected "1.2" or "1.3""#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "min_version": 1.3}"#,
            .typeMismatch,
            "listeners[0].tls.min_version",
            column: 139,
            #"expected string "1.2" or "1.3", got number 1.3"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "alpn": ["h2", ""]}"#,
            .invalidValue,
            "listeners[0].tls.alpn[1]",
            column: 139,
            #"must not be empty"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "alpn": "h2"}"#,
            .typeMismatch,
            "listeners[0].tls.alpn",
            column: 132,
            #"expected array of strings, got string "h2""#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "c", "private_key": "k", "certificate": "x"}"#,
            .unknownKey,
            "listeners[0].tls.certificate",
            column: 124,
            #"unknown key 'certificate'"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "tls": {"certificate_chain": "", "private_key": "k"}"#,
            .invalidValue,
            "listeners[0].tls.certificate_chain",
            column: 99,
            #"must not be empty"#
        ),
        ErrorCase(
            listener: #""tcp": {"port": 1}, "optionz": {}"#,
            .unknownKey,
            "listeners[0].optionz",
            column: 70,
            #"unknown key 'optionz'"#
        ),
    ]

    @Test(arguments: Self.errorCases)
    func reportsSchemaErrorWithKeyPathAndPosition(_ errorCase: ErrorCase) throws {
        let errors = try Self.schemaErrors(errorCase.document)
        #expect(errors.count == 1, "\(errors)")
        let error = try #require(errors.first)
        #expect(error.code == errorCase.code)
        #expect(error.keyPath == errorCase.keyPath)
        #expect(error.message == errorCase.message)
        #expect(error.file == "tulipd.json")
        #expect(error.line == 1)
        #expect(error.column == errorCase.column)
    }

    @Test
    func collectsEveryErrorInDocumentOrder() throws {
        let text = """
            {
              "log": {"level": "loud"},
              "listeners": [
                {"name": "a", "protocol": "echo", "tcp": {"port": 70000, "hots": "x"}},
                {"name": "a", "protocol": "echo", "udp": {"port": 1}, "tls": {}},
                {"name": "b", "unix": {"path": "/s", "mode": "999"}}
              ],
              "shutdown": {"grace_seconds": -5}
            }
            """
        let error = try #require(throws: ConfigurationErrors.self) { try Self.parse(text) }
        let expected = [
            "tulipd.json:2:20: log.level: unknown log level 'loud'; "
                + "expected one of trace, debug, info, notice, warning, error, critical",
            "tulipd.json:4:55: listeners[0].tcp.port: 70000 is out of range 0...65535",
            "tulipd.json:4:62: listeners[0].tcp.hots: unknown key 'hots'",
            "tulipd.json:5:14: listeners[1].name: duplicate listener name 'a'; listeners[0] already uses it",
            "tulipd.json:5:66: listeners[1].tls: tls is only supported on tcp and unix listeners, not udp",
            "tulipd.json:6:5: listeners[2].protocol: missing required key 'protocol'",
            "tulipd.json:6:50: listeners[2].unix.mode: '999' is not a file mode; "
                + "expected 3 or 4 octal digits such as \"0660\"",
            "tulipd.json:8:33: shutdown.grace_seconds: -5 is out of range; expected seconds from 0 up to 86400 (a day)",
        ]
        #expect(error.errors.map(\.description) == expected)
        #expect(error.description == expected.joined(separator: "\n"))
    }

    @Test
    func rejectsDuplicateListenerNamesNamingBothIndices() throws {
        let errors = try Self.schemaErrors(
            """
            {"listeners": [
              {"name": "echo", "protocol": "echo", "tcp": {"port": 1}},
              {"name": "other", "protocol": "echo", "tcp": {"port": 2}},
              {"name": "echo", "protocol": "echo", "udp": {"port": 3}}
            ]}
            """
        )
        #expect(
            errors.map(\.description) == [
                "tulipd.json:4:12: listeners[2].name: duplicate listener name 'echo'; listeners[0] already uses it"
            ]
        )
        #expect(errors.first?.code == .invalidValue)
    }

    @Test
    func reportsDuplicateJSONKeyAsOneErrorWithItsKeyPath() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try Self.parse(#"{"listeners": [{"name": "a", "name": "b"}]}"#)
        }
        #expect(error.code == .duplicateKey)
        #expect(error.description == "tulipd.json:1:30: listeners[0].name: duplicate key 'name' (first at 1:17)")
    }

    @Test
    func reportsSyntaxErrorAsOneErrorNamingTheFile() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try Self.parse("{\n  \"listeners\": [\n    {\"name\": \"é\" \"protocol\": \"echo\"}\n  ]\n}")
        }
        #expect(error.code == .syntax)
        #expect(error.description == "tulipd.json:3:18: syntax error: expected ',' or '}' after object member")
    }

    // MARK: - Files

    @Test
    func loadsAConfigurationFile() throws {
        let path = try Self.makeTemporaryFile(contents: Self.architectureExample)
        defer { unlink(path) }
        let configuration = try DaemonConfiguration.load(contentsOf: path)
        #expect(configuration == (try Self.parse(Self.architectureExample)))
    }

    @Test
    func namesTheFileInErrorsFromLoadedFiles() throws {
        let path = try Self.makeTemporaryFile(contents: #"{"listeners": [{"name": "a"}]}"#)
        defer { unlink(path) }
        let error = try #require(throws: ConfigurationErrors.self) { try DaemonConfiguration.load(contentsOf: path) }
        #expect(error.errors.first?.file == path)
        #expect(error.errors.first?.description.hasPrefix("\(path):1:16: listeners[0].protocol: ") == true)
    }

    @Test
    func reportsMissingFileAsUnreadableWithTheSystemMessage() throws {
        let path = "/nonexistent-tulipd-test/tulipd.json"
        let error = try #require(throws: ConfigurationError.self) { try DaemonConfiguration.load(contentsOf: path) }
        #expect(error.code == .unreadable)
        #expect(error.file == path)
        #expect(error.line == nil)
        #expect(error.description == "\(path): cannot read configuration file: No such file or directory")
    }

    @Test
    func reportsDirectoryAsUnreadable() throws {
        let error = try #require(throws: ConfigurationError.self) { try DaemonConfiguration.load(contentsOf: "/") }
        #expect(error.code == .unreadable)
        #expect(error.description == "/: cannot read configuration file: Is a directory")
    }

    static func makeTemporaryFile(contents: String) throws -> String {
        var template = Array("/tmp/tulipd-config-test-XXXXXX.json".utf8CString)
        // A non-empty array always has a base address.
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 5) }
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        try #require(written == bytes.count)
        return String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - Model

    @Test
    func listenerEqualityIgnoresWhereItWasWritten() throws {
        let first = try Self.parse(#"{"listeners": [{"name": "a", "protocol": "p", "tcp": {"port": 1}}]}"#)
        let second = try Self.parse(
            #"{"listeners": [{"name": "z", "protocol": "p", "udp": {"port": 9}}, "#
                + #"{"name": "a", "protocol": "p", "tcp": {"port": 1}}]}"#
        )
        #expect(first.listeners[0] == second.listeners[1])
        #expect(first.listeners[0].hashValue == second.listeners[1].hashValue)
        #expect(first.listeners[0].keyPath != second.listeners[1].keyPath)
        #expect(first.listeners[0] != second.listeners[0])
    }

    @Test
    func listenerKindsDescribeThemselvesAsTheirConfigurationKeys() {
        #expect(ListenerKind.allKinds.map(\.description) == ["tcp", "unix", "udp", "unix_datagram", "pipe"])
        #expect(ListenerKind.allKinds.map(\.isStream) == [true, true, false, false, true])
        #expect(ListenerKind.allKinds.map(\.isDatagram) == [false, false, true, true, false])
        #expect(ListenerKind.allKinds.map(\.supportsTLS) == [true, true, false, false, false])
        #expect(ListenerKind(configurationKey: "unix_datagram") == .unixDatagram)
        #expect(ListenerKind(configurationKey: "unixDatagram") == nil)
        #expect(ListenerEndpoint.pipe(PipeEndpoint(readPath: "/r")).kind == .pipe)
    }

    @Test
    func configurationErrorEqualityIsOnCodeOnly() {
        let first = ConfigurationError.invalidValue("one", keyPath: "a", at: nil)
        let second = ConfigurationError.invalidValue("two", keyPath: "b", at: JSONValue.Location(line: 1, column: 1))
        #expect(first == second)
        #expect(first != ConfigurationError.missingKey("a", keyPath: "a", at: nil))
        #expect(second.description == "1:1: b: two")
        #expect(second.debugDescription.hasPrefix("1:1: b: two [invalidValue at TulipDaemonTests/"))
    }
}
