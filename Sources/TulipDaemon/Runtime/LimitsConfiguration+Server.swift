import NIOCore
import Tulip

extension LimitsConfiguration {
    /// The limits as `createServer`/`createUnixServer` take them.
    var connectionLimits: ConnectionLimits {
        ConnectionLimits(
            maxConnections: self.maxConnections,
            maxConnectionsPerSource: self.maxConnectionsPerSource,
            idleTimeout: self.idleTimeout.map { duration in
                let (seconds, attoseconds) = duration.components
                return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
            }
        )
    }
}
