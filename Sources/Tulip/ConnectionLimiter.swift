import NIOCore

/// Counts a ``Server``'s connections and enforces its ``ConnectionLimits`` at accept time.
///
/// Loop-confined, one per server, shared by the ``ConnectionLimitHandler`` of each of its
/// listening channels. A connection counts from the moment it is accepted until its channel has
/// closed, so TLS handshakes in progress count too. The idle timeout is the transport's business.
final class ConnectionLimiter {
    /// NIO's default for a server channel: how many connections one readable event accepts.
    static let defaultAcceptsPerRead = 4

    let limits: ConnectionLimits
    private let observer: (any ConnectionObserver)?
    /// Told when ``isPaused`` or ``acceptsPerRead`` changed, to apply them to the listening channels.
    var onChange: (() -> Void)?

    private(set) var openConnections = 0
    private(set) var acceptedTotal: UInt64 = 0
    private(set) var refusedMaxConnections: UInt64 = 0
    private(set) var refusedPerSource: UInt64 = 0
    private var perSource: [ConnectionSource: Int] = [:]

    /// At `maxConnections`: the listening channels must not be read.
    private(set) var isPaused = false
    /// The server's owner stopped accepting (an operator's drain), whatever the limit says.
    var isHeldByOwner = false
    /// Whether listening channels must not read (accept) now.
    var holdsReads: Bool { self.isPaused || self.isHeldByOwner }
    /// How many connections one readable event may accept, so that a burst never overshoots the
    /// remaining slots.
    private(set) var acceptsPerRead: Int

    init(limits: ConnectionLimits, observer: (any ConnectionObserver)?) {
        self.limits = limits
        self.observer = observer
        self.acceptsPerRead = min(limits.maxConnections ?? Self.defaultAcceptsPerRead, Self.defaultAcceptsPerRead)
    }

    /// Decides on a freshly accepted `child`: `true` counts it as served, `false` means the caller
    /// must close it (it was counted as refused and the observer told).
    func admit(_ child: any Channel) -> Bool {
        if let maxConnections = self.limits.maxConnections, self.openConnections >= maxConnections {
            self.refusedMaxConnections &+= 1
            self.observer?.connectionRefused(peer: child.remoteAddress, reason: .maxConnections)
            return false
        }
        var source: ConnectionSource?
        if let cap = self.limits.maxConnectionsPerSource, let key = ConnectionSource(of: child) {
            let count = self.perSource[key, default: 0]
            guard count < cap else {
                self.refusedPerSource &+= 1
                self.observer?.connectionRefused(peer: child.remoteAddress, reason: .perSource)
                return false
            }
            self.perSource[key] = count + 1
            source = key
        }
        self.openConnections += 1
        self.acceptedTotal &+= 1
        child.closeFuture.assumeIsolated().whenComplete { [self] _ in self.release(source) }
        self.update()
        return true
    }

    private func release(_ source: ConnectionSource?) {
        self.openConnections -= 1
        if let source {
            let remaining = self.perSource[source, default: 1] - 1
            self.perSource[source] = remaining > 0 ? remaining : nil
        }
        self.update()
    }

    private func update() {
        guard let maxConnections = self.limits.maxConnections else { return }
        let free = maxConnections - self.openConnections
        let paused = free <= 0
        let perRead = min(max(free, 1), Self.defaultAcceptsPerRead)
        guard paused != self.isPaused || perRead != self.acceptsPerRead else { return }
        let pauseChanged = paused != self.isPaused
        self.isPaused = paused
        self.acceptsPerRead = perRead
        self.onChange?()
        guard pauseChanged else { return }
        if paused {
            self.observer?.acceptingPaused(openConnections: self.openConnections)
        } else {
            self.observer?.acceptingResumed(openConnections: self.openConnections)
        }
    }
}

// Loop-confined: one limiter per server, touched on the loop's thread only.
@available(*, unavailable)
extension ConnectionLimiter: Sendable {}
