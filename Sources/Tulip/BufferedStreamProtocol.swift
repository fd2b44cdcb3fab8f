import NIOCore

/// A stream protocol that supplies its own receive buffers (asyncio's `BufferedProtocol`).
///
/// Instead of ``StreamProtocol/dataReceived(_:)``, the transport asks for a buffer with
/// ``getBuffer(sizeHint:)``, copies received bytes into it and reports how many with
/// ``bufferUpdated(_:)``, repeating until the whole chunk is delivered (BP-1, BP-4). EOF and
/// close behave as for ``StreamProtocol`` (BP-5).
public protocol BufferedStreamProtocol: StreamProtocol {
    /// Returns memory to receive into; it must stay valid until the matching ``bufferUpdated(_:)``.
    ///
    /// - Parameter sizeHint: the number of bytes available, a recommended minimum (BP-2).
    /// - Returns: the memory the transport copies received bytes into.
    /// - Throws: to end the connection; an empty buffer ends it too (BP-3).
    func getBuffer(sizeHint: Int) throws -> UnsafeMutableRawBufferPointer

    /// `count` bytes were written at the start of the buffer returned by ``getBuffer(sizeHint:)``.
    func bufferUpdated(_ count: Int) throws
}

extension BufferedStreamProtocol {
    /// Feeds `data` through ``getBuffer(sizeHint:)`` and ``bufferUpdated(_:)`` until all of it is
    /// delivered (BP-4), so a buffered protocol can also be fed like a plain one.
    public func dataReceived(_ data: ByteBuffer) throws {
        try self.feed(data)
    }

    func feed(_ data: ByteBuffer) throws {
        var data = data
        while data.readableBytes > 0 {
            let target = try self.getBuffer(sizeHint: data.readableBytes)
            guard target.count > 0 else {
                throw TulipError.make(.callbackFailed, "get_buffer() returned an empty buffer")
            }
            let count = min(target.count, data.readableBytes)
            data.withUnsafeReadableBytes { source in
                target.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: count)  // both non-empty.
            }
            data.moveReaderIndex(forwardBy: count)
            try self.bufferUpdated(count)
        }
    }
}
