import NIOCore

/// Fired inbound when the TLS handshake has finished.
public struct TLSHandshakeCompleted: Sendable, Equatable {
    public let info: TLSConnectionInfo
}

/// Sent outbound before a `close` that must not wait for the peer's `close_notify`: the
/// connection is force-closed without any alert (asyncio's `abort()` on a TLS transport, TLS-9).
public struct TLSAbortEvent: Sendable, Equatable {
    /// Makes the event.
    public init() {}
}

/// A channel handler that speaks TLS on the network side and plaintext on the application side,
/// driving an OpenSSL `SSL` over memory BIOs.
///
/// The handshake starts when the channel becomes active (or when the handler is added to an
/// active channel) and must finish within `handshakeTimeout`; application writes wait until it has.
/// Writes are encrypted as they come and sent on `flush`. `close()` sends `close_notify`, waits up
/// to `shutdownTimeout` for the peer's (or its FIN), then closes (TLS-9); a ``TLSAbortEvent``
/// before `close()` skips both. A peer's `close_notify`, or a FIN without one, reaches the
/// application as `inputClosed`.
/// Half-closing the output is not supported (a TLS transport cannot write EOF).
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum ConnectionState {
        case idle
        case handshaking
        case active
        case closing
        case closed
    }

    private let tlsContext: TLSContext
    private let serverHostname: String?
    private let handshakeTimeout: TimeAmount?
    private let shutdownTimeout: TimeAmount
    private let onHandshakeCompleted: ((ChannelHandlerContext, TLSConnectionInfo) -> Void)?
    private var connection: OpenSSLConnection?
    private var state: ConnectionState = .idle
    private var timeoutTask: Scheduled<Void>?
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var flushPending = false
    private var inputClosedFired = false
    private var firedRead = false
    private var abortRequested = false
    private var shutdownTimer: Scheduled<Void>?
    private var closePromise: EventLoopPromise<Void>?
    /// Reused for decrypted reads and encrypted output: storage that nobody else holds any more
    /// is written again instead of allocating (as NIO reuses its own receive buffer), so the
    /// steady state of a connection allocates nothing per message.
    private var readScratch: ByteBuffer?
    private var outputScratch: ByteBuffer?

    /// What the handshake negotiated; nil until it has finished.
    public private(set) var connectionInfo: TLSConnectionInfo?

    /// - Parameters:
    ///   - context: the shared `SSL_CTX`; its role (server or client) decides this side's role.
    ///   - serverHostname: for clients, the name sent as SNI and checked against the certificate.
    ///   - handshakeTimeout: closes the connection if the handshake has not finished by then.
    ///   - shutdownTimeout: how long `close()` waits for the peer's `close_notify` before it
    ///     force-closes with ``TLSShutdownTimeoutError`` (TLS-3: 30 s by default).
    ///   - onHandshakeCompleted: called on the loop once the handshake has finished, before
    ///     queued writes go out and before any application data is passed on.
    public init(
        context: TLSContext,
        serverHostname: String? = nil,
        handshakeTimeout: TimeAmount? = .seconds(60),
        shutdownTimeout: TimeAmount = .seconds(30),
        onHandshakeCompleted: ((ChannelHandlerContext, TLSConnectionInfo) -> Void)? = nil
    ) {
        self.tlsContext = context
        self.serverHostname = serverHostname
        self.handshakeTimeout = handshakeTimeout
        self.shutdownTimeout = shutdownTimeout
        self.onHandshakeCompleted = onHandshakeCompleted
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        do {
            self.connection = try self.tlsContext.makeConnection(serverHostname: self.serverHostname)
        } catch {
            self.fail(context: context, error: error)
            return
        }
        if context.channel.isActive { self.startHandshake(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.startHandshake(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
        self.closePromise?.succeed(())
        self.closePromise = nil
        let wasHandshaking = self.state == .handshaking
        self.state = .closed
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        if wasHandshaking { context.fireErrorCaught(TLSHandshakeEOFError()) }
        context.fireChannelInactive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard self.state == .idle, self.connection != nil else { return }
        self.state = .handshaking
        if let timeout = self.handshakeTimeout {
            self.timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                self.handshakeTimedOut(context: context, timeout: timeout)
            }
        }
        self.runHandshake(context: context)
        if self.state == .handshaking { context.read() }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext, timeout: TimeAmount) {
        guard self.state == .handshaking else { return }
        self.timeoutTask = nil
        let seconds = Double(timeout.nanoseconds) / 1_000_000_000
        self.fail(context: context, error: TLSHandshakeTimeoutError(seconds: seconds))
    }

    private func runHandshake(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        switch connection.doHandshake() {
        case .complete:
            self.writeOutput(context: context, flush: true)
            self.timeoutTask?.cancel()
            self.timeoutTask = nil
            self.state = .active
            let info = TLSConnectionInfo(
                protocolVersion: connection.protocolVersion,
                cipher: connection.cipher,
                alpn: connection.negotiatedALPN,
                peerCertificateSubject: connection.peerCertificateSubject
            )
            self.connectionInfo = info
            self.onHandshakeCompleted?(context, info)
            context.fireUserInboundEventTriggered(TLSHandshakeCompleted(info: info))
            guard self.state == .active else { return }
            let writes = self.pendingWrites
            self.pendingWrites = []
            for (buffer, promise) in writes { self.encrypt(context: context, buffer, promise: promise) }
            if self.flushPending || !writes.isEmpty {
                self.flushPending = false
                context.flush()
            }
            self.readApplicationData(context: context)
        case .wantRead, .wantWrite:
            self.writeOutput(context: context, flush: true)
        case .zeroReturn:
            self.fail(context: context, error: TLSHandshakeEOFError())
        case .failed(let error):
            // Send the alert OpenSSL produced before closing.
            self.writeOutput(context: context, flush: true)
            self.fail(context: context, error: error)
        }
    }

    private func fail(context: ChannelHandlerContext, error: any Error) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        guard self.state != .closed else { return }
        self.state = .closed
        self.failPendingWrites(error)
        context.fireErrorCaught(error)
        let promise = self.closePromise
        self.closePromise = nil
        context.close(promise: promise)
    }

    private func failPendingWrites(_ error: any Error) {
        let writes = self.pendingWrites
        self.pendingWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection = self.connection else { return }
        connection.feed(Self.unwrapInboundIn(data))
        switch self.state {
        case .handshaking:
            self.runHandshake(context: context)
        case .active, .closing:
            self.readApplicationData(context: context)
        case .idle, .closed:
            break
        }
    }

    private func readApplicationData(context: ChannelHandlerContext) {
        guard let connection = self.connection else { return }
        // Checked first so that no buffer is taken for a read that can only say "want more".
        loop: while self.state == .active || self.state == .closing, connection.hasBufferedInput {
            var buffer = self.readScratch ?? context.channel.allocator.buffer(capacity: 16_384)
            self.readScratch = nil
            // Unique unless the protocol still holds the last read: then this allocates afresh.
            buffer.clear()
            let result = connection.read(into: &buffer)
            self.readScratch = buffer
            switch result {
            case .complete:
                if buffer.readableBytes > 0 {
                    self.firedRead = true
                    context.fireChannelRead(Self.wrapInboundOut(buffer))
                }
            case .wantRead, .wantWrite:
                break loop
            case .zeroReturn:
                // The peer's close_notify: an orderly EOF, or the answer a closing side waits for.
                self.writeOutput(context: context, flush: true)
                self.fireInputClosed(context: context)
                if self.state == .closing { self.finishClose(context: context) }
                break loop
            case .failed(let error):
                self.writeOutput(context: context, flush: true)
                self.fail(context: context, error: error)
                return
            }
        }
        // TLS 1.3 may answer with records of its own (key updates).
        self.writeOutput(context: context, flush: true)
    }

    private func fireInputClosed(context: ChannelHandlerContext) {
        guard !self.inputClosedFired else { return }
        self.inputClosedFired = true
        if self.firedRead {
            self.firedRead = false
            context.fireChannelReadComplete()
        }
        context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // The transport stops reading when it closes, so waiting for close_notify reads here.
        if self.state == .handshaking || self.state == .closing {
            context.read()
        }
        if self.firedRead {
            self.firedRead = false
            context.fireChannelReadComplete()
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case ChannelEvent.inputClosed:
            switch self.state {
            case .handshaking, .idle:
                self.fail(context: context, error: TLSHandshakeEOFError())
            case .active:
                // A FIN without close_notify is treated as EOF, as asyncio does.
                self.fireInputClosed(context: context)
            case .closing:
                // No close_notify can follow a FIN: stop waiting for it.
                self.fireInputClosed(context: context)
                self.finishClose(context: context)
            case .closed:
                break
            }
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: - Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = Self.unwrapOutboundIn(data)
        switch self.state {
        case .idle, .handshaking:
            self.pendingWrites.append((buffer, promise))
        case .active:
            self.encrypt(context: context, buffer, promise: promise)
        case .closing, .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    private func encrypt(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let connection = self.connection else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch connection.write(buffer) {
        case .complete, .wantRead, .wantWrite:
            if let output = connection.takeOutput(reusing: &self.outputScratch, allocator: context.channel.allocator) {
                context.write(Self.wrapOutboundOut(output), promise: promise)
            } else {
                promise?.succeed(())
            }
        case .zeroReturn:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .failed(let error):
            promise?.fail(error)
            self.fail(context: context, error: error)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        switch self.state {
        case .idle, .handshaking:
            self.flushPending = true
        case .active, .closing, .closed:
            context.flush()
        }
    }

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is TLSAbortEvent {
            self.abortRequested = true
            promise?.succeed(())
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .output:
            promise?.fail(ChannelError.operationUnsupported)
            return
        case .input:
            context.close(mode: mode, promise: promise)
            return
        case .all:
            break
        }
        switch self.state {
        case .active where !self.abortRequested:
            self.beginShutdown(context: context, promise: promise)
        case .active, .idle, .handshaking:
            // TLS-9: an abort, or a close during the handshake, closes at once without an alert.
            self.timeoutTask?.cancel()
            self.timeoutTask = nil
            self.state = .closed
            self.failPendingWrites(ChannelError.ioOnClosedChannel)
            context.close(mode: .all, promise: promise)
        case .closing:
            // A second close (an abort or an error) while waiting for the peer: close now.
            self.abortRequested = true
            self.closePromise?.futureResult.cascade(to: promise)
            self.finishClose(context: context)
        case .closed:
            context.close(mode: .all, promise: promise)
        }
    }

    /// TLS-9: sends `close_notify`, then waits for the peer's (or its FIN) up to the shutdown
    /// timeout; a peer that already sent one is not waited for.
    private func beginShutdown(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        self.state = .closing
        self.closePromise = promise ?? context.eventLoop.makePromise()
        _ = self.connection?.shutdown()
        let written = context.eventLoop.makePromise(of: Void.self)
        if let output = self.connection?.takeOutput(reusing: &self.outputScratch, allocator: context.channel.allocator)
        {
            context.write(Self.wrapOutboundOut(output), promise: written)
        } else {
            written.succeed(())
        }
        context.flush()
        if self.inputClosedFired {
            // NIO drops unwritten data on close: let the alert reach the kernel first.
            written.futureResult.assumeIsolated().whenComplete { _ in self.finishClose(context: context) }
            return
        }
        let timeout = self.shutdownTimeout
        self.shutdownTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.shutdownTimer = nil
            guard self.state == .closing else { return }
            context.fireErrorCaught(TLSShutdownTimeoutError())
            self.finishClose(context: context)
        }
        context.read()
    }

    private func finishClose(context: ChannelHandlerContext) {
        guard self.state == .closing else { return }
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
        self.state = .closed
        let promise = self.closePromise
        self.closePromise = nil
        context.close(mode: .all, promise: promise)
    }

    private func writeOutput(context: ChannelHandlerContext, flush: Bool) {
        guard
            let output = self.connection?.takeOutput(reusing: &self.outputScratch, allocator: context.channel.allocator)
        else { return }
        context.write(Self.wrapOutboundOut(output), promise: nil)
        if flush { context.flush() }
    }
}

@available(*, unavailable)
extension OpenSSLHandler: Sendable {}
