#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One socket passed by the service manager (`sd_listen_fds_with_names(3)`).
public struct ListenFileDescriptor: Sendable, Hashable {
    /// The descriptor (3, 4, …).
    public var fd: Int32
    /// Its `FileDescriptorName=`; `unknown` when the manager passed no names.
    public var name: String

    public init(fd: Int32, name: String) {
        self.fd = fd
        self.name = name
    }
}

/// Sockets passed by socket activation: `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`.
public enum ListenFileDescriptors {
    /// The first passed descriptor, `SD_LISTEN_FDS_START`.
    public static let start: Int32 = 3

    /// The environment is malformed: the manager and this process disagree.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The passed sockets described by `environment` for the process `pid`, without touching any
    /// descriptor: none when `LISTEN_PID` is unset or names another process.
    /// - Throws: ``ParseError`` when `LISTEN_FDS` is not a count or `LISTEN_FDNAMES` has another
    ///   number of names than `LISTEN_FDS`.
    public static func parse(environment: [String: String], pid: Int32) throws -> [ListenFileDescriptor] {
        guard let pidText = environment["LISTEN_PID"], let listenPID = Int32(pidText), listenPID == pid else {
            return []
        }
        guard let countText = environment["LISTEN_FDS"] else { return [] }
        guard let count = Int32(countText), count >= 0, count <= Int32.max - Self.start else {
            throw ParseError(description: "LISTEN_FDS=\(countText) is not a descriptor count")
        }
        var names = Array(repeating: "unknown", count: Int(count))
        if let namesText = environment["LISTEN_FDNAMES"] {
            let given = namesText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard given.count == Int(count) else {
                throw ParseError(
                    description: "LISTEN_FDNAMES has \(given.count) names for LISTEN_FDS=\(count) descriptors"
                )
            }
            names = given
        }
        return (0..<count).map { ListenFileDescriptor(fd: Self.start + $0, name: names[Int($0)]) }
    }

    /// The sockets passed to this process, from the process environment with
    /// `sd_listen_fds_with_names(1, …)`: the `LISTEN_*` variables are unset afterwards (so children
    /// do not inherit them) and the descriptors are close-on-exec.
    /// - Throws: ``ParseError`` when libsystemd rejects the environment.
    public static func fromEnvironment() throws -> [ListenFileDescriptor] {
        let (count, names) = system_sd_listen_fds_with_names(unsetEnvironment: true)
        if count < 0 {
            throw ParseError(description: "cannot read LISTEN_FDS: \(errnoDescription(-count))")
        }
        return (0..<count).map { index in
            ListenFileDescriptor(
                fd: Self.start + index,
                name: Int(index) < names.count ? names[Int(index)] : "unknown"
            )
        }
    }

    /// Closes a passed descriptor nobody adopts.
    public static func close(_ fd: Int32) {
        _ = system_close(fd)
    }

    /// `sd_listen_fds(0)`: how many sockets were passed, leaving the environment as it is.
    public static func count() -> Int32 {
        system_sd_listen_fds(unsetEnvironment: false)
    }
}

/// What kind of socket a descriptor is (`SO_TYPE`, `SO_DOMAIN`), to match it to a listener.
public struct SocketKind: Sendable, Hashable, CustomStringConvertible {
    public enum Family: Sendable, Hashable {
        case inet
        case inet6
        case unix
        case other(Int32)
    }

    public enum SocketType: Sendable, Hashable {
        case stream
        case datagram
        case other(Int32)
    }

    public var family: Family
    public var type: SocketType

    public init(family: Family, type: SocketType) {
        self.family = family
        self.type = type
    }

    /// The kind of socket `fd` is.
    /// - Throws: ``ListenFileDescriptors/ParseError`` when `fd` is not a socket.
    public init(fd: Int32) throws {
        let type = system_getsockopt_int(fd, SO_TYPE)
        let domain = system_getsockopt_int(fd, SO_DOMAIN)
        guard type >= 0, domain >= 0 else {
            let code = type < 0 ? -type : -domain
            throw ListenFileDescriptors.ParseError(description: "fd \(fd) is not a socket: \(errnoDescription(code))")
        }
        switch domain {
        case AF_INET: self.family = .inet
        case AF_INET6: self.family = .inet6
        case AF_UNIX: self.family = .unix
        default: self.family = .other(domain)
        }
        switch type {
        case CInt(SOCK_STREAM.rawValue): self.type = .stream
        case CInt(SOCK_DGRAM.rawValue): self.type = .datagram
        default: self.type = .other(type)
        }
    }

    /// `inet`/`unix` (or `family N`) and `stream`/`datagram` (or `type N`): "unix datagram".
    public var description: String {
        let family: String
        switch self.family {
        case .inet, .inet6: family = "inet"
        case .unix: family = "unix"
        case .other(let value): family = "family \(value)"
        }
        let type: String
        switch self.type {
        case .stream: type = "stream"
        case .datagram: type = "datagram"
        case .other(let value): type = "type \(value)"
        }
        return "\(family) \(type)"
    }
}
