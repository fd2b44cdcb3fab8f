import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// Protocol objects a server made, for the test to reach.
final class Made: @unchecked Sendable {
    // @unchecked Sendable: guarded by `lock`.
    private let lock = NIOLock()
    private var protocols: [RecordingProtocol] = []
    func add(_ p: RecordingProtocol) { self.lock.withLock { self.protocols.append(p) } }
    var first: RecordingProtocol? { self.lock.withLock { self.protocols.first } }
}

/// Waits on the loop until `condition` holds (bounded).
func eventually(_ loop: TulipLoop, timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now > deadline { throw TulipError.invalidArgument("condition not met in time") }
        try await Task.sleep(for: .milliseconds(5))
    }
}

@Suite(.timeLimit(.minutes(1)))
struct StreamTransportTests {
    private static func port(_ server: Server) -> Int { server.sockets[0].localAddress.port! }

    @Test func pr1ConnectionMadeComesFirstAndTr4CloseFlushesEverything() async throws {
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let received = try await withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onConnectionMade = { transport in
                        var buffer = transport.allocator.buffer(capacity: payload.count)
                        buffer.writeBytes(payload)
                        try? transport.write(buffer)
                        transport.close()  // TR-4: the 4 MiB still arrive
                        #expect(transport.isClosing)
                    }
                    return p
                }
                let port = Self.port(server)
                let bytes = try await loop.runInExecutor { try BlockingClient(port: port).receiveAll() }
                server.close()
                await server.waitClosed()
                return bytes
            }
        }
        #expect(received == payload)
    }

    @Test func tr5AbortDiscardsQueuedData() async throws {
        let (count, events) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    p.onConnectionMade = { transport in
                        try? transport.write([UInt8](repeating: 1, count: 8 << 20))
                        transport.abort()
                        transport.close()  // TR-3: a no-op after abort
                    }
                    return p
                }
                let port = Self.port(server)
                let bytes = try await loop.runInExecutor { () -> Int in
                    let client = try BlockingClient(port: port, receiveBuffer: 4096)
                    defer { client.close() }
                    usleep(100_000)  // let the server write and abort first
                    return client.receiveAll()?.count ?? 0
                }
                server.close()
                await server.waitClosed()
                return (bytes, made.first!.events)
            }
        }
        #expect(count < 8 << 20)
        // TR-6: lost exactly once, and last; the 8 MiB write paused the protocol first (FC-4).
        #expect(events == ["made", "pause", "lost"])
    }

    @Test func pr4EofReturningFalseClosesAndTheClientGetsTheEcho() async throws {
        let (reply, events) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onData = { data, transport in try transport.write(data) }
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let reply = try await loop.runInExecutor { () -> [UInt8]? in
                    let client = try BlockingClient(port: port)
                    client.send("hello")
                    client.shutdownWrite()
                    return client.receiveAll()
                }
                server.close()
                await server.waitClosed()
                return (reply, made.first!.events)
            }
        }
        #expect(reply == Array("hello".utf8))
        #expect(events.first == "made" && events.suffix(2) == ["eof", "lost"])
    }

    @Test func pr4EofReturningTrueKeepsTheTransportOpenForWriting() async throws {
        let reply = try await withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onEOF = {
                        // Half-open: reply after the peer's EOF, then close.
                        let transport = p.transport!
                        loop.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(20)) {
                            try? transport.write(string: "late reply")
                            transport.close()
                        }
                        return true
                    }
                    return p
                }
                let port = Self.port(server)
                let reply = try await loop.runInExecutor { () -> [UInt8]? in
                    let client = try BlockingClient(port: port)
                    client.shutdownWrite()
                    return client.receiveAll()
                }
                server.close()
                return reply
            }
        }
        #expect(reply == Array("late reply".utf8))
    }

    @Test func pr5AResetReachesConnectionLostAsAnError() async throws {
        let error = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> String? in
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                try await loop.runInExecutor {
                    let client = try BlockingClient(port: port)
                    client.send("x")
                    usleep(50_000)
                    client.reset()
                }
                server.close()
                await server.waitClosed()
                return made.first!.lostError.map { "\($0)" }
            }
        }
        #expect(error != nil)
    }

    @Test func pr6AThrowingDataReceivedIsFatalToTheConnectionOnly() async throws {
        struct Boom: Error {}
        let (lostWithBoom, reports, secondWorks) = try await withLoop { loop in
            let reports = NIOLockedValueBox<[String]>([])
            loop.setExceptionHandler { context in reports.withLockedValue { $0.append(context.message) } }
            return try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onData = { data, transport in
                        if data.readableBytesView.first == UInt8(ascii: "!") { throw Boom() }
                        try transport.write(data)
                    }
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let second = try await loop.runInExecutor { () -> Bool in
                    let bad = try BlockingClient(port: port)
                    bad.send("!")
                    _ = bad.receiveAll()
                    let good = try BlockingClient(port: port)
                    good.send("ok")
                    return good.receive(count: 2) == Array("ok".utf8)
                }
                try await eventually(loop) { made.first?.events.last == "lost" }
                let lostWithBoom = made.first!.lostError is Boom
                server.close()
                return (lostWithBoom, reports.withLockedValue { $0 }, second)
            }
        }
        #expect(lostWithBoom)
        #expect(reports.contains("Fatal error: protocol.data_received() call failed."))
        #expect(secondWorks)
    }

    @Test func rt3PausingInConnectionMadeMeansNothingIsReadUntilResumed() async throws {
        let (beforeResume, afterResume) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onConnectionMade = { transport in
                        transport.pauseReading()
                        #expect(!transport.isReading)
                    }
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let client = try await loop.runInExecutor { () -> BlockingClient in
                    let client = try BlockingClient(port: port)
                    client.send("abc")
                    return client
                }
                try await eventually(loop) { made.first?.transport != nil }
                try await Task.sleep(for: .milliseconds(100))
                let before = made.first!.received.count
                made.first!.transport!.resumeReading()
                try await eventually(loop) { made.first!.received.count == 3 }
                client.close()
                server.close()
                return (before, made.first!.received)
            }
        }
        #expect(beforeResume == 0)
        #expect(afterResume == Array("abc".utf8))
    }

    @Test func wt3WriteAfterWriteEOFThrowsAndWt9TheReadSideStaysOpen() async throws {
        let (threw, clientSawEOF, laterData) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { made.first?.transport != nil }
                let transport = made.first!.transport!
                #expect(transport.canWriteEOF)
                try transport.write(string: "bye")
                transport.writeEOF()
                #expect(!transport.isClosing)
                var threw = false
                do { try transport.write(string: "more") } catch let error as TulipError {
                    threw = error.code == .writeAfterEOF
                }
                let sawEOF = try await loop.runInExecutor { () -> Bool in
                    let bytes = client.receiveAll()
                    client.send("still reading")
                    return bytes == Array("bye".utf8)
                }
                try await eventually(loop) { made.first!.received.count == 13 }
                client.close()
                server.close()
                return (threw, sawEOF, String(decoding: made.first!.received, as: UTF8.self))
            }
        }
        #expect(threw)
        #expect(clientSawEOF)
        #expect(laterData == "still reading")
    }

    @Test func wt6WritesAfterCloseAreDroppedSilently() async throws {
        let dropped = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { made.first?.transport != nil }
                let transport = made.first!.transport!
                transport.abort()
                _ = try await loop.runInExecutor { client.receiveAll() }
                client.close()
                for _ in 0..<5 { try transport.write(string: "x") }
                server.close()
                return transport.droppedWrites
            }
        }
        #expect(dropped == 5)
    }

    @Test func fc2LimitsFillInMissingValuesAndValidate() throws {
        #expect(WriteBufferLimits.default == (try WriteBufferLimits()))
        #expect((try WriteBufferLimits(low: 100)).high == 400)
        #expect((try WriteBufferLimits(high: 100)).low == 25)
        #expect(throws: TulipError.invalidArgument("")) { try WriteBufferLimits(high: 10, low: 20) }
        #expect(throws: TulipError.invalidArgument("")) { try WriteBufferLimits(high: -1, low: -1) }
    }

    @Test func fc4PauseOnceAboveHighAndFc5ResumeOnceDrained() async throws {
        let (events, total) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let chunk = [UInt8](repeating: 7, count: 16_384)
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onConnectionMade = { transport in
                        // Writes until paused: a non-reading client fills the kernel buffers.
                        for _ in 0..<4096 where !p.events.contains("pause") { try? transport.write(chunk) }
                        #expect(transport.writeBufferSize > transport.writeBufferLimits.high)
                    }
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let client = try await loop.runInExecutor { () -> BlockingClient in
                    try BlockingClient(port: port, receiveBuffer: 4096)
                }
                try await eventually(loop) { made.first?.events.contains("pause") == true }
                #expect(made.first!.events.filter { $0 == "pause" }.count == 1)
                let sent = Int(made.first!.transport!.bytesSent)
                let total = try await loop.runInExecutor { client.receive(count: sent).count }
                try await eventually(loop) { made.first!.events.contains("resume") }
                client.close()
                server.close()
                return (made.first!.events, total)
            }
        }
        #expect(events.filter { $0 == "pause" }.count == 1)
        #expect(events.filter { $0 == "resume" }.count == 1)
        #expect(events.firstIndex(of: "pause")! < events.firstIndex(of: "resume")!)
        #expect(total > 65_536)
    }

    @Test func xi1ExtraInfoNamesPeerAndLocalAddresses() async throws {
        let (peer, local, port, unknown) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let port = Self.port(server)
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { made.first?.transport != nil }
                let transport = made.first!.transport!
                let peer = transport.extraInfo("peername") as? SocketAddress
                let local = transport.extraInfo.localAddress
                let unknown = transport.extraInfo("nope", default: "dflt") as? String
                client.close()
                server.close()
                return (peer, local, port, unknown)
            }
        }
        #expect(peer?.ipAddress == "127.0.0.1")
        #expect(local?.port == port)
        #expect(unknown == "dflt")  // TR-1
    }

    @Test func unixPeersCarryTheirCredentials() async throws {
        let path = "/tmp/tulip-peercred-\(getpid()).sock"
        let (credentials, tcpCredentials) = try await withLoop { loop in
            try loop.runUntilComplete {
                let made = Made()
                let server = try await loop.createUnixServer(path: path) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
                let client = try await loop.runInExecutor { try BlockingClient(path: path) }
                try await eventually(loop) { made.first?.transport != nil }
                let credentials = made.first!.transport!.extraInfo("peercred") as? PeerCredentials
                client.close()
                server.close()
                let tcpMade = Made()
                let tcp = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    tcpMade.add(p)
                    return p
                }
                let port = Self.port(tcp)
                let tcpClient = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { tcpMade.first?.transport != nil }
                let tcpCredentials = tcpMade.first!.transport!.extraInfo.peerCredentials
                tcpClient.close()
                tcp.close()
                return (credentials, tcpCredentials)
            }
        }
        // The client is this process.
        #expect(credentials == PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid()))
        #expect(tcpCredentials == nil)
    }
}
