public import Logging

/// Everything `tulipd.json` configures: logging, shutdown and the listeners.
///
/// Load it with ``load(contentsOf:)`` or ``parse(_:file:)``. The file's keys are snake_case; a key that
/// the schema does not define is an error anywhere in the file, and an optional key set to `null` means
/// the same as leaving it out.
public struct DaemonConfiguration: Sendable, Hashable {
    /// Logging settings (`log`).
    public var log: LogConfiguration
    /// Graceful-shutdown settings (`shutdown`).
    public var shutdown: ShutdownConfiguration
    /// The default connection limits of every `tcp` and `unix` listener (`limits`); each
    /// listener's ``ListenerConfiguration/limits`` already has them merged in.
    public var limits: LimitsConfiguration
    /// The listeners (`listeners`), in file order; at least one, with unique names.
    public var listeners: [ListenerConfiguration]
    /// The admin socket (`admin`), if the daemon serves one.
    public var admin: AdminConfiguration?
    /// The Prometheus endpoint (`metrics`), if the daemon serves one.
    public var metrics: MetricsConfiguration?

    /// Makes a configuration; the defaults are the configuration file's.
    public init(
        log: LogConfiguration = LogConfiguration(),
        shutdown: ShutdownConfiguration = ShutdownConfiguration(),
        limits: LimitsConfiguration = LimitsConfiguration(),
        listeners: [ListenerConfiguration],
        admin: AdminConfiguration? = nil,
        metrics: MetricsConfiguration? = nil
    ) {
        self.log = log
        self.shutdown = shutdown
        self.limits = limits
        self.listeners = listeners
        self.admin = admin
        self.metrics = metrics
    }

    /// The listener with the given name, such as the `FileDescriptorName=` of a socket systemd passed.
    public func listener(named name: String) -> ListenerConfiguration? {
        self.listeners.first { $0.name == name }
    }
}

// MARK: - Logging

/// How the daemon logs (the `log` object).
public struct LogConfiguration: Sendable, Hashable {
    /// Where and in which shape log records go; an open set of values.
    public struct Format: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case auto
            case journald
            case text
            case json
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Journald's native protocol when stderr is connected to the journal (per `JOURNAL_STREAM`),
        /// otherwise text.
        public static let auto = Format(.auto)
        /// Journald's native protocol, with structured fields.
        public static let journald = Format(.journald)
        /// One line of text per record on stderr.
        public static let text = Format(.text)
        /// One JSON object per line on stderr.
        public static let json = Format(.json)

        /// Every format, in the order the configuration documentation lists them.
        public static let allFormats: [Format] = [.auto, .journald, .text, .json]

        /// The format that the configuration file writes as `text`, such as `journald`.
        public init?(configurationValue text: String) {
            guard let base = Base(rawValue: text) else { return nil }
            self.base = base
        }

        /// The format as the configuration file writes it.
        public var description: String { self.base.rawValue }
    }

    /// The lowest level logged (`level`): `trace`, `debug`, `info`, `notice`, `warning`, `error` or
    /// `critical`; `info` by default.
    public var level: Logger.Level
    /// The output format (`format`); ``Format/auto`` by default.
    public var format: Format

    /// Makes logging settings; the defaults are the configuration file's.
    public init(level: Logger.Level = .info, format: Format = .auto) {
        self.level = level
        self.format = format
    }
}

// MARK: - Shutdown

/// How the daemon stops (the `shutdown` object).
public struct ShutdownConfiguration: Sendable, Hashable {
    /// How long connections may take to finish after SIGTERM before the rest are closed
    /// (`grace_seconds`), 0 to 86400 seconds; 10 seconds by default.
    public var gracePeriod: Duration

    /// Makes shutdown settings; the default is the configuration file's.
    public init(gracePeriod: Duration = .seconds(10)) {
        self.gracePeriod = gracePeriod
    }
}
