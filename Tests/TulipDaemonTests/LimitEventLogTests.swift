import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
import Tulip

@testable import TulipDaemon

/// The limit log entries are rate-limited to one a second per kind, and a second that ends with
/// something unlogged gets one catch-up entry, so the log's last word is the listener's state.
struct LimitEventLogTests {
    @Test
    func pausesFlappingWithinASecondBecomeOneEntryAndTheFinalStateIsLogged() {
        let entries = CapturedEntries()
        let loop = EmbeddedEventLoop()
        let log = LimitEventLog(logger: entries.logger, eventLoop: loop)

        log.acceptingChanged(paused: true, openConnections: 50)
        log.acceptingChanged(paused: false, openConnections: 49)
        log.acceptingChanged(paused: true, openConnections: 50)
        log.acceptingChanged(paused: false, openConnections: 49)
        #expect(entries.lines == ["notice listener paused at its connection limit open_connections=50 pauses=1"])

        loop.advanceTime(by: .seconds(1))
        #expect(entries.lines.last == "notice listener resumed accepting open_connections=49 pauses=-")
        #expect(entries.lines.count == 2)

        // A flap that ends where the log already stands adds nothing; the next pause entry counts
        // every pause since the last one (two flaps and itself).
        log.acceptingChanged(paused: true, openConnections: 50)
        log.acceptingChanged(paused: false, openConnections: 49)
        loop.advanceTime(by: .seconds(1))
        #expect(entries.lines.count == 2)
        log.acceptingChanged(paused: true, openConnections: 50)
        #expect(entries.lines.count == 3)
        #expect(entries.lines.last == "notice listener paused at its connection limit open_connections=50 pauses=3")
    }

    @Test
    func refusalsAreLoggedOnceASecondWithHowManyEachEntryStandsFor() throws {
        let entries = CapturedEntries()
        let loop = EmbeddedEventLoop()
        let log = LimitEventLog(logger: entries.logger, eventLoop: loop)
        let peer = try SocketAddress(ipAddress: "192.0.2.7", port: 4000)

        for _ in 0..<5 { log.refused(peer: peer, reason: .perSource) }
        #expect(entries.refusals == ["1 per_source 192.0.2.7:4000"])
        loop.advanceTime(by: .seconds(1))
        #expect(entries.refusals == ["1 per_source 192.0.2.7:4000", "4 per_source 192.0.2.7:4000"])
        loop.advanceTime(by: .seconds(1))
        #expect(entries.refusals.count == 2)
    }
}

/// A log handler that keeps each entry as `level message key=value…` for the keys the tests read.
private final class CapturedEntries: Sendable {
    private let box = NIOLockedValueBox<[(Logger.Level, String, Logger.Metadata)]>([])

    var logger: Logger {
        Logger(label: "test") { _ in Handler(box: self.box) }
    }

    var lines: [String] {
        self.box.withLockedValue { entries in
            entries.filter { $0.0 == .notice }.map { level, message, metadata in
                let pauses = metadata["pauses_since_last_entry"].map { "\($0)" } ?? "-"
                return "\(level) \(message) open_connections=\(metadata["open_connections"] ?? "?") pauses=\(pauses)"
            }
        }
    }

    var refusals: [String] {
        self.box.withLockedValue { entries in
            entries.filter { $0.1 == "connection refused" }.map { _, _, metadata in
                "\(metadata["refused_since_last_entry"] ?? "?") \(metadata["reason"] ?? "?") \(metadata["peer"] ?? "?")"
            }
        }
    }

    private struct Handler: LogHandler {
        let box: NIOLockedValueBox<[(Logger.Level, String, Logger.Metadata)]>
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let metadata = self.metadata.merging(event.metadata ?? [:]) { $1 }
            self.box.withLockedValue { $0.append((event.level, "\(event.message)", metadata)) }
        }
    }
}
