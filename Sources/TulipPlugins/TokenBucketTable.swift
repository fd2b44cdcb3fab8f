import NIOCore

/// Per-source token buckets: the reflection guard of the datagram built-ins.
///
/// A pure value: the caller passes the clock (`now`), so tests drive it without sleeping. Each
/// source starts with `burst` tokens and gains `perSecond` a second up to `burst`; a reply costs
/// one. The table is bounded: sources live in two generations of at most `capacity / 2` each,
/// and when the current one fills, the older one is dropped. A spoofed-source flood therefore
/// costs at most `capacity` entries; a dropped source starts again with a full bucket.
public struct TokenBucketTable<Key: Hashable>: Sendable where Key: Sendable {
    private struct Bucket: Sendable {
        var tokens: Double
        var updated: NIODeadline
    }

    /// The limit applied to every source.
    public let limit: RateLimit
    /// The most sources remembered at once.
    public let capacity: Int
    private var current: [Key: Bucket] = [:]
    private var previous: [Key: Bucket] = [:]

    /// Makes an empty table.
    public init(limit: RateLimit, capacity: Int = 65_536) {
        self.limit = limit
        self.capacity = max(2, capacity)
    }

    /// The sources remembered now.
    public var count: Int { self.current.count + self.previous.count }

    /// Takes a token for `key` at `now`; returns whether the reply may go out.
    public mutating func allow(_ key: Key, now: NIODeadline) -> Bool {
        var bucket =
            self.current.removeValue(forKey: key) ?? self.previous.removeValue(forKey: key)
            ?? Bucket(tokens: self.limit.burst, updated: now)
        let elapsed = Double(max(0, (now - bucket.updated).nanoseconds)) / 1e9
        bucket.tokens = min(self.limit.burst, bucket.tokens + elapsed * self.limit.perSecond)
        bucket.updated = now
        let allowed = bucket.tokens >= 1
        if allowed { bucket.tokens -= 1 }
        if self.current.count >= self.capacity / 2 {
            self.previous = self.current
            self.current = [:]
        }
        self.current[key] = bucket
        return allowed
    }
}
