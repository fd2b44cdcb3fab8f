/// A listener's TLS settings as the configuration file gives them (the `tls` object): file paths and
/// protocol limits, not yet loaded.
///
/// Loading checks only the shape: paths are non-empty and free of NUL bytes. Whether the files exist
/// and hold a matching certificate and key is checked when the TLS context is built.
public struct TLSFileConfiguration: Sendable, Hashable {
    /// A TLS protocol version, as the configuration file writes it (`"1.2"`, `"1.3"`).
    public struct ProtocolVersion: Hashable, Sendable, Comparable, CustomStringConvertible {
        private let minor: Int
        private init(minor: Int) { self.minor = minor }

        /// TLS 1.2.
        public static let tls12 = ProtocolVersion(minor: 2)
        /// TLS 1.3.
        public static let tls13 = ProtocolVersion(minor: 3)

        /// The version that the configuration file writes as `text`, such as `"1.3"`.
        public init?(configurationValue text: String) {
            switch text {
            case "1.2": self = .tls12
            case "1.3": self = .tls13
            default: return nil
            }
        }

        /// Whether `lhs` is an older version than `rhs`.
        public static func < (lhs: ProtocolVersion, rhs: ProtocolVersion) -> Bool { lhs.minor < rhs.minor }

        /// The version as the configuration file writes it, such as `1.3`.
        public var description: String { "1.\(self.minor)" }
    }

    /// The PEM file with the server certificate followed by its intermediates (`certificate_chain`).
    public var certificateChainFile: String
    /// The PEM file with the certificate's private key (`private_key`).
    public var privateKeyFile: String
    /// How long a handshake may take before the connection is dropped (`handshake_timeout_seconds`);
    /// 60 seconds by default, as asyncio.
    public var handshakeTimeout: Duration
    /// The ALPN protocol names to offer, in preference order (`alpn`); empty means no ALPN.
    public var alpnProtocols: [String]
    /// A PEM file of CA certificates; when set, clients must present a certificate they signed
    /// (`client_ca`).
    public var clientCAFile: String?
    /// The oldest TLS version to accept (`min_version`); TLS 1.2 by default.
    public var minimumVersion: ProtocolVersion

    /// Makes a TLS configuration; the defaults are the configuration file's.
    public init(
        certificateChainFile: String,
        privateKeyFile: String,
        handshakeTimeout: Duration = .seconds(60),
        alpnProtocols: [String] = [],
        clientCAFile: String? = nil,
        minimumVersion: ProtocolVersion = .tls12
    ) {
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.handshakeTimeout = handshakeTimeout
        self.alpnProtocols = alpnProtocols
        self.clientCAFile = clientCAFile
        self.minimumVersion = minimumVersion
    }
}
