#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Talks to a running daemon's admin socket: one command, one reply line.
///
/// Used by `tulipd status`, `tulipd reload` and `tulipd drain`.
///
/// Blocking; meant for a command-line process, not for a loop thread.
public struct AdminClient: Sendable {
    /// The admin socket's path.
    public var socketPath: String
    /// How long to wait for the reply; a reload may take a while.
    public var timeoutSeconds: Int

    /// Makes a client for the socket at `socketPath`.
    public init(socketPath: String, timeoutSeconds: Int = 60) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends `command` and returns the parsed reply.
    ///
    /// - Throws: ``AdminError`` when the socket cannot be reached, the daemon closes without a
    ///   reply, or the reply is not a JSON object. A reply of `{"ok": false}` is returned, not thrown.
    public func send(_ command: String) throws(AdminError) -> AdminResponse {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw self.failure("socket", errno) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: self.timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(self.socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw AdminError("admin socket path too long: \(self.socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path)
        }
        let connected = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw self.failure("connect", errno) }
        var request = Array((command + "\n").utf8)[...]
        while !request.isEmpty {
            let written = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw self.failure("send", errno)
            }
            request = request.dropFirst(written)
        }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while !reply.contains(UInt8(ascii: "\n")) {
            let count = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw AdminError("no reply from \(self.socketPath) within \(self.timeoutSeconds) s")
                }
                throw self.failure("recv", errno)
            }
            if count == 0 { break }
            reply.append(contentsOf: chunk[..<count])
        }
        guard let newline = reply.firstIndex(of: UInt8(ascii: "\n")) else {
            throw AdminError("the daemon closed \(self.socketPath) without a reply")
        }
        return try AdminResponse(line: reply[..<newline])
    }

    private func failure(_ call: String, _ code: Int32) -> AdminError {
        let reason = String(cString: strerror(code))
        switch code {
        case ENOENT, ECONNREFUSED:
            return AdminError(
                "cannot reach the admin socket \(self.socketPath): \(reason) (is tulipd running with an \"admin\" socket configured?)"
            )
        case EACCES, EPERM:
            return AdminError(
                "cannot reach the admin socket \(self.socketPath): \(reason) (try as root or as the daemon's user)"
            )
        default:
            return AdminError("\(call) on \(self.socketPath): \(reason)")
        }
    }
}

/// One reply of the admin protocol.
public struct AdminResponse: Sendable {
    /// The reply's JSON text.
    public let text: String
    /// The reply's members.
    public let object: JSONObject

    /// Parses one reply line.
    /// - Throws: ``AdminError`` when it is not a JSON object.
    public init(line: some Collection<UInt8>) throws(AdminError) {
        let node: JSONValue.Node
        do {
            node = try JSONParser().parse(line)
        } catch {
            throw AdminError("the daemon's reply is not JSON: \(error)")
        }
        guard case .object(let object) = node.value else { throw AdminError("the daemon's reply is not a JSON object") }
        self.text = String(decoding: line, as: UTF8.self)
        self.object = object
    }

    /// Whether the command succeeded (`"ok": true`).
    public var ok: Bool {
        if case .bool(true)? = self.object["ok"]?.value { return true }
        return false
    }

    /// The `error` of a failed command.
    public var error: String? {
        if case .string(let text)? = self.object["error"]?.value { return text }
        return nil
    }
}
