import TulipDaemon

/// The built-in protocol plugins of `tulipd`.
public enum TulipPlugins {
    /// Registers every built-in plugin: `echo`, `discard`, `chargen`, `daytime`, `time`,
    /// `files`, `starttls-echo`.
    public static func register(into registry: inout PluginRegistry) {
        registry.register(EchoPlugin.self)
        registry.register(DiscardPlugin.self)
        registry.register(ChargenPlugin.self)
        registry.register(DaytimePlugin.self)
        registry.register(TimePlugin.self)
        registry.register(FilesPlugin.self)
        registry.register(StartTLSEchoPlugin.self)
    }

    /// A registry holding the built-ins.
    public static func makeRegistry() -> PluginRegistry {
        var registry = PluginRegistry()
        Self.register(into: &registry)
        return registry
    }
}

/// Options for plugins that take none: any key is an error.
public struct NoOptions: Decodable, Sendable {}
