import Logging
import NIOCore
import Tulip

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One admin-socket connection: reads command lines, answers each with one JSON line.
///
/// Loop-confined. Commands run one at a time in arrival order: while a `reload` is in progress
/// reading pauses, so a client may pipeline lines and still get the replies in order. A line longer
/// than ``maximumLineLength`` gets an error reply and the connection is closed, so a client cannot
/// make the daemon buffer without bound.
final class AdminProtocol: StreamProtocol, @unchecked Sendable {
    // @unchecked Sendable: loop-confined; the reload task runs on the loop's own executor.
    /// The longest command line accepted, newline included.
    static let maximumLineLength = 4096

    private let backend: any AdminBackend
    private let logger: Logger
    private let ownUID: uid_t
    private var transport: ChannelTransport?
    private var pending: ByteBuffer?
    private var busy = false
    private var peerClosed = false
    /// The client does not read its replies: no more commands run until it does.
    private var writingPaused = false

    /// - Parameters:
    ///   - backend: the daemon, asked on the loop's thread.
    ///   - logger: where changing commands and refusals are logged.
    ///   - ownUID: the daemon's user; it and root may use changing commands.
    init(backend: any AdminBackend, logger: Logger, ownUID: uid_t = getuid()) {
        self.backend = backend
        self.logger = logger
        self.ownUID = ownUID
    }

    func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    func dataReceived(_ data: ByteBuffer) throws {
        self.pending.append(data)
        self.processLines()
    }

    func eofReceived() throws -> Bool {
        self.peerClosed = true
        // A last command without a newline still counts.
        if let pending = self.pending, pending.readableBytes > 0 {
            self.pending!.writeInteger(UInt8(ascii: "\n"))
        }
        self.processLines()
        // Keep the transport open until a reload in progress has answered.
        return true
    }

    func connectionLost(error: (any Error)?) {
        self.transport = nil
        self.pending = nil
    }

    // A client that pipelines commands without reading the replies stops being read, so the
    // replies it has not read cannot pile up without bound.
    func pauseWriting() {
        self.writingPaused = true
        self.transport?.pauseReading()
    }

    func resumeWriting() {
        self.writingPaused = false
        if !self.busy { self.transport?.resumeReading() }
        self.processLines()
    }

    // MARK: - Lines

    private func processLines() {
        while !self.busy, !self.writingPaused, let transport = self.transport, !transport.isClosing,
            var pending = self.pending
        {
            guard let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if pending.readableBytes >= Self.maximumLineLength {
                    self.reply(AdminReplies.failure(AdminError("line longer than \(Self.maximumLineLength) bytes")))
                    transport.close()
                }
                break
            }
            let length = newline - pending.readerIndex
            guard length < Self.maximumLineLength else {
                self.reply(AdminReplies.failure(AdminError("line longer than \(Self.maximumLineLength) bytes")))
                transport.close()
                break
            }
            let line = pending.readString(length: length) ?? ""
            pending.moveReaderIndex(forwardBy: 1)
            self.pending = pending.readableBytes > 0 ? pending : nil
            self.execute(line)
        }
        if !self.busy, !self.writingPaused, self.peerClosed, self.pending == nil { self.transport?.close() }
    }

    private func execute(_ line: String) {
        let command: AdminCommand
        do {
            command = try AdminCommand(line: Substring(line))
        } catch {
            self.reply(AdminReplies.failure(error))
            return
        }
        if command.isChanging {
            guard let credentials = self.transport?.extraInfo.peerCredentials else {
                self.reply(AdminReplies.failure(AdminError("\(command.name) needs a peer whose user can be checked")))
                return
            }
            guard credentials.uid == 0 || credentials.uid == self.ownUID else {
                self.logger.warning(
                    "admin command refused",
                    metadata: ["command": "\(command.name)", "peer_uid": "\(credentials.uid)"]
                )
                self.reply(
                    AdminReplies.failure(
                        AdminError(
                            "\(command.name) is allowed for root and uid \(self.ownUID) only, not uid \(credentials.uid)"
                        )
                    )
                )
                return
            }
            self.logger.notice(
                "admin command",
                metadata: ["command": "\(line)", "peer_uid": "\(credentials.uid)", "peer_pid": "\(credentials.pid)"]
            )
        }
        do throws(AdminError) {
            switch command {
            case .status:
                self.reply(AdminReplies.status(self.backend.adminStatus()))
            case .listeners:
                self.reply(AdminReplies.listeners(self.backend.adminStatus().listeners))
            case .connections(let listener):
                self.reply(AdminReplies.connections(try self.backend.adminConnections(listener: listener)))
            case .drain(let listener):
                try self.backend.adminDrain(listener: listener)
                self.reply(AdminReplies.listenerState(listener, .draining))
            case .resume(let listener):
                try self.backend.adminResume(listener: listener)
                self.reply(AdminReplies.listenerState(listener, .serving))
            case .reload:
                self.startReload()
            }
        } catch {
            self.reply(AdminReplies.failure(error))
        }
    }

    private func startReload() {
        guard let transport = self.transport else { return }
        self.busy = true
        transport.pauseReading()
        let backend = self.backend
        do {
            _ = try transport.loop.createTask { [self] in
                let reply: AdminJSON
                do throws(AdminError) {
                    reply = AdminReplies.reloaded(try await backend.adminReload())
                } catch {
                    reply = AdminReplies.failure(error)
                }
                self.reply(reply)
                self.busy = false
                if !self.writingPaused { self.transport?.resumeReading() }
                self.processLines()
            }
        } catch {
            self.busy = false
            self.reply(AdminReplies.failure(AdminError("cannot reload: \(error)")))
        }
    }

    private func reply(_ json: AdminJSON) {
        guard let transport = self.transport, !transport.isClosing else { return }
        try? transport.write(string: json.serialized + "\n")
    }
}
