/// The callbacks every protocol object gets, whatever its transport (asyncio's `BaseProtocol`).
///
/// Protocol objects are confined to their loop's thread: every callback runs there, one at a time,
/// never synchronously inside a transport method, except ``pauseWriting()`` (see there).
/// Each callback has an empty default, so a protocol implements only what it needs (PR-11).
public protocol BaseProtocol: AnyObject {
    /// The connection is gone: the last callback, delivered exactly once (PR-5).
    ///
    /// - Parameter error: `nil` after a local ``ChannelTransport/close()`` or
    ///   ``ChannelTransport/abort()`` or an EOF-initiated close; otherwise the error that ended it
    ///   (a reset, or the error a callback threw).
    func connectionLost(error: (any Error)?)

    /// The transport's write buffer went above its high-water mark (FC-4).
    ///
    /// Called synchronously inside the ``ChannelTransport/write(_:)`` that crossed the mark, once,
    /// until ``resumeWriting()``. Writing stays possible (FC-7): pausing is advisory.
    func pauseWriting()

    /// The write buffer drained to the low-water mark or below after a pause (FC-5).
    func resumeWriting()
}

extension BaseProtocol {
    /// Does nothing.
    public func connectionLost(error: (any Error)?) {}
    /// Does nothing.
    public func pauseWriting() {}
    /// Does nothing.
    public func resumeWriting() {}
}
