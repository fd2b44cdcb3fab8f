import Logging
import NIOCore
import Tulip

/// The datagram side of the built-ins: each request gets at most one reply, made by a closure,
/// sent back to the request's source, subject to the per-source-host rate limit.
///
/// The limit is the reflection guard: a UDP request's source can be spoofed, so without it the
/// daemon would amplify floods at a victim. Requests over the limit are dropped silently and
/// counted (``droppedReplies``, a `debug` log line). Confined to the loop, as every protocol object.
public final class DatagramReplyProtocol: DatagramProtocol {
    /// Makes the reply to one request, or `nil` for none (discard).
    public typealias Reply = (_ request: ByteBuffer, _ allocator: ByteBufferAllocator) -> ByteBuffer?

    private let reply: Reply
    private var buckets: TokenBucketTable<ReplySource>?
    private let logger: Logger?
    private var transport: DatagramTransport?

    /// Requests whose reply the rate limit dropped.
    public private(set) var droppedReplies = 0

    /// Makes a protocol object; `limit` `nil` turns the guard off.
    public init(limit: RateLimit?, logger: Logger? = nil, reply: @escaping Reply) {
        self.reply = reply
        self.buckets = limit.map { TokenBucketTable(limit: $0) }
        self.logger = logger
    }

    public func connectionMade(transport: DatagramTransport) {
        self.transport = transport
    }

    public func datagramReceived(_ data: ByteBuffer, from address: SocketAddress) throws {
        guard let transport = self.transport else { return }
        // The bucket is checked before the reply is made, so a flood costs no reply work.
        if self.buckets != nil, !self.buckets!.allow(ReplySource(address), now: .now()) {
            self.droppedReplies += 1
            self.logger?.debug(
                "reply dropped by rate limit",
                metadata: ["peer": "\(address)", "dropped": "\(self.droppedReplies)"]
            )
            return
        }
        guard let response = self.reply(data, transport.allocator) else { return }
        // Only an address mismatch on a connected endpoint throws; these endpoints are unconnected.
        try? transport.sendto(response, to: address)
    }

    public func errorReceived(_ error: any Error) {
        self.logger?.debug("datagram error", metadata: ["error": "\(error)"])
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }
}
