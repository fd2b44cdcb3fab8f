import Logging
import TulipSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The sockets systemd passed (socket units and the fd store), grouped by `FileDescriptorName=`
/// until the listener of that name adopts them (ARCHITECTURE §5, lifecycle step 2).
///
/// Loop-confined, like the daemon that owns it.
struct PassedSocketPool {
    private var byName: [String: [ListenFileDescriptor]] = [:]

    /// Groups `sockets` by name; those no listener in `names` is named after are logged and closed.
    init(_ sockets: [ListenFileDescriptor], listenerNames names: Set<String>, logger: Logger) {
        for socket in sockets {
            if names.contains(socket.name) {
                self.byName[socket.name, default: []].append(socket)
            } else {
                logger.warning(
                    "closing a socket passed by systemd that no listener is named after",
                    metadata: ["fd": "\(socket.fd)", "fd_name": "\(socket.name)"]
                )
                ListenFileDescriptors.close(socket.fd)
            }
        }
    }

    /// The passed sockets for `configuration`, type-checked against the listener's kind: a tcp
    /// listener adopts one socket per address (its hosts, or what its socket unit lists), a
    /// datagram listener one endpoint per socket, a unix stream listener exactly one.
    /// - Throws: ``DaemonStartupError`` naming the socket and the listener on a mismatch; the
    ///   listener's passed sockets are closed then.
    mutating func take(for configuration: ListenerConfiguration) throws -> [ListenFileDescriptor] {
        guard let passed = self.byName.removeValue(forKey: configuration.name) else { return [] }
        let address = configuration.endpoint.addressDescription
        func mismatch(_ reason: String) -> DaemonStartupError {
            for socket in passed { ListenFileDescriptors.close(socket.fd) }
            return DaemonStartupError(listener: configuration.name, address: address, reason: reason, errno: EINVAL)
        }
        let kind = configuration.endpoint.kind
        guard let expected = configuration.endpoint.expectedSocketKind else {
            throw mismatch(
                "systemd passed a socket named \"\(configuration.name)\", but listener \"\(configuration.name)\" is a \(kind) listener, which cannot adopt sockets"
            )
        }
        for socket in passed {
            let actual: SocketKind
            do {
                actual = try SocketKind(fd: socket.fd)
            } catch {
                throw mismatch("systemd passed fd \(socket.fd) named \"\(socket.name)\": \(error)")
            }
            guard actual.matches(expected) else {
                throw mismatch(
                    "the socket \"\(socket.name)\" passed by systemd (fd \(socket.fd)) is \(actual), but listener \"\(configuration.name)\" is a \(kind) listener and needs \(expected)"
                )
            }
        }
        if passed.count > 1, kind == .unix {
            throw mismatch(
                "systemd passed \(passed.count) sockets named \"\(configuration.name)\"; a unix listener adopts one (use one socket unit per path)"
            )
        }
        return passed
    }

    /// Closes whatever no listener took (start-up failed part-way).
    mutating func closeRemaining() {
        for socket in self.byName.values.joined() { ListenFileDescriptors.close(socket.fd) }
        self.byName = [:]
    }
}
