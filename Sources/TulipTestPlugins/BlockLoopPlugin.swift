import NIOCore
import Tulip
import TulipDaemon

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Test-only: echoes lines; the line `block` blocks the loop's thread, so the daemon stops
/// petting the systemd watchdog and stops serving every connection.
///
/// It exists to prove that `WATCHDOG=1` comes from the loop itself: with `WatchdogSec=` set,
/// systemd must kill the blocked daemon (`Result=watchdog`). Only `tulipd-test` registers it.
public struct BlockLoopPlugin: Plugin {
    /// `{"seconds": N}`: how long `block` blocks the loop (3600 by default), so a daemon run
    /// without a watchdog comes back eventually.
    public struct Options: Decodable, Sendable {
        /// How long one `block` line blocks the loop, in seconds.
        public var seconds: Int?
    }

    public static let name = "block-loop"
    public static let summary = "Test only: echoes lines; the line \"block\" blocks the loop's thread"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix]

    public static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory {
        let seconds = options.seconds ?? 3600
        guard seconds > 0 else {
            throw context.invalidOption("seconds", "must be a positive number of seconds, got \(seconds)")
        }
        return StreamProtocolFactory { BlockLoopProtocol(blockSeconds: seconds) }
    }
}

/// The protocol object of ``BlockLoopPlugin``, one per connection; runs on the loop's thread.
public final class BlockLoopProtocol: StreamProtocol {
    private let blockSeconds: Int
    private var transport: ChannelTransport?
    private var pending: [UInt8] = []

    init(blockSeconds: Int) {
        self.blockSeconds = blockSeconds
    }

    public func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    public func dataReceived(_ data: ByteBuffer) throws {
        self.pending += data.readableBytesView
        while let newline = self.pending.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Array(self.pending[...newline])
            self.pending.removeSubrange(...newline)
            if Self.isBlockCommand(line) {
                self.blockLoop()
            } else {
                try self.transport?.write(line)
            }
        }
    }

    public func connectionLost(error: (any Error)?) {
        self.transport = nil
    }

    /// `block`, with `\n` or `\r\n`.
    private static func isBlockCommand(_ line: [UInt8]) -> Bool {
        let trimmed = line.last == UInt8(ascii: "\n") ? line.dropLast() : line[...]
        let text = trimmed.last == UInt8(ascii: "\r") ? trimmed.dropLast() : trimmed
        return text.elementsEqual("block".utf8)
    }

    /// Sleeps on the loop's thread on purpose; `sleep` restarts after a signal until the time is up,
    /// so SIGTERM is not noticed either (only SIGKILL/SIGABRT from the watchdog end it early).
    private func blockLoop() {
        var remaining = UInt32(clamping: self.blockSeconds)
        while remaining > 0 {
            remaining = sleep(remaining)
        }
    }
}
