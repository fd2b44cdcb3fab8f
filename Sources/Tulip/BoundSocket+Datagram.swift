import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension BoundSocket {
    /// Creates a datagram socket with `create_datagram_endpoint`'s steps (DE-7): socket,
    /// `SO_REUSEPORT`, `SO_BROADCAST`, bind, connect unless broadcasting (DE-8).
    ///
    /// `SO_REUSEADDR` is never set (DE-1): on a datagram socket it would let another process bind
    /// the same port and receive (hijack) part of its traffic.
    static func makeDatagram(
        family: CInt,
        local: SocketAddress?,
        remote: SocketAddress?,
        reusePort: Bool,
        allowBroadcast: Bool,
        mode: UInt16?,
        onWarning: (String) -> Void
    ) throws -> CInt {
        if let path = local?.pathname, path.utf8.first != 0, !path.isEmpty {
            Self.removeStaleSocket(at: path, onWarning: onWarning)  // DE-4, following US-5
        }
        let fd = socket(family, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            let code = errno
            throw TulipError.make(.bindFailed, "socket(): [Errno \(code)] \(Self.errorText(code))", errno: code)
        }
        do {
            if reusePort {
                do {
                    try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT")
                } catch {
                    throw TulipError.invalidArgument(
                        "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented"
                    )
                }
            }
            if allowBroadcast { try setOption(fd, SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST") }
            if let local {
                let result = local.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
                if result != 0 {
                    let code = errno
                    throw TulipError.make(
                        code == EADDRINUSE ? .addressInUse : .bindFailed,
                        "error while attempting to bind on address \(Self.describe(local)): [Errno \(code)] \(Self.errorText(code))",
                        errno: code
                    )
                }
                if let mode, let path = local.pathname, path.utf8.first != 0, chmod(path, mode_t(mode)) != 0 {
                    let code = errno
                    throw TulipError.make(
                        .bindFailed,
                        "chmod(\(path), \(String(mode, radix: 8))): \(Self.errorText(code))",
                        errno: code
                    )
                }
            }
            if let remote, !allowBroadcast {
                let result = remote.withSockAddr { pointer, length in connect(fd, pointer, socklen_t(length)) }
                if result != 0 {
                    let code = errno
                    throw TulipError.make(
                        .socketError,
                        "connect(\(Self.describe(remote))): [Errno \(code)] \(Self.errorText(code))",
                        errno: code
                    )
                }
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// Checks that an adopted descriptor is a datagram socket (DE-2).
    static func checkDatagram(_ fd: CInt) throws {
        var type: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else {
            throw TulipError.invalidArgument("descriptor \(fd) is not a socket: \(Self.errorText(errno))")
        }
        guard type == CInt(SOCK_DGRAM.rawValue) else {
            let address = (try? Self.localAddress(of: fd)) ?? nil
            let what =
                address.map { Self.describeSocket(type: type, address: $0) }
                ?? "socket of type \(type)"
            throw TulipError.invalidArgument("A datagram socket was expected, got \(what)")
        }
    }

    /// The peer a socket is connected to, if any (`getpeername`).
    static func peerAddress(of fd: CInt) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard result == 0 else { return nil }
        return Self.socketAddress(storage)
    }

    /// Removes a socket file at `path` but never another kind of file (US-5).
    static func removeStaleSocket(at path: String, onWarning: (String) -> Void) {
        var info = stat()
        if lstat(path, &info) == 0 {
            if (info.st_mode & S_IFMT) == S_IFSOCK, unlink(path) != 0 {
                onWarning("could not remove stale socket \(path): \(Self.errorText(errno))")
            }
        } else if errno != ENOENT {
            onWarning("could not inspect \(path): \(Self.errorText(errno))")
        }
    }

    /// Unlinks `file` if the path still names the same inode (US-8).
    static func removeSocketFile(_ file: UnixSocketFile) {
        var info = stat()
        guard lstat(file.path, &info) == 0 else { return }
        if UInt64(info.st_dev) == file.device && UInt64(info.st_ino) == file.inode {
            unlink(file.path)
        }
    }
}
