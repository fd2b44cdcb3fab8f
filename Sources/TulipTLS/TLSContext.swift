import COpenSSL
import COpenSSLShims

/// The lowest TLS version a context accepts.
public enum TLSMinimumVersion: String, Sendable, Hashable {
    case tls12 = "1.2"
    case tls13 = "1.3"

    var openSSLValue: CInt {
        switch self {
        case .tls12: return TLS1_2_VERSION
        case .tls13: return TLS1_3_VERSION
        }
    }
}

/// An OpenSSL `SSL_CTX`: configured once, then shared by every connection made from it.
public final class TLSContext {
    private let pointer: OpaquePointer
    /// The server's ALPN protocols in preference order, as OpenSSL's wire format; retained here for
    /// the select callback, which receives it unretained.
    private let alpnBox: ALPNPreferences?
    /// Whether this context makes server-side connections.
    public let isServer: Bool
    /// Whether connections check the peer's certificate: client contexts unless made with
    /// `verifyPeer: false`, and server contexts with a `clientCA`.
    public let verifiesPeer: Bool

    private init(takingOwnershipOf pointer: OpaquePointer, isServer: Bool, alpn: ALPNPreferences?, verifiesPeer: Bool) {
        self.pointer = pointer
        self.isServer = isServer
        self.alpnBox = alpn
        self.verifiesPeer = verifiesPeer
    }

    deinit {
        SSL_CTX_free(self.pointer)
    }

    /// A server context.
    ///
    /// - Parameters:
    ///   - certificateChain: PEM file, leaf certificate first.
    ///   - privateKey: PEM file holding the key for the leaf certificate.
    ///   - minimumVersion: TLS 1.2 (default) or TLS 1.3.
    ///   - alpn: protocols offered in preference order; empty disables ALPN.
    ///   - clientCA: a PEM CA file; when set, every client must present a certificate it signed.
    /// - Returns: the configured context, to share between connections.
    /// - Throws: ``OpenSSLError`` naming the failing step, with OpenSSL's error queue.
    public static func server(
        certificateChain: String,
        privateKey: String,
        minimumVersion: TLSMinimumVersion = .tls12,
        alpn: [String] = [],
        clientCA: String? = nil
    ) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else {
            throw OpenSSLError.drain("SSL_CTX_new failed")
        }
        let alpnBox = try alpn.isEmpty ? nil : ALPNPreferences(alpn)
        let context = TLSContext(
            takingOwnershipOf: ctx,
            isServer: true,
            alpn: alpnBox,
            verifiesPeer: clientCA != nil
        )
        try context.configureCommon(minimumVersion: minimumVersion)
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateChain) == 1 else {
            throw OpenSSLError.drain("cannot load certificate chain \(certificateChain)", input: .certificateChain)
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKey, SSL_FILETYPE_PEM) == 1 else {
            let error = OpenSSLError.drain("cannot load private key \(privateKey)", input: .privateKey)
            // OpenSSL already compares the key with the certificate here (X509 "key values mismatch").
            if error.entries.contains(where: { $0.text.contains("mismatch") }) {
                throw OpenSSLError(
                    message: "private key \(privateKey) does not match certificate \(certificateChain)",
                    entries: error.entries,
                    input: .privateKey
                )
            }
            throw error
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw OpenSSLError.drain(
                "private key \(privateKey) does not match certificate \(certificateChain)",
                input: .privateKey
            )
        }
        if let clientCA {
            guard SSL_CTX_load_verify_locations(ctx, clientCA, nil) == 1 else {
                throw OpenSSLError.drain("cannot load client CA file \(clientCA)", input: .clientCA)
            }
            guard let names = SSL_load_client_CA_file(clientCA) else {
                throw OpenSSLError.drain("cannot read client CA names from \(clientCA)", input: .clientCA)
            }
            SSL_CTX_set_client_CA_list(ctx, names)
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
            let sessionID: [UInt8] = Array("tulip".utf8)
            _ = SSL_CTX_set_session_id_context(ctx, sessionID, UInt32(sessionID.count))
        }
        if let alpnBox {
            // passUnretained: the context keeps `alpnBox` alive for as long as SSL_CTX exists.
            SSL_CTX_set_alpn_select_cb(ctx, tulipALPNSelect, Unmanaged.passUnretained(alpnBox).toOpaque())
        }
        return context
    }

    /// A client context: verifies the server's chain (against `trustRoots`, or the system store when
    /// `nil`) and, per connection, its host name or IP address (`SSL_set1_host`,
    /// `X509_VERIFY_PARAM_set1_ip_asc`).
    ///
    /// A chain that does not lead to a trusted root, or a certificate for another name, fails the
    /// handshake with an ``OpenSSLError`` whose message ends in OpenSSL's verify result
    /// ("certificate verify failed: unable to get local issuer certificate", "… hostname mismatch").
    ///
    /// - Parameters:
    ///   - trustRoots: a PEM file of CA certificates; `nil` uses the system store.
    ///   - minimumVersion: TLS 1.2 (default) or TLS 1.3.
    ///   - alpn: protocols offered in preference order; empty offers none.
    ///   - verifyPeer: `false` accepts any certificate and any name (tests and pinned peers only).
    /// - Returns: the configured context, to share between connections.
    /// - Throws: ``OpenSSLError`` naming the failing step, with OpenSSL's error queue.
    public static func client(
        trustRoots: String? = nil,
        minimumVersion: TLSMinimumVersion = .tls12,
        alpn: [String] = [],
        verifyPeer: Bool = true
    ) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw OpenSSLError.drain("SSL_CTX_new failed")
        }
        let context = TLSContext(takingOwnershipOf: ctx, isServer: false, alpn: nil, verifiesPeer: verifyPeer)
        try context.configureCommon(minimumVersion: minimumVersion)
        if let trustRoots {
            guard SSL_CTX_load_verify_locations(ctx, trustRoots, nil) == 1 else {
                throw OpenSSLError.drain("cannot load trust roots \(trustRoots)")
            }
        } else {
            guard SSL_CTX_set_default_verify_paths(ctx) == 1 else {
                throw OpenSSLError.drain("cannot load the system trust store")
            }
        }
        SSL_CTX_set_verify(ctx, verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        if !alpn.isEmpty {
            let wire = try ALPNPreferences(alpn).wire
            guard SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw OpenSSLError.drain("SSL_CTX_set_alpn_protos failed")
            }
        }
        return context
    }

    private func configureCommon(minimumVersion: TLSMinimumVersion) throws {
        guard tulip_SSL_CTX_set_min_proto_version(self.pointer, minimumVersion.openSSLValue) == 1 else {
            throw OpenSSLError.drain("cannot set the minimum TLS version")
        }
        // Compression off and renegotiation refused; the cipher lists stay OpenSSL's secure defaults.
        tulip_SSL_CTX_disable_compression_and_renegotiation(self.pointer)
    }

    /// Makes a new `SSL` for one connection.
    func makeConnection(serverHostname: String?) throws -> OpenSSLConnection {
        try OpenSSLConnection(context: self, serverHostname: serverHostname)
    }

    /// Lends the `SSL_CTX` for the duration of `body`.
    func withUnsafeContextPointer<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        try body(self.pointer)
    }
}

// The SSL_CTX is configured entirely in the static factories and never mutated afterwards;
// OpenSSL 3 allows concurrent SSL_new on a shared SSL_CTX.
extension TLSContext: @unchecked Sendable {}

/// ALPN protocol names in OpenSSL's wire format (length-prefixed).
final class ALPNPreferences {
    let names: [[UInt8]]
    let wire: [UInt8]

    init(_ names: [String]) throws {
        var wire: [UInt8] = []
        var bytes: [[UInt8]] = []
        for name in names {
            let utf8 = Array(name.utf8)
            guard (1...255).contains(utf8.count) else {
                throw OpenSSLError(
                    message: "ALPN protocol name must be 1 to 255 bytes: \(name)",
                    entries: [],
                    input: .alpn
                )
            }
            bytes.append(utf8)
            wire.append(UInt8(utf8.count))
            wire.append(contentsOf: utf8)
        }
        self.names = bytes
        self.wire = wire
    }

    /// The first of our names the client also offers: the index into `clientWire` of its length
    /// byte, or nil.
    func select(clientWire: UnsafeBufferPointer<UInt8>) -> Int? {
        for name in self.names {
            var index = 0
            while index < clientWire.count {
                let length = Int(clientWire[index])
                let end = index + 1 + length
                guard end <= clientWire.count else { break }
                if length == name.count && name.elementsEqual(clientWire[(index + 1)..<end]) {
                    return index
                }
                index = end
            }
        }
        return nil
    }
}

/// The server's ALPN select callback: picks in the server's preference order.
private let tulipALPNSelect:
    @convention(c) (
        OpaquePointer?,
        UnsafeMutablePointer<UnsafePointer<UInt8>?>?,
        UnsafeMutablePointer<UInt8>?,
        UnsafePointer<UInt8>?,
        UInt32,
        UnsafeMutableRawPointer?
    ) -> CInt = { _, out, outLength, input, inputLength, argument in
        guard let out, let outLength, let input, let argument else {
            preconditionFailure("ALPN callback without its arguments")
        }
        let preferences = Unmanaged<ALPNPreferences>.fromOpaque(argument).takeUnretainedValue()
        let client = UnsafeBufferPointer(start: input, count: Int(inputLength))
        guard let index = preferences.select(clientWire: client) else { return SSL_TLSEXT_ERR_NOACK }
        out.pointee = input + index + 1
        outLength.pointee = input[index]
        return SSL_TLSEXT_ERR_OK
    }

/// The name ``TLSContext`` had before it took ARCHITECTURE §4's.
@available(*, deprecated, renamed: "TLSContext")
public typealias OpenSSLContext = TLSContext
