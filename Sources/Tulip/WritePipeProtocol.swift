/// A protocol object for the writing end of a pipe (asyncio's `BaseProtocol` given to
/// `connect_write_pipe`, ASYNCIO-SPEC §17).
///
/// The callback order is `connectionMade → connectionLost`, with
/// ``BaseProtocol/pauseWriting()``/``BaseProtocol/resumeWriting()`` possibly in between (WP-1).
/// Every callback runs on the loop's thread.
public protocol WritePipeProtocol: BaseProtocol {
    /// The pipe is connected. Called once, before any other callback.
    ///
    /// Keep `transport`: it is how the protocol writes and closes.
    func connectionMade(transport: WritePipeTransport)
}

extension WritePipeProtocol {
    /// Does nothing.
    public func connectionMade(transport: WritePipeTransport) {}
}

/// Lets a ``ChannelTransport`` drive a ``WritePipeProtocol``: the channel-level callbacks are
/// forwarded with the ``WritePipeTransport`` in place of the channel transport.
final class WritePipeProtocolAdapter: StreamProtocol {
    let target: any WritePipeProtocol
    // Set right after the transport is built; dropped with the adapter after connectionLost.
    var transport: WritePipeTransport?

    init(_ target: any WritePipeProtocol) { self.target = target }

    func connectionMade(transport: ChannelTransport) {
        guard let pipeTransport = self.transport else { return }
        self.target.connectionMade(transport: pipeTransport)
    }

    func connectionLost(error: (any Error)?) {
        self.target.connectionLost(error: error)
        self.transport = nil
    }

    func pauseWriting() { self.target.pauseWriting() }
    func resumeWriting() { self.target.resumeWriting() }
}

@available(*, unavailable)
extension WritePipeProtocolAdapter: Sendable {}
