import COpenSSL
import COpenSSLShims
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The outcome of one OpenSSL operation on a connection (`SSL_get_error`, mapped).
enum OpenSSLResult {
    case complete
    case wantRead
    case wantWrite
    case zeroReturn
    case failed(OpenSSLError)
}

/// One TLS connection: an `SSL` over two memory BIOs (network bytes in, network bytes out).
///
/// Loop-confined: used only by the ``OpenSSLHandler`` that owns it.
final class OpenSSLConnection {
    private let ssl: OpaquePointer
    /// Network bytes fed to OpenSSL; owned by `ssl` after `SSL_set_bio`.
    private let networkIn: OpaquePointer
    /// Records OpenSSL produced; owned by `ssl` after `SSL_set_bio`.
    private let networkOut: OpaquePointer
    /// Keeps the `SSL_CTX` alive as long as this `SSL`.
    let context: TLSContext

    init(context: TLSContext, serverHostname: String?) throws {
        ERR_clear_error()
        guard let ssl = context.withUnsafeContextPointer({ SSL_new($0) }) else {
            throw OpenSSLError.drain("SSL_new failed")
        }
        guard let networkIn = BIO_new(BIO_s_mem()), let networkOut = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw OpenSSLError.drain("BIO_new failed")
        }
        SSL_set_bio(ssl, networkIn, networkOut)
        self.ssl = ssl
        self.networkIn = networkIn
        self.networkOut = networkOut
        self.context = context
        if context.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverHostname { try Self.expect(serverHostname, on: ssl) }
        }
    }

    /// Sets the name (or address) the peer's certificate must carry; a host name is also sent as
    /// SNI, an IP literal is not (RFC 6066 §3).
    private static func expect(_ serverHostname: String, on ssl: OpaquePointer) throws {
        if Self.isIPLiteral(serverHostname) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), serverHostname) == 1 else {
                throw OpenSSLError.drain("cannot set the expected IP address \(serverHostname)")
            }
            return
        }
        guard SSL_set1_host(ssl, serverHostname) == 1 else {
            throw OpenSSLError.drain("cannot set the expected host name \(serverHostname)")
        }
        guard tulip_SSL_set_tlsext_host_name(ssl, serverHostname) == 1 else {
            throw OpenSSLError.drain("cannot set SNI \(serverHostname)")
        }
    }

    private static func isIPLiteral(_ name: String) -> Bool {
        var storage = [UInt8](repeating: 0, count: 16)
        return inet_pton(AF_INET, name, &storage) == 1 || inet_pton(AF_INET6, name, &storage) == 1
    }

    deinit {
        SSL_free(self.ssl)
    }

    /// Hands bytes read from the network to OpenSSL.
    func feed(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0 else { return }
            // A memory BIO grows as needed; writes fail only on allocation failure.
            _ = BIO_write(self.networkIn, base, CInt(bytes.count))
        }
    }

    func doHandshake() -> OpenSSLResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(self.ssl)
        return self.result(rc, "TLS handshake failed")
    }

    /// Reads decrypted bytes into `buffer`.
    func read(into buffer: inout ByteBuffer) -> OpenSSLResult {
        ERR_clear_error()
        buffer.reserveCapacity(minimumWritableBytes: 16_384)
        var rc: CInt = 0
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16_384) { bytes in
            rc = SSL_read(self.ssl, bytes.baseAddress, CInt(clamping: bytes.count))
            return rc > 0 ? Int(rc) : 0
        }
        return self.result(rc, "TLS read failed")
    }

    /// Whether a read could return data now: ciphertext fed and not yet processed, or a decrypted
    /// record not yet read out.
    var hasBufferedInput: Bool {
        BIO_ctrl_pending(self.networkIn) > 0 || SSL_has_pending(self.ssl) == 1
    }

    /// Encrypts all of `buffer`'s readable bytes into the outgoing BIO.
    func write(_ buffer: ByteBuffer) -> OpenSSLResult {
        var remaining = buffer
        while remaining.readableBytes > 0 {
            ERR_clear_error()
            let rc = remaining.withUnsafeReadableBytes { bytes in
                SSL_write(self.ssl, bytes.baseAddress, CInt(clamping: bytes.count))
            }
            if rc <= 0 { return self.result(rc, "TLS write failed") }
            remaining.moveReaderIndex(forwardBy: Int(rc))
        }
        return .complete
    }

    /// Queues a `close_notify` alert.
    func shutdown() -> OpenSSLResult {
        ERR_clear_error()
        let rc = SSL_shutdown(self.ssl)
        if rc >= 0 { return .complete }
        return self.result(rc, "TLS shutdown failed")
    }

    /// Takes every pending outgoing record byte, or nil if there are none.
    ///
    /// The bytes go into `scratch`'s storage when nothing else holds it any more (the previous
    /// output has reached the kernel), so a steady stream of writes allocates nothing; `scratch`
    /// keeps a reference to what is returned for the next call.
    func takeOutput(reusing scratch: inout ByteBuffer?, allocator: ByteBufferAllocator) -> ByteBuffer? {
        let pending = Int(BIO_ctrl_pending(self.networkOut))
        guard pending > 0 else { return nil }
        var buffer = scratch ?? allocator.buffer(capacity: pending)
        scratch = nil
        // Unique now unless the last output is still queued in NIO: then this allocates afresh.
        buffer.clear()
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { bytes in
            Int(max(0, BIO_read(self.networkOut, bytes.baseAddress, CInt(pending))))
        }
        scratch = buffer
        return buffer
    }

    private func result(_ rc: CInt, _ message: String) -> OpenSSLResult {
        if rc > 0 { return .complete }
        switch SSL_get_error(self.ssl, rc) {
        case SSL_ERROR_NONE: return .complete
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .zeroReturn
        default:
            var error = OpenSSLError.drain(message)
            let verify = SSL_get_verify_result(self.ssl)
            if verify != X509_V_OK, let text = X509_verify_cert_error_string(verify) {
                error = OpenSSLError(
                    message: "\(message): certificate verify failed: \(String(cString: text))",
                    entries: error.entries
                )
            }
            return .failed(error)
        }
    }

    // MARK: - Connection facts

    var negotiatedALPN: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(self.ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var protocolVersion: String? {
        guard let text = SSL_get_version(self.ssl) else { return nil }
        return String(cString: text)
    }

    var cipher: String? {
        guard let cipher = SSL_get_current_cipher(self.ssl), let name = SSL_CIPHER_get_name(cipher) else { return nil }
        return String(cString: name)
    }

    /// The peer certificate's subject in OpenSSL's one-line form, if the peer sent one.
    var peerCertificateSubject: String? {
        guard let certificate = SSL_get1_peer_certificate(self.ssl) else { return nil }
        defer { X509_free(certificate) }
        guard let name = X509_get_subject_name(certificate),
            let text = X509_NAME_oneline(name, nil, 0)
        else { return nil }
        defer { tulip_OPENSSL_free(text) }
        return String(cString: text)
    }

    var sentShutdown: Bool { (SSL_get_shutdown(self.ssl) & SSL_SENT_SHUTDOWN) != 0 }
}

@available(*, unavailable)
extension OpenSSLConnection: Sendable {}

/// What a finished handshake negotiated.
public struct TLSConnectionInfo: Sendable, Equatable {
    /// `TLSv1.2` or `TLSv1.3`.
    public var protocolVersion: String?
    /// OpenSSL's cipher name.
    public var cipher: String?
    /// The negotiated ALPN protocol.
    public var alpn: String?
    /// The subject of the peer's certificate, if it sent one.
    public var peerCertificateSubject: String?
}
