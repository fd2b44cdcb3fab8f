import NIOCore
import TulipDaemon

/// The options every built-in accepts for datagram listeners: the reflection guard.
///
/// `"rate_limit": {"per_second": 50, "burst": 100}` is the default when the key is absent;
/// `"rate_limit": null` turns the guard off. Stream listeners accept the key and ignore it
/// (a reply there goes to a peer that completed a handshake, so it cannot be reflected).
public struct DatagramOptions: Decodable, Sendable {
    /// The per-source reply limit, or `nil` when turned off.
    public var rateLimit: RateLimit?

    private enum CodingKeys: String, CodingKey {
        case rateLimit = "rate_limit"
    }

    private struct RateLimitObject: Decodable {
        var perSecond: Double
        var burst: Double

        enum CodingKeys: String, CodingKey {
            case perSecond = "per_second"
            case burst
        }
    }

    /// The defaults: the guard on at 50 a second, bursts of 100.
    public init(rateLimit: RateLimit? = .default) {
        self.rateLimit = rateLimit
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        if !container.contains(.rateLimit) {
            self.rateLimit = .default
        } else if try container.decodeNil(forKey: .rateLimit) {
            self.rateLimit = nil
        } else {
            let object = try container.decode(RateLimitObject.self, forKey: .rateLimit)
            self.rateLimit = .init(perSecond: object.perSecond, burst: object.burst)
        }
    }

    /// Checks the numbers make sense.
    public func validate(context: PluginContext) throws {
        guard let limit = self.rateLimit else { return }
        guard limit.perSecond > 0, limit.perSecond.isFinite else {
            throw context.invalidOption("rate_limit.per_second", "must be a positive number")
        }
        guard limit.burst >= 1, limit.burst.isFinite else {
            throw context.invalidOption("rate_limit.burst", "must be at least 1")
        }
    }
}
