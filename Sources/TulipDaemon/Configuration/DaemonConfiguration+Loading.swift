import Logging

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension DaemonConfiguration {
    /// The largest configuration file ``load(contentsOf:)`` reads, so a path such as `/dev/zero` fails
    /// instead of exhausting memory.
    public static let maximumFileSize = 64 << 20

    /// Reads, parses and validates a configuration file.
    ///
    /// - Parameter path: The file's path; errors name it as given.
    /// - Returns: The configuration, with every default filled in.
    /// - Throws: ``ConfigurationError`` when the file cannot be read (code
    ///   ``ConfigurationError/Code/unreadable``, with the `strerror` text) or is not valid JSON;
    ///   ``ConfigurationErrors`` with every schema error when the JSON does not describe a valid
    ///   configuration.
    public static func load(contentsOf path: String) throws -> DaemonConfiguration {
        try self.parse(try self.readFile(atPath: path), file: path)
    }

    /// Parses and validates a configuration from its bytes.
    ///
    /// - Parameters:
    ///   - bytes: The configuration as UTF-8 JSON.
    ///   - file: The name to put in errors, such as the file's path.
    /// - Returns: The configuration, with every default filled in.
    /// - Throws: ``ConfigurationError`` when the bytes are not valid JSON or an object repeats a key;
    ///   ``ConfigurationErrors`` with every schema error, in document order, otherwise.
    public static func parse(_ bytes: some Collection<UInt8>, file: String) throws -> DaemonConfiguration {
        let root: JSONValue.Node
        do throws(ConfigurationError) {
            root = try JSONParser().parse(bytes)
        } catch {
            var error = error
            error.file = file
            throw error
        }
        let diagnostics = ConfigurationDiagnostics(file: file)
        let configuration = SchemaReader(diagnostics: diagnostics).configuration(from: root)
        guard let configuration, diagnostics.isEmpty else { throw ConfigurationErrors(diagnostics.errors) }
        return configuration
    }

    private static func readFile(atPath path: String) throws(ConfigurationError) -> [UInt8] {
        func unreadable(_ reason: String) -> ConfigurationError {
            ConfigurationError(.unreadable, "cannot read configuration file: \(reason)", file: path)
        }

        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable(String(cString: strerror(errno))) }
        defer { close(descriptor) }

        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let (count, error) = chunk.withUnsafeMutableBytes { buffer in
                // errno is read before anything else can overwrite it.
                let count = read(descriptor, buffer.baseAddress, buffer.count)
                return (count, errno)
            }
            if count == 0 { return bytes }
            if count < 0 {
                if error == EINTR { continue }
                throw unreadable(String(cString: strerror(error)))
            }
            bytes.append(contentsOf: chunk[..<count])
            if bytes.count > Self.maximumFileSize { throw unreadable("larger than \(Self.maximumFileSize >> 20) MiB") }
        }
    }
}

// MARK: - Schema

// Walks the parsed document, reporting every schema error to `diagnostics` rather than stopping at the
// first. A section with errors yields `nil`; the caller then throws whatever was reported.
private struct SchemaReader {
    let diagnostics: ConfigurationDiagnostics

    func configuration(from root: JSONValue.Node) -> DaemonConfiguration? {
        guard var reader = ConfigurationObjectReader(root, keyPath: "", diagnostics: self.diagnostics) else {
            return nil
        }
        var log = LogConfiguration()
        if var logReader = reader.object("log") {
            log = self.log(from: &logReader)
            logReader.reportUnknownKeys()
        }
        var shutdown = ShutdownConfiguration()
        if var shutdownReader = reader.object("shutdown") {
            shutdown.gracePeriod = shutdownReader.seconds("grace_seconds", allowsZero: true) ?? shutdown.gracePeriod
            shutdownReader.reportUnknownKeys()
        }
        var admin: AdminConfiguration?
        if var adminReader = reader.object("admin") {
            admin = self.admin(from: &adminReader)
            adminReader.reportUnknownKeys()
        }
        var metrics: MetricsConfiguration?
        if var metricsReader = reader.object("metrics") {
            if var tcpReader = metricsReader.object("tcp", required: true) {
                metrics = self.metrics(from: &tcpReader)
                tcpReader.reportUnknownKeys()
            }
            metricsReader.reportUnknownKeys()
        }
        var limits = LimitsConfiguration()
        if var limitsReader = reader.object("limits") {
            limits = self.limits(from: &limitsReader)
            limitsReader.reportUnknownKeys()
        }
        let listeners = self.listeners(from: &reader, defaultLimits: limits)
        reader.reportUnknownKeys()
        return listeners.map {
            DaemonConfiguration(
                log: log,
                shutdown: shutdown,
                limits: limits,
                listeners: $0,
                admin: admin,
                metrics: metrics
            )
        }
    }

    private func admin(from reader: inout ConfigurationObjectReader) -> AdminConfiguration? {
        let path = reader.string("path", required: true, problem: Self.socketPathProblem)
        let mode = self.mode(from: &reader)
        guard let path else { return nil }
        return AdminConfiguration(path: path, mode: mode ?? 0o600)
    }

    private func metrics(from reader: inout ConfigurationObjectReader) -> MetricsConfiguration? {
        let host = reader.string("host", problem: Self.pathProblem)
        let port = reader.integer("port", in: 0...65535, required: true)
        guard let port else { return nil }
        return MetricsConfiguration(host: host ?? "127.0.0.1", port: port)
    }

    private func log(from reader: inout ConfigurationObjectReader) -> LogConfiguration {
        let levels = Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")
        let level = reader.value("level", expected: "string") {
            value -> ConfigurationObjectReader.Check<Logger.Level> in
            guard case .string(let text) = value else { return .wrongType }
            guard let level = Logger.Level(rawValue: text) else {
                return .invalid("unknown log level '\(text)'; expected one of \(levels)")
            }
            return .valid(level)
        }
        let formats = LogConfiguration.Format.allFormats.map(\.description).joined(separator: ", ")
        let format = reader.value("format", expected: "string") {
            value -> ConfigurationObjectReader.Check<LogConfiguration.Format> in
            guard case .string(let text) = value else { return .wrongType }
            guard let format = LogConfiguration.Format(configurationValue: text) else {
                return .invalid("unknown log format '\(text)'; expected one of \(formats)")
            }
            return .valid(format)
        }
        return LogConfiguration(level: level ?? .info, format: format ?? .auto)
    }

    // MARK: Listeners

    private func listeners(
        from reader: inout ConfigurationObjectReader,
        defaultLimits: LimitsConfiguration
    ) -> [ListenerConfiguration]? {
        guard let node = reader.node("listeners", required: true, expected: "array") else { return nil }
        guard case .array(let elements) = node.value else {
            self.diagnostics.report(
                .typeMismatch(expected: "array", got: node.value, keyPath: "listeners", at: node.location)
            )
            return nil
        }
        guard !elements.isEmpty else {
            self.diagnostics.report(
                .invalidValue("at least one listener is required", keyPath: "listeners", at: node.location)
            )
            return nil
        }
        var listeners: [ListenerConfiguration] = []
        var indicesByName: [String: Int] = [:]
        for (index, element) in elements.enumerated() {
            let keyPath = "listeners".appendingKeyPath(index: index)
            guard
                var listenerReader = ConfigurationObjectReader(element, keyPath: keyPath, diagnostics: self.diagnostics)
            else { continue }
            let listener = self.listener(from: &listenerReader, defaultLimits: defaultLimits)
            listenerReader.reportUnknownKeys()
            // Names are compared even when something else in the listener is wrong, so that fixing one
            // error does not reveal another.
            if let nameNode = listenerReader.object["name"], case .string(let name) = nameNode.value,
                Self.listenerNameProblem(name) == nil
            {
                if let first = indicesByName[name] {
                    self.diagnostics.report(
                        .invalidValue(
                            "duplicate listener name '\(name)'; listeners[\(first)] already uses it",
                            keyPath: listenerReader.keyPath("name"),
                            at: nameNode.location
                        )
                    )
                } else {
                    indicesByName[name] = index
                }
            }
            if let listener { listeners.append(listener) }
        }
        return listeners.count == elements.count ? listeners : nil
    }

    private func listener(
        from reader: inout ConfigurationObjectReader,
        defaultLimits: LimitsConfiguration
    ) -> ListenerConfiguration? {
        let name = reader.string("name", required: true, problem: Self.listenerNameProblem)
        let protocolName = reader.string("protocol", required: true) { $0.isEmpty ? "must not be empty" : nil }

        let kindKeys = ListenerKind.allKinds.map(\.description)
        let presentKinds = ListenerKind.allKinds.filter {
            reader.object[$0.description].map { $0.value != .null } ?? false
        }
        var endpoint: ListenerEndpoint?
        for kind in ListenerKind.allKinds {
            guard var endpointReader = reader.object(kind.description) else { continue }
            let parsed = self.endpoint(of: kind, from: &endpointReader)
            endpointReader.reportUnknownKeys()
            if presentKinds.count == 1 { endpoint = parsed }
        }
        if presentKinds.isEmpty {
            self.diagnostics.report(
                ConfigurationError(
                    .missingKey,
                    "expected one of the keys \(kindKeys.joined(separator: ", ")); found none",
                    keyPath: reader.keyPath,
                    location: reader.location
                )
            )
        } else if presentKinds.count > 1 {
            let found = presentKinds.map(\.description).joined(separator: ", ")
            self.diagnostics.report(
                .invalidValue(
                    "expected only one of the keys \(kindKeys.joined(separator: ", ")); found \(found)",
                    keyPath: reader.keyPath,
                    at: reader.location
                )
            )
        }

        var tls: TLSFileConfiguration?
        let tlsNode = reader.node("tls")
        if let tlsNode {
            if presentKinds.count == 1, !presentKinds[0].supportsTLS {
                self.diagnostics.report(
                    .invalidValue(
                        "tls is only supported on tcp and unix listeners, not \(presentKinds[0])",
                        keyPath: reader.keyPath("tls"),
                        at: tlsNode.location
                    )
                )
            } else if var tlsReader = ConfigurationObjectReader(
                tlsNode,
                keyPath: reader.keyPath("tls"),
                diagnostics: self.diagnostics
            ) {
                tls = self.tls(from: &tlsReader)
                tlsReader.reportUnknownKeys()
            }
        }
        let limits = self.listenerLimits(from: &reader, kinds: presentKinds, defaults: defaultLimits)
        let options = reader.node("options")

        guard let name, let protocolName, let endpoint, let limits else { return nil }
        return ListenerConfiguration(
            name: name,
            protocolName: protocolName,
            endpoint: endpoint,
            tls: tls,
            limits: limits,
            options: options?.value,
            keyPath: reader.keyPath,
            locations: ListenerConfiguration.Locations(
                listener: reader.location,
                protocolName: reader.object["protocol"]?.location,
                options: options?.location,
                tls: tlsNode?.location
            )
        )
    }

    // systemd accepts longer FileDescriptorName= values; this subset is also safe in logs and file names.
    private static func listenerNameProblem(_ name: String) -> String? {
        guard (1...64).contains(name.utf8.count) else { return "must be 1 to 64 characters long" }
        let isAllowed = name.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
                true
            default:
                false
            }
        }
        return isAllowed ? nil : "'\(name)' may contain only letters, digits, '.', '_' and '-'"
    }

    // MARK: Endpoints

    private func endpoint(
        of kind: ListenerKind,
        from reader: inout ConfigurationObjectReader
    ) -> ListenerEndpoint? {
        switch kind {
        case .tcp: self.tcp(from: &reader).map(ListenerEndpoint.tcp)
        case .unix: self.unix(from: &reader).map(ListenerEndpoint.unix)
        case .udp: self.udp(from: &reader).map(ListenerEndpoint.udp)
        case .unixDatagram: self.unixDatagram(from: &reader).map(ListenerEndpoint.unixDatagram)
        default: self.pipe(from: &reader).map(ListenerEndpoint.pipe)
        }
    }

    private func tcp(from reader: inout ConfigurationObjectReader) -> TCPEndpoint? {
        let hosts = self.hosts(from: &reader)
        let port = reader.integer("port", in: 0...65535, required: true)
        let backlog = reader.integer("backlog", in: 1...65535)
        let reuseAddress = reader.bool("reuse_address")
        let reusePort = reader.bool("reuse_port")
        let keepAlive = reader.bool("keep_alive")
        guard let hosts, let port else { return nil }
        return TCPEndpoint(
            hosts: hosts,
            port: port,
            backlog: backlog ?? 100,
            reuseAddress: reuseAddress ?? true,
            reusePort: reusePort ?? false,
            keepAlive: keepAlive ?? false
        )
    }

    private func udp(from reader: inout ConfigurationObjectReader) -> UDPEndpoint? {
        let hosts = self.hosts(from: &reader)
        let port = reader.integer("port", in: 0...65535, required: true)
        let reusePort = reader.bool("reuse_port")
        let allowBroadcast = reader.bool("allow_broadcast")
        guard let hosts, let port else { return nil }
        return UDPEndpoint(
            hosts: hosts,
            port: port,
            reusePort: reusePort ?? false,
            allowBroadcast: allowBroadcast ?? false
        )
    }

    private func unix(from reader: inout ConfigurationObjectReader) -> UnixEndpoint? {
        let path = reader.string("path", required: true, problem: Self.socketPathProblem)
        let mode = self.mode(from: &reader)
        let backlog = reader.integer("backlog", in: 1...65535)
        guard let path else { return nil }
        return UnixEndpoint(path: path, mode: mode, backlog: backlog ?? 100)
    }

    private func unixDatagram(from reader: inout ConfigurationObjectReader) -> UnixDatagramEndpoint? {
        let path = reader.string("path", required: true, problem: Self.socketPathProblem)
        let mode = self.mode(from: &reader)
        guard let path else { return nil }
        return UnixDatagramEndpoint(path: path, mode: mode)
    }

    private func pipe(from reader: inout ConfigurationObjectReader) -> PipeEndpoint? {
        let readPath = reader.string("read", problem: Self.pathProblem)
        let writePath = reader.string("write", problem: Self.pathProblem)
        let mode = self.mode(from: &reader)
        let object = reader.object
        let isPresent = { (key: String) in object[key].map { $0.value != .null } ?? false }
        guard isPresent("read") || isPresent("write") else {
            self.diagnostics.report(
                ConfigurationError(
                    .missingKey,
                    "expected 'read', 'write' or both",
                    keyPath: reader.keyPath,
                    location: reader.location
                )
            )
            return nil
        }
        guard readPath != nil || writePath != nil else { return nil }
        return PipeEndpoint(readPath: readPath, writePath: writePath, mode: mode ?? 0o600)
    }

    // `host` is a string, a list of strings, or null; absent, null and "" all mean every interface.
    private func hosts(from reader: inout ConfigurationObjectReader) -> [String]? {
        guard let node = reader.node("host") else { return [] }
        switch node.value {
        case .string(let host):
            return host.isEmpty ? [] : [host]
        case .array(let elements):
            guard !elements.isEmpty else {
                self.diagnostics.report(
                    .invalidValue(
                        "must list at least one host; leave 'host' out to listen on every interface",
                        keyPath: reader.keyPath("host"),
                        at: node.location
                    )
                )
                return nil
            }
            let hosts = reader.strings("host") { $0.isEmpty ? "must not be empty" : nil }
            guard let hosts else { return nil }
            for (index, host) in hosts.enumerated() where hosts[..<index].contains(host) {
                self.diagnostics.report(
                    .invalidValue(
                        "duplicate host '\(host)'",
                        keyPath: reader.keyPath("host").appendingKeyPath(index: index),
                        at: elements[index].location
                    )
                )
                return nil
            }
            return hosts
        default:
            self.diagnostics.report(
                .typeMismatch(
                    expected: "string, array of strings or null",
                    got: node.value,
                    keyPath: reader.keyPath("host"),
                    at: node.location
                )
            )
            return nil
        }
    }

    private func mode(from reader: inout ConfigurationObjectReader) -> UInt16? {
        reader.value("mode", expected: "octal string such as \"0660\"") {
            value -> ConfigurationObjectReader.Check<UInt16> in
            guard case .string(let text) = value else { return .wrongType }
            let isOctal = text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) }
            guard (3...4).contains(text.utf8.count), isOctal, let mode = UInt16(text, radix: 8) else {
                return .invalid("'\(text)' is not a file mode; expected 3 or 4 octal digits such as \"0660\"")
            }
            guard mode <= 0o777 else {
                return .invalid("'\(text)' sets setuid, setgid or sticky bits; expected at most 0777")
            }
            return .valid(mode)
        }
    }

    private static func pathProblem(_ path: String) -> String? {
        if path.isEmpty { return "must not be empty" }
        if path.utf8.contains(0) { return "must not contain NUL characters" }
        return nil
    }

    // `sockaddr_un.sun_path` holds 108 bytes on Linux, including the terminating NUL.
    private static func socketPathProblem(_ path: String) -> String? {
        if let problem = Self.pathProblem(path) { return problem }
        let length = path.utf8.count
        return length > 107 ? "is \(length) bytes long; a unix socket path may be at most 107 bytes" : nil
    }

    // MARK: Limits

    private func limits(from reader: inout ConfigurationObjectReader) -> LimitsConfiguration {
        let range = 1...Int(Int32.max)
        return LimitsConfiguration(
            maxConnections: reader.integer("max_connections", in: range),
            maxConnectionsPerSource: reader.integer("max_connections_per_source", in: range),
            idleTimeout: reader.seconds("idle_timeout_seconds", allowsZero: false)
        )
    }

    // Stream listeners merge their own limits over the defaults; the others have nothing to limit
    // (a datagram endpoint has no connections, a pipe is one), so `limits` there is an error.
    private func listenerLimits(
        from reader: inout ConfigurationObjectReader,
        kinds: [ListenerKind],
        defaults: LimitsConfiguration
    ) -> LimitsConfiguration? {
        let isStream = kinds.count == 1 && (kinds[0] == .tcp || kinds[0] == .unix)
        guard let node = reader.node("limits") else {
            return isStream ? defaults : LimitsConfiguration()
        }
        if kinds.count == 1, !isStream {
            self.diagnostics.report(
                .invalidValue(
                    "limits are only supported on tcp and unix listeners, not \(kinds[0])",
                    keyPath: reader.keyPath("limits"),
                    at: node.location
                )
            )
            return nil
        }
        guard
            var limitsReader = ConfigurationObjectReader(
                node,
                keyPath: reader.keyPath("limits"),
                diagnostics: self.diagnostics
            )
        else { return nil }
        let own = self.limits(from: &limitsReader)
        limitsReader.reportUnknownKeys()
        return own.merging(over: defaults)
    }

    // MARK: TLS

    private func tls(from reader: inout ConfigurationObjectReader) -> TLSFileConfiguration? {
        let certificateChain = reader.string("certificate_chain", required: true, problem: Self.pathProblem)
        let privateKey = reader.string("private_key", required: true, problem: Self.pathProblem)
        let handshakeTimeout = reader.seconds("handshake_timeout_seconds", allowsZero: false)
        let alpn = reader.strings("alpn") { name in
            if name.isEmpty { return "must not be empty" }
            return name.utf8.count > 255 ? "is longer than 255 bytes, the most ALPN allows" : nil
        }
        let clientCA = reader.string("client_ca", problem: Self.pathProblem)
        let minimumVersion = reader.value("min_version", expected: "string \"1.2\" or \"1.3\"") { value in
            guard case .string(let text) = value else {
                return ConfigurationObjectReader.Check<TLSFileConfiguration.ProtocolVersion>.wrongType
            }
            guard let version = TLSFileConfiguration.ProtocolVersion(configurationValue: text) else {
                return .invalid("unsupported TLS version '\(text)'; expected \"1.2\" or \"1.3\"")
            }
            return .valid(version)
        }
        guard let certificateChain, let privateKey else { return nil }
        return TLSFileConfiguration(
            certificateChainFile: certificateChain,
            privateKeyFile: privateKey,
            handshakeTimeout: handshakeTimeout ?? .seconds(60),
            alpnProtocols: alpn ?? [],
            clientCAFile: clientCA,
            minimumVersion: minimumVersion ?? .tls12
        )
    }
}
