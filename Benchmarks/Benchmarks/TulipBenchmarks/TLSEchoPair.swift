import NIOCore
import NIOEmbedded
import TulipTLS

#if canImport(Glibc)
import Glibc
#endif

/// A TLS client and a TLS server (`OpenSSLHandler` on both sides, a raw echo handler behind the
/// server) on two embedded channels, with the ciphertext carried between them by hand: one
/// message is client write → encrypt → server decrypt → echo → encrypt → client decrypt.
///
/// The certificate and key are made with the `openssl` CLI in a temporary directory, removed once
/// the handshake is done. Single-threaded, like the benchmarks that use it.
final class TLSEchoPair {
    let client: EmbeddedChannel
    let server: EmbeddedChannel

    /// The same two channels and the same pumping without TLS: the harness's own cost, the
    /// yardstick for the TLS pair.
    init(plain: Void) throws {
        self.server = EmbeddedChannel(handler: RawEchoHandler())
        self.client = EmbeddedChannel()
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 4242)
        try self.server.connect(to: address).wait()
        try self.client.connect(to: address).wait()
    }

    init() throws {
        var template = Array("/tmp/tulip-bench-tls-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw OpenSSLError(message: "mkdtemp failed", entries: [])
        }
        let directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        defer { _ = system("rm -rf '\(directory)'") }
        let script = """
            set -e; cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem \
              -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
            """
        guard system(script) == 0 else { throw OpenSSLError(message: "openssl CLI failed", entries: []) }
        let serverContext = try TLSContext.server(
            certificateChain: directory + "/cert.pem",
            privateKey: directory + "/key.pem"
        )
        let clientContext = try TLSContext.client(trustRoots: directory + "/cert.pem")
        self.server = EmbeddedChannel()
        try self.server.pipeline.syncOperations.addHandlers(OpenSSLHandler(context: serverContext), RawEchoHandler())
        self.client = EmbeddedChannel(handler: OpenSSLHandler(context: clientContext, serverHostname: "localhost"))
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 4242)
        try self.server.connect(to: address).wait()
        try self.client.connect(to: address).wait()
        try self.pump()
    }

    /// Carries ciphertext both ways until neither side has anything to send.
    func pump() throws {
        var moved = true
        while moved {
            moved = false
            while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
                try self.server.writeInbound(bytes)
                self.server.pipeline.fireChannelReadComplete()
                moved = true
            }
            while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
                try self.client.writeInbound(bytes)
                self.client.pipeline.fireChannelReadComplete()
                moved = true
            }
        }
    }

    /// One round trip of `payload`; traps unless exactly its bytes come back.
    func echo(_ payload: ByteBuffer) throws {
        self.client.pipeline.syncOperations.writeAndFlush(NIOAny(payload), promise: nil)
        try self.pump()
        var bytes = 0
        while let buffer = try self.client.readInbound(as: ByteBuffer.self) {
            bytes += buffer.readableBytes
        }
        precondition(bytes == payload.readableBytes, "expected \(payload.readableBytes) echoed bytes, got \(bytes)")
    }

    /// Tears both channels down without waiting for close_notify (nobody pumps it).
    func finish() {
        for channel in [self.client, self.server] {
            channel.pipeline.triggerUserOutboundEvent(TLSAbortEvent(), promise: nil)
            _ = try? channel.finish()
        }
    }
}
