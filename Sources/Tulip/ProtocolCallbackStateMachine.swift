/// Keeps a connection's protocol callbacks in asyncio's order, without NIO.
///
/// `connectionMade` first and once (PR-1), data and EOF only between it and `connectionLost`,
/// EOF at most once (PR-4), `connectionLost` exactly once and last (PR-5, TR-6). Each method
/// returns whether the callback may be delivered now.
struct ProtocolCallbackStateMachine: Sendable {
    enum State: Sendable, Equatable {
        case awaitingConnectionMade
        case connected(eofDelivered: Bool)
        case lost
    }

    private(set) var state: State = .awaitingConnectionMade

    /// `connectionMade` may be delivered only once, before anything else.
    mutating func connectionMade() -> Bool {
        guard case .awaitingConnectionMade = self.state else { return false }
        self.state = .connected(eofDelivered: false)
        return true
    }

    /// Data may be delivered while connected and before EOF.
    func mayDeliverData() -> Bool {
        self.state == .connected(eofDelivered: false)
    }

    /// EOF may be delivered once, while connected.
    mutating func eofReceived() -> Bool {
        guard case .connected(eofDelivered: false) = self.state else { return false }
        self.state = .connected(eofDelivered: true)
        return true
    }

    /// `connectionLost` may be delivered once; nothing after it.
    ///
    /// A connection that never got `connectionMade` (its factory failed) gets no `connectionLost` either.
    mutating func connectionLost() -> Bool {
        switch self.state {
        case .connected:
            self.state = .lost
            return true
        case .awaitingConnectionMade:
            self.state = .lost
            return false
        case .lost:
            return false
        }
    }

    var isLost: Bool { self.state == .lost }
}
