import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

@Suite(.timeLimit(.minutes(1)))
struct ServerTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    private static func tempPath(_ name: String) -> String {
        "/tmp/tulip-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))-\(name)"
    }

    @Test func cs2AndCs3HostPortAndSockAreExclusiveAndOneIsRequired() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createServer(host: nil, port: nil, sock: 3) { Self.echo() }
                }
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createServer(host: ["127.0.0.1"], port: 1, sock: 3) { Self.echo() }
                }
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createServer { Self.echo() }
                }
            }
        }
    }

    @Test func cs6AndCs7NilHostBindsOneSocketPerFamilyWithIndependentPorts() async throws {
        let (count, families, v4Works) = try await withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createServer(host: nil, port: 0) { Self.echo() }
                let sockets = server.sockets
                let v4 = sockets.first { if case .v4 = $0.localAddress { return true } else { return false } }
                let port = v4?.localAddress.port ?? 0
                let works = try await loop.runInExecutor { () -> Bool in
                    let client = try BlockingClient(port: port)
                    defer { client.close() }
                    client.send("ping")
                    return client.receive(count: 4) == Array("ping".utf8)
                }
                server.close()
                await server.waitClosed()
                return (sockets.count, Set(sockets.map { "\($0.localAddress.protocol)" }), works)
            }
        }
        #expect(count >= 1)
        #expect(families.count == count)
        #expect(v4Works)
    }

    @Test func cs14AddressInUseNamesTheAddressAndErrno() async throws {
        let error = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> TulipError? in
                let first = try await loop.createServer(host: "127.0.0.1", port: 0) { Self.echo() }
                let port = first.sockets[0].localAddress.port!
                defer { first.close() }
                do {
                    _ = try await loop.createServer(host: "127.0.0.1", port: port, reuseAddress: true) { Self.echo() }
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
        }
        #expect(error?.code == .addressInUse)
        #expect(error?.errno == EADDRINUSE)
        #expect(error?.message.contains("127.0.0.1") == true)
    }

    @Test func cs17StartServingFalseRefusesUntilStartServing() async throws {
        let (refusedBefore, servingBefore, worksAfter) = try await withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, startServing: false) {
                    Self.echo()
                }
                let port = server.sockets[0].localAddress.port!
                let refused = try await loop.runInExecutor { connectionRefused(port: port) }
                let serving = server.isServing
                try await server.startServing()
                try await server.startServing()  // SV-7: idempotent
                let works = try await loop.runInExecutor { () -> Bool in
                    let client = try BlockingClient(port: port)
                    client.send("x")
                    return client.receive(count: 1) == [UInt8(ascii: "x")]
                }
                server.close()
                return (refused, serving, works && server.isServing == false)
            }
        }
        #expect(refusedBefore)
        #expect(!servingBefore)
        #expect(worksAfter)
    }

    @Test func cs18AdoptsABoundSocketAndCs4RejectsADatagramSocket() async throws {
        let (works, wrongType) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> (Bool, TulipError?) in
                let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
                let address = try SocketAddress(ipAddress: "127.0.0.1", port: 0)
                _ = address.withSockAddr { bind(fd, $0, socklen_t($1)) }
                let server = try await loop.createServer(sock: fd) { Self.echo() }
                #expect(server.sockets[0].fileDescriptor == fd)
                let port = server.sockets[0].localAddress.port!
                let works = try await loop.runInExecutor { () -> Bool in
                    let client = try BlockingClient(port: port)
                    client.send("y")
                    return client.receive(count: 1) == [UInt8(ascii: "y")]
                }
                server.close()
                let udp = socket(AF_INET, CInt(SOCK_DGRAM.rawValue), 0)
                defer { close(udp) }
                var wrong: TulipError?
                do { _ = try await loop.createServer(sock: udp) { Self.echo() } } catch let error as TulipError {
                    wrong = error
                }
                return (works, wrong)
            }
        }
        #expect(works)
        #expect(wrongType?.message.hasPrefix("A Stream Socket was expected") == true)
    }

    @Test func sv1CloseStopsAcceptingButKeepsClientsAndSv2WaitClosedWaitsForThem() async throws {
        let outcome = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> (Bool, Bool, Bool, Bool) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) { Self.echo() }
                let port = server.sockets[0].localAddress.port!
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { server.clientCount == 1 }
                server.close()
                #expect(server.sockets.isEmpty)
                // New connections must not reach this server. The port itself may already belong
                // to another test running in parallel, so "refused" alone would be flaky.
                try await loop.runInExecutor {
                    _ = connectionRefused(port: port)
                    usleep(50_000)
                }
                let notAccepted = server.clientCount == 1
                let waiter = Task(executorPreference: loop) { await server.waitClosed() }
                let stillServed = try await loop.runInExecutor { () -> Bool in
                    client.send("still")
                    return client.receive(count: 5) == Array("still".utf8)
                }
                try await Task.sleep(for: .milliseconds(50))
                let waitedWhileClientOpen = server.clientCount == 1
                client.close()
                await waiter.value
                await server.waitClosed()  // returns at once from now on
                return (notAccepted, stillServed, waitedWhileClientOpen, !server.isServing)
            }
        }
        #expect(outcome.0)
        #expect(outcome.1)
        #expect(outcome.2)
        #expect(outcome.3)
    }

    @Test func sv4CloseClientsFlushesAndAbortClientsDoesNot() async throws {
        let (graceful, count) = try await withLoop { loop in
            try loop.runUntilComplete {
                let server = try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    p.onConnectionMade = { transport in try? transport.write(string: "greeting") }
                    return p
                }
                let port = server.sockets[0].localAddress.port!
                let client = try await loop.runInExecutor { try BlockingClient(port: port) }
                try await eventually(loop) { server.clientCount == 1 }
                server.close()
                server.closeClients()
                let got = try await loop.runInExecutor { client.receiveAll() }
                await server.waitClosed()
                return (got, server.clientCount)
            }
        }
        #expect(graceful == Array("greeting".utf8))
        #expect(count == 0)
    }

    @Test func sv8ServeForeverEndsWithCancellationWhenTheServerIsClosed() async throws {
        let cancelled = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Bool in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, startServing: false) {
                    Self.echo()
                }
                let serving = Task(executorPreference: loop) { try await server.serveForever() }
                try await eventually(loop) { server.isServing }
                await #expect(throws: TulipError.make(.serveForeverActive, "")) { try await server.serveForever() }
                server.close()
                do {
                    try await serving.value
                    return false
                } catch is CancellationError {
                    return true
                }
            }
        }
        #expect(cancelled)
    }

    @Test func us5StaleSocketFileIsReplacedAndUs8RemovedOnClose() async throws {
        let path = Self.tempPath("stale.sock")
        let (works, existsAfterClose) = try await withLoop { loop in
            // A stale socket file: bound, then closed without unlinking.
            let stale = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue), 0)
            let address = try SocketAddress(unixDomainSocketPath: path)
            _ = address.withSockAddr { bind(stale, $0, socklen_t($1)) }
            close(stale)
            return try loop.runUntilComplete {
                let server = try await loop.createUnixServer(path: path, mode: 0o600) { Self.echo() }
                var info = stat()
                lstat(path, &info)
                #expect(info.st_mode & 0o777 == 0o600)
                let works = try await loop.runInExecutor { () -> Bool in
                    let client = try BlockingClient(path: path)
                    client.send("u")
                    return client.receive(count: 1) == [UInt8(ascii: "u")]
                }
                server.close()
                return (works, access(path, F_OK) == 0)
            }
        }
        #expect(works)
        #expect(!existsAfterClose)
    }

    @Test func us6ARegularFileAtThePathIsLeftAloneAndTheCallFails() async throws {
        let path = Self.tempPath("regular")
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        _ = "keep me".withCString { write(fd, $0, 7) }
        close(fd)
        defer { unlink(path) }
        let error = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> TulipError? in
                do {
                    _ = try await loop.createUnixServer(path: path) { Self.echo() }
                    return nil
                } catch let error as TulipError {
                    return error
                }
            }
        }
        #expect(error?.code == .addressInUse)
        #expect(error?.message == "Address '\(path)' is already in use")
        var info = stat()
        lstat(path, &info)
        #expect(info.st_size == 7)
    }

    @Test func us8ASocketFileReplacedByAnotherIsNotUnlinkedOnClose() async throws {
        let path = Self.tempPath("replaced.sock")
        defer { unlink(path) }
        let stillThere = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> Bool in
                let server = try await loop.createUnixServer(path: path) { Self.echo() }
                unlink(path)
                let other = open(path, O_CREAT | O_WRONLY, 0o644)
                close(other)
                server.close()
                return access(path, F_OK) == 0
            }
        }
        #expect(stillThere)
    }

    @Test func us2PathAndSockAreExclusive() async throws {
        try await withLoop { loop in
            try loop.runUntilComplete {
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createUnixServer(path: "/tmp/x", sock: 3) { Self.echo() }
                }
                await #expect(throws: TulipError.invalidArgument("")) {
                    _ = try await loop.createUnixServer { Self.echo() }
                }
            }
        }
    }

    @Test func stopPausesAcceptingAndReadingUntilTheNextRun() async throws {
        // ARCHITECTURE §2: after stop(), no I/O callbacks until the loop runs again.
        let (duringStop, afterRestart) = try await withLoop { loop -> (Int, Int) in
            let made = Made()
            let server = try loop.runUntilComplete {
                try await loop.createServer(host: "127.0.0.1", port: 0) {
                    let p = RecordingProtocol()
                    made.add(p)
                    return p
                }
            }
            let port = server.sockets[0].localAddress.port!
            // The loop is stopped: a client connects and sends; nothing may reach a protocol.
            let client = try BlockingClient(port: port)
            client.send("while stopped")
            usleep(200_000)
            let during = made.first?.received.count ?? 0
            let after = try loop.runUntilComplete { () async throws -> Int in
                try await eventually(loop) { made.first?.received.count == 13 }
                return made.first!.received.count
            }
            client.close()
            server.close()
            return (during, after)
        }
        #expect(duringStop == 0)
        #expect(afterRestart == 13)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ServerSocketOptionTests {
    private static func option(_ fd: CInt, _ level: CInt, _ name: CInt) -> CInt {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        getsockopt(fd, level, name, &value, &length)
        return value
    }

    @Test func cs11Cs12Cs13SocketOptionsFollowTheArguments() async throws {
        let (defaults, chosen) = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> ([CInt], [CInt]) in
                let plain = try await loop.createServer(host: "127.0.0.1", port: 0) { RecordingProtocol() }
                let tuned = try await loop.createServer(
                    host: "127.0.0.1",
                    port: 0,
                    reuseAddress: false,
                    reusePort: true,
                    keepAlive: true
                ) { RecordingProtocol() }
                func read(_ server: Server) -> [CInt] {
                    let fd = server.sockets[0].fileDescriptor
                    return [
                        Self.option(fd, SOL_SOCKET, SO_REUSEADDR) != 0 ? 1 : 0,
                        Self.option(fd, SOL_SOCKET, SO_REUSEPORT) != 0 ? 1 : 0,
                        Self.option(fd, SOL_SOCKET, SO_KEEPALIVE) != 0 ? 1 : 0,
                    ]
                }
                let result = (read(plain), read(tuned))
                plain.close()
                tuned.close()
                return result
            }
        }
        #expect(defaults == [1, 0, 0])
        #expect(chosen == [0, 1, 1])
    }

    @Test func cs7Ipv6SocketsAreV6Only() async throws {
        let v6only = try await withLoop { loop in
            try loop.runUntilComplete { () async throws -> [CInt] in
                let server = try await loop.createServer(host: nil, port: 0) { RecordingProtocol() }
                defer { server.close() }
                return server.sockets.compactMap { socket in
                    guard case .v6 = socket.localAddress else { return nil }
                    return Self.option(socket.fileDescriptor, CInt(IPPROTO_IPV6), IPV6_V6ONLY)
                }
            }
        }
        #expect(v6only.allSatisfy { $0 == 1 })
    }
}
