import COpenSSL

/// An OpenSSL failure: what Tulip was doing, plus OpenSSL's drained error queue.
public struct OpenSSLError: Error, CustomStringConvertible, Sendable, Equatable {
    /// One entry of OpenSSL's thread-local error queue.
    public struct Entry: Sendable, Equatable, CustomStringConvertible {
        /// The packed OpenSSL error code (`ERR_get_error`).
        public let code: UInt
        /// OpenSSL's text for the code (`ERR_error_string_n`).
        public let text: String
        public var description: String { self.text }
    }

    /// Which configured input a context-building failure concerns.
    public enum Input: Sendable, Equatable {
        case certificateChain
        case privateKey
        case clientCA
        case alpn
    }

    /// What failed, in Tulip's words.
    public let message: String
    /// OpenSSL's error queue at the time of the failure, oldest first.
    public let entries: [Entry]
    /// For context-building failures, the input at fault.
    public var input: Input?

    public init(message: String, entries: [Entry], input: Input? = nil) {
        self.message = message
        self.entries = entries
        self.input = input
    }

    public var description: String {
        if self.entries.isEmpty { return self.message }
        return "\(self.message): " + self.entries.map(\.text).joined(separator: "; ")
    }

    /// Builds an error from `message` and the current thread's OpenSSL error queue, emptying it.
    static func drain(_ message: String, input: Input? = nil) -> OpenSSLError {
        OpenSSLError(message: message, entries: Self.drainQueue(), input: input)
    }

    static func drainQueue() -> [Entry] {
        var entries: [Entry] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            entries.append(Entry(code: UInt(code), text: text))
        }
        return entries
    }
}

/// The TLS handshake did not finish within the configured time.
public struct TLSHandshakeTimeoutError: Error, CustomStringConvertible, Sendable {
    public let seconds: Double
    public var description: String {
        "SSL handshake is taking longer than \(self.seconds) seconds: aborting the connection"
    }
}

/// The peer closed the connection in the middle of the TLS handshake.
public struct TLSHandshakeEOFError: Error, CustomStringConvertible, Sendable {
    /// Makes the error.
    public init() {}
    public var description: String { "connection closed by peer during the TLS handshake" }
}

/// The peer did not answer `close_notify` within the shutdown timeout; the connection was
/// force-closed (TLS-9).
public struct TLSShutdownTimeoutError: Error, CustomStringConvertible, Sendable {
    /// Makes the error.
    public init() {}
    public var description: String { "SSL shutdown timed out" }
}
