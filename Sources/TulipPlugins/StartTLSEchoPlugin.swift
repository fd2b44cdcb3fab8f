import Logging
import NIOCore
import Tulip
import TulipDaemon
import TulipTLS

/// Echo with an in-band upgrade: plaintext echo until the client sends the line `STARTTLS\r\n`,
/// answered with `OK\r\n` in plaintext (queued before the upgrade, so it goes out first: TLS-5);
/// then the connection becomes TLS (this side serves the handshake) and echoing goes on inside it.
///
/// The `STARTTLS` line must arrive as a line of its own at the start of a read, and nothing may
/// follow it before the client has read `OK` (the client waits for it, as SMTP clients do); bytes
/// after it in the same read are discarded, since they can be neither plaintext nor TLS.
/// `options.certificate_chain` and `options.private_key` name the PEM files; they are loaded and
/// checked at start-up and by `tulipd check`.
public struct StartTLSEchoPlugin: Plugin {
    /// `{"certificate_chain": "/etc/tulip/cert.pem", "private_key": "/etc/tulip/key.pem"}`.
    public struct Options: Decodable, Sendable {
        /// The PEM file with the server certificate followed by its intermediates.
        public var certificateChain: String
        /// The PEM file with the certificate's private key.
        public var privateKey: String

        private enum CodingKeys: String, CodingKey {
            case certificateChain = "certificate_chain"
            case privateKey = "private_key"
        }
    }

    public static let name = "starttls-echo"
    public static let summary = "Echo that upgrades to TLS on the line STARTTLS (answers OK, then echoes inside TLS)"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]

    public static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory {
        let tls: TLSContext
        do {
            tls = try TLSContext.server(certificateChain: options.certificateChain, privateKey: options.privateKey)
        } catch let error as OpenSSLError {
            throw context.invalidOption(error.input == .privateKey ? "private_key" : "certificate_chain", "\(error)")
        }
        let logger = context.logger
        return StreamProtocolFactory { StartTLSEchoProtocol(context: tls, logger: logger) }
    }
}

/// The protocol object of ``StartTLSEchoPlugin``, one per connection.
public final class StartTLSEchoProtocol: StreamProtocol {
    /// The line that asks for the upgrade.
    public static let command: [UInt8] = Array("STARTTLS\r\n".utf8)

    private let context: TLSContext
    private let logger: Logger
    private var transport: ChannelTransport?
    private var upgrading = false

    /// Makes the protocol object for one connection, upgrading with `context`.
    public init(context: TLSContext, logger: Logger) {
        self.context = context
        self.logger = logger
    }

    public func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    public func dataReceived(_ data: ByteBuffer) throws {
        guard let transport = self.transport, !self.upgrading else { return }
        let isTLS = transport.extraInfo("ssl_version") != nil
        guard !isTLS, data.readableBytesView.starts(with: Self.command) else {
            try transport.write(data)
            return
        }
        try transport.write(string: "OK\r\n")
        self.upgrade(transport)
    }

    /// TLS-4: reading pauses now, in this callback, so nothing read before the task runs is
    /// delivered as plaintext; startTLS feeds what was held to the handshake.
    private func upgrade(_ transport: ChannelTransport) {
        self.upgrading = true
        transport.pauseReading()
        let bound = NIOLoopBound((self, transport), eventLoop: transport.loop.eventLoop)
        let logger = self.logger
        do {
            try transport.loop.createTask {
                let (protocolObject, plain) = bound.value
                do {
                    let upgraded = try await plain.loop.startTLS(
                        transport: plain,
                        protocol: protocolObject,
                        context: protocolObject.context,
                        serverSide: true
                    )
                    protocolObject.transport = upgraded
                    protocolObject.upgrading = false
                } catch {
                    logger.info("starttls-echo: upgrade failed", metadata: ["tulip.error": "\(error)"])
                }
            }
        } catch {
            transport.abort()
        }
    }

    public func pauseWriting() {
        self.transport?.pauseReading()
    }

    public func resumeWriting() {
        self.transport?.resumeReading()
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }
}
