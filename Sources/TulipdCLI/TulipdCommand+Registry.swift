import ArgumentParser
import NIOConcurrencyHelpers
import TulipDaemon

extension TulipdCommand {
    /// The registry of the running executable, set once by ``main(registry:)`` on the main thread
    /// before any argument is parsed; subcommands read it on the same thread.
    private static let installedRegistry = NIOLockedValueBox<PluginRegistry?>(nil)

    /// Runs the subcommand the process's arguments name, with the plugins in `registry`.
    ///
    /// Call it from the executable's `main()`, on the main thread; on an error it exits the
    /// process with the error's code, as `ParsableCommand.main()` does.
    ///
    /// This is the entry point a package with its own plugins calls: build a registry with the
    /// built-ins (`TulipPlugins.register(into:)`) and its own plugins, then hand it over.
    public static func main(registry: PluginRegistry) {
        Self.installedRegistry.withLockedValue { $0 = registry }
        Self.main()
    }

    /// The registry ``main(registry:)`` installed; a validation error when the command was
    /// started through `ParsableCommand.main()` instead, which has no plugins to offer.
    static func registry() throws -> PluginRegistry {
        guard let registry = Self.installedRegistry.withLockedValue({ $0 }) else {
            throw ValidationError("no plugin registry: start tulipd through TulipdCommand.main(registry:)")
        }
        return registry
    }
}
