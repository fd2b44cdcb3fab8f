import NIOConcurrencyHelpers
import NIOCore
import Testing
import TulipTLS

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1)))
struct StartTLSTests {
    private static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    /// Connects in plaintext to `port` and upgrades the connection as a client of `context`.
    private static func upgrade(
        _ loop: TulipLoop,
        port: Int,
        context: TLSContext,
        serverHostname: String = "localhost",
        handshakeTimeout: TimeAmount? = nil,
        shutdownTimeout: TimeAmount? = nil
    ) async throws -> (old: ChannelTransport, new: ChannelTransport, client: RecordingProtocol) {
        let (plain, made) = try await loop.createConnection(host: "127.0.0.1", port: port) { RecordingProtocol() }
        let client = made as! RecordingProtocol
        let upgraded = try await loop.startTLS(
            transport: plain,
            protocol: client,
            context: context,
            serverHostname: serverHostname,
            handshakeTimeout: handshakeTimeout,
            shutdownTimeout: shutdownTimeout
        )
        return (plain, upgraded, client)
    }

    @Test func tls6UpgradeAgainstOpensslSServerGivesANewTransportWithoutASecondConnectionMade() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let peer = try fixture.opensslServer()
        defer { peer.terminate() }
        let port = try peer.port()
        let context = try TLSContext.client(trustRoots: fixture.ca)
        let result = try await withLoop { loop in
            try loop.runUntilComplete { () -> (Bool, Bool, Bool, [String], String, String?) in
                let (old, new, client) = try await Self.upgrade(loop, port: port, context: context)
                try new.write(string: "hello-tulip\n")
                try await eventually(loop) { client.received.count == 12 }
                let version = new.extraInfo("ssl_version") as? String
                new.close()
                try await eventually(loop) { client.events.last == "lost" }
                return (
                    old !== new, old.isClosing, client.transport === old, client.events,
                    Self.text(client.received), version
                )
            }
        }
        #expect(result.0)
        #expect(result.1)
        #expect(result.2)  // the protocol still holds the transport it got in connectionMade
        // TLS-11: s_server answers our close_notify, which this side hears as EOF before the loss.
        #expect(result.3 == ["made", "data", "eof", "lost"])
        #expect(result.4 == "pilut-olleh\n")
        #expect(result.5 == "TLSv1.3")
        #expect(peer.wait() == 0)
    }

    /// A refused handshake closes the connection (s_server, serving one connection, exits),
    /// throws an OpenSSLError naming the reason, and gives the protocol no callback (TLS-7).
    private func refusedUpgrade(
        _ fixture: TLSFixture,
        trust: String,
        serverHostname: String
    ) async throws -> (message: String, events: [String]) {
        let peer = try fixture.opensslServer()
        defer { peer.terminate() }
        let port = try peer.port()
        let context = try TLSContext.client(trustRoots: trust)
        let result = try await withLoop { loop in
            try loop.runUntilComplete { () -> (String, [String]) in
                let (plain, made) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol()
                }
                let client = made as! RecordingProtocol
                do {
                    _ = try await loop.startTLS(
                        transport: plain,
                        protocol: client,
                        context: context,
                        serverHostname: serverHostname
                    )
                    return ("upgraded", client.events)
                } catch let error as OpenSSLError {
                    try await Task.sleep(for: .milliseconds(50))
                    return (error.message, client.events)
                }
            }
        }
        _ = peer.wait()
        return result
    }

    @Test func tls7WrongHostNameIsRefused() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (message, events) = try await refusedUpgrade(fixture, trust: fixture.ca, serverHostname: "wrong.example")
        #expect(message.contains("certificate verify failed: hostname mismatch"), "\(message)")
        #expect(events == ["made"])
    }

    @Test func tls7UntrustedChainIsRefused() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (message, events) = try await refusedUpgrade(fixture, trust: fixture.otherCA, serverHostname: "localhost")
        #expect(message.contains("certificate verify failed: unable to get local issuer certificate"), "\(message)")
        #expect(events == ["made"])
    }

    @Test func tls7HandshakeTimeoutAgainstASilentPeerClosesTheTransport() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let context = try TLSContext.client(trustRoots: fixture.ca)
        let silent = RecordingProtocol()
        let outcome = try await withLoop { loop in
            try loop.runUntilComplete { () -> String in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { silent }
                var outcome = "upgraded"
                do {
                    _ = try await Self.upgrade(
                        loop,
                        port: server.sockets[0].localAddress.port!,
                        context: context,
                        handshakeTimeout: .milliseconds(300)
                    )
                } catch let error as TLSHandshakeTimeoutError {
                    outcome = "\(error)"
                }
                // The peer sees the connection end: our side closed it.
                try await eventually(loop) { silent.events.last == "lost" }
                server.close()
                return outcome
            }
        }
        #expect(outcome == "SSL handshake is taking longer than 0.3 seconds: aborting the connection")
        #expect(silent.events.prefix(1) == ["made"])
        #expect(!silent.events.contains("data") || silent.received.first == 0x16)  // only a ClientHello
    }

    @Test func tls5DataQueuedBeforeTheUpgradeGoesOutFirstInPlaintext() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let peer = try fixture.pythonServer("starttls-server")
        defer { peer.terminate() }
        let port = try peer.port()
        let context = try TLSContext.client(trustRoots: fixture.ca)
        let echoed = try await withLoop { loop in
            try loop.runUntilComplete { () -> String in
                let (plain, made) = try await loop.createConnection(host: "127.0.0.1", port: port) {
                    RecordingProtocol()
                }
                let client = made as! RecordingProtocol
                // Written and upgraded in the same step: HELLO must still precede the ClientHello.
                try plain.write(string: "HELLO\n")
                let tls = try await loop.startTLS(
                    transport: plain,
                    protocol: client,
                    context: context,
                    serverHostname: "localhost"
                )
                try tls.write(string: "inside")
                try await eventually(loop) { client.received.count == 6 }
                tls.close()
                try await eventually(loop) { client.events.last == "lost" }
                return Self.text(client.received)
            }
        }
        #expect(echoed == "inside")
        #expect(peer.wait() == 0)
    }

    /// The server side of STARTTLS: echo, and on the line STARTTLS answer OK and upgrade.
    private final class UpgradingEcho: StreamProtocol, @unchecked Sendable {
        // @unchecked Sendable: used on the loop thread; the test reads it after the loop stopped.
        let context: TLSContext
        var transport: ChannelTransport?
        var plaintext: [String] = []
        var decrypted: [String] = []
        var connectionMadeCount = 0
        var upgraded = false

        init(context: TLSContext) { self.context = context }

        func connectionMade(transport: ChannelTransport) {
            self.connectionMadeCount += 1
            self.transport = transport
        }

        func dataReceived(_ data: ByteBuffer) throws {
            guard let transport = self.transport else { return }
            let text = String(decoding: data.readableBytesView, as: UTF8.self)
            if self.upgraded {
                self.decrypted.append(text)
                try transport.write(data)
                return
            }
            self.plaintext.append(text)
            guard text == "STARTTLS\r\n" else {
                try transport.write(data)
                return
            }
            try transport.write(string: "OK\r\n")
            transport.pauseReading()
            let bound = NIOLoopBound((self, transport), eventLoop: transport.loop.eventLoop)
            try transport.loop.createTask {
                let (me, plain) = bound.value
                me.transport = try await plain.loop.startTLS(
                    transport: plain,
                    protocol: me,
                    context: me.context,
                    serverSide: true
                )
                me.upgraded = true
            }
        }
    }

    @Test func tls4BytesAfterTheCommandReachTLSNotTheProtocol() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let context = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let made = NIOLockedValueBox<UpgradingEcho?>(nil)
        let code = try await withLoop { loop in
            try loop.runUntilComplete { () -> Int32 in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = UpgradingEcho(context: context)
                    made.withLockedValue { $0 = p }
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                let code = try await loop.runInExecutor {
                    fixture.client("starttls-client \(port) '\(fixture.ca)'")
                }
                server.close()
                await server.waitClosed()
                return code
            }
        }
        let server = try #require(made.withLockedValue { $0 })
        #expect(code == 0)
        #expect(server.plaintext == ["plain\n", "STARTTLS\r\n"])
        #expect(server.decrypted.joined() == "secret")
        #expect(server.connectionMadeCount == 1)
    }

    @Test func tls2Tls15ATLSTransportCanBeUpgradedAgain() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let serverContext = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let clientContext = try TLSContext.client(trustRoots: fixture.ca)
        let made = NIOLockedValueBox<UpgradingEcho?>(nil)
        let (received, version) = try await withLoop { loop in
            try loop.runUntilComplete { () -> (String, String?) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, ssl: serverContext) {
                    let p = UpgradingEcho(context: serverContext)
                    made.withLockedValue { $0 = p }
                    return p
                }
                let (outer, protocolObject) = try await loop.createConnection(
                    host: "127.0.0.1",
                    port: server.sockets[0].localAddress.port!,
                    ssl: clientContext,
                    serverHostname: "localhost"
                ) { RecordingProtocol() }
                let client = protocolObject as! RecordingProtocol
                try outer.write(string: "STARTTLS\r\n")
                try await eventually(loop) { client.received.count == 4 }
                let inner = try await loop.startTLS(
                    transport: outer,
                    protocol: client,
                    context: clientContext,
                    serverHostname: "localhost"
                )
                try inner.write(string: "inner")
                try await eventually(loop) { client.received.count == 9 }
                let version = inner.extraInfo("ssl_version") as? String
                inner.close()
                try await eventually(loop) { client.events.last == "lost" }
                server.close()
                await server.waitClosed()
                return (Self.text(client.received), version)
            }
        }
        #expect(received == "OK\r\ninner")
        #expect(version == "TLSv1.3")
        let server = try #require(made.withLockedValue { $0 })
        #expect(server.plaintext == ["STARTTLS\r\n"])  // inside the outer TLS
        #expect(server.decrypted == ["inner"])
    }

    @Test func tls9CloseTimesOutOnAPeerThatNeverAnswersAndAbortDoesNotWait() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let peer = try fixture.pythonServer("mute-tls-server")
        defer { peer.terminate() }
        let port = try peer.port()
        let context = try TLSContext.client(trustRoots: fixture.ca)
        let (closed, aborted) = try await withLoop { loop in
            try loop.runUntilComplete { () -> (String, String) in
                let closing = try await Self.upgrade(
                    loop,
                    port: port,
                    context: context,
                    shutdownTimeout: .seconds(1)
                )
                let aborting = try await Self.upgrade(loop, port: port, context: context)
                closing.new.close()
                aborting.new.abort()
                try await eventually(loop) { aborting.client.events.last == "lost" }
                let abortedError = aborting.client.lostError.map { "\($0)" } ?? "nil"
                #expect(closing.client.events.last != "lost")  // still waiting for close_notify
                try await eventually(loop) { closing.client.events.last == "lost" }
                return (closing.client.lostError.map { "\($0)" } ?? "nil", abortedError)
            }
        }
        #expect(closed == "SSL shutdown timed out")
        #expect(aborted == "nil")
    }

    @Test func tls2Tls3Tls8BadArgumentsAndAClosedTransportFailFast() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let client = try TLSContext.client(trustRoots: fixture.ca)
        let server = try TLSContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let codes = try await withLoop { loop in
            try loop.runUntilComplete { () -> [String] in
                let listener = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol() }
                let (plain, made) = try await loop.createConnection(
                    host: "127.0.0.1",
                    port: listener.sockets[0].localAddress.port!
                ) { RecordingProtocol() }
                var codes: [String] = []
                let attempts: [(TLSContext, Bool, String?, TimeAmount?)] = [
                    (client, false, "localhost", .zero),  // TLS-3
                    (client, false, nil, nil),  // a verifying client needs a name
                    (client, true, nil, nil),  // server side needs a server context
                    (server, true, "localhost", nil),  // no name on the server side
                ]
                for (context, serverSide, name, timeout) in attempts {
                    do {
                        _ = try await loop.startTLS(
                            transport: plain,
                            protocol: made,
                            context: context,
                            serverSide: serverSide,
                            serverHostname: name,
                            handshakeTimeout: timeout
                        )
                    } catch let error as TulipError {
                        codes.append("\(error.code)")
                    }
                }
                #expect(!plain.isClosing)  // argument errors leave the transport alone
                plain.close()
                do {
                    _ = try await loop.startTLS(transport: plain, protocol: made, context: server, serverSide: true)
                } catch let error as TulipError {
                    codes.append("\(error.code)")  // TLS-8
                }
                var fds: [CInt] = [0, 0]
                pipe(&fds)
                let (pipeTransport, pipeProtocol) = try await loop.connectReadPipe(fileDescriptor: fds[0]) {
                    RecordingProtocol()
                }
                do {
                    _ = try await loop.startTLS(
                        transport: pipeTransport.base,
                        protocol: pipeProtocol,
                        context: server,
                        serverSide: true
                    )
                } catch let error as TulipError {
                    codes.append("\(error.code)")  // TLS-2
                }
                pipeTransport.close()
                close(fds[1])
                listener.close()
                return codes
            }
        }
        #expect(
            codes == [
                "invalidArgument", "invalidArgument", "invalidArgument", "invalidArgument", "transportClosing",
                "unsupportedTransport",
            ]
        )
    }
}
