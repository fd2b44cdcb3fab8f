import NIOConcurrencyHelpers
import NIOCore
import Testing
import TulipTLS

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1)))
struct TLSServerTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    @Test func cs1HandshakeTimeoutWithoutSSLIsRefusedAndCs22NonPositiveToo() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let context = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let messages = try await withLoop { loop in
            try loop.runUntilComplete { () -> [String] in
                var messages: [String] = []
                for (ssl, timeout) in [(nil, TimeAmount.seconds(1)), (context, .zero), (context, .seconds(-1))] {
                    do {
                        _ = try await loop.createServer(
                            host: "127.0.0.1",
                            port: 0,
                            ssl: ssl,
                            sslHandshakeTimeout: timeout
                        ) {
                            Self.echo()
                        }
                        messages.append("created")
                    } catch let error as TulipError {
                        messages.append("\(error.code):\(error.message)")
                    }
                }
                return messages
            }
        }
        #expect(messages[0] == "invalidArgument:ssl_handshake_timeout is only meaningful with ssl")
        #expect(messages[1].hasPrefix("invalidArgument:ssl_handshake_timeout should be a positive number"))
        #expect(messages[2].hasPrefix("invalidArgument:ssl_handshake_timeout should be a positive number"))
    }

    /// Runs `clients` against a TLS echo server; returns their exit codes and the protocols made.
    private func serve(
        _ fixture: TLSFixture,
        alpn: [String] = [],
        timeout: TimeAmount? = nil,
        clients: [(mode: String, extra: String)]
    ) async throws -> (codes: [Int32], protocols: [RecordingProtocol]) {
        let context = try TLSContext.server(
            certificateChain: fixture.certificate,
            privateKey: fixture.key,
            alpn: alpn
        )
        let made = NIOLockedValueBox<[RecordingProtocol]>([])
        let codes = try await withLoop { loop in
            try loop.runUntilComplete { () -> [Int32] in
                let server = try await loop.createServer(
                    host: "127.0.0.1",
                    port: 0,
                    ssl: context,
                    sslHandshakeTimeout: timeout
                ) {
                    let p = Self.echo()
                    made.withLockedValue { $0.append(p) }
                    return p
                }
                let port = server.sockets[0].localAddress.port ?? 0
                var codes: [Int32] = []
                for arguments in clients {
                    let line = "\(arguments.mode) \(port) '\(fixture.ca)' \(arguments.extra)"
                    codes.append(try await loop.runInExecutor { fixture.client(line) })
                }
                server.close()
                await server.waitClosed()
                return codes
            }
        }
        return (codes, made.withLockedValue { $0 })
    }

    @Test func pythonSSLClientEchoesOneMebibyteOverTLS12AndTLS13() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, clients: [("echo", "1.2"), ("echo", "1.3")])
        #expect(codes == [0, 0])
        #expect(protocols.count == 2)
        let transport = try #require(protocols.first?.transport)
        #expect(transport.canWriteEOF == false)
        #expect(transport.supportsNativeSendfile == false)
        #expect(transport.extraInfo("ssl_version") as? String == "TLSv1.2")
        #expect(transport.extraInfo("cipher") as? String != nil)
        #expect(protocols.last?.transport?.extraInfo("ssl_version") as? String == "TLSv1.3")
    }

    @Test func opensslSClientEchoesWithALPNOverTLS12AndTLS13() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(
            fixture,
            alpn: ["h2", "http/1.1"],
            clients: [("sclient", "-tls1_2 http/1.1"), ("sclient", "-tls1_3 h2")]
        )
        #expect(codes == [0, 0])
        #expect(protocols.first?.transport?.extraInfo("alpn_protocol") as? String == "http/1.1")
        #expect(protocols.last?.transport?.extraInfo("alpn_protocol") as? String == "h2")
    }

    @Test func sendfileOverTLSTakesTheFallbackAndFallbackFalseIsRefused() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let file = try TemporaryFile((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        defer { file.remove() }
        let context = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let (code, sent, refused) = try await withLoop { loop in
            try loop.runUntilComplete { () -> (Int32, Int, String) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, ssl: context) {
                    RecordingProtocol()
                }
                let port = server.sockets[0].localAddress.port ?? 0
                let line = "sink \(port) '\(fixture.ca)' '\(file.path)'"
                let client = try loop.createTask { try await loop.runInExecutor { fixture.client(line) } }
                try await eventually(loop) { server.clientCount == 1 }
                let transport = server.clientTransports[0]
                var refused = ""
                do {
                    _ = try await loop.sendfile(transport, file: file.fd, fallback: false)
                } catch let error as TulipError {
                    refused = "\(error.code)"
                }
                let sent = try await loop.sendfile(transport, file: file.fd)
                transport.close()
                let code = try await client.value
                server.close()
                await server.waitClosed()
                return (code, sent, refused)
            }
        }
        #expect(code == 0)
        #expect(sent == 300_000)
        #expect(refused == "sendfileNotSupported")
    }

    @Test func pr10SilentClientIsClosedAfterTheHandshakeTimeoutWithoutConnectionMade() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, timeout: .milliseconds(300), clients: [("silent", "")])
        #expect(codes == [0])
        #expect(protocols.isEmpty)
    }

    @Test func plaintextGarbageIsClosedWhileAnotherTLSClientCarriesOn() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, clients: [("garbage", "")])
        #expect(codes == [0])
        #expect(protocols.count == 1)
    }
}
