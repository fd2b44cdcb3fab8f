import NIOConcurrencyHelpers

/// Process-wide connection numbers, so log lines of different listeners never share one.
enum ConnectionIDs {
    private static let counter = NIOLockedValueBox<UInt64>(0)

    static func next() -> UInt64 {
        Self.counter.withLockedValue { value in
            value &+= 1
            return value
        }
    }
}
