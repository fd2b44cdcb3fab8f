import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A bound (and possibly listening) socket the loop created or adopted, before NIO owns it.
///
/// Creating sockets by hand rather than through `ServerBootstrap.bind` is what gives asyncio's
/// `create_server` semantics: one socket per address family with `IPV6_V6ONLY` (CS-6, CS-7),
/// `SO_REUSEADDR` before `bind` (CS-11), sockets bound but not listening for
/// `startServing: false` (CS-17), and one path for adopted descriptors (CS-18, systemd).
struct BoundSocket {
    var fileDescriptor: CInt
    var address: SocketAddress
    /// For a unix socket at a filesystem path: the file to unlink on close if its inode is unchanged.
    var unixFile: UnixSocketFile?

    struct UnixSocketFile {
        var path: String
        var device: UInt64
        var inode: UInt64
    }

    // MARK: - Creating

    /// Binds a stream socket to `address` with the options of `create_server`.
    static func bindStream(
        to address: SocketAddress,
        reuseAddress: Bool,
        reusePort: Bool,
        keepAlive: Bool
    ) throws -> BoundSocket? {
        let family = CInt(address.protocol.rawValue)
        let fd = socket(family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        // CS-14: a family the host cannot create sockets for is skipped.
        guard fd >= 0 else { return nil }
        do {
            if reuseAddress { try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR") }
            if reusePort {
                do {
                    try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT")
                } catch {
                    throw TulipError.invalidArgument(
                        "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented"
                    )
                }
            }
            if keepAlive { try setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE") }
            if family == AF_INET6 { try setOption(fd, CInt(IPPROTO_IPV6), IPV6_V6ONLY, 1, "IPV6_V6ONLY") }
            let result = address.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
            if result != 0 {
                let code = errno
                if code == EADDRNOTAVAIL {
                    close(fd)
                    return nil  // CS-14: the family is not enabled on this host.
                }
                throw TulipError.make(
                    code == EADDRINUSE ? .addressInUse : .bindFailed,
                    "error while attempting to bind on address \(Self.describe(address)): [Errno \(code)] \(Self.errorText(code))",
                    errno: code
                )
            }
            let bound = try Self.localAddress(of: fd) ?? address
            return BoundSocket(fileDescriptor: fd, address: bound, unixFile: nil)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Binds a unix stream socket at `path`, replacing a stale socket file but never another file
    /// (US-5, US-6), and records the inode for the cleanup of US-8.
    static func bindUnix(path: String, mode: UInt16?, cleanup: Bool, onWarning: (String) -> Void) throws -> BoundSocket
    {
        let address = try SocketAddress(unixDomainSocketPath: path)
        let isAbstract = path.utf8.first == 0
        if !isAbstract {
            var info = stat()
            if lstat(path, &info) == 0 {
                if (info.st_mode & S_IFMT) == S_IFSOCK {
                    if unlink(path) != 0 {
                        onWarning("could not remove stale socket \(path): \(Self.errorText(errno))")
                    }
                }
            } else if errno != ENOENT {
                onWarning("could not inspect \(path): \(Self.errorText(errno))")
            }
        }
        let fd = socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let code = errno
            throw TulipError.make(.bindFailed, "socket(AF_UNIX): \(Self.errorText(code))", errno: code)
        }
        let result = address.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
        if result != 0 {
            let code = errno
            close(fd)
            if code == EADDRINUSE {
                throw TulipError.make(.addressInUse, "Address '\(path)' is already in use", errno: code)
            }
            throw TulipError.make(.bindFailed, "bind(\(path)): \(Self.errorText(code))", errno: code)
        }
        if let mode, !isAbstract, chmod(path, mode_t(mode)) != 0 {
            let code = errno
            close(fd)
            throw TulipError.make(
                .bindFailed,
                "chmod(\(path), \(String(mode, radix: 8))): \(Self.errorText(code))",
                errno: code
            )
        }
        var bound = BoundSocket(fileDescriptor: fd, address: address, unixFile: nil)
        if cleanup && !isAbstract { bound.unixFile = Self.unixFile(at: path) }
        return bound
    }

    /// Adopts a descriptor the caller bound (or systemd passed): checks it is a stream socket of
    /// the expected family (CS-4, US-3), ignoring flag bits such as `SOCK_NONBLOCK`.
    static func adopt(_ fd: CInt, requireUnix: Bool, cleanup: Bool) throws -> BoundSocket {
        var type: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw TulipError.invalidArgument("descriptor \(fd) is not a socket: \(Self.errorText(errno))")
        }
        guard let address = try Self.localAddress(of: fd) else {
            throw TulipError.invalidArgument("descriptor \(fd) is not bound")
        }
        let isUnix: Bool
        if case .unixDomainSocket = address { isUnix = true } else { isUnix = false }
        if requireUnix {
            guard type == CInt(SOCK_STREAM.rawValue), isUnix else {
                throw TulipError.invalidArgument(
                    "A UNIX Domain Stream Socket was expected, got \(Self.describeSocket(type: type, address: address))"
                )
            }
        } else {
            guard type == CInt(SOCK_STREAM.rawValue) else {
                throw TulipError.invalidArgument(
                    "A Stream Socket was expected, got \(Self.describeSocket(type: type, address: address))"
                )
            }
        }
        var bound = BoundSocket(fileDescriptor: fd, address: address, unixFile: nil)
        if cleanup, isUnix, let path = address.pathname, path.utf8.first != 0 {
            bound.unixFile = Self.unixFile(at: path)
        }
        return bound
    }

    /// Whether `fd` is already listening (`SO_ACCEPTCONN`).
    static func isListening(_ fd: CInt) -> Bool {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &length) == 0 && value != 0
    }

    /// Calls `listen(2)`.
    func listen(backlog: Int32) throws {
        if Glibc.listen(self.fileDescriptor, backlog) != 0 {
            let code = errno
            throw TulipError.make(
                .bindFailed,
                "listen(\(Self.describe(self.address))): \(Self.errorText(code))",
                errno: code
            )
        }
    }

    /// Unlinks the socket file if it is still the one this socket created (US-8).
    func removeSocketFile() {
        guard let file = self.unixFile else { return }
        var info = stat()
        guard lstat(file.path, &info) == 0 else { return }
        if UInt64(info.st_dev) == file.device && UInt64(info.st_ino) == file.inode {
            unlink(file.path)
        }
    }

    // MARK: - Helpers

    static func unixFile(at path: String) -> UnixSocketFile? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return UnixSocketFile(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    static func setOption(_ fd: CInt, _ level: CInt, _ name: CInt, _ value: CInt, _ label: String) throws {
        var value = value
        if setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<CInt>.size)) != 0 {
            let code = errno
            throw TulipError.make(.bindFailed, "setsockopt(\(label)): \(Self.errorText(code))", errno: code)
        }
    }

    static func localAddress(of fd: CInt) throws -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        return Self.socketAddress(storage)
    }

    static func socketAddress(_ storage: sockaddr_storage) -> SocketAddress? {
        var storage = storage
        switch CInt(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                let address = raw.load(as: sockaddr_in.self)
                return SocketAddress(address, host: "")
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                let address = raw.load(as: sockaddr_in6.self)
                return SocketAddress(address, host: "")
            }
        case AF_UNIX:
            return withUnsafeBytes(of: &storage) { raw in
                let address = raw.load(as: sockaddr_un.self)
                return SocketAddress(address)
            }
        default:
            return nil
        }
    }

    static func describe(_ address: SocketAddress) -> String {
        switch address {
        case .v4:
            return "('\(address.ipAddress ?? "?")', \(address.port ?? 0))"
        case .v6:
            return "('\(address.ipAddress ?? "?")', \(address.port ?? 0))"
        case .unixDomainSocket:
            return "'\(address.pathname ?? "?")'"
        }
    }

    static func describeSocket(type: CInt, address: SocketAddress) -> String {
        let typeName =
            type == CInt(SOCK_DGRAM.rawValue)
            ? "SOCK_DGRAM" : type == CInt(SOCK_STREAM.rawValue) ? "SOCK_STREAM" : "type \(type)"
        return "\(typeName) socket bound to \(Self.describe(address))"
    }

    static func errorText(_ code: CInt) -> String {
        String(cString: strerror(code))
    }
}
