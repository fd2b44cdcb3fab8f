public import Logging

extension DaemonPlan {
    /// Reads the configuration file at `path` and checks it against `registry`.
    ///
    /// This is what start-up and every reload do; TLS files are read afresh each time.
    ///
    /// - Parameters:
    ///   - path: the configuration file; errors name it.
    ///   - registry: the plugins the listeners may use.
    ///   - logger: plugins log with it (plus `listener` and `protocol`); tag it with
    ///     `config_generation` first.
    /// - Returns: the checked plan.
    /// - Throws: ``ConfigurationError`` (unreadable file, JSON syntax with line and column) or
    ///   ``ConfigurationErrors`` (schema, plugins, plugin options, TLS files), every error naming
    ///   `path`.
    public static func load(contentsOf path: String, registry: PluginRegistry, logger: Logger) throws -> DaemonPlan {
        do {
            return try DaemonPlan(
                configuration: try DaemonConfiguration.load(contentsOf: path),
                registry: registry,
                logger: logger
            )
        } catch var error as ConfigurationError {
            if error.file == nil { error.file = path }
            throw error
        } catch var errors as ConfigurationErrors {
            for index in errors.errors.indices where errors.errors[index].file == nil {
                errors.errors[index].file = path
            }
            throw errors
        }
    }
}
