import Logging
import NIOCore
import Tulip

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The admin socket: a unix stream server on the daemon's own loop speaking ``AdminProtocol``.
///
/// Loop-confined; the daemon owns it and closes it when it stops.
final class AdminServer {
    private let server: Server
    /// The socket's path.
    let path: String

    private init(server: Server, path: String) {
        self.server = server
        self.path = path
    }

    /// Binds the socket (replacing a stale one) with the configured mode and starts serving.
    ///
    /// A missing parent directory is made (mode 0755), as `/tmp/tulipd` or a runtime directory
    /// may not exist yet.
    /// - Throws: ``TulipError`` when the socket cannot be bound.
    static func start(
        _ configuration: AdminConfiguration,
        loop: TulipLoop,
        backend: any AdminBackend,
        logger: Logger
    ) async throws -> AdminServer {
        let bound = NIOLoopBound(backend, eventLoop: loop.eventLoop)
        if let slash = configuration.path.lastIndex(of: "/"), slash != configuration.path.startIndex {
            // An existing directory is fine; any other failure shows as the bind's error.
            _ = mkdir(String(configuration.path[..<slash]), 0o755)
        }
        let server = try await loop.createUnixServer(
            path: configuration.path,
            mode: configuration.mode,
            makeProtocol: { AdminProtocol(backend: bound.value, logger: logger) }
        )
        return AdminServer(server: server, path: configuration.path)
    }

    /// Stops accepting and closes the admin connections; the socket file is removed.
    func close() {
        self.server.close()
        self.server.closeClients()
    }
}
