import Logging
import Tulip
import TulipTLS

/// A configuration checked against a plugin registry: everything `tulipd check` can validate
/// without binding a socket, and the protocol factories the listeners will use.
public struct DaemonPlan: Sendable {
    /// One listener, ready to bind.
    public struct Listener: Sendable {
        /// The listener's configuration.
        public let configuration: ListenerConfiguration
        /// Its plugin.
        public let plugin: PluginRegistry.Entry
        /// The factory made from its options.
        public let factory: any ProtocolFactory
        /// The TLS server context built from its `tls` block, if it has one.
        public let tls: TLSContext?
    }

    /// The configuration the plan was made from.
    public let configuration: DaemonConfiguration
    /// The listeners, in config order.
    public let listeners: [Listener]

    /// The listener kinds this build can serve; the others parse but fail the check until their
    /// support lands.
    public static let runnableKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram, .pipe]

    /// Checks every listener against `registry`, collecting every error.
    /// - Throws: ``ConfigurationErrors`` naming each listener's key path.
    public init(configuration: DaemonConfiguration, registry: PluginRegistry, logger: Logger) throws {
        var errors: [ConfigurationError] = []
        var listeners: [Listener] = []
        for listener in configuration.listeners {
            let path = listener.keyPath
            guard let plugin = registry.entry(named: listener.protocolName) else {
                errors.append(
                    .invalidValue(
                        "unknown plugin \"\(listener.protocolName)\"; known plugins: \(registry.names.joined(separator: ", "))",
                        keyPath: "\(path).protocol",
                        at: listener.locations.protocolName
                    )
                )
                continue
            }
            let kind = listener.endpoint.kind
            guard Self.runnableKinds.contains(kind) else {
                errors.append(
                    .invalidValue(
                        "\(kind) listeners are not supported yet",
                        keyPath: "\(path).\(kind)",
                        at: listener.locations.listener
                    )
                )
                continue
            }
            guard plugin.supportedKinds.contains(kind) else {
                let supported = plugin.supportedKinds.map(\.description).sorted().joined(separator: ", ")
                errors.append(
                    .invalidValue(
                        "plugin \"\(plugin.name)\" does not support \(kind) listeners (it supports: \(supported))",
                        keyPath: path,
                        at: listener.locations.listener
                    )
                )
                continue
            }
            var tlsContext: TLSContext?
            if let tls = listener.tls {
                do {
                    tlsContext = try Self.makeTLSContext(tls)
                } catch let error as OpenSSLError {
                    let key: String
                    switch error.input {
                    case .certificateChain: key = "certificate_chain"
                    case .privateKey: key = "private_key"
                    case .clientCA: key = "client_ca"
                    case .alpn: key = "alpn"
                    case nil: key = ""
                    }
                    // The listener's name as well as its key path: a reload that re-reads a
                    // certificate from an unchanged file is logged, and the name is what operators grep.
                    errors.append(
                        .invalidValue(
                            "listener \"\(listener.name)\": \(error)",
                            keyPath: key.isEmpty ? "\(path).tls" : "\(path).tls.\(key)",
                            at: listener.locations.tls
                        )
                    )
                    continue
                } catch {
                    errors.append(.invalidValue("\(error)", keyPath: "\(path).tls", at: listener.locations.tls))
                    continue
                }
            }
            var pluginLogger = logger
            pluginLogger[metadataKey: "listener"] = "\(listener.name)"
            pluginLogger[metadataKey: "protocol"] = "\(plugin.name)"
            let context = PluginContext(
                listenerName: listener.name,
                kind: kind,
                optionsKeyPath: "\(path).options",
                optionsLocation: listener.locations.options,
                logger: pluginLogger
            )
            do {
                let factory = try plugin.makeFactory(listener, context)
                listeners.append(Listener(configuration: listener, plugin: plugin, factory: factory, tls: tlsContext))
            } catch let error as ConfigurationError {
                errors.append(error)
            } catch let error as ConfigurationErrors {
                errors.append(contentsOf: error.errors)
            } catch {
                errors.append(.invalidValue("\(error)", keyPath: "\(path).options", at: listener.locations.options))
            }
        }
        if !errors.isEmpty { throw ConfigurationErrors(errors) }
        self.configuration = configuration
        self.listeners = listeners
    }

    /// Loads a `tls` block's files: the chain, the key (checked to match), the client CA.
    static func makeTLSContext(_ tls: TLSFileConfiguration) throws -> TLSContext {
        try TLSContext.server(
            certificateChain: tls.certificateChainFile,
            privateKey: tls.privateKeyFile,
            minimumVersion: tls.minimumVersion == .tls13 ? .tls13 : .tls12,
            alpn: tls.alpnProtocols,
            clientCA: tls.clientCAFile
        )
    }
}
