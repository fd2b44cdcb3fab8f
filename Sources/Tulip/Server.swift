import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TulipTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A server made by ``TulipLoop/createServer(host:port:family:sock:backlog:reuseAddress:reusePort:keepAlive:startServing:observer:ssl:sslHandshakeTimeout:limits:makeProtocol:)``
/// or ``TulipLoop/createUnixServer(path:sock:backlog:mode:startServing:cleanupSocket:observer:ssl:sslHandshakeTimeout:limits:makeProtocol:)``
/// (asyncio's `Server`, ASYNCIO-SPEC §13).
///
/// A server owns its listening sockets and tracks its client transports from their creation until
/// their `connectionLost` has run (SV-3). ``close()`` stops accepting and leaves clients
/// connected; ``waitClosed()`` returns once the server is closed and every client is gone.
///
/// - Note: Thread-safe. The state lives on the loop's thread: calls made elsewhere hop there
///   (the synchronous ones wait for the hop, so do not call them from a task that the loop itself
///   must run).
public final class Server: @unchecked Sendable {
    // @unchecked Sendable: `snapshot` is guarded by its lock; everything else is only touched on
    // `loop.eventLoop`'s thread (each entry point hops there or asserts it).

    /// The loop that owns the server (SV-10).
    public let loop: TulipLoop
    private let backlog: Int32
    private let isUnix: Bool
    private let makeProtocol: @Sendable () throws -> any StreamProtocol
    private let observer: (any ConnectionObserver)?
    /// Set for TLS servers: each accepted connection does the handshake before its protocol exists.
    ///
    /// Loop-confined: ``replaceSSLContext(_:)`` swaps it for connections accepted afterwards.
    private var ssl: TLSContext?
    private let sslHandshakeTimeout: TimeAmount
    /// Counts connections and enforces the limits at accept time (loop-confined).
    private let limiter: ConnectionLimiter

    private struct Snapshot {
        var isServing = false
        var isClosed = false
        var sockets: [ServerSocketInfo] = []
    }

    private let snapshot: NIOLockedValueBox<Snapshot>

    // Loop-confined.
    private var pending: [BoundSocket]
    private var listening: [(socket: BoundSocket, channel: any Channel)] = []
    private var clients: [ObjectIdentifier: ChannelTransport] = [:]
    private var closedWaiters: [CheckedContinuation<Void, Never>] = []
    private var closedAndDrained = false
    private var serveForeverWaiter: CheckedContinuation<Void, any Error>?
    /// A `serveForever()` call owns the server, from its first step on the loop until it returns;
    /// set and checked on the loop in one step, so a second call cannot slip in before the first
    /// has parked its continuation.
    private var serveForeverActive = false
    private var loopPaused = false
    /// Cleared by ``keepSocketFileOnClose()``: the socket file then outlives this server.
    private var removesSocketFile = true

    init(
        loop: TulipLoop,
        sockets: [BoundSocket],
        backlog: Int32,
        isUnix: Bool,
        observer: (any ConnectionObserver)?,
        ssl: TLSContext? = nil,
        sslHandshakeTimeout: TimeAmount = .seconds(60),
        limits: ConnectionLimits = .unlimited,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) {
        self.loop = loop
        self.ssl = ssl
        self.sslHandshakeTimeout = sslHandshakeTimeout
        self.pending = sockets
        self.backlog = backlog
        self.isUnix = isUnix
        self.observer = observer
        self.makeProtocol = makeProtocol
        self.limiter = ConnectionLimiter(limits: limits, observer: observer)
        self.snapshot = NIOLockedValueBox(
            Snapshot(
                sockets: sockets.map { ServerSocketInfo(fileDescriptor: $0.fileDescriptor, localAddress: $0.address) }
            )
        )
        self.limiter.onChange = { [weak self] in self?.applyAcceptState() }
    }

    // MARK: - State

    /// Whether the server accepts connections (SV-6).
    public var isServing: Bool { self.snapshot.withLockedValue { $0.isServing } }

    /// Whether ``close()`` was called.
    public var isClosed: Bool { self.snapshot.withLockedValue { $0.isClosed } }

    /// The listening sockets; empty once closed (SV-5).
    public var sockets: [ServerSocketInfo] { self.snapshot.withLockedValue { $0.sockets } }

    /// The number of client connections currently tracked.
    public var clientCount: Int {
        self.onLoop { self.clients.count } ?? 0
    }

    /// The connection counters and whether the server accepts, for an admin socket or metrics.
    ///
    /// Taken on the loop thread: at once when called there, otherwise by hopping there and
    /// waiting (so not from a task that the loop itself must run).
    public var statistics: ServerStatistics {
        self.onLoop { self.statisticsOnLoop() } ?? ServerStatistics(state: .closed)
    }

    private func statisticsOnLoop() -> ServerStatistics {
        let (isServing, isClosed) = self.snapshot.withLockedValue { ($0.isServing, $0.isClosed) }
        let state: ServerStatistics.State
        if isClosed {
            state = .closed
        } else if !isServing {
            state = .notServing
        } else {
            state = self.limiter.isHeldByOwner ? .paused : self.limiter.isPaused ? .pausedAtLimit : .serving
        }
        return ServerStatistics(
            state: state,
            openConnections: self.limiter.openConnections,
            acceptedTotal: self.limiter.acceptedTotal,
            refusedMaxConnections: self.limiter.refusedMaxConnections,
            refusedPerSource: self.limiter.refusedPerSource
        )
    }

    /// The tracked client transports.
    ///
    /// Loop thread only.
    public var clientTransports: [ChannelTransport] {
        self.loop.eventLoop.preconditionInEventLoop()
        return Array(self.clients.values)
    }

    // MARK: - Serving

    /// Starts listening and accepting if that has not happened yet (SV-7).
    ///
    /// Idempotent.
    /// - Throws: ``TulipError/Code/serverClosed`` after ``close()``.
    public func startServing() async throws {
        try await self.hop { try self.startServingOnLoop() }
    }

    func startServingOnLoop() throws -> [EventLoopFuture<any Channel>] {
        self.loop.eventLoop.preconditionInEventLoop()
        if self.snapshot.withLockedValue({ $0.isClosed }) {
            throw TulipError.make(.serverClosed, "Server \(self) is closed")
        }
        guard !self.pending.isEmpty else { return [] }
        let sockets = self.pending
        self.pending = []
        var futures: [EventLoopFuture<any Channel>] = []
        for socket in sockets {
            try socket.listen(backlog: self.backlog)
            futures.append(self.register(socket))
        }
        self.snapshot.withLockedValue { $0.isServing = true }
        return futures
    }

    private func hop(_ body: @escaping @Sendable () throws -> [EventLoopFuture<any Channel>]) async throws {
        try await self.loop.eventLoop.flatSubmit {
            do {
                let futures = try body()
                return EventLoopFuture.whenAllSucceed(futures, on: self.loop.eventLoop).map { _ in () }
            } catch {
                return self.loop.eventLoop.makeFailedFuture(error)
            }
        }.get()
    }

    private func register(_ socket: BoundSocket) -> EventLoopFuture<any Channel> {
        let loop = self.loop
        let bootstrap = ServerBootstrap(group: loop.eventLoop)
            .serverChannelOption(.autoRead, value: loop.isDispatching && !self.limiter.holdsReads)
            .serverChannelOption(.maxMessagesPerRead, value: UInt(self.limiter.acceptsPerRead))
            .serverChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    // CS-21: out of descriptors or memory, accepting pauses for a second and resumes.
                    // The limit handler goes first so that it also holds back the back-off's read.
                    try channel.pipeline.syncOperations.addHandlers(
                        ConnectionLimitHandler(limiter: self.limiter),
                        AcceptBackoffHandler(shouldForwardIOErrorCaught: true),
                        AcceptErrorReporter(loop: loop)
                    )
                }
            }
            .childChannelOption(.autoRead, value: false)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let ssl = self.ssl {
                        try self.addTLSHandler(ssl, to: channel)
                        return
                    }
                    let protocolObject = try self.makeProtocol()
                    let handler = ProtocolChannelHandler(loop: loop, protocol: protocolObject, observer: self.observer)
                    handler.transport.idleTimeout = self.limiter.limits.idleTimeout
                    self.track(handler.transport)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let future = bootstrap.withBoundSocket(socket.fileDescriptor)
        future.assumeIsolated().whenSuccess { [self] channel in
            // NIO listens with its own backlog when it adopts a socket; restore ours.
            _ = Glibc.listen(socket.fileDescriptor, self.backlog)
            if self.snapshot.withLockedValue({ $0.isClosed }) {
                channel.close(promise: nil)
                if self.removesSocketFile { socket.removeSocketFile() }
            } else {
                self.listening.append((socket, channel))
                if self.listening.count == 1 { loop.register(self) }
            }
        }
        return future
    }

    /// PR-10: the protocol is made, tracked and told `connectionMade` only once the handshake has
    /// finished; a failed or timed-out handshake closes the connection without any callback.
    private func addTLSHandler(_ ssl: TLSContext, to channel: any Channel) throws {
        let loop = self.loop
        let tls = OpenSSLHandler(context: ssl, handshakeTimeout: self.sslHandshakeTimeout) { [self] context, info in
            do {
                let protocolObject = try self.makeProtocol()
                let handler = ProtocolChannelHandler(
                    loop: loop,
                    protocol: protocolObject,
                    observer: self.observer,
                    tls: info
                )
                handler.transport.idleTimeout = self.limiter.limits.idleTimeout
                self.track(handler.transport)
                try context.pipeline.syncOperations.addHandler(handler)
            } catch {
                context.close(promise: nil)
            }
        }
        try channel.pipeline.syncOperations.addHandlers(tls, TLSHandshakeFailureReporter(observer: self.observer))
    }

    private func track(_ transport: ChannelTransport) {
        self.clients[ObjectIdentifier(transport)] = transport
        transport.onLost = { [self] transport in
            self.clients.removeValue(forKey: ObjectIdentifier(transport))
            self.checkDrained()
        }
        // startTLS: the upgraded transport is the same client; a failed upgrade ended it.
        transport.onReplaced = { [self] transport, replacement in
            self.clients.removeValue(forKey: ObjectIdentifier(transport))
            if let replacement {
                self.track(replacement)
            } else {
                self.checkDrained()
            }
        }
    }

    /// Serves until cancelled or closed (SV-8): on cancellation it closes the server, waits for
    /// ``waitClosed()`` and throws `CancellationError`; when someone else closes it, it throws
    /// `CancellationError` too.
    /// - Throws: ``TulipError/Code/serveForeverActive`` if another `serveForever` is active,
    ///   ``TulipError/Code/serverClosed`` if the server is closed.
    public func serveForever() async throws {
        try await self.hop {
            if self.serveForeverActive {
                throw TulipError.make(.serveForeverActive, "server \(self) is already being awaited on serve_forever()")
            }
            self.serveForeverActive = true
            do {
                return try self.startServingOnLoop()
            } catch {
                self.serveForeverActive = false
                throw error
            }
        }
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    self.loop.eventLoop.execute {
                        if self.snapshot.withLockedValue({ $0.isClosed }) || Task.isCancelled {
                            self.serveForeverActive = false
                            continuation.resume(throwing: CancellationError())
                        } else {
                            self.serveForeverWaiter = continuation
                        }
                    }
                }
            } onCancel: {
                self.loop.eventLoop.execute {
                    self.serveForeverWaiter?.resume(throwing: CancellationError())
                    self.serveForeverWaiter = nil
                    self.serveForeverActive = false
                }
            }
        } catch {
            self.close()
            await self.waitClosed()
            throw error
        }
    }

    // MARK: - Pausing

    /// Stops accepting until ``resumeAccepting()``, whatever the limits say.
    ///
    /// New connections wait in the kernel's backlog (or are refused once it is full); open
    /// connections go on. A Tulip addition, for an operator's `drain`. Loop thread.
    public func pauseAccepting() {
        self.loop.eventLoop.preconditionInEventLoop()
        self.limiter.isHeldByOwner = true
        self.applyAcceptState()
    }

    /// Accepts again after ``pauseAccepting()`` (up to the limits).
    ///
    /// Loop thread.
    public func resumeAccepting() {
        self.loop.eventLoop.preconditionInEventLoop()
        self.limiter.isHeldByOwner = false
        self.applyAcceptState()
    }

    // MARK: - Closing

    /// Stops accepting and closes the listening sockets now, so new connections are refused (SV-1).
    ///
    /// Client connections stay open (SV-1). Idempotent. A unix server unlinks its socket file if
    /// it is still the one it created (US-8, SV-11).
    public func close() {
        self.onLoop { self.closeOnLoop() }
    }

    private func closeOnLoop() {
        let firstClose = self.snapshot.withLockedValue { state -> Bool in
            defer {
                state.isClosed = true
                state.isServing = false
                state.sockets = []
            }
            return !state.isClosed
        }
        guard firstClose else { return }
        for socket in self.pending {
            Glibc.close(socket.fileDescriptor)
            if self.removesSocketFile { socket.removeSocketFile() }
        }
        self.pending = []
        for (socket, channel) in self.listening {
            channel.close(promise: nil)
            if self.removesSocketFile { socket.removeSocketFile() }
        }
        if !self.listening.isEmpty { self.loop.unregister(self) }
        self.listening = []
        self.serveForeverWaiter?.resume(throwing: CancellationError())
        self.serveForeverWaiter = nil
        self.serveForeverActive = false
        self.checkDrained()
    }

    /// Returns once the server is closed and every client's `connectionLost` has run (SV-2);
    /// immediately on every later call.
    public func waitClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.loop.eventLoop.execute {
                if self.closedAndDrained {
                    continuation.resume()
                } else {
                    self.closedWaiters.append(continuation)
                }
            }
        }
    }

    private func checkDrained() {
        guard self.snapshot.withLockedValue({ $0.isClosed }), self.clients.isEmpty, !self.closedAndDrained else {
            return
        }
        self.closedAndDrained = true
        let waiters = self.closedWaiters
        self.closedWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    /// Closes every client transport gracefully, flushing (SV-4).
    ///
    /// The listener is not stopped.
    public func closeClients() {
        self.onLoop {
            for transport in self.clients.values { transport.close() }
        }
    }

    /// Aborts every client transport (SV-4).
    public func abortClients() {
        self.onLoop {
            for transport in self.clients.values { transport.abort() }
        }
    }

    /// Asks every client's protocol to finish (``StreamProtocol/shutdownRequested()``).
    public func requestClientShutdown() {
        self.onLoop {
            for transport in self.clients.values { transport.shutdownRequested() }
        }
    }

    // MARK: - Handing over

    /// Replaces the TLS context for connections accepted from now on; established connections
    /// keep the context they were accepted with (a certificate reload).
    ///
    /// Loop thread only.
    /// - Throws: ``TulipError/Code/invalidArgument`` when the server was created without `ssl`: a
    ///   plaintext server does not become a TLS one.
    public func replaceSSLContext(_ context: TLSContext) throws {
        self.loop.eventLoop.preconditionInEventLoop()
        guard self.ssl != nil else {
            throw TulipError.invalidArgument("the server was created without ssl; its TLS context cannot be replaced")
        }
        self.ssl = context
    }

    /// Duplicates (close-on-exec) every listening socket; the caller owns the duplicates.
    ///
    /// For a successor server made with
    /// ``TulipLoop/createServer(socks:backlog:startServing:observer:ssl:sslHandshakeTimeout:makeProtocol:)``,
    /// or for the service manager's fd store. Loop thread only.
    /// - Returns: one duplicate per listening socket.
    /// - Throws: ``TulipError/Code/serverClosed`` after ``close()``; `socketError` with the errno
    ///   when `fcntl(F_DUPFD_CLOEXEC)` fails (no duplicate is left open then).
    public func duplicateSockets() throws -> [CInt] {
        self.loop.eventLoop.preconditionInEventLoop()
        if self.snapshot.withLockedValue({ $0.isClosed }) {
            throw TulipError.make(.serverClosed, "Server \(self) is closed")
        }
        var duplicates: [CInt] = []
        for descriptor in self.pending.map(\.fileDescriptor) + self.listening.map(\.socket.fileDescriptor) {
            let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
            guard duplicate >= 0 else {
                let code = errno
                for fd in duplicates { Glibc.close(fd) }
                throw TulipError.make(
                    .socketError,
                    "cannot duplicate socket \(descriptor): \(BoundSocket.errorText(code))",
                    errno: code
                )
            }
            duplicates.append(duplicate)
        }
        return duplicates
    }

    /// Leaves a unix server's socket file in place on ``close()``: another owner of the same
    /// socket (a successor server, the service manager's fd store) still serves it.
    ///
    /// Loop thread only.
    public func keepSocketFileOnClose() {
        self.loop.eventLoop.preconditionInEventLoop()
        self.removesSocketFile = false
    }

    /// Runs `body` on the loop thread, now if already there; `nil` if the loop is gone.
    @discardableResult
    private func onLoop<Result: Sendable>(_ body: @escaping @Sendable () -> Result) -> Result? {
        if self.loop.eventLoop.inEventLoop { return body() }
        return try? self.loop.eventLoop.submit(body).wait()
    }
}

// MARK: - Loop pauses

extension Server: LoopParticipant {
    func loopDidPause() {
        for (_, channel) in self.listening {
            try? channel.syncOptions?.setOption(.autoRead, value: false)
        }
    }

    func loopDidResume() {
        self.applyAcceptState()
    }

    /// Listening channels read while the loop runs and the server is below its limit; one read
    /// accepts no more connections than there are free slots.
    private func applyAcceptState() {
        let accepting = self.loop.isDispatching && !self.limiter.holdsReads
        let perRead = UInt(self.limiter.acceptsPerRead)
        for (_, channel) in self.listening {
            guard let options = channel.syncOptions else { continue }
            try? options.setOption(.maxMessagesPerRead, value: perRead)
            try? options.setOption(.autoRead, value: accepting)
        }
    }
}

/// Sits right behind the TLS handler: reports an error that ends the handshake to the server's
/// observer (there is no transport or protocol yet to tell), and passes everything on afterwards.
private final class TLSHandshakeFailureReporter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let observer: (any ConnectionObserver)?
    private var handshakeDone = false

    init(observer: (any ConnectionObserver)?) {
        self.observer = observer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is TLSHandshakeCompleted { self.handshakeDone = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if self.handshakeDone {
            context.fireErrorCaught(error)
        } else {
            self.observer?.handshakeFailed(peer: context.channel.remoteAddress, error: error)
        }
    }
}
