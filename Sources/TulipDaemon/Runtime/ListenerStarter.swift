import Logging
import NIOCore
import Tulip
import TulipSystemd

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Sockets a listener adopts instead of binding its own.
enum AdoptedSockets {
    /// None: the listener binds its address.
    case none
    /// Passed by systemd (a socket unit or the fd store): a unix socket file is systemd's and is
    /// neither chmod-ed nor unlinked here.
    case passed([ListenFileDescriptor])
    /// Duplicates of the sockets of the listener this one replaces (same name and address, a
    /// reload): no connection attempt is refused during the replacement.
    case handedOver([CInt], isHeldByServiceManager: Bool)
}

/// Starts one planned listener on the daemon's loop.
///
/// It binds or adopts the sockets, makes the server or datagram endpoints and logs where it
/// listens; start-up and reloads use it.
///
/// Loop thread.
struct ListenerStarter {
    let loop: TulipLoop
    /// The daemon's logger; each listener's entries add `listener`, `protocol` and
    /// `config_generation`.
    let logger: Logger
    /// Called on the loop thread when a listener's open-connection count changes.
    let onConnectionsChanged: (() -> Void)?

    /// Starts `listener` as part of configuration generation `generation`.
    ///
    /// With `startServing: false` a stream server is bound (or adopts its sockets) but accepts
    /// nothing until ``RunningListener/startServing()``: a reload binds everything first, so a
    /// failure discards listeners that never accepted a connection. Datagram endpoints and pipes
    /// serve at once either way.
    /// - Throws: ``DaemonStartupError`` naming the listener and address; nothing stays bound.
    func start(
        _ listener: DaemonPlan.Listener,
        generation: Int,
        sockets: AdoptedSockets,
        startServing: Bool = true
    ) async throws -> RunningListener {
        let configuration = listener.configuration
        var logger = self.logger
        logger[metadataKey: "listener"] = "\(configuration.name)"
        logger[metadataKey: "protocol"] = "\(listener.plugin.name)"
        logger[metadataKey: "config_generation"] = "\(generation)"
        let observer = ConnectionLogger(logger: logger, limitEventLoop: self.loop.eventLoop)
        observer.onChange = self.onConnectionsChanged
        let held: Bool
        let fds: [CInt]
        switch sockets {
        case .none: (fds, held) = ([], false)
        case .passed(let passed): (fds, held) = (passed.map(\.fd), true)
        case .handedOver(let handed, let isHeld): (fds, held) = (handed, isHeld)
        }
        func running(server: (any ServingListener)?, datagrams: DatagramEndpointGroup?) -> RunningListener {
            RunningListener(
                plan: listener,
                server: server,
                datagrams: datagrams,
                observer: observer,
                generation: generation,
                isHeldByServiceManager: held,
                loop: self.loop,
                logger: logger
            )
        }
        do {
            if configuration.endpoint.kind.isDatagram {
                let group = try await self.startDatagram(listener, fds: fds, sockets: sockets, logger: logger)
                return running(server: nil, datagrams: group)
            }
            let server = try await self.startStream(
                listener,
                fds: fds,
                sockets: sockets,
                startServing: startServing,
                observer: observer
            )
            var metadata: Logger.Metadata = [
                "address": "\(Self.boundAddress(server) ?? configuration.endpoint.addressDescription)"
            ]
            switch sockets {
            case .none: logger.info("listening", metadata: metadata)
            case .passed:
                metadata["fd"] = "\(fds.map(String.init).joined(separator: ","))"
                logger.info("listening on a socket passed by systemd", metadata: metadata)
            case .handedOver: logger.info("listening on the sockets of the replaced listener", metadata: metadata)
            }
            return running(server: server, datagrams: nil)
        } catch let error as DaemonStartupError {
            throw error
        } catch {
            let address =
                fds.isEmpty
                ? configuration.endpoint.addressDescription : "fd \(fds.map(String.init).joined(separator: ","))"
            let reason = (error as? TulipError)?.message ?? "\(error)"
            self.logger.error(
                "cannot start listener",
                metadata: ["listener": "\(configuration.name)", "address": "\(address)", "error": "\(reason)"]
            )
            throw DaemonStartupError(
                listener: configuration.name,
                address: address,
                reason: reason,
                errno: (error as? TulipError)?.errno
            )
        }
    }

    private func startStream(
        _ listener: DaemonPlan.Listener,
        fds: [CInt],
        sockets: AdoptedSockets,
        startServing: Bool,
        observer: ConnectionLogger
    ) async throws -> any ServingListener {
        let configuration = listener.configuration
        let factory = listener.factory
        let makeProtocol: @Sendable () throws -> any StreamProtocol = { try factory.makeStreamProtocol() }
        let timeout = Self.handshakeTimeout(configuration)
        switch configuration.endpoint {
        case .pipe(let pipe):
            let pipeListener = PipeListener(
                name: configuration.name,
                endpoint: pipe,
                loop: self.loop,
                logger: observer,
                makeProtocol: makeProtocol
            )
            try await pipeListener.start()
            return pipeListener
        case .tcp(let tcp):
            if !fds.isEmpty {
                return try await self.loop.createServer(
                    socks: fds,
                    backlog: tcp.backlog,
                    startServing: startServing,
                    observer: observer,
                    ssl: listener.tls,
                    sslHandshakeTimeout: timeout,
                    limits: configuration.limits.connectionLimits,
                    makeProtocol: makeProtocol
                )
            }
            return try await self.loop.createServer(
                host: tcp.hosts.isEmpty ? nil : tcp.hosts,
                port: tcp.port,
                backlog: tcp.backlog,
                reuseAddress: tcp.reuseAddress,
                reusePort: tcp.reusePort,
                keepAlive: tcp.keepAlive,
                startServing: startServing,
                observer: observer,
                ssl: listener.tls,
                sslHandshakeTimeout: timeout,
                limits: configuration.limits.connectionLimits,
                makeProtocol: makeProtocol
            )
        case .unix(let unix):
            if let fd = fds.first {
                var cleanup = false
                if case .handedOver(_, let held) = sockets {
                    cleanup = !held
                    // The file is the daemon's own (not systemd's): the new mode applies to it.
                    if let mode = unix.mode, chmod(unix.path, mode_t(mode)) != 0 {
                        let code = errno
                        throw TulipError.make(
                            .bindFailed,
                            "chmod(\(unix.path), \(String(mode, radix: 8))): \(String(cString: strerror(code)))",
                            errno: code
                        )
                    }
                }
                return try await self.loop.createUnixServer(
                    sock: fd,
                    backlog: unix.backlog,
                    startServing: startServing,
                    cleanupSocket: cleanup,
                    observer: observer,
                    ssl: listener.tls,
                    sslHandshakeTimeout: timeout,
                    limits: configuration.limits.connectionLimits,
                    makeProtocol: makeProtocol
                )
            }
            return try await self.loop.createUnixServer(
                path: unix.path,
                backlog: unix.backlog,
                mode: unix.mode,
                startServing: startServing,
                observer: observer,
                ssl: listener.tls,
                sslHandshakeTimeout: timeout,
                limits: configuration.limits.connectionLimits,
                makeProtocol: makeProtocol
            )
        case .udp, .unixDatagram:
            preconditionFailure("startStream called for a datagram listener")
        }
    }

    /// Opens a datagram listener's endpoints: one per adopted socket, else one per `udp` host
    /// (`0.0.0.0` when none is given) or the `unix_datagram` path; each gets its own protocol object.
    private func startDatagram(
        _ listener: DaemonPlan.Listener,
        fds: [CInt],
        sockets: AdoptedSockets,
        logger: Logger
    ) async throws -> DatagramEndpointGroup {
        let configuration = listener.configuration
        let factory = listener.factory
        let group = DatagramEndpointGroup(logger: logger)
        let boundGroup = NIOLoopBound(group, eventLoop: self.loop.eventLoop)
        let makeProtocol: @Sendable () throws -> any DatagramProtocol = {
            boundGroup.value.observe(try factory.makeDatagramProtocol())
        }
        var opened: [DatagramTransport] = []
        do {
            if !fds.isEmpty {
                var cleanup = false
                if case .handedOver(_, let held) = sockets { cleanup = !held }
                for fd in fds {
                    let (transport, _) = try await self.loop.createDatagramEndpoint(
                        sock: fd,
                        cleanupSocket: cleanup,
                        makeProtocol: makeProtocol
                    )
                    opened.append(transport)
                }
                return group
            }
            switch configuration.endpoint {
            case .udp(let udp):
                for host in udp.hosts.isEmpty ? ["0.0.0.0"] : udp.hosts {
                    let (transport, _) = try await self.loop.createDatagramEndpoint(
                        local: (host, udp.port),
                        reusePort: udp.reusePort,
                        allowBroadcast: udp.allowBroadcast,
                        makeProtocol: makeProtocol
                    )
                    opened.append(transport)
                }
            case .unixDatagram(let unix):
                let (transport, _) = try await self.loop.createDatagramEndpoint(
                    localPath: unix.path,
                    mode: unix.mode,
                    cleanupSocket: true,
                    makeProtocol: makeProtocol
                )
                opened.append(transport)
            case .tcp, .unix, .pipe:
                preconditionFailure("startDatagram called for a stream listener")
            }
        } catch {
            for transport in opened { transport.abort() }
            throw error
        }
        return group
    }

    /// The `tls` block's handshake timeout, or nil without TLS (`createServer` refuses one then).
    static func handshakeTimeout(_ configuration: ListenerConfiguration) -> TimeAmount? {
        guard let tls = configuration.tls else { return nil }
        let (seconds, attoseconds) = tls.handshakeTimeout.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// What a server actually bound (ports chosen by the kernel included).
    static func boundAddress(_ server: any ServingListener) -> String? {
        if let pipe = server as? PipeListener { return pipe.address }
        let bound = (server as? Server)?.sockets.map { ConnectionLogger.describe($0.localAddress) } ?? []
        return bound.isEmpty ? nil : bound.joined(separator: ", ")
    }
}
