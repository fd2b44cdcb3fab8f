import NIOCore
import Tulip

/// The Prometheus endpoint: a TCP server on the daemon's loop answering `GET /metrics`.
///
/// Loop-confined; the daemon owns it and closes it when it stops.
final class MetricsEndpoint {
    private let server: Server
    /// Where it listens, for logs.
    let address: String

    private init(server: Server, address: String) {
        self.server = server
        self.address = address
    }

    /// Binds and serves; `render` produces the exposition on the loop's thread for each scrape.
    ///
    /// - Throws: ``TulipError`` when the address cannot be bound.
    static func start(
        _ configuration: MetricsConfiguration,
        loop: TulipLoop,
        render: @escaping () -> [UInt8]
    ) async throws -> MetricsEndpoint {
        let bound = NIOLoopBound(render, eventLoop: loop.eventLoop)
        let server = try await loop.createServer(
            host: configuration.host,
            port: configuration.port,
            makeProtocol: { MetricsHTTPProtocol(render: bound.value) }
        )
        let port = server.sockets.first?.localAddress.port ?? configuration.port
        let host = configuration.host.contains(":") ? "[\(configuration.host)]" : configuration.host
        return MetricsEndpoint(server: server, address: "\(host):\(port)")
    }

    /// Stops accepting and closes open scrapes.
    func close() {
        self.server.close()
        self.server.closeClients()
    }
}
