import NIOCore
import NIOPosix
import TulipTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Which address families `createServer` binds (asyncio's `family`).
public struct AddressFamily: Hashable, Sendable {
    let rawValue: CInt
    /// Every family the host supports (`AF_UNSPEC`).
    public static let unspecified = AddressFamily(rawValue: AF_UNSPEC)
    /// IPv4 only.
    public static let inet = AddressFamily(rawValue: AF_INET)
    /// IPv6 only.
    public static let inet6 = AddressFamily(rawValue: AF_INET6)
    /// Unix domain sockets (datagram endpoints only: `createServer` resolves no unix addresses).
    public static let unix = AddressFamily(rawValue: AF_UNIX)
}

extension TulipLoop {
    /// Creates a TCP server (asyncio's `create_server`, ASYNCIO-SPEC §11).
    ///
    /// - Parameters:
    ///   - host: `nil` or `""` binds the wildcard address of every family, one socket each, IPv6
    ///     with `IPV6_V6ONLY` (CS-5..CS-7); several hosts bind each resolved address once (CS-9).
    ///   - port: `0` gives each socket its own ephemeral port (CS-8).
    ///   - family: which address families to bind (asyncio's `family`).
    ///   - sock: an existing bound (or listening) stream socket to serve on, instead of host/port;
    ///     the server owns it from then on (CS-18).
    ///   - backlog: passed to `listen()` (CS-16).
    ///   - reuseAddress: `SO_REUSEADDR`, on unless `false` (CS-11).
    ///   - reusePort: `SO_REUSEPORT` (CS-12).
    ///   - keepAlive: `SO_KEEPALIVE`, inherited by accepted sockets (CS-13).
    ///   - startServing: `false` binds without listening, so connections are refused until
    ///     ``Server/startServing()`` (CS-17).
    ///   - observer: told when each connection opens and closes.
    ///   - ssl: serve TLS with this server context; the protocol is made and gets `connectionMade`
    ///     only after the handshake (PR-10).
    ///   - sslHandshakeTimeout: how long a handshake may take (default 60 s); only with `ssl` (CS-1).
    ///   - limits: how many connections to serve at once, per source, and how long one may be idle
    ///     (a Tulip addition); none by default.
    ///   - makeProtocol: called on the loop thread once per accepted connection (CS-19); if it
    ///     throws, that connection is closed and the server carries on (CS-21).
    /// - Returns: the new server, already serving unless `startServing` is `false`.
    /// - Throws: ``TulipError`` with code `invalidArgument` for bad combinations (CS-2..CS-4),
    ///   `addressInUse`/`bindFailed` with the errno (CS-14, CS-15), `resolutionFailed` (CS-10).
    public func createServer(
        host: [String]? = nil,
        port: Int? = nil,
        family: AddressFamily = .unspecified,
        sock: CInt? = nil,
        backlog: Int = 100,
        reuseAddress: Bool? = nil,
        reusePort: Bool = false,
        keepAlive: Bool = false,
        startServing: Bool = true,
        observer: (any ConnectionObserver)? = nil,
        ssl: TLSContext? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        limits: ConnectionLimits = .unlimited,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> Server {
        if self.isClosed { throw TulipError.loopClosed() }
        let handshakeTimeout = try Self.checkTLSArguments(ssl: ssl, sslHandshakeTimeout: sslHandshakeTimeout)
        try limits.validate()
        let hosts = (host ?? []).filter { !$0.isEmpty }
        let sockets: [BoundSocket]
        if let sock {
            if host != nil || port != nil {
                throw TulipError.invalidArgument("host/port and sock can not be specified at the same time")
            }
            sockets = [try BoundSocket.adopt(sock, requireUnix: false, cleanup: false)]
        } else {
            guard host != nil || port != nil else {
                throw TulipError.invalidArgument("Neither host/port nor sock were specified")
            }
            guard let port, (0...65_535).contains(port) else {
                throw TulipError.invalidArgument("port must be between 0 and 65535")
            }
            let addresses = try await self.resolvePassive(hosts: hosts, port: port, family: family)
            sockets = try Self.bindAll(
                addresses,
                reuseAddress: reuseAddress ?? true,
                reusePort: reusePort,
                keepAlive: keepAlive
            )
        }
        return try await self.makeServer(
            sockets: sockets,
            backlog: backlog,
            isUnix: false,
            startServing: startServing,
            observer: observer,
            ssl: ssl,
            sslHandshakeTimeout: handshakeTimeout,
            limits: limits,
            makeProtocol: makeProtocol
        )
    }

    /// Creates a stream server on several existing bound (or listening) sockets at once.
    ///
    /// This is how a service manager passes one listener's sockets (one per address) and how a
    /// predecessor server hands its sockets over (``Server/duplicateSockets()``); the server owns
    /// them from then on (CS-18). Each socket is checked as the `sock:` form checks one; if any is
    /// not a stream socket, none is adopted and the caller still owns them all.
    ///
    /// - Parameters:
    ///   - socks: the descriptors, at least one; inet, inet6 or unix stream sockets. A unix
    ///     socket's file is never unlinked by this server.
    ///   - backlog: passed to `listen()`; an already listening socket gets it too.
    ///   - startServing: `false` adopts without listening, as for the `host:` form.
    ///   - observer: told when each connection opens and closes.
    ///   - ssl: serve TLS with this server context.
    ///   - sslHandshakeTimeout: how long a handshake may take (default 60 s); only with `ssl`.
    ///   - limits: connection limits, as for the `host:` form.
    ///   - makeProtocol: called on the loop thread once per accepted connection.
    /// - Returns: the new server, already serving unless `startServing` is `false`.
    /// - Throws: ``TulipError`` with code `invalidArgument` for an empty list, a descriptor that is
    ///   not a bound stream socket, a handshake timeout without `ssl`, or limits that are not
    ///   positive.
    public func createServer(
        socks: [CInt],
        backlog: Int = 100,
        startServing: Bool = true,
        observer: (any ConnectionObserver)? = nil,
        ssl: TLSContext? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        limits: ConnectionLimits = .unlimited,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> Server {
        if self.isClosed { throw TulipError.loopClosed() }
        try limits.validate()
        let handshakeTimeout = try Self.checkTLSArguments(ssl: ssl, sslHandshakeTimeout: sslHandshakeTimeout)
        guard !socks.isEmpty else { throw TulipError.invalidArgument("socks must name at least one socket") }
        let sockets = try socks.map { try BoundSocket.adopt($0, requireUnix: false, cleanup: false) }
        let isUnix = sockets.allSatisfy { if case .unixDomainSocket = $0.address { true } else { false } }
        return try await self.makeServer(
            sockets: sockets,
            backlog: backlog,
            isUnix: isUnix,
            startServing: startServing,
            observer: observer,
            ssl: ssl,
            sslHandshakeTimeout: handshakeTimeout,
            limits: limits,
            makeProtocol: makeProtocol
        )
    }

    /// Creates a TCP server on one host; see the list form.
    public func createServer(
        host: String?,
        port: Int,
        family: AddressFamily = .unspecified,
        backlog: Int = 100,
        reuseAddress: Bool? = nil,
        reusePort: Bool = false,
        keepAlive: Bool = false,
        startServing: Bool = true,
        observer: (any ConnectionObserver)? = nil,
        ssl: TLSContext? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        limits: ConnectionLimits = .unlimited,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> Server {
        try await self.createServer(
            host: host.map { [$0] },
            port: port,
            family: family,
            sock: nil,
            backlog: backlog,
            reuseAddress: reuseAddress,
            reusePort: reusePort,
            keepAlive: keepAlive,
            startServing: startServing,
            observer: observer,
            ssl: ssl,
            sslHandshakeTimeout: sslHandshakeTimeout,
            limits: limits,
            makeProtocol: makeProtocol
        )
    }

    /// Creates a unix stream server (asyncio's `create_unix_server`, ASYNCIO-SPEC §12).
    ///
    /// - Parameters:
    ///   - path: the socket path; a stale socket file there is replaced, any other file is left
    ///     alone and the call fails with `addressInUse` (US-5, US-6). A leading NUL byte names an
    ///     abstract socket.
    ///   - sock: an existing bound unix stream socket instead of `path` (US-2, US-3).
    ///   - backlog: passed to `listen()`.
    ///   - mode: permission bits for the socket file (a Tulip addition: set before anyone can
    ///     connect).
    ///   - startServing: `false` binds without listening, so connections are refused until
    ///     ``Server/startServing()``.
    ///   - cleanupSocket: unlink the path on ``Server/close()`` if its inode is unchanged (US-8).
    ///   - observer: told when each connection opens and closes.
    ///   - ssl: serve TLS with this server context (see `createServer`).
    ///   - sslHandshakeTimeout: how long a handshake may take (default 60 s); only with `ssl`.
    ///   - limits: connection limits, as for `createServer`.
    ///   - makeProtocol: called on the loop thread once per accepted connection; if it throws, that
    ///     connection is closed and the server carries on.
    /// - Returns: the new server, already serving unless `startServing` is `false`.
    /// - Throws: ``TulipError`` with code `invalidArgument` when both or neither of `path` and `sock`
    ///   are given or `sock` is not a bound unix stream socket, `addressInUse`/`bindFailed` with the
    ///   errno when binding or listening fails, `loopClosed` after ``close()``.
    public func createUnixServer(
        path: String? = nil,
        sock: CInt? = nil,
        backlog: Int = 100,
        mode: UInt16? = nil,
        startServing: Bool = true,
        cleanupSocket: Bool = true,
        observer: (any ConnectionObserver)? = nil,
        ssl: TLSContext? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        limits: ConnectionLimits = .unlimited,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> Server {
        if self.isClosed { throw TulipError.loopClosed() }
        let handshakeTimeout = try Self.checkTLSArguments(ssl: ssl, sslHandshakeTimeout: sslHandshakeTimeout)
        try limits.validate()
        let socket: BoundSocket
        switch (path, sock) {
        case (.some, .some):
            throw TulipError.invalidArgument("path and sock can not be specified at the same time")
        case (nil, nil):
            throw TulipError.invalidArgument("path was not specified, and no sock specified")
        case (let path?, nil):
            socket = try BoundSocket.bindUnix(path: path, mode: mode, cleanup: cleanupSocket) { warning in
                self.callExceptionHandler(ExceptionContext(message: warning))
            }
        case (nil, let sock?):
            socket = try BoundSocket.adopt(sock, requireUnix: true, cleanup: cleanupSocket)
        }
        return try await self.makeServer(
            sockets: [socket],
            backlog: backlog,
            isUnix: true,
            startServing: startServing,
            observer: observer,
            ssl: ssl,
            sslHandshakeTimeout: handshakeTimeout,
            limits: limits,
            makeProtocol: makeProtocol
        )
    }

    /// CS-1 and CS-22: a handshake timeout needs `ssl` and must be positive; the default is 60 s.
    static func checkTLSArguments(ssl: TLSContext?, sslHandshakeTimeout: TimeAmount?) throws -> TimeAmount {
        guard let sslHandshakeTimeout else { return .seconds(60) }
        guard ssl != nil else {
            throw TulipError.invalidArgument("ssl_handshake_timeout is only meaningful with ssl")
        }
        guard sslHandshakeTimeout.nanoseconds > 0 else {
            let seconds = Double(sslHandshakeTimeout.nanoseconds) / 1_000_000_000
            throw TulipError.invalidArgument("ssl_handshake_timeout should be a positive number, got \(seconds)")
        }
        return sslHandshakeTimeout
    }

    private func makeServer(
        sockets: [BoundSocket],
        backlog: Int,
        isUnix: Bool,
        startServing: Bool,
        observer: (any ConnectionObserver)?,
        ssl: TLSContext?,
        sslHandshakeTimeout: TimeAmount,
        limits: ConnectionLimits,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> Server {
        let server = Server(
            loop: self,
            sockets: sockets,
            backlog: Int32(clamping: backlog),
            isUnix: isUnix,
            observer: observer,
            ssl: ssl,
            sslHandshakeTimeout: sslHandshakeTimeout,
            limits: limits,
            makeProtocol: makeProtocol
        )
        if startServing {
            do {
                try await server.startServing()
            } catch {
                server.close()
                throw error
            }
        }
        return server
    }

    // MARK: - Binding

    private static func bindAll(
        _ addresses: [SocketAddress],
        reuseAddress: Bool,
        reusePort: Bool,
        keepAlive: Bool
    ) throws -> [BoundSocket] {
        var bound: [BoundSocket] = []
        do {
            for address in addresses {
                if let socket = try BoundSocket.bindStream(
                    to: address,
                    reuseAddress: reuseAddress,
                    reusePort: reusePort,
                    keepAlive: keepAlive
                ) {
                    bound.append(socket)
                }
            }
        } catch {
            for socket in bound { Glibc.close(socket.fileDescriptor) }
            throw error
        }
        guard !bound.isEmpty else {
            let list = addresses.map { BoundSocket.describe($0) }.joined(separator: ", ")
            throw TulipError.make(.bindFailed, "could not bind on any address out of [\(list)]")
        }
        return bound
    }

    /// Resolves `hosts` for binding: numeric addresses directly, names through `getaddrinfo` on
    /// the default executor so the loop never blocks (CS-9); duplicates are bound once.
    private func resolvePassive(hosts: [String], port: Int, family: AddressFamily) async throws -> [SocketAddress] {
        var result: [SocketAddress] = []
        let lookups: [String?] = hosts.isEmpty ? [nil] : hosts
        for host in lookups {
            let addresses: [SocketAddress]
            if let host, let numeric = try? SocketAddress(ipAddress: host, port: port) {
                addresses = [numeric]
            } else {
                addresses = try await self.runInExecutor {
                    try Self.getaddrinfo(host: host, port: port, family: family)
                }
            }
            let filtered = addresses.filter { family == .unspecified || CInt($0.protocol.rawValue) == family.rawValue }
            if filtered.isEmpty {
                throw TulipError.make(.resolutionFailed, "getaddrinfo(\(host ?? "None")) returned empty list")
            }
            for address in filtered where !result.contains(address) { result.append(address) }
        }
        return result
    }

    /// Blocking `getaddrinfo` for stream sockets, in the resolver's order, duplicates dropped;
    /// `passive` asks for addresses to bind rather than to connect to.
    static func getaddrinfo(
        host: String?,
        port: Int,
        family: AddressFamily,
        passive: Bool = true
    ) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_family = family.rawValue
        hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var list: UnsafeMutablePointer<addrinfo>?
        let status: CInt
        if let host {
            status = Glibc.getaddrinfo(host, String(port), &hints, &list)
        } else {
            status = Glibc.getaddrinfo(nil, String(port), &hints, &list)
        }
        guard status == 0 else {
            throw TulipError.make(
                .resolutionFailed,
                "getaddrinfo(\(host ?? "None")): \(String(cString: gai_strerror(status)))"
            )
        }
        defer { freeaddrinfo(list) }
        var addresses: [SocketAddress] = []
        var cursor = list
        while let entry = cursor {
            if let sockaddr = entry.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: sockaddr, count: Int(entry.pointee.ai_addrlen)))
                }
                if let address = BoundSocket.socketAddress(storage), !addresses.contains(address) {
                    addresses.append(address)
                }
            }
            cursor = entry.pointee.ai_next
        }
        return addresses
    }
}
