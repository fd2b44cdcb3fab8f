import Logging
import Tulip

/// A protocol plugin: a named, compiled-in protocol that listeners can serve.
///
/// A plugin has a name, a one-line summary, the listener kinds it supports, a `Decodable`
/// options type (decoded strictly from the listener's `options`, so an unknown key is a config
/// error), and a factory maker. Register it in a ``PluginRegistry`` at start-up:
///
/// ```swift
/// struct Upcase: Plugin {
///     struct Options: Decodable, Sendable {}
///     static let name = "upcase"
///     static let summary = "Echoes lines in upper case"
///     static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]
///     static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory {
///         StreamProtocolFactory { UpcaseProtocol() }
///     }
/// }
/// ```
public protocol Plugin: SendableMetatype {
    /// The plugin's options, decoded from the listener's `options` object (absent means `{}`).
    associatedtype Options: Decodable & Sendable

    /// The name listeners use in their `protocol` key.
    static var name: String { get }
    /// One line for `tulipd plugins`.
    static var summary: String { get }
    /// The listener kinds the plugin can serve.
    static var supportedKinds: Set<ListenerKind> { get }

    /// Validates `options` and returns the factory that makes a protocol object per connection.
    ///
    /// Called once per listener at start-up and by `tulipd check`; throw a
    /// ``ConfigurationError`` (use ``PluginContext/invalidOption(_:_:)``) for options that decode
    /// but make no sense.
    static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory
}

/// Makes the protocol objects of one listener.
///
/// Called on the loop's thread. Stream listeners (`tcp`, `unix`) call ``makeStreamProtocol()``
/// once per connection; datagram listeners (`udp`, `unix_datagram`) call
/// ``makeDatagramProtocol()`` once per endpoint. A plugin's `supportedKinds` decides which the
/// daemon calls, so a stream-only factory need not implement the datagram one.
public protocol ProtocolFactory: Sendable {
    /// A new protocol object for one stream connection.
    func makeStreamProtocol() throws -> any StreamProtocol

    /// A new protocol object for one datagram endpoint.
    ///
    /// The default throws: only plugins whose `supportedKinds` include `.udp` or `.unixDatagram`
    /// are asked.
    func makeDatagramProtocol() throws -> any DatagramProtocol
}

extension ProtocolFactory {
    /// Throws: this factory serves streams only.
    public func makeDatagramProtocol() throws -> any DatagramProtocol {
        throw UnsupportedListenerKindError(message: "this plugin does not serve datagram listeners")
    }
}

/// A factory asked for a kind of protocol object it does not make.
public struct UnsupportedListenerKindError: Error, Sendable, CustomStringConvertible {
    /// What went wrong.
    public let message: String
    public var description: String { self.message }
}

/// A ``ProtocolFactory`` from two closures: one for stream connections, one for datagram endpoints.
public struct StreamAndDatagramProtocolFactory: ProtocolFactory {
    private let makeStream: @Sendable () throws -> any StreamProtocol
    private let makeDatagram: @Sendable () throws -> any DatagramProtocol

    /// Wraps the closures, each called on the loop's thread.
    public init(
        stream: @escaping @Sendable () throws -> any StreamProtocol,
        datagram: @escaping @Sendable () throws -> any DatagramProtocol
    ) {
        self.makeStream = stream
        self.makeDatagram = datagram
    }

    /// Calls the stream closure.
    public func makeStreamProtocol() throws -> any StreamProtocol { try self.makeStream() }
    /// Calls the datagram closure.
    public func makeDatagramProtocol() throws -> any DatagramProtocol { try self.makeDatagram() }
}

/// A ``ProtocolFactory`` from a closure.
public struct StreamProtocolFactory: ProtocolFactory {
    private let make: @Sendable () throws -> any StreamProtocol

    /// Wraps `make`, called once per connection on the loop's thread.
    public init(_ make: @escaping @Sendable () throws -> any StreamProtocol) {
        self.make = make
    }

    /// Calls the closure.
    public func makeStreamProtocol() throws -> any StreamProtocol {
        try self.make()
    }
}

/// What a plugin knows about the listener it is made for.
public struct PluginContext: Sendable {
    /// The listener's name.
    public var listenerName: String
    /// The listener's kind.
    public var kind: ListenerKind
    /// The key path of the listener's options, for errors (`listeners[2].options`).
    public var optionsKeyPath: String
    /// Where the options start in the config file, if known.
    public var optionsLocation: JSONValue.Location?
    /// A logger with the listener's metadata.
    public var logger: Logger

    /// Makes a context.
    public init(
        listenerName: String,
        kind: ListenerKind,
        optionsKeyPath: String,
        optionsLocation: JSONValue.Location? = nil,
        logger: Logger
    ) {
        self.optionsLocation = optionsLocation
        self.listenerName = listenerName
        self.kind = kind
        self.optionsKeyPath = optionsKeyPath
        self.logger = logger
    }

    /// A config error about the option `key`.
    public func invalidOption(_ key: String, _ message: String) -> ConfigurationError {
        ConfigurationError.invalidValue(message, keyPath: "\(self.optionsKeyPath).\(key)", at: self.optionsLocation)
    }
}
