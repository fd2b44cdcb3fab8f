import NIOCore
import TulipTLS

extension TulipLoop {
    /// Upgrades a plaintext stream connection to TLS (asyncio's `loop.start_tls`, ASYNCIO-SPEC §19).
    ///
    /// Call it on this loop, from a task (``createTask(_:)``); it runs on the caller's executor
    /// (`nonisolated(nonsending)`), so no executor hop separates its return from the caller's next
    /// statement, and the caller has the new transport before any data is delivered to it. Before
    /// its first suspension it
    /// pauses reading on `transport` (TLS-4), flushes what was written to it (those bytes go out
    /// first, in plaintext: TLS-5), takes its handler out of the pipeline and puts an
    /// ``OpenSSLHandler`` in; bytes `transport` had read but not delivered are fed to TLS as the
    /// peer's first records. A protocol that calls it from `dataReceived` through a task should
    /// call ``ChannelTransport/pauseReading()`` in that callback, so nothing read in between is
    /// delivered as plaintext.
    ///
    /// Once the handshake has finished it returns a **new** transport whose protocol is `protocol`;
    /// `connectionMade` is not called again (TLS-6), and data starts flowing to the protocol only
    /// after this returns. `transport` is done from the call on: it reports closing, drops writes
    /// and gives its protocol no further callback. A server still counts the connection as one.
    ///
    /// If the handshake fails, times out or the task is cancelled, the connection is closed and
    /// the error is thrown (TLS-7); `protocol` then gets no callback at all.
    ///
    /// - Parameters:
    ///   - transport: a TCP or unix stream transport, possibly TLS already (TLS over TLS, TLS-2).
    ///   - protocolObject: the protocol object of the upgraded connection (usually the current one).
    ///   - context: a server context with `serverSide`, a client context without.
    ///   - serverSide: whether this end accepts the handshake.
    ///   - serverHostname: the name (or IP address) the server's certificate must carry, also sent
    ///     as SNI; required when a client context verifies its peer. Only for the client side.
    ///   - handshakeTimeout: default 60 s (TLS-3).
    ///   - shutdownTimeout: how long the new transport's `close()` waits for the peer's
    ///     `close_notify`, default 30 s (TLS-3, TLS-9).
    /// - Returns: the TLS transport, on the loop.
    /// - Throws: ``TulipError`` `invalidArgument` (TLS-3, a context of the wrong role, a missing or
    ///   misplaced `serverHostname`), `unsupportedTransport` for a pipe (TLS-2), `transportClosing`
    ///   for a closed or closing transport (TLS-8); ``OpenSSLError`` when OpenSSL refuses the
    ///   handshake (a bad certificate, a host name mismatch), ``TLSHandshakeTimeoutError``,
    ///   ``TLSHandshakeEOFError`` when the peer leaves, `CancellationError` (TLS-7).
    nonisolated(nonsending) public func startTLS(
        transport: ChannelTransport,
        protocol protocolObject: any StreamProtocol,
        context: TLSContext,
        serverSide: Bool = false,
        serverHostname: String? = nil,
        handshakeTimeout: TimeAmount? = nil,
        shutdownTimeout: TimeAmount? = nil
    ) async throws -> ChannelTransport {
        self.eventLoop.preconditionInEventLoop()
        let timeouts = try Self.checkTLSTimeouts(handshake: handshakeTimeout, shutdown: shutdownTimeout)
        try Self.checkRole(context: context, serverSide: serverSide, serverHostname: serverHostname)
        if transport.isPipe {
            throw TulipError.make(
                .unsupportedTransport,
                "transport \(transport.connectionID) is not supported by start_tls()"
            )
        }
        // TLS-8: CPython hangs here; fail fast instead.
        guard !transport.isClosing, let channel = transport.channel else {
            throw TulipError.make(.transportClosing, "Transport is closing")
        }
        let (held, eof) = transport.detachForUpgrade()
        if eof {
            // The peer already left: no handshake can follow.
            channel.close(promise: nil)
            transport.finishUpgrade(replacement: nil, error: TLSHandshakeEOFError())
            throw TLSHandshakeEOFError()
        }
        let promise = self.eventLoop.makePromise(of: NIOLoopBound<ChannelTransport>.self)
        let setup = TLSSetupHandler(promise: promise) { [self] info in
            ProtocolChannelHandler(
                loop: self,
                protocol: protocolObject,
                observer: nil,
                tls: info,
                continuing: transport
            )
        }
        let tls = OpenSSLHandler(
            context: context,
            serverHostname: serverHostname,
            handshakeTimeout: timeouts.handshake,
            shutdownTimeout: timeouts.shutdown
        ) { context, info in
            setup.handshakeCompleted(context: context, info: info)
        }
        do {
            try channel.pipeline.syncOperations.addHandlers(tls, setup)
        } catch {
            promise.fail(error)
            channel.close(promise: nil)
        }
        for buffer in held { channel.pipeline.syncOperations.fireChannelRead(NIOAny(buffer)) }
        if !held.isEmpty { channel.pipeline.syncOperations.fireChannelReadComplete() }
        let bound = NIOLoopBound(setup, eventLoop: self.eventLoop)
        let upgraded: ChannelTransport
        do {
            upgraded = try await withTaskCancellationHandler {
                try await promise.futureResult.get().value
            } onCancel: {
                bound.eventLoop.execute { bound.value.cancel() }
            }
        } catch {
            transport.finishUpgrade(replacement: nil, error: error)
            throw error
        }
        transport.finishUpgrade(replacement: upgraded, error: nil)
        upgraded.startReadingAfterUpgrade()
        return upgraded
    }

    /// TLS-3: both timeouts must be positive; the defaults are 60 s and 30 s.
    static func checkTLSTimeouts(
        handshake: TimeAmount?,
        shutdown: TimeAmount?
    ) throws -> (handshake: TimeAmount, shutdown: TimeAmount) {
        for (name, value) in [("ssl_handshake_timeout", handshake), ("ssl_shutdown_timeout", shutdown)] {
            if let value, value.nanoseconds <= 0 {
                let seconds = Double(value.nanoseconds) / 1_000_000_000
                throw TulipError.invalidArgument("\(name) should be a positive number, got \(seconds)")
            }
        }
        return (handshake ?? .seconds(60), shutdown ?? .seconds(30))
    }

    /// The context's role must match the side, and a verifying client needs a name to check.
    static func checkRole(context: TLSContext, serverSide: Bool, serverHostname: String?) throws {
        if serverSide {
            guard context.isServer else {
                throw TulipError.invalidArgument("server_side needs a server context (TLSContext.server)")
            }
            guard serverHostname == nil else {
                throw TulipError.invalidArgument("Server side SSL needs a valid SSLSocket, server_hostname is not used")
            }
        } else {
            guard !context.isServer else {
                throw TulipError.invalidArgument("a client connection needs a client context (TLSContext.client)")
            }
            if context.verifiesPeer && (serverHostname ?? "").isEmpty {
                throw TulipError.invalidArgument("check_hostname requires server_hostname")
            }
        }
    }
}
