import NIOConcurrencyHelpers
import NIOCore
import Testing
import TulipTLS

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1)))
struct CreateConnectionTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func tlsClientEchoesWithATulipServerAndTls9Tls11CloseExchangesCloseNotify() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let serverContext = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let clientContext = try TLSContext.client(trustRoots: fixture.ca)
        let served = NIOLockedValueBox<[RecordingProtocol]>([])
        let result = try await withLoop { loop in
            try loop.runUntilComplete { () -> ([String], String, String?, Bool, [String]) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, ssl: serverContext) {
                    let p = Self.echo()
                    // TLS-11: asking to stay open after EOF has no effect on TLS.
                    p.onEOF = { true }
                    served.withLockedValue { $0.append(p) }
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                // "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
                let (transport, made) = try await loop.createConnection(
                    host: "localhost",
                    port: port,
                    ssl: clientContext
                ) {
                    RecordingProtocol()
                }
                let client = made as! RecordingProtocol
                try transport.write(string: "hello over tls")
                try await eventually(loop) { client.received.count == 14 }
                let version = transport.extraInfo("ssl_version") as? String
                transport.close()
                try await eventually(loop) { client.events.last == "lost" }
                try await eventually(loop) { served.withLockedValue { $0.first?.events.last } == "lost" }
                server.close()
                await server.waitClosed()
                let serverEvents = served.withLockedValue { $0.first?.events } ?? []
                return (client.events, Self.text(client.received), version, client.lostError == nil, serverEvents)
            }
        }
        // TLS-11: the closing side gets eofReceived once the close_notify exchange is over.
        #expect(result.0 == ["made", "data", "eof", "lost"])
        #expect(result.1 == "hello over tls")
        #expect(result.2 == "TLSv1.3")
        // TLS-9: our close_notify reached the server as EOF, and its answer ended our close cleanly.
        #expect(result.3)
        #expect(result.4 == ["made", "data", "eof", "lost"])
    }

    @Test func plainClientEchoesAndUnixTLSClientToo() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let serverContext = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let clientContext = try TLSContext.client(trustRoots: fixture.ca)
        let path = fixture.directory + "/tls.sock"
        let answers = try await withLoop { loop in
            try loop.runUntilComplete { () -> [String] in
                let plain = try await loop.createServer(host: "127.0.0.1", port: 0) { Self.echo() }
                let unix = try await loop.createUnixServer(path: path, ssl: serverContext) { Self.echo() }
                var answers: [String] = []
                let connections = [
                    try await loop.createConnection(host: "127.0.0.1", port: plain.sockets[0].localAddress.port!) {
                        RecordingProtocol()
                    },
                    try await loop.createUnixConnection(path: path, ssl: clientContext, serverHostname: "localhost") {
                        RecordingProtocol()
                    },
                ]
                for (transport, made) in connections {
                    let client = made as! RecordingProtocol
                    try transport.write(string: "ping")
                    try await eventually(loop) { client.received.count == 4 }
                    answers.append("\(Self.text(client.received)) \(transport.extraInfo("ssl_version") ?? "plain")")
                    transport.close()
                }
                plain.close()
                unix.close()
                return answers
            }
        }
        #expect(answers == ["ping plain", "ping TLSv1.3"])
    }

    @Test func argumentsAreCheckedAndARefusedPortIsConnectFailed() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let clientContext = try TLSContext.client(trustRoots: fixture.ca)
        let messages = try await withLoop { loop in
            try loop.runUntilComplete { () -> [String] in
                // A port that was just free: nothing listens there.
                let probe = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol() }
                let port = probe.sockets[0].localAddress.port!
                probe.close()
                await probe.waitClosed()
                var messages: [String] = []
                let attempts: [(String?, TLSContext?, TimeAmount?)] = [
                    ("localhost", nil, nil),
                    (nil, nil, .seconds(1)),
                    (nil, clientContext, .zero),
                    (nil, nil, nil),
                ]
                for (name, ssl, timeout) in attempts {
                    do {
                        _ = try await loop.createConnection(
                            host: "127.0.0.1",
                            port: port,
                            ssl: ssl,
                            serverHostname: name,
                            sslHandshakeTimeout: timeout
                        ) { RecordingProtocol() }
                        messages.append("connected")
                    } catch let error as TulipError {
                        messages.append("\(error.code) \(error.errno.map { "\($0)" } ?? "-")")
                    }
                }
                return messages
            }
        }
        #expect(
            messages == [
                "invalidArgument -", "invalidArgument -", "invalidArgument -", "connectFailed \(ECONNREFUSED)",
            ]
        )
    }
}
