/// An error raised by the Tulip loop, its servers and its transports.
///
/// The codes map onto the Python exception classes that asyncio raises for the same condition
/// (`RuntimeError`, `ValueError`, `OSError`); the message keeps CPython's wording where its tests
/// match on it. Equality is on ``code`` only, so `#expect(throws: TulipError.loopClosed())` works
/// whatever message or location an error carries.
public struct TulipError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The kind of failure; an open set of values.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case loopClosed
            case loopRunning
            case anotherLoopRunning
            case runningLoopCannotClose
            case stoppedBeforeCompletion
            case invalidArgument
            case writeAfterEOF
            case serverClosed
            case serveForeverActive
            case addressInUse
            case bindFailed
            case resolutionFailed
            case executorShutdown
            case callbackFailed
            case transportClosing
            case sendfileInProgress
            case sendfileNotAvailable
            case sendfileNotSupported
            case connectionLost
            case fileTruncated
            case fileReadFailed
            case socketError
            case connectFailed
            case unsupportedTransport
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The loop is closed (asyncio: `RuntimeError('Event loop is closed')`).
        public static let loopClosed = Code(.loopClosed)
        /// The loop is already running (asyncio: `RuntimeError('This event loop is already running')`).
        public static let loopRunning = Code(.loopRunning)
        /// Another loop runs on the calling thread.
        public static let anotherLoopRunning = Code(.anotherLoopRunning)
        /// `close()` on a running loop.
        public static let runningLoopCannotClose = Code(.runningLoopCannotClose)
        /// `runUntilComplete` ended because someone stopped the loop first.
        public static let stoppedBeforeCompletion = Code(.stoppedBeforeCompletion)
        /// An argument or combination of arguments is invalid (asyncio: `ValueError`).
        public static let invalidArgument = Code(.invalidArgument)
        /// `write()` after `writeEOF()`.
        public static let writeAfterEOF = Code(.writeAfterEOF)
        /// The server is closed.
        public static let serverClosed = Code(.serverClosed)
        /// Another `serveForever()` is active on the server.
        public static let serveForeverActive = Code(.serveForeverActive)
        /// The address is already in use (`EADDRINUSE`).
        public static let addressInUse = Code(.addressInUse)
        /// `socket`, `bind` or `listen` failed for another reason.
        public static let bindFailed = Code(.bindFailed)
        /// Name resolution returned nothing.
        public static let resolutionFailed = Code(.resolutionFailed)
        /// The default executor was shut down.
        public static let executorShutdown = Code(.executorShutdown)
        /// A protocol callback failed; the connection was closed.
        public static let callbackFailed = Code(.callbackFailed)
        /// The transport is closing (asyncio: `RuntimeError('Transport is closing')`, SF-2).
        public static let transportClosing = Code(.transportClosing)
        /// `write()` while a native sendfile is in progress
        /// (asyncio: `RuntimeError('unable to write; sendfile is in progress')`, WT-4).
        public static let sendfileInProgress = Code(.sendfileInProgress)
        /// Native sendfile is impossible for this file and `fallback` is false
        /// (asyncio: `SendfileNotAvailableError`, SF-4).
        public static let sendfileNotAvailable = Code(.sendfileNotAvailable)
        /// The transport cannot send files natively and `fallback` is false (SF-5), or cannot send
        /// files at all (SF-3).
        public static let sendfileNotSupported = Code(.sendfileNotSupported)
        /// The connection was lost during a transfer (asyncio: `ConnectionError`, SF-13, SF-14).
        public static let connectionLost = Code(.connectionLost)
        /// The file shrank below the part being sent natively; the transport was aborted.
        public static let fileTruncated = Code(.fileTruncated)
        /// Reading the file failed (asyncio: `OSError`).
        public static let fileReadFailed = Code(.fileReadFailed)
        /// A send or receive on a socket failed (asyncio: `OSError`); ``TulipError/errno`` has the code.
        public static let socketError = Code(.socketError)
        /// No address could be connected to (asyncio: `OSError`, or `OSError('Multiple
        /// exceptions: …')`); ``TulipError/errno`` has the last attempt's code when there is one.
        public static let connectFailed = Code(.connectFailed)
        /// The transport cannot be upgraded: a pipe (asyncio: `TypeError('transport … is not
        /// supported by start_tls()')`, TLS-2).
        public static let unsupportedTransport = Code(.unsupportedTransport)

        public var description: String { self.base.rawValue }
    }

    /// What went wrong.
    public let code: Code
    /// Human-readable detail, CPython's wording where it exists.
    public let message: String
    /// The `errno` behind an OS-level failure, if any.
    public let errno: Int32?
    private let location: String

    private init(_ code: Code, _ message: String, errno: Int32? = nil, file: String, line: Int) {
        self.code = code
        self.message = message
        self.errno = errno
        self.location = "\(file):\(line)"
    }

    public static func == (lhs: TulipError, rhs: TulipError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    public var description: String { "TulipError.\(self.code): \(self.message) (\(self.location))" }

    /// Makes an error of the given code; the factories below are the usual way in.
    public static func make(
        _ code: Code,
        _ message: String,
        errno: Int32? = nil,
        file: String = #fileID,
        line: Int = #line
    ) -> TulipError {
        TulipError(code, message, errno: errno, file: file, line: line)
    }

    public static func loopClosed(file: String = #fileID, line: Int = #line) -> TulipError {
        TulipError(.loopClosed, "Event loop is closed", file: file, line: line)
    }

    public static func loopRunning(file: String = #fileID, line: Int = #line) -> TulipError {
        TulipError(.loopRunning, "This event loop is already running", file: file, line: line)
    }

    public static func anotherLoopRunning(file: String = #fileID, line: Int = #line) -> TulipError {
        TulipError(
            .anotherLoopRunning,
            "Cannot run the event loop while another loop is running",
            file: file,
            line: line
        )
    }

    public static func invalidArgument(_ message: String, file: String = #fileID, line: Int = #line) -> TulipError {
        TulipError(.invalidArgument, message, file: file, line: line)
    }
}
