import NIOCore

/// The transport of the reading end of a pipe (asyncio's `_UnixReadPipeTransport`,
/// ASYNCIO-SPEC §17): made by ``TulipLoop/connectReadPipe(fileDescriptor:makeProtocol:)``.
///
/// Loop-confined: call it on the loop's thread only. The transport owns its descriptor and
/// closes it before `connectionLost` is delivered (RP-7). On EOF the protocol gets
/// `eofReceived()` then `connectionLost(nil)`, whatever `eofReceived()` returned (RP-3).
///
/// The protocol object is an ordinary ``StreamProtocol``: its `connectionMade(transport:)` receives
/// the ``ChannelTransport`` underneath this one. Pausing, resuming and closing either is the same;
/// writes on it are dropped (a read pipe has nowhere to write).
public final class ReadPipeTransport {
    /// The loop that owns this transport.
    public var loop: TulipLoop { self.base.loop }
    /// The descriptor the transport was made from; closed once the transport is closed.
    public let fileDescriptor: CInt
    /// The channel transport that does the work.
    let base: ChannelTransport

    init(base: ChannelTransport, fileDescriptor: CInt) {
        self.base = base
        self.fileDescriptor = fileDescriptor
    }

    /// The protocol object receiving this transport's callbacks (TR-7).
    public var `protocol`: (any StreamProtocol)? { self.base.protocol }

    /// Sends every later callback to `newProtocol` (PR-9).
    public func setProtocol(_ newProtocol: any StreamProtocol) { self.base.setProtocol(newProtocol) }

    /// Whether ``close()`` was called, EOF was seen or reading failed (TR-2).
    public var isClosing: Bool { self.base.isClosing }

    /// Whether the transport reads: true until ``pauseReading()`` or closing (RP-6, RT-1).
    public var isReading: Bool { self.base.isReading }

    /// Stops delivering data at once; idempotent, a no-op when closing (RP-6, RT-2, RT-4).
    public func pauseReading() { self.base.pauseReading() }

    /// Resumes reading after ``pauseReading()``; a no-op when not paused or closing (RP-6, RT-2).
    public func resumeReading() { self.base.resumeReading() }

    /// Stops reading and closes; `connectionLost(nil)` follows in a later iteration.
    ///
    /// `eofReceived()` is not called. Idempotent (RP-4). A read pipe has no `abort()`.
    public func close() { self.base.close() }

    /// Bytes delivered to the protocol (or held for it) so far.
    public var bytesReceived: UInt64 { self.base.bytesReceived }

    /// The asyncio key lookup (`get_extra_info`): `"pipe"` is the descriptor (XI-3).
    public func extraInfo(_ key: String, default defaultValue: (any Sendable)? = nil) -> (any Sendable)? {
        key == "pipe" ? self.fileDescriptor : defaultValue
    }
}

// Loop-confined: every member is touched on the loop's thread only.
@available(*, unavailable)
extension ReadPipeTransport: Sendable {}
