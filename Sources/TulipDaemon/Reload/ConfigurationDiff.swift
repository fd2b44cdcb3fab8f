/// What a reload changes: the listeners of the running and the new configuration, matched by
/// `name` (ARCHITECTURE §5, lifecycle step 5).
///
/// A pure value: computing it touches no socket. Names keep configuration order — the new
/// configuration's for ``added``, ``changed`` and ``unchanged``, the old one's for ``removed``.
struct ConfigurationDiff: Hashable, Sendable {
    /// In the new configuration only: started.
    var added: [String] = []
    /// In the old configuration only: drained.
    var removed: [String] = []
    /// In both, configured differently (protocol, options, endpoint or `tls` block): replaced.
    var changed: [String] = []
    /// In both, configured alike: kept with their sockets and live connections.
    var unchanged: [String] = []

    /// Compares two listener lists; where the file puts a listener does not count
    /// (``ListenerConfiguration``'s equality ignores key paths and locations).
    init(old: [ListenerConfiguration], new: [ListenerConfiguration]) {
        let before = Dictionary(old.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let after = Set(new.map(\.name))
        for listener in new {
            guard let previous = before[listener.name] else {
                self.added.append(listener.name)
                continue
            }
            if previous == listener {
                self.unchanged.append(listener.name)
            } else {
                self.changed.append(listener.name)
            }
        }
        self.removed = old.map(\.name).filter { !after.contains($0) }
    }

    /// Whether nothing but certificates can have changed.
    var isEmpty: Bool { self.added.isEmpty && self.removed.isEmpty && self.changed.isEmpty }

    /// Whether a changed listener's replacement can take over the old listener's sockets.
    ///
    /// Instead of binding new ones, it can when both are the same kind of socket at the same address (hosts and port,
    /// or path). Taking over means no connection attempt is refused during the replacement, and
    /// binding the same address a second time would fail anyway. Pipes have no socket to hand over.
    static func canHandOverSockets(from old: ListenerEndpoint, to new: ListenerEndpoint) -> Bool {
        switch (old, new) {
        case (.tcp(let old), .tcp(let new)): old.hosts == new.hosts && old.port == new.port
        case (.udp(let old), .udp(let new)): old.hosts == new.hosts && old.port == new.port
        case (.unix(let old), .unix(let new)): old.path == new.path
        case (.unixDatagram(let old), .unixDatagram(let new)): old.path == new.path
        default: false
        }
    }
}
