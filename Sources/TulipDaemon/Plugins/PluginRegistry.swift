import Logging
import Tulip

/// The plugins a daemon can serve, built at start-up: built-ins register themselves with
/// `TulipPlugins.register(into:)`, a user's own package adds its plugins next to them.
///
/// A value type: build it, then hand it to the daemon. Plugins are compiled in, never loaded.
public struct PluginRegistry: Sendable {
    /// One registered plugin, type-erased.
    public struct Entry: Sendable {
        /// The plugin's name.
        public let name: String
        /// Its one-line summary.
        public let summary: String
        /// The listener kinds it serves.
        public let supportedKinds: Set<ListenerKind>
        let makeFactory: @Sendable (ListenerConfiguration, PluginContext) throws -> any ProtocolFactory
    }

    private var entries: [String: Entry] = [:]

    /// An empty registry.
    public init() {}

    /// Adds `plugin`; a later registration of the same name replaces the earlier one, so a user
    /// can override a built-in.
    public mutating func register<P: Plugin>(_ plugin: P.Type) {
        self.entries[P.name] = Entry(
            name: P.name,
            summary: P.summary,
            supportedKinds: P.supportedKinds
        ) { listener, context in
            let options = try listener.decodeOptions(as: P.Options.self)
            return try P.makeProtocolFactory(options: options, context: context)
        }
    }

    /// The plugin called `name`.
    public func entry(named name: String) -> Entry? { self.entries[name] }

    /// Every plugin, sorted by name.
    public var all: [Entry] { self.entries.values.sorted { $0.name < $1.name } }

    /// The registered names, sorted.
    public var names: [String] { self.entries.keys.sorted() }
}
