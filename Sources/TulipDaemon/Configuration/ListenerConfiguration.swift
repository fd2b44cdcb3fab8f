/// One entry of the configuration's `listeners` array: a named endpoint served by one protocol plugin.
///
/// Equality and hashing ignore ``keyPath`` and ``locations``, which say where the listener was written
/// rather than what it is, so a listener that moved within the file compares equal on reload.
public struct ListenerConfiguration: Sendable, Hashable {
    /// Where a listener's parts were written in the configuration file, for errors found after loading.
    public struct Locations: Sendable, Hashable {
        /// The listener object's opening brace.
        public var listener: JSONValue.Location?
        /// The `protocol` value.
        public var protocolName: JSONValue.Location?
        /// The `options` value.
        public var options: JSONValue.Location?
        /// The `tls` object.
        public var tls: JSONValue.Location?

        /// Makes a set of locations; unknown ones are `nil`.
        public init(
            listener: JSONValue.Location? = nil,
            protocolName: JSONValue.Location? = nil,
            options: JSONValue.Location? = nil,
            tls: JSONValue.Location? = nil
        ) {
            self.listener = listener
            self.protocolName = protocolName
            self.options = options
            self.tls = tls
        }
    }

    /// The listener's name (`name`): unique, 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    ///
    /// It doubles as the systemd `FileDescriptorName=` under which a socket unit can pass the socket.
    public var name: String
    /// The name of the plugin that serves the listener (`protocol`).
    public var protocolName: String
    /// Where the listener accepts traffic.
    public var endpoint: ListenerEndpoint
    /// TLS settings (`tls`), only for `tcp` and `unix` listeners.
    public var tls: TLSFileConfiguration?
    /// The connection limits in effect: the listener's `limits` merged over the top-level ones;
    /// always unlimited for datagram and pipe listeners.
    public var limits: LimitsConfiguration
    /// The plugin's options (`options`), undecoded; `nil` when absent or `null`.
    ///
    /// Decode them with ``decodeOptions(as:using:)``, which reports errors with the right key path.
    public var options: JSONValue?
    /// Where the listener sits in the configuration, such as `listeners[2]`; errors about it start here.
    public var keyPath: String
    /// Where the listener's parts were written.
    public var locations: Locations

    /// Makes a listener configuration.
    public init(
        name: String,
        protocolName: String,
        endpoint: ListenerEndpoint,
        tls: TLSFileConfiguration? = nil,
        limits: LimitsConfiguration = LimitsConfiguration(),
        options: JSONValue? = nil,
        keyPath: String = "",
        locations: Locations = Locations()
    ) {
        self.name = name
        self.protocolName = protocolName
        self.endpoint = endpoint
        self.tls = tls
        self.limits = limits
        self.options = options
        self.keyPath = keyPath
        self.locations = locations
    }

    /// The endpoint's kind.
    public var kind: ListenerKind { self.endpoint.kind }

    /// Decodes the plugin's options strictly, treating absent options as an empty object.
    ///
    /// An empty object lets an options type whose properties are all optional decode without any
    /// `options` key, while a type with required properties reports which key is missing.
    ///
    /// - Parameters:
    ///   - type: The plugin's options type.
    ///   - decoder: The decoder to use.
    /// - Returns: The decoded options.
    /// - Throws: ``ConfigurationError`` naming `listeners[i].options…`; its ``ConfigurationError/file`` is
    ///   `nil`, for the caller to fill in.
    public func decodeOptions<Options: Decodable>(
        as type: Options.Type,
        using decoder: JSONValueDecoder = JSONValueDecoder()
    ) throws(ConfigurationError) -> Options {
        try decoder.decode(
            type,
            from: self.options ?? .object(JSONObject()),
            keyPath: self.keyPath.appendingKeyPath(key: "options"),
            location: self.locations.options ?? self.locations.listener
        )
    }

    /// Whether two listeners are configured alike; ``keyPath`` and ``locations`` do not count.
    public static func == (lhs: ListenerConfiguration, rhs: ListenerConfiguration) -> Bool {
        lhs.name == rhs.name && lhs.protocolName == rhs.protocolName && lhs.endpoint == rhs.endpoint
            && lhs.tls == rhs.tls && lhs.limits == rhs.limits && lhs.options == rhs.options
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.name)
        hasher.combine(self.protocolName)
        hasher.combine(self.endpoint)
        hasher.combine(self.tls)
        hasher.combine(self.limits)
        hasher.combine(self.options)
    }
}
