import NIOCore

/// The transport of the writing end of a pipe (asyncio's `_UnixWritePipeTransport`,
/// ASYNCIO-SPEC §17): made by ``TulipLoop/connectWritePipe(fileDescriptor:makeProtocol:)``.
///
/// Loop-confined: call it on the loop's thread only. The transport owns its descriptor and
/// closes it before `connectionLost` is delivered (WP-9). Writes follow asyncio's flow control
/// (FC-*). ``writeEOF()`` and ``close()`` are the same graceful close (WP-5, WP-6); writes after
/// either are dropped (WP-3). When the reader goes away the protocol gets `connectionLost(nil)` if
/// nothing was queued, or a broken-pipe `IOError` (`EPIPE`) if data was (WP-8).
public final class WritePipeTransport {
    /// The loop that owns this transport.
    public var loop: TulipLoop { self.base.loop }
    /// The descriptor the transport was made from; closed once the transport is closed.
    public let fileDescriptor: CInt
    /// The channel transport that does the work.
    let base: ChannelTransport
    private var closing = false
    private var droppedAfterClose = 0

    init(base: ChannelTransport, fileDescriptor: CInt) {
        self.base = base
        self.fileDescriptor = fileDescriptor
    }

    /// The protocol object receiving this transport's callbacks.
    public var `protocol`: (any WritePipeProtocol)? {
        (self.base.protocol as? WritePipeProtocolAdapter)?.target
    }

    /// Whether ``close()``, ``writeEOF()`` or ``abort()`` was called or the pipe failed (TR-2, WP-5).
    public var isClosing: Bool { self.closing || self.base.isClosing }

    /// The allocator to make buffers for ``write(_:)`` with.
    public var allocator: ByteBufferAllocator { self.base.allocator }

    /// Writes dropped because the transport was closing or closed (WP-3).
    public var droppedWrites: Int { self.droppedAfterClose + self.base.droppedWrites }

    /// Bytes accepted by ``write(_:)`` so far.
    public var bytesSent: UInt64 { self.base.bytesSent }

    // MARK: - Writing

    /// Queues `data`; empty data is ignored.
    ///
    /// After ``close()``/``writeEOF()`` or the loss of the pipe the data is dropped silently
    /// (WP-2, WP-3). Crossing the high-water mark calls ``BaseProtocol/pauseWriting()`` before this
    /// returns (FC-4).
    public func write(_ data: ByteBuffer) {
        guard data.readableBytes > 0 else { return }
        guard !self.isClosing else {
            self.droppedAfterClose += 1
            return
        }
        // Cannot throw: writeEOF() on the channel transport is never used.
        try? self.base.write(data)
    }

    /// Queues the bytes of `bytes` (copied into a new buffer).
    public func write(_ bytes: some Sequence<UInt8>) {
        var buffer = self.allocator.buffer(capacity: bytes.underestimatedCount)
        buffer.writeBytes(bytes)
        self.write(buffer)
    }

    /// Queues the UTF-8 bytes of `string`.
    public func write(string: String) {
        self.write(self.allocator.buffer(string: string))
    }

    /// Writes each buffer in order, as one concatenated write (WP-2, WT-8).
    public func writelines(_ buffers: some Sequence<ByteBuffer>) {
        guard !self.isClosing else {
            self.droppedAfterClose += 1
            return
        }
        try? self.base.writelines(buffers)
    }

    /// Bytes accepted by ``write(_:)`` and not yet handed to the kernel (WT-11).
    public var writeBufferSize: Int { self.base.writeBufferSize }

    /// The write-buffer limits as asyncio's `(low, high)` (FC-1).
    public var writeBufferLimits: WriteBufferLimits { self.base.writeBufferLimits }

    /// Sets the water marks (FC-2, FC-3).
    public func setWriteBufferLimits(high: Int? = nil, low: Int? = nil) throws {
        try self.base.setWriteBufferLimits(high: high, low: low)
    }

    // MARK: - Ending

    /// Always true: for a write pipe, writing EOF means closing (WP-5).
    public var canWriteEOF: Bool { true }

    /// The same as ``close()`` (WP-5).
    public func writeEOF() { self.close() }

    /// Flushes what is queued, then closes; `connectionLost(nil)` follows in a later iteration.
    ///
    /// Idempotent (WP-6, TR-3).
    public func close() {
        self.loop.eventLoop.preconditionInEventLoop()
        guard !self.isClosing else { return }
        self.closing = true
        self.base.close()
    }

    /// Discards what is queued and closes; `connectionLost(nil)` follows in a later iteration (WP-7).
    public func abort() {
        self.loop.eventLoop.preconditionInEventLoop()
        self.closing = true
        self.base.abort()
    }

    /// The asyncio key lookup (`get_extra_info`): `"pipe"` is the descriptor (XI-3).
    public func extraInfo(_ key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        key == "pipe" ? self.fileDescriptor : defaultValue
    }
}

// Loop-confined: every member is touched on the loop's thread only.
@available(*, unavailable)
extension WritePipeTransport: Sendable {}
