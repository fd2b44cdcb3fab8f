/// A per-source reply limit for the datagram built-ins, as `options.rate_limit` gives it.
///
/// Applied by ``TokenBucketTable``.
public struct RateLimit: Sendable, Hashable {
    /// Tokens gained per second.
    public var perSecond: Double
    /// The bucket's size: the most replies a quiet source gets at once.
    public var burst: Double

    /// The default: 50 a second, bursts of 100.
    public static let `default` = RateLimit(perSecond: 50, burst: 100)

    /// Makes a limit.
    public init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = burst
    }
}
