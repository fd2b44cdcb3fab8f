import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension TulipLoop {
    /// Creates a datagram endpoint (asyncio's `create_datagram_endpoint`, ASYNCIO-SPEC §16).
    ///
    /// The socket is created by hand (`SOCK_DGRAM | SOCK_CLOEXEC`) and handed to NIO once it is
    /// set up. There is deliberately no `reuseAddress` parameter and `SO_REUSEADDR` is never set
    /// (DE-1): on a datagram socket it would let another process bind the same port and receive
    /// part of its traffic.
    ///
    /// - Parameters:
    ///   - localAddress: bind here; a unix path replaces a stale socket file, never another file
    ///     (DE-4, US-5).
    ///   - remoteAddress: connect here (the default destination of ``DatagramTransport/sendto(_:to:)``);
    ///     with `allowBroadcast` the socket is not connected (DE-8).
    ///   - family: the family of an unbound, unconnected socket (DE-3); must agree with the addresses.
    ///   - reusePort: `SO_REUSEPORT` (DE-7).
    ///   - allowBroadcast: `SO_BROADCAST` (DE-7, DE-8).
    ///   - sock: an existing datagram socket to use as it is, instead of any of the above (DE-2); the
    ///     endpoint owns it from then on.
    ///   - mode: permission bits for a unix socket file (a Tulip addition).
    ///   - cleanupSocket: unlink a unix socket file on close if its inode is unchanged (a Tulip
    ///     addition; asyncio leaves it).
    ///   - makeProtocol: called once, on the loop thread.
    /// - Returns: the transport and the protocol object, after `connectionMade` has run (DE-9);
    ///   receiving starts after `connectionMade`. Use both on the loop only.
    /// - Throws: ``TulipError`` with code `invalidArgument` for bad combinations (DE-2, DE-3,
    ///   DE-6), `addressInUse`/`bindFailed`/`socketError` with the errno (DE-7), `loopClosed`.
    public func createDatagramEndpoint(
        localAddress: SocketAddress? = nil,
        remoteAddress: SocketAddress? = nil,
        family: AddressFamily = .unspecified,
        reusePort: Bool = false,
        allowBroadcast: Bool = false,
        sock: CInt? = nil,
        mode: UInt16? = nil,
        cleanupSocket: Bool = false,
        makeProtocol: @escaping @Sendable () throws -> any DatagramProtocol
    ) async throws -> (DatagramTransport, any DatagramProtocol) {
        if self.isClosed { throw TulipError.loopClosed() }
        let fd: CInt
        let remote: SocketAddress?
        let connected: Bool
        if let sock {
            var problems: [String] = []
            if localAddress != nil { problems.append("local_addr") }
            if remoteAddress != nil { problems.append("remote_addr") }
            if family != .unspecified { problems.append("family") }
            if reusePort { problems.append("reuse_port") }
            if allowBroadcast { problems.append("allow_broadcast") }
            if !problems.isEmpty {
                throw TulipError.invalidArgument(
                    "socket modifier keyword arguments can not be used when sock is specified. (\(problems.joined(separator: ", ")))"
                )
            }
            try BoundSocket.checkDatagram(sock)
            fd = sock
            remote = BoundSocket.peerAddress(of: sock)
            connected = remote != nil
        } else {
            let families = [localAddress, remoteAddress].compactMap { $0.map { CInt($0.protocol.rawValue) } }
            let resolved = families.first ?? family.rawValue
            guard resolved != AF_UNSPEC else { throw TulipError.invalidArgument("unexpected address family") }
            if families.contains(where: { $0 != resolved }) || (family != .unspecified && family.rawValue != resolved) {
                throw TulipError.invalidArgument("can not get address information")
            }
            fd = try BoundSocket.makeDatagram(
                family: resolved,
                local: localAddress,
                remote: remoteAddress,
                reusePort: reusePort,
                allowBroadcast: allowBroadcast,
                mode: mode
            ) { warning in self.callExceptionHandler(ExceptionContext(message: warning)) }
            remote = remoteAddress
            connected = remoteAddress != nil && !allowBroadcast
        }
        var unixFile: BoundSocket.UnixSocketFile?
        if cleanupSocket, let path = ((try? BoundSocket.localAddress(of: fd)) ?? nil)?.pathname,
            !path.isEmpty, path.utf8.first != 0
        {
            unixFile = BoundSocket.unixFile(at: path)
        }
        return try await self.startDatagramEndpoint(
            fd: fd,
            remote: remote,
            connected: connected,
            unixFile: unixFile,
            makeProtocol: makeProtocol
        )
    }

    /// Creates a UDP endpoint from host names (asyncio's `local_addr=(host, port)` form).
    ///
    /// Numeric hosts skip DNS; names are resolved with a datagram-type `getaddrinfo` off the loop
    /// (DE-5). When both are given, the first local address whose family a remote address shares
    /// is used (DE-6). See the `SocketAddress` form for the rest.
    public func createDatagramEndpoint(
        local: (host: String, port: Int)?,
        remote: (host: String, port: Int)? = nil,
        family: AddressFamily = .unspecified,
        reusePort: Bool = false,
        allowBroadcast: Bool = false,
        makeProtocol: @escaping @Sendable () throws -> any DatagramProtocol
    ) async throws -> (DatagramTransport, any DatagramProtocol) {
        var locals: [SocketAddress] = []
        var remotes: [SocketAddress] = []
        if let local { locals = try await self.resolveDatagram(local.host, local.port, family) }
        if let remote { remotes = try await self.resolveDatagram(remote.host, remote.port, family) }
        var pairs: [(SocketAddress?, SocketAddress?)] = []
        switch (locals.isEmpty, remotes.isEmpty) {
        case (false, false):
            for l in locals {
                for r in remotes where r.protocol == l.protocol { pairs.append((l, r)) }
            }
        case (false, true): pairs = locals.map { (Optional($0), SocketAddress?.none) }
        case (true, false): pairs = remotes.map { (SocketAddress?.none, Optional($0)) }
        case (true, true): pairs = [(nil, nil)]
        }
        guard !pairs.isEmpty else { throw TulipError.invalidArgument("can not get address information") }
        var firstError: (any Error)?
        for (l, r) in pairs {
            do {
                return try await self.createDatagramEndpoint(
                    localAddress: l,
                    remoteAddress: r,
                    family: (l == nil && r == nil) ? family : .unspecified,
                    reusePort: reusePort,
                    allowBroadcast: allowBroadcast,
                    makeProtocol: makeProtocol
                )
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        throw firstError!  // invariant: pairs is not empty, so some attempt failed
    }

    /// Creates a unix datagram endpoint bound at `localPath` and/or connected to `remotePath` (DE-4).
    ///
    /// A stale socket file at `localPath` is replaced, never another file. See the `SocketAddress`
    /// form for the rest.
    public func createDatagramEndpoint(
        localPath: String?,
        remotePath: String? = nil,
        mode: UInt16? = nil,
        cleanupSocket: Bool = false,
        makeProtocol: @escaping @Sendable () throws -> any DatagramProtocol
    ) async throws -> (DatagramTransport, any DatagramProtocol) {
        try await self.createDatagramEndpoint(
            localAddress: try localPath.map { try SocketAddress(unixDomainSocketPath: $0) },
            remoteAddress: try remotePath.map { try SocketAddress(unixDomainSocketPath: $0) },
            family: .unix,
            mode: mode,
            cleanupSocket: cleanupSocket,
            makeProtocol: makeProtocol
        )
    }

    private func resolveDatagram(_ host: String, _ port: Int, _ family: AddressFamily) async throws -> [SocketAddress] {
        if let numeric = try? SocketAddress(ipAddress: host, port: port) { return [numeric] }
        return try await self.runInExecutor {
            var hints = addrinfo()
            hints.ai_family = family.rawValue
            hints.ai_socktype = CInt(SOCK_DGRAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = Glibc.getaddrinfo(host, String(port), &hints, &list)
            guard status == 0 else {
                throw TulipError.make(
                    .resolutionFailed,
                    "getaddrinfo(\(host)): \(String(cString: gai_strerror(status)))"
                )
            }
            defer { freeaddrinfo(list) }
            var addresses: [SocketAddress] = []
            var cursor = list
            while let entry = cursor {
                if let sockaddr = entry.pointee.ai_addr {
                    var storage = sockaddr_storage()
                    withUnsafeMutableBytes(of: &storage) { raw in
                        raw.copyMemory(
                            from: UnsafeRawBufferPointer(start: sockaddr, count: Int(entry.pointee.ai_addrlen))
                        )
                    }
                    if let address = BoundSocket.socketAddress(storage), !addresses.contains(address) {
                        addresses.append(address)
                    }
                }
                cursor = entry.pointee.ai_next
            }
            if addresses.isEmpty { throw TulipError.make(.resolutionFailed, "getaddrinfo() returned empty list") }
            return addresses
        }
    }

    private func startDatagramEndpoint(
        fd: CInt,
        remote: SocketAddress?,
        connected: Bool,
        unixFile: BoundSocket.UnixSocketFile?,
        makeProtocol: @escaping @Sendable () throws -> any DatagramProtocol
    ) async throws -> (DatagramTransport, any DatagramProtocol) {
        let isUnix =
            ((try? BoundSocket.localAddress(of: fd)) ?? nil).map { CInt($0.protocol.rawValue) == AF_UNIX } ?? false
        let box = try await self.eventLoop.flatSubmit { () -> EventLoopFuture<EndpointBox> in
            let protocolObject: any DatagramProtocol
            do {
                protocolObject = try makeProtocol()
            } catch {
                Glibc.close(fd)
                return self.eventLoop.makeFailedFuture(error)
            }
            let transport = DatagramTransport(
                loop: self,
                protocol: protocolObject,
                fileDescriptor: fd,
                remoteAddress: remote,
                isConnected: connected
            )
            transport.unixFile = unixFile
            // DT-8: one read holds a whole datagram (UDP's largest; 256 KiB for unix, as asyncio).
            let capacity = isUnix ? 262_144 : 65_536
            // NIO's reader keeps one sender-address buffer across the messages of one read loop
            // and leaves it untouched for a sender without an address, so with more than one
            // message per read a datagram from an unnamed unix socket would be attributed to the
            // previous sender (and a longer path truncated to the previous one's length).
            let messagesPerRead = isUnix ? 1 : 16
            let loop = self
            // NIO owns (and closes) a duplicate of the socket; the transport keeps `fd`, so an
            // unexpected channel close (an unnamed sender, a fatal-to-NIO receive error) leaves the
            // socket, its bound path and its queued datagrams intact for a new channel (DT-6).
            transport.makeChannel = { generation in
                let channelFD = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                guard channelFD >= 0 else {
                    return loop.eventLoop.makeFailedFuture(DatagramTransport.socketError(errno))
                }
                let handler = NIOLoopBound(
                    DatagramChannelHandler(transport: transport, generation: generation),
                    eventLoop: loop.eventLoop
                )
                let bootstrap = DatagramBootstrap(group: loop.eventLoop)
                    .channelOption(.autoRead, value: false)
                    .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: capacity))
                    .channelOption(.maxMessagesPerRead, value: UInt(messagesPerRead))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(handler.value)
                        }
                    }
                return bootstrap.withBoundSocket(channelFD).map { _ in () }
            }
            let result = self.eventLoop.makePromise(of: EndpointBox.self)
            transport.makeChannel!(transport.generation).assumeIsolated().whenComplete { outcome in
                switch outcome {
                case .success:
                    transport.start {
                        result.succeed(EndpointBox(transport: transport, protocolObject: protocolObject))
                    }
                case .failure(let error):
                    Glibc.close(fd)
                    result.fail(error)
                }
            }
            return result.futureResult
        }.get()
        return (box.transport, box.protocolObject)
    }
}

/// Carries the new endpoint out of the loop's future to the caller.
private struct EndpointBox {
    let transport: DatagramTransport
    let protocolObject: any DatagramProtocol
}

// @unchecked Sendable: loop-bound — made on the loop and handed back to a caller that uses the
// transport and protocol object on that loop only (their own methods check it).
extension EndpointBox: @unchecked Sendable {}
