import NIOCore
import Testing
import TulipTLS

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// A server's sockets handed to a successor (CS-18 with several sockets), as tulipd's reload and
/// the systemd fd store use them.
@Suite(.timeLimit(.minutes(1)))
struct ServerHandOverTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    private static func upperEcho() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in
            try transport.write(ByteBuffer(string: String(buffer: data).uppercased()))
        }
        return p
    }

    private static func roundTrip(_ loop: TulipLoop, port: Int, host: String = "127.0.0.1") async throws -> String {
        try await loop.runInExecutor { () -> String in
            let client = try BlockingClient(port: port, host: host)
            defer { client.close() }
            client.send("ping")
            return String(decoding: client.receive(count: 4), as: UTF8.self)
        }
    }

    @Test func cs18SeveralSocketsServeAsOneServerAndHandOverWithoutRebinding() async throws {
        let results = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [String] in
                let first = try await loop.createServer(host: ["127.0.0.1", "127.0.0.2"], port: 0) { Self.echo() }
                let ports = first.sockets.map { $0.localAddress.port! }
                let duplicates = try first.duplicateSockets()
                let second = try await loop.createServer(socks: duplicates) { Self.upperEcho() }
                first.close()
                await first.waitClosed()
                var results: [String] = [second.sockets.count == 2 ? "two sockets" : "\(second.sockets.count)"]
                for (host, port) in zip(["127.0.0.1", "127.0.0.2"], ports) {
                    results.append(try await Self.roundTrip(loop, port: port, host: host))
                }
                second.close()
                await second.waitClosed()
                return results
            }
        }
        #expect(results == ["two sockets", "PING", "PING"])
    }

    @Test func cs18AnEmptyOrNonStreamListIsRefused() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createServer(socks: []) { Self.echo() }
                }
                let datagram = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
                defer { close(datagram) }
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createServer(socks: [datagram]) { Self.echo() }
                }
            }
        }
    }

    @Test func us8KeptSocketFileOutlivesTheServer() async throws {
        let path = "/tmp/tulip-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-kept.sock"
        defer { unlink(path) }
        let exists = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Bool in
                let server = try await loop.createUnixServer(path: path) { Self.echo() }
                try await loop.eventLoop.submit { server.keepSocketFileOnClose() }.get()
                server.close()
                await server.waitClosed()
                return access(path, F_OK) == 0
            }
        }
        #expect(exists)
    }

    @Test func onlyATLSServerTakesANewTLSContext() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let context = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        try await withLoop { loop in
            try loop.runUntilComplete {
                let plain = try await loop.createServer(host: "127.0.0.1", port: 0) { Self.echo() }
                let tls = try await loop.createServer(host: "127.0.0.1", port: 0, ssl: context) { Self.echo() }
                defer {
                    plain.close()
                    tls.close()
                }
                try await loop.eventLoop.submit {
                    #expect(throws: TulipError.invalidArgument("")) { try plain.replaceSSLContext(context) }
                    try tls.replaceSSLContext(context)
                }.get()
            }
        }
    }
}
