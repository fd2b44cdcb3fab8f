import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// `ConnectionLimits` on real loopback sockets: the accept pause at `maxConnections`, the
/// per-source cap and the idle timeout with its protocol hook.
@Suite(.timeLimit(.minutes(1)))
struct ServerLimitsTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    /// An echo server on an ephemeral loopback port, and that port.
    private static func echoServer(
        on loop: TulipLoop,
        observer: LimitObserver,
        limits: ConnectionLimits
    ) async throws -> (Server, Int) {
        let server = try await loop.createServer(host: "127.0.0.1", port: 0, observer: observer, limits: limits) {
            Self.echo()
        }
        return (server, server.sockets[0].localAddress.port!)
    }

    @Test func sourcesAreIPv4AddressesAndIPv6Slash64Prefixes() throws {
        func source(_ host: String) throws -> ConnectionSource? {
            ConnectionSource(ipAddress: try SocketAddress(ipAddress: host, port: 1))
        }
        #expect(try source("192.0.2.1") == ConnectionSource.ipv4(0xC000_0201))
        #expect(try source("192.0.2.1") != source("192.0.2.2"))
        #expect(try source("::ffff:192.0.2.1") == source("192.0.2.1"))
        #expect(try source("2001:db8::1") == source("2001:db8::ffff:1"))
        #expect(try source("2001:db8::1") == ConnectionSource.ipv6Prefix(0x2001_0db8_0000_0000))
        #expect(try source("2001:db8::1") != source("2001:db8:0:1::1"))
        #expect(ConnectionSource(ipAddress: try SocketAddress(unixDomainSocketPath: "/tmp/x")) == nil)
    }

    @Test func limitsThatAreNotPositiveAreRejected() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                for limits in [
                    ConnectionLimits(maxConnections: 0),
                    ConnectionLimits(maxConnectionsPerSource: -1),
                    ConnectionLimits(idleTimeout: .zero),
                ] {
                    await #expect(throws: TulipError.invalidArgument("")) {
                        _ = try await loop.createServer(host: "127.0.0.1", port: 0, limits: limits) { Self.echo() }
                    }
                }
            }
        }
    }

    @Test func maxConnectionsPausesAcceptingUntilAConnectionCloses() async throws {
        let observer = LimitObserver()
        let outcome = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [String] in
                let (server, port) = try await Self.echoServer(
                    on: loop,
                    observer: observer,
                    limits: ConnectionLimits(maxConnections: 2)
                )
                var notes: [String] = []
                // All three connect before any is served, so they arrive in one accept burst: the
                // third completes in the kernel's backlog but is not accepted.
                let (served, waiting, early) = try await loop.runInExecutor {
                    () -> ([BlockingClient], BlockingClient, [UInt8]) in
                    let clients = try (0..<3).map { _ in try BlockingClient(port: port) }
                    for (client, text) in zip(clients, ["a", "b", "c"]) { client.send(text) }
                    #expect(clients[0].receive(count: 1) == Array("a".utf8))
                    #expect(clients[1].receive(count: 1) == Array("b".utf8))
                    return (Array(clients[0..<2]), clients[2], receive(clients[2], count: 1, within: 300))
                }
                let atLimit = server.statistics
                notes.append("\(atLimit.state) open=\(atLimit.openConnections)")
                notes.append("early=\(early.count)")
                let late = try await loop.runInExecutor { () -> [UInt8] in
                    served[0].close()
                    return waiting.receive(count: 1)
                }
                notes.append("late=\(String(decoding: late, as: UTF8.self))")
                let after = server.statistics
                notes.append("\(after.state) open=\(after.openConnections) accepted=\(after.acceptedTotal)")
                _ = try await loop.runInExecutor {
                    served[1].close()
                    waiting.close()
                }
                server.close()
                await server.waitClosed()
                notes.append("\(server.statistics.state)")
                return notes
            }
        }
        #expect(
            outcome == [
                "paused_at_limit open=2", "early=0", "late=c", "paused_at_limit open=2 accepted=3", "closed",
            ]
        )
        #expect(observer.events.prefix(3) == ["paused 2", "resumed 1", "paused 2"])
    }

    @Test func pauseAcceptingHoldsNewConnectionsInTheBacklogUntilResumed() async throws {
        let observer = LimitObserver()
        let outcome = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [String] in
                let (server, port) = try await Self.echoServer(on: loop, observer: observer, limits: .unlimited)
                // Echoed once before the pause, so it is surely accepted rather than in the backlog.
                let open = try await loop.runInExecutor { () -> BlockingClient in
                    let client = try BlockingClient(port: port)
                    client.send("1")
                    _ = client.receive(count: 1)
                    return client
                }
                server.pauseAccepting()
                var notes = ["\(server.statistics.state)"]
                let (waiting, early, stillServed) = try await loop.runInExecutor {
                    () -> (BlockingClient, [UInt8], [UInt8]) in
                    let waiting = try BlockingClient(port: port)
                    waiting.send("w")
                    open.send("o")
                    return (waiting, receive(waiting, count: 1, within: 300), open.receive(count: 1))
                }
                notes.append("early=\(early.count) open=\(String(decoding: stillServed, as: UTF8.self))")
                server.resumeAccepting()
                notes.append("\(server.statistics.state)")
                let late = try await loop.runInExecutor { waiting.receive(count: 1) }
                notes.append(
                    "late=\(String(decoding: late, as: UTF8.self)) accepted=\(server.statistics.acceptedTotal)"
                )
                _ = try await loop.runInExecutor {
                    open.close()
                    waiting.close()
                }
                server.close()
                await server.waitClosed()
                return notes
            }
        }
        #expect(outcome == ["paused", "early=0 open=o", "serving", "late=w accepted=2"])
    }

    @Test func aSourceOverItsCapIsClosedAtOnceAndCounted() async throws {
        let observer = LimitObserver()
        let (first, second, statistics) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8]?, ServerStatistics) in
                let (server, port) = try await Self.echoServer(
                    on: loop,
                    observer: observer,
                    limits: ConnectionLimits(maxConnectionsPerSource: 1)
                )
                let (first, second) = try await loop.runInExecutor { () -> ([UInt8], [UInt8]?) in
                    let served = try BlockingClient(port: port)
                    defer { served.close() }
                    served.send("one")
                    let echoed = served.receive(count: 3)
                    let refused = try BlockingClient(port: port)
                    defer { refused.close() }
                    refused.send("two")
                    return (echoed, refused.receiveAll())
                }
                let statistics = server.statistics
                server.close()
                await server.waitClosed()
                return (first, second, statistics)
            }
        }
        #expect(first == Array("one".utf8))
        #expect(second == nil || second == [])
        #expect(statistics.refusedPerSource == 1)
        #expect(statistics.refusedTotal(.perSource) == 1)
        #expect(statistics.refusedMaxConnections == 0)
        #expect(statistics.acceptedTotal == 1)
        #expect(observer.events.contains("refused per_source"))
    }

    @Test func aUnixPeerIsCappedByItsUserID() async throws {
        let path = "/tmp/tulip-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-limits.sock"
        let (echoed, refused, count) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8]?, UInt64) in
                let server = try await loop.createUnixServer(
                    path: path,
                    limits: ConnectionLimits(maxConnectionsPerSource: 2)
                ) { Self.echo() }
                let (echoed, refused) = try await loop.runInExecutor { () -> ([UInt8], [UInt8]?) in
                    let clients = try (0..<2).map { _ in try BlockingClient(path: path) }
                    defer { for client in clients { client.close() } }
                    var echoed: [UInt8] = []
                    for client in clients {
                        client.send("x")
                        echoed += client.receive(count: 1)
                    }
                    let third = try BlockingClient(path: path)
                    defer { third.close() }
                    third.send("y")
                    return (echoed, third.receiveAll())
                }
                let count = server.statistics.refusedPerSource
                server.close()
                await server.waitClosed()
                return (echoed, refused, count)
            }
        }
        #expect(echoed == Array("xx".utf8))
        #expect(refused == nil || refused == [])
        #expect(count == 1)
    }

    @Test func anIdleConnectionIsToldThenClosedAndAnActiveOneIsNot() async throws {
        let made = NIOLockedValueBox<[IdleProtocol]>([])
        let (active, idle) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> ([UInt8], [UInt8]?) in
                let server = try await loop.createServer(
                    host: "127.0.0.1",
                    port: 0,
                    limits: ConnectionLimits(idleTimeout: .milliseconds(300))
                ) {
                    let p = IdleProtocol()
                    made.withLockedValue { $0.append(p) }
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                let result = try await loop.runInExecutor { () -> ([UInt8], [UInt8]?) in
                    let client = try BlockingClient(port: port)
                    defer { client.close() }
                    // Traffic every 100 ms for three timeouts keeps the connection open.
                    var echoed: [UInt8] = []
                    for _ in 0..<9 {
                        client.send("k")
                        echoed += client.receive(count: 1)
                        usleep(100_000)
                    }
                    // Then silence: the protocol says goodbye and the transport closes, flushing it.
                    return (echoed, client.receiveAll())
                }
                server.close()
                await server.waitClosed()
                return result
            }
        }
        #expect(active == Array("kkkkkkkkk".utf8))
        #expect(idle == Array("bye\n".utf8))
        let events = made.withLockedValue { $0.map(\.events) }
        #expect(events == [["made", "idle", "lost"]])
    }
}

/// Reads up to `count` bytes, giving up after `milliseconds` without data.
private func receive(_ client: BlockingClient, count: Int, within milliseconds: Int32) -> [UInt8] {
    var descriptor = pollfd(fd: client.fd, events: Int16(POLLIN), revents: 0)
    guard poll(&descriptor, 1, milliseconds) == 1 else { return [] }
    return client.receive(count: count)
}

/// Records the limit events a server reports.
private final class LimitObserver: ConnectionObserver, @unchecked Sendable {
    // @unchecked Sendable: written on the loop thread, read by the test through the lock.
    private let recorded = NIOLockedValueBox<[String]>([])
    var events: [String] { self.recorded.withLockedValue { $0 } }

    func connectionOpened(_ transport: ChannelTransport) {}
    func connectionClosed(_ transport: ChannelTransport, error: (any Error)?) {}
    func acceptingPaused(openConnections: Int) {
        self.recorded.withLockedValue { $0.append("paused \(openConnections)") }
    }
    func acceptingResumed(openConnections: Int) {
        self.recorded.withLockedValue { $0.append("resumed \(openConnections)") }
    }
    func connectionRefused(peer: SocketAddress?, reason: ConnectionRefusalReason) {
        self.recorded.withLockedValue { $0.append("refused \(reason)") }
    }
}

/// Echoes, and says goodbye when told the connection is idle.
private final class IdleProtocol: StreamProtocol, @unchecked Sendable {
    // @unchecked Sendable: used on the loop thread; the test reads `events` after the loop stopped.
    private(set) var events: [String] = []
    private var transport: ChannelTransport?

    func connectionMade(transport: ChannelTransport) {
        self.events.append("made")
        self.transport = transport
    }

    func dataReceived(_ data: ByteBuffer) throws { try self.transport?.write(data) }

    func idleTimeoutReached() {
        self.events.append("idle")
        try? self.transport?.write(string: "bye\n")
    }

    func connectionLost(error: (any Error)?) { self.events.append("lost") }
}
