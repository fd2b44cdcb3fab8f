import Logging
import NIOCore
import Tulip

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The datagram endpoints of one listener: they are logged when they open and close, closed
/// (flushing) on drain, and awaited until every one is gone.
///
/// Loop-confined, like the transports it holds.
final class DatagramEndpointGroup {
    private let logger: Logger
    private var open: [ObjectIdentifier: DatagramTransport] = [:]
    private var waiters: [CheckedContinuation<Void, Never>] = []
    /// Totals of the endpoints that have closed.
    private var closedDatagramsIn: UInt64 = 0
    private var closedBytesIn: UInt64 = 0
    private var closedBytesOut: UInt64 = 0

    init(logger: Logger) {
        self.logger = logger
    }

    /// Wraps a plugin's protocol object so the group hears when its endpoint closes.
    func observe(_ inner: any DatagramProtocol) -> any DatagramProtocol {
        ObservedDatagramProtocol(inner: inner, group: self)
    }

    var openEndpoints: Int { self.open.count }

    func opened(_ transport: DatagramTransport) {
        self.open[ObjectIdentifier(transport)] = transport
        self.logger.info(
            "endpoint opened",
            metadata: ["address": "\(ConnectionLogger.describe(transport.extraInfo.localAddress))"]
        )
    }

    func closed(_ transport: DatagramTransport, error: (any Error)?) {
        guard self.open.removeValue(forKey: ObjectIdentifier(transport)) != nil else { return }
        self.closedDatagramsIn &+= transport.datagramsReceived
        self.closedBytesIn &+= transport.bytesReceived
        self.closedBytesOut &+= transport.bytesSent
        var metadata: Logger.Metadata = [
            "address": "\(ConnectionLogger.describe(transport.extraInfo.localAddress))",
            "datagrams_in": "\(transport.datagramsReceived)",
            "datagrams_out": "\(transport.datagramsSent)",
            "bytes_in": "\(transport.bytesReceived)",
            "bytes_out": "\(transport.bytesSent)",
            "errors": "\(transport.errorCount)",
        ]
        if let error { metadata["error"] = "\(error)" }
        self.logger.info("endpoint closed", metadata: metadata)
        if self.open.isEmpty {
            let waiters = self.waiters
            self.waiters = []
            for waiter in waiters { waiter.resume() }
        }
    }

    /// Datagrams received by every endpoint so far, open ones included.
    var datagramsReceivedTotal: UInt64 {
        self.open.values.reduce(self.closedDatagramsIn) { $0 &+ $1.datagramsReceived }
    }

    /// Bytes received by every endpoint so far, open ones included.
    var bytesReceivedTotal: UInt64 { self.open.values.reduce(self.closedBytesIn) { $0 &+ $1.bytesReceived } }

    /// Bytes sent by every endpoint so far, open ones included.
    var bytesSentTotal: UInt64 { self.open.values.reduce(self.closedBytesOut) { $0 &+ $1.bytesSent } }

    func closeAll() {
        for transport in self.open.values { transport.close() }
    }

    func abortAll() {
        for transport in self.open.values { transport.abort() }
    }

    /// Duplicates of every open endpoint's socket; the caller owns them.
    func duplicateSockets() throws -> [CInt] {
        var duplicates: [CInt] = []
        do {
            for transport in self.open.values { duplicates.append(try transport.duplicateSocket()) }
        } catch {
            for fd in duplicates { close(fd) }
            throw error
        }
        return duplicates
    }

    /// Leaves unix socket files in place when the endpoints close: someone else serves them.
    func keepSocketFilesOnClose() {
        for transport in self.open.values { transport.keepSocketFileOnClose() }
    }

    func waitClosed() async {
        if self.open.isEmpty { return }
        await withCheckedContinuation { self.waiters.append($0) }
    }
}

// Loop-confined: touched on the daemon's loop only.
@available(*, unavailable)
extension DatagramEndpointGroup: Sendable {}

/// Forwards every callback to the plugin's protocol object and tells the group when the endpoint
/// opens and closes.
private final class ObservedDatagramProtocol: DatagramProtocol {
    private let inner: any DatagramProtocol
    private let group: DatagramEndpointGroup
    private var transport: DatagramTransport?

    init(inner: any DatagramProtocol, group: DatagramEndpointGroup) {
        self.inner = inner
        self.group = group
    }

    func connectionMade(transport: DatagramTransport) {
        self.transport = transport
        self.group.opened(transport)
        self.inner.connectionMade(transport: transport)
    }

    func datagramReceived(_ data: ByteBuffer, from address: SocketAddress) throws {
        try self.inner.datagramReceived(data, from: address)
    }

    func errorReceived(_ error: any Error) { self.inner.errorReceived(error) }
    func pauseWriting() { self.inner.pauseWriting() }
    func resumeWriting() { self.inner.resumeWriting() }

    func connectionLost(error: (any Error)?) {
        self.inner.connectionLost(error: error)
        if let transport = self.transport { self.group.closed(transport, error: error) }
        self.transport = nil
    }
}
