import NIOCore
import NIOEmbedded
import Testing

@testable import TulipTLS

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory with a CA, a server certificate signed by it (CN/SAN localhost), a
/// client certificate, and an unrelated key, all made by the `openssl` CLI.
struct TestCertificates {
    let directory: String
    var caCertificate: String { self.directory + "/ca.pem" }
    var serverCertificate: String { self.directory + "/server.pem" }
    var serverKey: String { self.directory + "/server.key" }
    var otherKey: String { self.directory + "/other.key" }

    init() throws {
        var template = Array("/tmp/tulip-tls-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw OpenSSLError(message: "mkdtemp failed", entries: []) }
        self.directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let d = self.directory
        let script = """
            set -e; cd '\(d)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=Tulip-Test-CA 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key 2>/dev/null
            """
        guard system(script) == 0 else { throw OpenSSLError(message: "openssl CLI failed", entries: []) }
    }

    func remove() { _ = system("rm -rf '\(self.directory)'") }
}

@Suite struct TLSContextTests {
    @Test func serverContextLoads() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let context = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey,
            alpn: ["h2", "http/1.1"]
        )
        #expect(context.isServer)
    }

    @Test func mismatchedKeyIsRefused() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        #expect {
            _ = try TLSContext.server(
                certificateChain: certificates.serverCertificate,
                privateKey: certificates.otherKey
            )
        } throws: { error in
            guard let error = error as? OpenSSLError else { return false }
            return error.message.contains("does not match") && !error.entries.isEmpty
                && error.description.contains(error.entries[0].text)
        }
    }

    @Test func missingFileIsRefused() throws {
        #expect(throws: OpenSSLError.self) {
            _ = try TLSContext.server(certificateChain: "/nonexistent/cert.pem", privateKey: "/nonexistent/key.pem")
        }
    }
}

/// Moves bytes between two embedded channels until neither has anything to send.
private func pump(_ a: EmbeddedChannel, _ b: EmbeddedChannel) throws {
    var moved = true
    while moved {
        moved = false
        while let bytes = try a.readOutbound(as: ByteBuffer.self) {
            try b.writeInbound(bytes)
            moved = true
        }
        while let bytes = try b.readOutbound(as: ByteBuffer.self) {
            try a.writeInbound(bytes)
            moved = true
        }
    }
}

/// Tears channels down without waiting for the peer's close_notify (TLS-9), which no one would
/// pump on an embedded loop.
private func finishWithoutWaiting(_ channels: EmbeddedChannel...) {
    for channel in channels {
        channel.pipeline.triggerUserOutboundEvent(TLSAbortEvent(), promise: nil)
        _ = try? channel.finish()
    }
}

private func readAll(_ channel: EmbeddedChannel) throws -> [UInt8] {
    var bytes: [UInt8] = []
    while var buffer = try channel.readInbound(as: ByteBuffer.self) {
        bytes += buffer.readBytes(length: buffer.readableBytes)!
    }
    return bytes
}

@Suite struct OpenSSLHandlerTests {
    func makePair(
        _ certificates: TestCertificates,
        serverALPN: [String] = [],
        clientALPN: [String] = [],
        minimumVersion: TLSMinimumVersion = .tls12
    ) throws -> (
        server: EmbeddedChannel, client: EmbeddedChannel, serverHandler: OpenSSLHandler, clientHandler: OpenSSLHandler
    ) {
        let serverContext = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey,
            minimumVersion: minimumVersion,
            alpn: serverALPN
        )
        let clientContext = try TLSContext.client(trustRoots: certificates.caCertificate, alpn: clientALPN)
        let serverHandler = OpenSSLHandler(context: serverContext)
        let clientHandler = OpenSSLHandler(context: clientContext, serverHostname: "localhost")
        let server = EmbeddedChannel(handler: serverHandler)
        let client = EmbeddedChannel(handler: clientHandler)
        return (server, client, serverHandler, clientHandler)
    }

    @Test func handshakeDataBothWaysAndCloseNotify() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let (server, client, serverHandler, clientHandler) = try makePair(
            certificates,
            serverALPN: ["h2", "http/1.1"],
            clientALPN: ["http/1.1", "h2"]
        )
        // Written before the handshake: held until it finishes.
        client.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try pump(client, server)

        #expect(serverHandler.connectionInfo != nil)
        #expect(clientHandler.connectionInfo?.alpn == "h2")
        #expect(serverHandler.connectionInfo?.alpn == "h2")
        #expect(serverHandler.connectionInfo?.protocolVersion == "TLSv1.3")
        #expect(clientHandler.connectionInfo?.peerCertificateSubject?.contains("CN=localhost") == true)
        #expect(try readAll(server) == Array("hello".utf8))

        let big = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try server.writeAndFlush(ByteBuffer(bytes: big)).wait()
        try pump(client, server)
        #expect(try readAll(client) == big)

        // close_notify: the client closes, the server sees an orderly EOF.
        var serverSawEOF = false
        let recorder = EventRecorder { serverSawEOF = true }
        try server.pipeline.syncOperations.addHandler(recorder)
        client.close(promise: nil)
        try pump(client, server)
        #expect(serverSawEOF)
        finishWithoutWaiting(server, client)
    }

    @Test func tls9CloseWaitsForThePeersCloseNotifyAndAbortDoesNot() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let (server, client, _, _) = try makePair(certificates)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try pump(client, server)
        client.close(promise: nil)
        try pump(client, server)
        #expect(client.isActive)  // our close_notify is out; the peer's has not come yet
        server.close(promise: nil)  // the peer answers (it already has ours, so it does not wait)
        try pump(client, server)
        #expect(!server.isActive)
        #expect(!client.isActive)

        let (server2, client2, _, _) = try makePair(certificates)
        try server2.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client2.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try pump(client2, server2)
        client2.pipeline.triggerUserOutboundEvent(TLSAbortEvent(), promise: nil)
        client2.close(promise: nil)
        #expect(!client2.isActive)
        #expect(try client2.readOutbound(as: ByteBuffer.self) == nil)  // no alert on abort
        finishWithoutWaiting(server2)
    }

    @Test func handshakeWithoutALPN() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let serverContext = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey
        )
        let clientContext = try TLSContext.client(trustRoots: certificates.caCertificate)
        let server = EmbeddedChannel(handler: OpenSSLHandler(context: serverContext))
        let clientHandler = OpenSSLHandler(context: clientContext, serverHostname: "localhost")
        let client = EmbeddedChannel(handler: clientHandler)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try pump(client, server)
        #expect(clientHandler.connectionInfo?.protocolVersion?.hasPrefix("TLSv1.") == true)
        #expect(clientHandler.connectionInfo?.alpn == nil)
        finishWithoutWaiting(server, client)
    }

    @Test func wrongHostNameIsRefused() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let serverContext = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey
        )
        let clientContext = try TLSContext.client(trustRoots: certificates.caCertificate)
        let server = EmbeddedChannel(handler: OpenSSLHandler(context: serverContext))
        let clientHandler = OpenSSLHandler(context: clientContext, serverHostname: "example.org")
        let client = EmbeddedChannel(handler: clientHandler)
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(throws: OpenSSLError.self) { try pump(client, server) }
        #expect(clientHandler.connectionInfo == nil)
        finishWithoutWaiting(server, client)
    }

    @Test func handshakeTimeoutClosesTheChannel() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let serverContext = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey
        )
        let server = EmbeddedChannel(
            handler: OpenSSLHandler(context: serverContext, handshakeTimeout: .milliseconds(50))
        )
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(server.isActive)
        #expect(throws: TLSHandshakeTimeoutError.self) {
            server.embeddedEventLoop.advanceTime(by: .milliseconds(60))
            try server.throwIfErrorCaught()
        }
        #expect(!server.isActive)
    }

    @Test func plaintextGarbageFailsTheHandshake() throws {
        let certificates = try TestCertificates()
        defer { certificates.remove() }
        let serverContext = try TLSContext.server(
            certificateChain: certificates.serverCertificate,
            privateKey: certificates.serverKey
        )
        let server = EmbeddedChannel(handler: OpenSSLHandler(context: serverContext))
        try server.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(throws: OpenSSLError.self) {
            try server.writeInbound(ByteBuffer(string: "GET / HTTP/1.0\r\n\r\n"))
        }
        #expect(!server.isActive)
    }
}

/// Calls `onEOF` when `inputClosed` reaches it.
private final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let onEOF: () -> Void
    init(onEOF: @escaping () -> Void) { self.onEOF = onEOF }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { self.onEOF() }
        context.fireUserInboundEventTriggered(event)
    }
}
