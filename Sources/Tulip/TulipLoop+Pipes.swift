import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension TulipLoop {
    /// Connects the reading end of a pipe (asyncio's `connect_read_pipe`, ASYNCIO-SPEC §17).
    ///
    /// Call it from a task on the loop (as ``runUntilComplete(_:)`` starts). The transport takes
    /// ownership of `fileDescriptor`, switches it to non-blocking and closes it when the transport
    /// closes (RP-7); on failure the caller still owns it.
    /// - Parameters:
    ///   - fileDescriptor: a FIFO, a socket or a character device (RP-1).
    ///   - makeProtocol: called once, on the loop thread.
    /// - Returns: the transport and the protocol object, once `connectionMade` has returned (PR-2).
    /// - Throws: ``TulipError/Code/invalidArgument`` ("Pipe transport is for pipes/sockets only.")
    ///   for any other kind of descriptor; ``TulipError/Code/loopClosed`` after ``close()``.
    public func connectReadPipe(
        fileDescriptor: CInt,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> (ReadPipeTransport, any StreamProtocol) {
        try Self.checkPipeDescriptor(fileDescriptor, message: "Pipe transport is for pipes/sockets only.")
        let base = try await self.connectPipeChannel(input: fileDescriptor, output: nil, role: .read, observer: nil) {
            try makeProtocol()
        }
        let transport = ReadPipeTransport(base: base.transport, fileDescriptor: fileDescriptor)
        return (transport, base.protocolObject)
    }

    /// Connects the writing end of a pipe (asyncio's `connect_write_pipe`, ASYNCIO-SPEC §17).
    ///
    /// Call it from a task on the loop. The transport takes ownership of `fileDescriptor`,
    /// switches it to non-blocking and closes it when the transport closes (WP-9); on failure the
    /// caller still owns it.
    /// - Parameters:
    ///   - fileDescriptor: a FIFO, a socket or a character device (WP-1).
    ///   - makeProtocol: called once, on the loop thread.
    /// - Returns: the transport and the protocol object, once `connectionMade` has returned (PR-2).
    /// - Throws: ``TulipError/Code/invalidArgument`` ("Pipe transport is only for pipes, sockets and
    ///   character devices") for any other kind of descriptor; ``TulipError/Code/loopClosed``.
    public func connectWritePipe(
        fileDescriptor: CInt,
        makeProtocol: @escaping @Sendable () throws -> any WritePipeProtocol
    ) async throws -> (WritePipeTransport, any WritePipeProtocol) {
        try Self.checkPipeDescriptor(
            fileDescriptor,
            message: "Pipe transport is only for pipes, sockets and character devices"
        )
        let fd = fileDescriptor
        let base = try await self.connectPipeChannel(input: nil, output: fd, role: .write, observer: nil) {
            WritePipeProtocolAdapter(try makeProtocol())
        } prepare: { transport in
            let adapter = transport.protocol as! WritePipeProtocolAdapter
            adapter.transport = WritePipeTransport(base: transport, fileDescriptor: fd)
        }
        let adapter = base.protocolObject as! WritePipeProtocolAdapter
        // connectionLost may already have dropped the adapter's reference.
        let transport = adapter.transport ?? WritePipeTransport(base: base.transport, fileDescriptor: fd)
        return (transport, adapter.target)
    }

    /// Serves one stream protocol over pipe descriptors.
    ///
    /// Data read from `readFileDescriptor` reaches the protocol, and what it writes goes to
    /// `writeFileDescriptor` (a Tulip addition, used by the daemon's `pipe` listener). At least one
    /// must be given.
    ///
    /// With both, stream semantics apply (ARCHITECTURE §3): EOF on the read side calls
    /// `eofReceived()`, whose `false` closes both descriptors. With a read side only, writes are
    /// dropped and EOF always closes (RP-3); with a write side only, nothing is read and a reader
    /// that goes away ends the connection (WP-8). The transport owns the descriptors, which must
    /// differ. Call it from a task on the loop.
    /// - Returns: the transport, once `connectionMade` has returned (PR-2).
    public func connectPipes(
        readFileDescriptor: CInt?,
        writeFileDescriptor: CInt?,
        observer: (any ConnectionObserver)? = nil,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol
    ) async throws -> ChannelTransport {
        if let fd = readFileDescriptor {
            try Self.checkPipeDescriptor(fd, message: "Pipe transport is for pipes/sockets only.")
        }
        if let fd = writeFileDescriptor {
            try Self.checkPipeDescriptor(fd, message: "Pipe transport is only for pipes, sockets and character devices")
        }
        let role: ChannelTransport.PipeRole
        switch (readFileDescriptor, writeFileDescriptor) {
        case (.some, .some): role = .none
        case (.some, nil): role = .read
        case (nil, .some): role = .write
        case (nil, nil): throw TulipError.invalidArgument("a pipe needs a descriptor")
        }
        return try await self.connectPipeChannel(
            input: readFileDescriptor,
            output: writeFileDescriptor,
            role: role,
            observer: observer,
            makeProtocol: makeProtocol
        ).transport
    }

    /// RP-1, WP-1: only FIFOs, sockets and character devices.
    static func checkPipeDescriptor(_ fd: CInt, message: String) throws {
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let code = errno
            throw TulipError.make(.invalidArgument, "fstat(\(fd)): \(String(cString: strerror(code)))", errno: code)
        }
        switch status.st_mode & S_IFMT {
        case S_IFIFO, S_IFSOCK, S_IFCHR: return
        default: throw TulipError.invalidArgument(message)
        }
    }

    private func connectPipeChannel(
        input: CInt?,
        output: CInt?,
        role: ChannelTransport.PipeRole,
        observer: (any ConnectionObserver)?,
        makeProtocol: @escaping @Sendable () throws -> any StreamProtocol,
        prepare: (@Sendable (ChannelTransport) -> Void)? = nil
    ) async throws -> PipeSetup {
        if self.isClosed { throw TulipError.loopClosed() }
        let setup = PipeSetup()
        setup.observer = observer
        let bootstrap = NIOPipeBootstrap(group: self.eventLoop)
            .channelOption(.autoRead, value: false)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let protocolObject = try makeProtocol()
                    let handler = ProtocolChannelHandler(loop: self, protocol: protocolObject, observer: setup.observer)
                    handler.transport.pipeRole = role
                    handler.transport.isPipe = true
                    prepare?(handler.transport)
                    setup.transport = handler.transport
                    setup.protocolObject = protocolObject
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
        let channel: any Channel
        switch (input, output) {
        case (let input?, let output?):
            channel = try await bootstrap.takingOwnershipOfDescriptors(input: input, output: output).get()
        case (let input?, nil):
            channel = try await bootstrap.takingOwnershipOfDescriptor(input: input).get()
        case (nil, let output?):
            channel = try await bootstrap.takingOwnershipOfDescriptor(output: output).get()
        case (nil, nil):
            throw TulipError.invalidArgument("a pipe needs a descriptor")
        }
        _ = channel
        // PR-2: connectionMade was queued when the channel became active; this runs after it.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            self.callSoonInternal { continuation.resume() }
        }
        return setup
    }
}

/// What a pipe channel's initializer made, handed back to the connecting task.
private final class PipeSetup: @unchecked Sendable {
    // @unchecked Sendable: `observer` is set before the bootstrap starts; the rest is written once
    // by the channel initializer on the loop thread and read by the connecting task after the
    // bootstrap's future completed (a happens-before edge).
    weak var observer: (any ConnectionObserver)?
    private var storedTransport: ChannelTransport?
    private var storedProtocol: (any StreamProtocol)?
    var transport: ChannelTransport {
        get { self.storedTransport! }
        set { self.storedTransport = newValue }
    }
    var protocolObject: any StreamProtocol {
        get { self.storedProtocol! }
        set { self.storedProtocol = newValue }
    }
}
