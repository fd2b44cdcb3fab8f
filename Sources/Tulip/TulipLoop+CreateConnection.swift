import NIOCore
import NIOPosix
import TulipTLS

extension TulipLoop {
    /// Opens a TCP connection, optionally with TLS (asyncio's `loop.create_connection`).
    ///
    /// `host` is resolved with `getaddrinfo` on the default executor (a numeric address is used
    /// as it is), and the addresses are tried in the resolver's order until one connects. The
    /// protocol is made once connected (with TLS, once the handshake has finished), and this
    /// returns after its `connectionMade` has run. Call it from a task on this loop.
    ///
    /// - Parameters:
    ///   - host: a name or a numeric IPv4/IPv6 address.
    ///   - port: 0...65535.
    ///   - family: restricts the addresses tried.
    ///   - ssl: a client context: the connection speaks TLS.
    ///   - serverHostname: the name the server's certificate must carry, also sent as SNI; defaults
    ///     to `host` with `ssl`, `""` checks no name. Only with `ssl`.
    ///   - sslHandshakeTimeout: default 60 s; only with `ssl` (TLS-3).
    ///   - sslShutdownTimeout: how long `close()` waits for the server's `close_notify`, default
    ///     30 s; only with `ssl` (TLS-9).
    ///   - makeProtocol: called on the loop once, when the connection is up.
    /// - Returns: the transport and the protocol object, both on the loop.
    /// - Throws: ``TulipError`` `invalidArgument` for bad combinations, `resolutionFailed`,
    ///   `connectFailed` (with the errno, or every attempt's error in the message); the TLS errors
    ///   of ``startTLS(transport:protocol:context:serverSide:serverHostname:handshakeTimeout:shutdownTimeout:)``;
    ///   what `makeProtocol` throws; `CancellationError`.
    public func createConnection(
        host: String,
        port: Int,
        family: AddressFamily = .unspecified,
        ssl: TLSContext? = nil,
        serverHostname: String? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        sslShutdownTimeout: TimeAmount? = nil,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> (ChannelTransport, any StreamProtocol) {
        if self.isClosed { throw TulipError.loopClosed() }
        let options = try ConnectOptions(
            ssl: ssl,
            serverHostname: serverHostname ?? (ssl == nil ? nil : host),
            explicitHostname: serverHostname != nil,
            handshakeTimeout: sslHandshakeTimeout,
            shutdownTimeout: sslShutdownTimeout
        )
        guard (0...65_535).contains(port) else {
            throw TulipError.invalidArgument("port must be between 0 and 65535")
        }
        let addresses: [SocketAddress]
        if let numeric = try? SocketAddress(ipAddress: host, port: port) {
            addresses = [numeric]
        } else {
            addresses = try await self.runInExecutor {
                try Self.getaddrinfo(host: host, port: port, family: family, passive: false)
            }
        }
        let candidates = addresses.filter { family == .unspecified || CInt($0.protocol.rawValue) == family.rawValue }
        guard !candidates.isEmpty else {
            throw TulipError.make(.resolutionFailed, "getaddrinfo(\(host)) returned empty list")
        }
        var failures: [(SocketAddress, any Error)] = []
        for address in candidates {
            let channel: any Channel
            do {
                channel = try await self.connectChannel(to: address)
            } catch {
                failures.append((address, error))
                continue
            }
            return try await self.setUpConnection(channel, options: options, makeProtocol: makeProtocol)
        }
        throw Self.connectFailure(failures)
    }

    /// Opens a unix stream connection, optionally with TLS (asyncio's `loop.create_unix_connection`).
    ///
    /// - Parameters:
    ///   - path: the socket path (a leading NUL byte names an abstract socket).
    ///   - ssl: a client context: the connection speaks TLS.
    ///   - serverHostname: the name the server's certificate must carry. With `ssl` it is
    ///     required unless the context does not verify its peer (there is no host to default to).
    ///   - sslHandshakeTimeout: default 60 s; only with `ssl`.
    ///   - sslShutdownTimeout: default 30 s; only with `ssl`.
    ///   - makeProtocol: called on the loop once, when the connection is up.
    /// - Returns: the transport and the protocol object, both on the loop.
    /// - Throws: as ``createConnection(host:port:family:ssl:serverHostname:sslHandshakeTimeout:sslShutdownTimeout:makeProtocol:)``.
    public func createUnixConnection(
        path: String,
        ssl: TLSContext? = nil,
        serverHostname: String? = nil,
        sslHandshakeTimeout: TimeAmount? = nil,
        sslShutdownTimeout: TimeAmount? = nil,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> (ChannelTransport, any StreamProtocol) {
        if self.isClosed { throw TulipError.loopClosed() }
        let options = try ConnectOptions(
            ssl: ssl,
            serverHostname: serverHostname,
            explicitHostname: serverHostname != nil,
            handshakeTimeout: sslHandshakeTimeout,
            shutdownTimeout: sslShutdownTimeout
        )
        let address: SocketAddress
        do {
            address = try SocketAddress(unixDomainSocketPath: path)
        } catch {
            throw TulipError.invalidArgument("invalid unix socket path \(path): \(error)")
        }
        let channel: any Channel
        do {
            channel = try await self.connectChannel(to: address)
        } catch {
            throw Self.connectFailure([(address, error)])
        }
        return try await self.setUpConnection(channel, options: options, makeProtocol: makeProtocol)
    }

    private func connectChannel(to address: SocketAddress) async throws -> any Channel {
        try await ClientBootstrap(group: self.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .connect(to: address)
            .get()
    }

    /// Puts the protocol (behind TLS, with `ssl`) on a connected channel and waits until its
    /// `connectionMade` has run (PR-2).
    private func setUpConnection(
        _ channel: any Channel,
        options: ConnectOptions,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> (ChannelTransport, any StreamProtocol) {
        let ready = self.eventLoop.flatSubmit { [self] () -> EventLoopFuture<NIOLoopBound<ChannelTransport>> in
            do {
                let protocolObject = try makeProtocol()
                guard let ssl = options.ssl else {
                    let handler = ProtocolChannelHandler(loop: self, protocol: protocolObject)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    return self.eventLoop.makeSucceededFuture(
                        NIOLoopBound(handler.transport, eventLoop: self.eventLoop)
                    )
                }
                return try self.addTLS(ssl, to: channel, options: options, protocol: protocolObject)
            } catch {
                channel.close(promise: nil)
                return self.eventLoop.makeFailedFuture(error)
            }
        }
        let bound: NIOLoopBound<ChannelTransport>
        do {
            bound = try await withTaskCancellationHandler {
                try await ready.get()
            } onCancel: {
                channel.close(promise: nil)
            }
        } catch {
            channel.close(promise: nil)
            if Task.isCancelled { throw CancellationError() }
            throw error
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.callSoonInternal { continuation.resume() }
        }
        let transport = bound.value
        guard let protocolObject = transport.protocol else {
            throw TulipError.make(.connectionLost, "the connection closed while it was being set up")
        }
        return (transport, protocolObject)
    }

    private func addTLS(
        _ ssl: TLSContext,
        to channel: any Channel,
        options: ConnectOptions,
        protocol protocolObject: any StreamProtocol
    ) throws -> EventLoopFuture<NIOLoopBound<ChannelTransport>> {
        let promise = self.eventLoop.makePromise(of: NIOLoopBound<ChannelTransport>.self)
        let setup = TLSSetupHandler(promise: promise) { [self] info in
            ProtocolChannelHandler(loop: self, protocol: protocolObject, observer: nil, tls: info)
        }
        let tls = OpenSSLHandler(
            context: ssl,
            serverHostname: options.serverHostname,
            handshakeTimeout: options.handshakeTimeout,
            shutdownTimeout: options.shutdownTimeout
        ) { context, info in
            setup.handshakeCompleted(context: context, info: info)
        }
        try channel.pipeline.syncOperations.addHandlers(tls, setup)
        return promise.futureResult
    }

    /// One failure is thrown with its errno; several become one `connectFailed` listing them all
    /// (asyncio's "Multiple exceptions").
    private static func connectFailure(_ failures: [(SocketAddress, any Error)]) -> TulipError {
        func describe(_ address: SocketAddress, _ error: any Error) -> String {
            "[\(BoundSocket.describe(address))] \(error)"
        }
        let errnoCode = failures.compactMap { ($0.1 as? IOError)?.errnoCode }.last
        if failures.count == 1, let (address, error) = failures.first {
            return TulipError.make(.connectFailed, "could not connect: \(describe(address, error))", errno: errnoCode)
        }
        let list = failures.map { describe($0.0, $0.1) }.joined(separator: ", ")
        return TulipError.make(.connectFailed, "Multiple exceptions: \(list)", errno: errnoCode)
    }
}

/// The TLS arguments of a client connection, checked as asyncio checks them.
private struct ConnectOptions: Sendable {
    let ssl: TLSContext?
    let serverHostname: String?
    let handshakeTimeout: TimeAmount
    let shutdownTimeout: TimeAmount

    init(
        ssl: TLSContext?,
        serverHostname: String?,
        explicitHostname: Bool,
        handshakeTimeout: TimeAmount?,
        shutdownTimeout: TimeAmount?
    ) throws {
        guard let ssl else {
            if explicitHostname {
                throw TulipError.invalidArgument("server_hostname is only meaningful with ssl")
            }
            if handshakeTimeout != nil {
                throw TulipError.invalidArgument("ssl_handshake_timeout is only meaningful with ssl")
            }
            if shutdownTimeout != nil {
                throw TulipError.invalidArgument("ssl_shutdown_timeout is only meaningful with ssl")
            }
            self.ssl = nil
            self.serverHostname = nil
            self.handshakeTimeout = .seconds(60)
            self.shutdownTimeout = .seconds(30)
            return
        }
        let timeouts = try TulipLoop.checkTLSTimeouts(handshake: handshakeTimeout, shutdown: shutdownTimeout)
        let name = serverHostname.flatMap { $0.isEmpty ? nil : $0 }
        // An explicit "" turns the name check off, as in asyncio; otherwise a verifying context needs one.
        if !(explicitHostname && serverHostname == "") {
            try TulipLoop.checkRole(context: ssl, serverSide: false, serverHostname: name)
        } else if ssl.isServer {
            try TulipLoop.checkRole(context: ssl, serverSide: false, serverHostname: nil)
        }
        self.ssl = ssl
        self.serverHostname = name
        self.handshakeTimeout = timeouts.handshake
        self.shutdownTimeout = timeouts.shutdown
    }
}
