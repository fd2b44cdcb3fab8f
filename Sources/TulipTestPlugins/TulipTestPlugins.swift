import TulipDaemon

/// Plugins for testing the daemon itself, linked only into `tulipd-test`, never into `tulipd`.
public enum TulipTestPlugins {
    /// Registers `block-loop`.
    public static func register(into registry: inout PluginRegistry) {
        registry.register(BlockLoopPlugin.self)
    }
}
