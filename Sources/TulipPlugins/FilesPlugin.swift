import Logging
import NIOCore
import Tulip
import TulipDaemon

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Serves the regular files under one directory: the client sends a relative path and one
/// `\n`; the reply is `OK <size>\n` and exactly the file's bytes (sent with
/// ``Tulip/TulipLoop/sendfile(_:file:offset:count:fallback:)``, so the kernel copies them), or
/// `ERR <reason>\n`; then the connection closes.
///
/// Nothing outside `root` is ever opened. The request must be valid UTF-8 of at most 4 KiB,
/// without NUL, control characters or backslashes, relative, and made of plain components (no empty, `.`
/// or `..` component). It is resolved one component at a time from a descriptor of `root`
/// opened at start-up: directories with `O_NOFOLLOW | O_DIRECTORY`, so no symbolic link is ever
/// followed, not even one that points inside `root`; the leaf is checked with
/// `fstatat(AT_SYMLINK_NOFOLLOW)` and must be a regular file before it is opened (so a FIFO,
/// device or socket is never opened), then opened with `O_NOFOLLOW | O_NONBLOCK` and checked
/// again with `fstat` (same inode, still regular) to close the race. Every refusal is logged.
public struct FilesPlugin: Plugin {
    /// `{"root": "/srv/files"}`: the directory to serve (required; must exist).
    public struct Options: Decodable, Sendable {
        /// The directory whose files are served.
        public var root: String
    }

    public static let name = "files"
    public static let summary =
        "Sends the file named by one request line under options.root (OK <size> + bytes, or ERR)"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]

    /// The longest request line, without its `\n`.
    public static let maximumRequestLength = 4096

    public static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory {
        let root: FilesRoot
        do {
            root = try FilesRoot(path: options.root)
        } catch let error as FilesRoot.OpenError {
            throw context.invalidOption("root", error.message)
        }
        let logger = context.logger
        return StreamProtocolFactory { FilesProtocol(root: root, logger: logger) }
    }

    /// Why a request was refused; `reason` is what follows `ERR `.
    public struct Refusal: Error, Hashable, Sendable {
        /// A short reason for the client and the log.
        public var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// The path components of a request line (without its `\n`), or why it is refused.
    ///
    /// Pure: no file system access. One trailing `\r` is ignored (telnet-style clients).
    public static func parseRequest(_ line: some Collection<UInt8>) -> Result<[String], Refusal> {
        var bytes = Array(line)
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count <= Self.maximumRequestLength else { return .failure(Refusal("request too long")) }
        guard !bytes.isEmpty else { return .failure(Refusal("empty path")) }
        guard !bytes.contains(0) else { return .failure(Refusal("NUL in path")) }
        guard !bytes.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            return .failure(Refusal("control character in path"))
        }
        // A backslash is an ordinary byte here, but a separator to Windows-minded tools: refuse it.
        guard !bytes.contains(UInt8(ascii: "\\")) else { return .failure(Refusal("backslash in path")) }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(Refusal("path is not UTF-8"))
        }
        guard bytes.first != UInt8(ascii: "/") else { return .failure(Refusal("absolute path")) }
        let components = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        for component in components {
            switch component {
            case "": return .failure(Refusal("empty path component"))
            case ".", "..": return .failure(Refusal("dot component in path"))
            default:
                if component.utf8.count > Int(NAME_MAX) { return .failure(Refusal("path component too long")) }
            }
        }
        return .success(components)
    }
}

/// The served directory, held open as a descriptor for the listener's lifetime.
public final class FilesRoot: Sendable {
    struct OpenError: Error {
        var message: String
    }

    /// The directory descriptor every request is resolved from.
    let descriptor: CInt

    /// Opens `path`, which must be an existing directory.
    init(path: String) throws {
        guard !path.isEmpty else { throw OpenError(message: "must not be empty") }
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            let message =
                code == ENOTDIR
                ? "\"\(path)\" is not a directory"
                : "cannot open directory \"\(path)\": \(String(cString: strerror(code)))"
            throw OpenError(message: message)
        }
        self.descriptor = fd
    }

    deinit {
        close(self.descriptor)
    }

    /// An open regular file under the root and its size.
    struct OpenFile {
        var descriptor: CInt
        var size: Int
    }

    /// Opens the regular file at `components` without following any symbolic link and without
    /// opening anything that is not a regular file.
    func openFile(_ components: [String]) -> Result<OpenFile, FilesPlugin.Refusal> {
        guard let leaf = components.last else { return .failure(.init("empty path")) }
        var directory = self.descriptor
        defer { if directory != self.descriptor { close(directory) } }
        for component in components.dropLast() {
            let next = openat(directory, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { return .failure(Self.refusal(errno, directory: true)) }
            if directory != self.descriptor { close(directory) }
            directory = next
        }
        var before = stat()
        guard fstatat(directory, leaf, &before, AT_SYMLINK_NOFOLLOW) == 0 else {
            return .failure(Self.refusal(errno, directory: false))
        }
        guard (before.st_mode & S_IFMT) == S_IFREG else { return .failure(Self.refusal(mode: before.st_mode)) }
        let fd = openat(directory, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(Self.refusal(errno, directory: false)) }
        var after = stat()
        guard fstat(fd, &after) == 0, (after.st_mode & S_IFMT) == S_IFREG,
            after.st_dev == before.st_dev, after.st_ino == before.st_ino
        else {
            close(fd)
            return .failure(.init("file changed while opening"))
        }
        return .success(OpenFile(descriptor: fd, size: Int(after.st_size)))
    }

    private static func refusal(_ code: CInt, directory: Bool) -> FilesPlugin.Refusal {
        switch code {
        case ENOENT: return .init("not found")
        case ELOOP: return .init("symbolic link refused")
        case ENOTDIR: return .init(directory ? "not a directory or a symbolic link" : "not found")
        case EACCES, EPERM: return .init("permission denied")
        default: return .init("cannot open")
        }
    }

    private static func refusal(mode: mode_t) -> FilesPlugin.Refusal {
        switch mode & S_IFMT {
        case S_IFLNK: return .init("symbolic link refused")
        case S_IFDIR: return .init("is a directory")
        default: return .init("not a regular file")
        }
    }
}

/// The protocol object of ``FilesPlugin``, one per connection.
public final class FilesProtocol: StreamProtocol {
    private let root: FilesRoot
    private let logger: Logger
    private var transport: ChannelTransport?
    private var request: [UInt8] = []
    private var answered = false
    private var lingering = false

    init(root: FilesRoot, logger: Logger) {
        self.root = root
        self.logger = logger
    }

    public func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    public func dataReceived(_ data: ByteBuffer) throws {
        guard !self.answered else { return }  // anything after the request line is ignored
        let view = data.readableBytesView
        if let newline = view.firstIndex(of: UInt8(ascii: "\n")) {
            self.request += view[..<newline]
            self.answer()
        } else {
            self.request += view
            if self.request.count > FilesPlugin.maximumRequestLength + 1 {
                self.refuse(FilesPlugin.Refusal("request too long"), linger: true)
            }
        }
    }

    public func eofReceived() throws -> Bool {
        if !self.answered { self.refuse(FilesPlugin.Refusal("no request line")) }
        return !self.lingering  // a transfer in progress keeps the sending side
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }

    private func answer() {
        guard let transport = self.transport else { return }
        self.answered = true
        transport.pauseReading()
        let file: FilesRoot.OpenFile
        switch FilesPlugin.parseRequest(self.request).flatMap({ self.root.openFile($0) }) {
        case .failure(let refusal):
            return self.refuse(refusal)
        case .success(let opened):
            file = opened
        }
        self.logger.debug(
            "files: sending",
            metadata: ["tulip.files.request": "\(self.printableRequest)", "tulip.files.size": "\(file.size)"]
        )
        do {
            try transport.write(string: "OK \(file.size)\n")
        } catch {
            close(file.descriptor)
            return transport.abort()
        }
        guard file.size > 0 else {
            close(file.descriptor)
            return transport.close()
        }
        let bound = NIOLoopBound(transport, eventLoop: transport.loop.eventLoop)
        let logger = self.logger
        do {
            try transport.loop.createTask {
                let transport = bound.value
                defer { close(file.descriptor) }
                do {
                    let sent = try await transport.loop.sendfile(transport, file: file.descriptor, count: file.size)
                    if sent == file.size {
                        transport.close()
                    } else {
                        // The file shrank: end the connection before the promised size.
                        logger.info("files: file shrank during transfer", metadata: ["tulip.files.sent": "\(sent)"])
                        transport.abort()
                    }
                } catch {
                    logger.info("files: transfer ended early", metadata: ["tulip.error": "\(error)"])
                    transport.abort()
                }
            }
        } catch {
            close(file.descriptor)
            transport.abort()
        }
    }

    /// Answers `ERR` and closes.
    ///
    /// With `linger`, for a client still sending (a line too long), only the sending side is
    /// shut and the rest of its input is read and dropped until its EOF (or 2 s), so closing
    /// with unread input does not reset the connection before the client has read the `ERR`.
    private func refuse(_ refusal: FilesPlugin.Refusal, linger: Bool = false) {
        self.answered = true
        self.logger.warning(
            "files: refused request",
            metadata: ["tulip.files.reason": "\(refusal.reason)", "tulip.files.request": "\(self.printableRequest)"]
        )
        guard let transport = self.transport else { return }
        try? transport.write(string: "ERR \(refusal.reason)\n")
        guard linger else { return transport.close() }
        self.lingering = true
        self.request = []
        transport.writeEOF()
        let bound = NIOLoopBound(transport, eventLoop: transport.loop.eventLoop)
        _ = try? transport.loop.callLater(.seconds(2)) { bound.value.close() }
    }

    /// The request for logs: at most 200 bytes, invalid UTF-8 replaced, control characters escaped.
    private var printableRequest: String {
        String(decoding: self.request.prefix(200), as: UTF8.self).debugDescription
    }
}

// Loop-confined.
@available(*, unavailable)
extension FilesProtocol: Sendable {}
